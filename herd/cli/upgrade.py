"""gnt-cluster upgrade {--to VERSION | --resume}: the rolling upgrade, driven from the master.

The procedure and the layout of versions are in herd.upgrade; the decisions are its pure
functions. This is the I/O around them: it survives masterd's restart (it is a command, not a
job), and writes an intent file before changing anything, so that ``--resume`` finishes an
upgrade cut short (the command killed, the master rebooted). It can be run from the target
version (``/opt/herd/versions/V/bin/gnt-cluster upgrade --to V``) as well as from the version
running: it uses only calls every version's masterd and noded answer.
"""

from __future__ import annotations

import base64
import os
import time
from typing import Any

from herd import __version__, errors, paths, upgrade
from herd.cli.client import MasterClient
from herd.fileutil import atomic_write_json

#: How long a node may take to come back on the new code; jobs to finish before we start.
NODE_TIMEOUT = 90.0
JOBS_TIMEOUT = 600.0
#: The watcher is paused while the upgrade runs (it would restart a noded being restarted).
WATCHER_PAUSE = 3600.0


def _say(text: str) -> None:
    print(text, flush=True)


def running_versions(p: paths.HerdPaths, nodes: list[dict[str, Any]]) -> dict[str, str | None]:
    """The Herd version each node's noded announces in its ping (None: no answer)."""
    import asyncio  # here: every gnt-cluster command loads this module (test_packaging)

    from herd.daemons.util import noded_port
    from herd.rpc.client import RpcRunner
    from herd.version import announced

    async def all_of() -> dict[str, str | None]:
        runner = RpcRunner(p, noded_port(p))

        async def one(node: dict[str, Any]) -> str | None:
            try:
                return announced(await runner.address(node["name"], node["pip"]).ping())[1]
            except errors.HerdError:
                return None
        try:
            found = await asyncio.gather(*(one(n) for n in nodes))
        finally:
            await runner.close()
        return {n["name"]: v for n, v in zip(nodes, found, strict=True)}
    return asyncio.run(all_of())


def _surveys(client: MasterClient, names: list[str]) -> dict[str, upgrade.Survey]:
    results = client.call("node_command", command=upgrade.survey_command(), nodes=names,
                          timeout=30)
    out = {}
    for result in results:
        if result["exit_code"] != 0:
            raise upgrade.UpgradeRefused(
                f"node {result['node']} did not say which versions it has "
                f"({result['output'].strip() or 'exit ' + str(result['exit_code'])}); bring it "
                "back, or mark it offline (gnt-node modify -O yes) to upgrade without it")
        out[result["node"]] = upgrade.parse_survey(result["output"])
    return out


def _pause_watcher(client: MasterClient, p: paths.HerdPaths, seconds: float | None) -> None:
    """Pause (``seconds``) or resume (None) the watcher on every node, as gnt-cluster
    watcher does."""
    from herd.watcher import state

    until = state.pause(p, seconds) if seconds else 0
    if not seconds:
        state.resume(p)
    rel = str(state.pause_file(p).relative_to(p.root))
    content = base64.b64encode(f"{until:.0f}\n".encode()).decode()
    client.call("node_copyfile", path=rel, content=content, mode=0o600)


def _wait_jobs(client: MasterClient) -> None:
    from herd.jobs.states import QUEUED, RUNNING, WAITING

    deadline = time.monotonic() + JOBS_TIMEOUT
    told = False
    while True:
        active = [j["id"] for j in client.call("query_jobs")
                  if j["status"] in (QUEUED, WAITING, RUNNING)]
        if not active:
            return
        if time.monotonic() > deadline:
            raise upgrade.UpgradeRefused(f"jobs {', '.join(map(str, active))} are still "
                                         "running; wait for them, then 'gnt-cluster upgrade "
                                         "--resume'")
        if not told:
            _say(f"Waiting for {len(active)} job(s) to finish before upgrading")
            told = True
        time.sleep(1)


def _wait_node(p: paths.HerdPaths, node: dict[str, Any], target: str) -> None:
    deadline = time.monotonic() + NODE_TIMEOUT
    while running_versions(p, [node])[node["name"]] != target:
        if time.monotonic() > deadline:
            raise errors.OpExecError(
                f"node {node['name']} did not come back running Herd {target} within "
                f"{NODE_TIMEOUT:.0f} s (see its upgrade.log and noded log); fix it, then "
                "'gnt-cluster upgrade --resume'")
        time.sleep(0.3)


