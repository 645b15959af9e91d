"""One pass of the watcher (see the package's docstring for what and why)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from herd.cli.client import MasterClient
from herd.cli.common import job_error, wait_for_job
from herd.config.facts import is_master, read_facts
from herd.daemons import util as daemon_util
from herd.jobs import queue as q
from herd.node import hooks as node_hooks
from herd.paths import HerdPaths
from herd.watcher.state import WatcherState, paused_until

log = logging.getLogger(__name__)

#: Jobs that ended longer ago than this are archived (Ganeti's watcher: six hours).
ARCHIVE_AGE = 6 * 3600
#: Seconds one call to masterd may take (jobs are followed by long-polls well below it).
CALL_TIMEOUT = 600.0


@dataclass
class WatchReport:
    """What a pass did; ``lines`` is what ``herd-watcher`` prints."""

    lines: list[str] = field(default_factory=list)
    started_daemons: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)
    disks_activated: list[str] = field(default_factory=list)
    archived: int = 0
    paused: bool = False

    def say(self, text: str) -> None:
        self.lines.append(text)


def watch_once(paths: HerdPaths) -> WatchReport:
    report = WatchReport()
    until = paused_until(paths)
    if until is not None:
        report.paused = True
        report.say(f"watcher paused until {time.ctime(until)}; nothing done")
        return report
    if read_facts(paths) is None:
        report.say("this node is not part of a cluster; nothing to watch")
        return report
    _ensure_daemons(paths, report)
    _run_watcher_hooks(paths, report)
    if not is_master(paths):
        return report
    with MasterClient(paths, timeout=CALL_TIMEOUT) as client:
        state = WatcherState.load(paths)
        _restart_instances(client, state, report)
        state.save(paths)
        _verify_disks(client, report)
        report.archived = int(client.call("autoarchive", age=ARCHIVE_AGE))
        if report.archived:
            report.say(f"archived {report.archived} job(s) older than six hours")
    return report


def _ensure_daemons(paths: HerdPaths, report: WatchReport) -> None:
    wanted = ["noded", "masterd", "rapi"] if is_master(paths) else ["noded"]
    for daemon in wanted:
        if daemon_util.is_running(paths, daemon):
            continue
        try:
            daemon_util.start(paths, daemon, daemon_util.daemon_port(paths, daemon))
        except daemon_util.NotMaster as exc:  # the master role moved meanwhile
            report.say(f"herd-{daemon} not started: {exc}")
            return
        except RuntimeError as exc:
            report.say(f"herd-{daemon} was not running and did not start: {exc}")
            continue
        report.started_daemons.append(daemon)
        report.say(f"herd-{daemon} was not running: started it")


def _run_watcher_hooks(paths: HerdPaths, report: WatchReport) -> None:
    """Ganeti's watcher hooks: run-parts of ``<hooks dir>/watcher`` on every node, with the
    watcher's own environment. A failing script is reported and never stops the pass."""
    directory = paths.hooks_dir / "watcher"
    try:
        results = node_hooks.run_parts(directory, dict(os.environ),
                                       node_hooks.configured_timeout())
    except Exception as exc:  # a broken hooks setup must not stop the watcher
        report.say(f"watcher hooks in {directory} could not be run: {exc}")
        return
    for result in results:
        if result.status == node_hooks.FAIL:
            output = result.output.replace("\n", " | ") or "(no output)"
            report.say(f"watcher hook {result.script} failed: {output}")
        elif result.status == node_hooks.SKIP:
            log.debug("watcher hook %s skipped (name or mode)", result.script)


def _restart_instances(client: MasterClient, state: WatcherState,
                       report: WatchReport) -> None:
    rows = client.call("query_instances", names=None, fields=["name", "status"])
    state.forget_except({r["name"] for r in rows})
    for row in rows:
        name, status = row["name"], row["status"]
        if status == "running":
            state.seen_running(name)
            continue
        if status != "ERROR_down":  # stopped on purpose, or its node is down/offline
            continue
        if not state.may_restart(name):
            report.given_up.append(name)
            continue
        attempt = state.attempted(name)
        job = _run_job(client, [{"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": name,
                                 "reason": [["watcher", "instance should be running", 0]]}])
        if job["status"] == q.SUCCESS:
            report.restarted.append(name)
            report.say(f"restarted instance {name} (attempt {attempt})")
        else:
            report.failed.append(name)
            report.say(f"could not restart instance {name} (attempt {attempt}): "
                       f"{_job_message(job)}")
    if report.given_up:
        report.say(f"not restarting {', '.join(report.given_up)}: failed "
                   "too often; start by hand (the count resets once it runs)")


def _verify_disks(client: MasterClient, report: WatchReport) -> None:
    job = _run_job(client, [{"OP_ID": "OP_CLUSTER_VERIFY_DISKS"}])
    if job["status"] != q.SUCCESS:
        report.say(f"verify-disks failed: {_job_message(job)}")
        return
    outcome = job["opresult"][0]
    report.disks_activated = list(outcome["repaired"])
    for name in outcome["repaired"]:
        report.say(f"activated the disks of instance {name}")
    for name, problem in sorted(outcome["problems"].items()):
        report.say(f"instance {name}: {problem}")


def _run_job(client: MasterClient, ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Submit a job and wait for it to end, quietly (the pass reports the outcome)."""
    return wait_for_job(client, client.call("submit_job", ops=ops), feedback=lambda _: None)


def _job_message(job: dict[str, Any]) -> str:
    return job_error(job).message