def _came_back(p: paths.HerdPaths, node: dict[str, Any], target: str,
               timeout: float = 15.0) -> bool:
    """Whether a node already switched to ``target`` runs it (within ``timeout``: its
    restart may still be under way)."""
    deadline = time.monotonic() + timeout
    while running_versions(p, [node])[node["name"]] != target:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True


def _wait_masterd(p: paths.HerdPaths, old_pid: int | None) -> None:
    deadline = time.monotonic() + NODE_TIMEOUT
    while True:
        try:
            with MasterClient(p, timeout=10) as client:
                if client.call("ping")["pid"] != old_pid:
                    return
        except (errors.HerdError, OSError):
            pass
        if time.monotonic() > deadline:
            raise errors.OpExecError(f"herd-masterd did not come back within {NODE_TIMEOUT:.0f}"
                                     " s; see its log, then 'gnt-cluster upgrade --resume'")
        time.sleep(0.3)


def cmd_upgrade(opts: Any) -> int:
    p = paths.current()
    intent = upgrade.read_intent(p.data_dir)
    try:
        target = upgrade.choose_target(opts.to, opts.resume, intent)
        with MasterClient(p) as client:
            nodes = client.call("query_nodes", live=False)
            schema = int(client.call("query_cluster").get("config_version", 1))
            order = upgrade.upgrade_order(nodes)
            surveys = _surveys(client, order)
            problem = upgrade.refusal(target, surveys, schema)
            if problem:
                raise upgrade.UpgradeRefused(problem)
            by_name = {n["name"]: n for n in nodes}
            running = running_versions(p, [by_name[n] for n in order])
            todo = upgrade.pending(order, running, {n: s.current for n, s in surveys.items()},
                                   target)
            if not todo:
                (p.data_dir / upgrade.INTENT_FILE).unlink(missing_ok=True)
                _say(f"Every node runs Herd {target}; nothing to do")
                return 0
            master = next(n["name"] for n in nodes if n["master"])
            atomic_write_json(p.data_dir / upgrade.INTENT_FILE,
                              {"to": target, "from": running.get(master),
                               "started": (intent or {}).get("started", time.time()),
                               "pid": os.getpid()})
            _pause_watcher(client, p, WATCHER_PAUSE)
            _wait_jobs(client)
            masterd_pid = client.call("ping")["pid"]
    except upgrade.UpgradeRefused as exc:
        raise errors.OpPrereqError(str(exc)) from None
    for name in todo:
        if surveys[name].current == target and _came_back(p, by_name[name], target):
            continue  # switched by the upgrade cut short, and its restart went through
        _say(f"Upgrading node {name} to Herd {target} (was {running.get(name) or 'unknown'})")
        with MasterClient(p) as client:
            (result,) = client.call("node_command", nodes=[name], timeout=60,
                                    command=upgrade.switch_command(target, __version__))
        if result["exit_code"] != 0:
            raise errors.OpExecError(f"node {name} could not switch to Herd {target}: "
                                     f"{result['output'].strip()}")
        _wait_node(p, by_name[name], target)
        if name == master:
            _wait_masterd(p, masterd_pid)
    with MasterClient(p) as client:
        _pause_watcher(client, p, None)
    (p.data_dir / upgrade.INTENT_FILE).unlink(missing_ok=True)
    _say(f"Cluster upgraded to Herd {target}; run 'gnt-cluster verify'")
    return 0


def add_parser(sub: Any) -> None:
    cmd = sub.add_parser("upgrade", help="upgrade the cluster to another installed Herd "
                                         "version, one node at a time")
    group = cmd.add_mutually_exclusive_group(required=True)
    group.add_argument("--to", metavar="VERSION",
                       help="the version to run (installed on every node under "
                            f"/{upgrade.VERSIONS_REL})")
    group.add_argument("--resume", action="store_true",
                       help="finish an upgrade that was interrupted")
    cmd.set_defaults(func=cmd_upgrade)

