"""masterd killed (kill -9) at random moments under 16 concurrent submitters, round after round.

Each submitter adds instances (-t file --no-start, the busybox OS) and removes its own, over
masterd's socket as the CLI does, and carries on when masterd is gone. Each round kills masterd
at a random moment and starts it again. Afterwards: the config loads, a new job runs (no stuck
lock), every job is final, and no node holds a disk file that no instance owns (the files on
the node compared with the config; `gnt-cluster verify` agrees). Instance names carry the
round, so the orphans found say which rounds left them.

HERD_KILL_ROUNDS changes the number of rounds (default 12); HERD_KILL_SEED the random seed.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from herd import errors
from herd.cli.client import MasterClient
from herd.config.shape import config_problem
from herd.fileutil import pid_alive
from herd.lab.single import SingleNodeCluster

pytestmark = pytest.mark.slow

ROUNDS = int(os.environ.get("HERD_KILL_ROUNDS", "12"))
SUBMITTERS = 16
FINAL = ("success", "error", "canceled")


def create_op(name: str) -> dict[str, Any]:
    return {"OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "disk_template": "file",
            "disks": [{"size": 16}], "os_type": "busybox+default", "start": False,
            "name_check": False, "ip_check": False}


def remove_op(name: str) -> dict[str, Any]:
    return {"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": name, "shutdown_timeout": 0}


class Load:
    """The submitters: each loops add/remove until told to stop, riding out masterd's deaths."""

    def __init__(self, cluster: SingleNodeCluster, seed: int) -> None:
        self.cluster = cluster
        self.seed = seed
        self.round = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.jobs: list[int] = []
        self.lost_connections = 0
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(SUBMITTERS)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in self.threads), "a submitter hangs"

    def _run(self, index: int) -> None:
        rng = random.Random(self.seed * 100 + index)
        mine: list[str] = []
        seq = 0
        while not self.stop.is_set():
            if mine and rng.random() < 0.4:
                name, op = mine[0], remove_op(mine[0])
            else:
                seq += 1
                name, op = f"k{self.round}-{index}-{seq}", create_op(f"k{self.round}-{index}-{seq}")
            try:
                with MasterClient(self.cluster.paths, timeout=30) as client:
                    job_id = int(client.call("submit_job", ops=[op]))
                    with self.lock:
                        self.jobs.append(job_id)
                    status = self._wait(client, job_id)
            except (errors.HerdError, OSError):
                with self.lock:
                    self.lost_connections += 1
                time.sleep(0.2)  # masterd is down: try again once it is back
                continue
            if op["OP_ID"] == "OP_INSTANCE_CREATE" and status == "success":
                mine.append(name)
            elif op["OP_ID"] == "OP_INSTANCE_REMOVE" and status == "success":
                mine.remove(name)
            elif op["OP_ID"] == "OP_INSTANCE_REMOVE":
                mine.remove(name)  # fate unknown (masterd died): leave it alone

    def _wait(self, client: MasterClient, job_id: int, until: float | None = None) -> str:
        """The job's final status; early (not final) when the load stops or at ``until``."""
        status: str | None = None
        serial = 0
        while not self.stop.is_set() if until is None else time.monotonic() < until:
            change = client.call("wait_for_job_change", job_id=job_id, prev_status=status,
                                 prev_serial=serial, timeout=5)
            if change is None:
                continue
            status = change["status"]
            if change["log"]:
                serial = change["log"][-1][0]
            if status in FINAL:
                return status
        return status or "queued"


def kill_masterd(cluster: SingleNodeCluster) -> None:
    pid = cluster.daemon_pid("masterd")
    assert pid, "masterd is not running"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_alive(pid):
        assert time.monotonic() < deadline, "masterd survived SIGKILL"
        time.sleep(0.02)


def disk_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def owned_files(config: dict) -> set[str]:
    return {d["logical_id"][1] for i in config["instances"].values() for d in i["disks"]
            if d["dev_type"] == "file"}


def test_masterd_kill_loop_leaves_no_orphans(cluster: SingleNodeCluster) -> None:
    seed = int(os.environ.get("HERD_KILL_SEED", str(int(time.time()))))
    rng = random.Random(seed)
    started = time.monotonic()
    load = Load(cluster, seed)
    load.start()
    try:
        for number in range(1, ROUNDS + 1):
            load.round = number
            time.sleep(rng.uniform(0.5, 3.0))  # a random moment of the load
            kill_masterd(cluster)
            cluster.run("herd-daemon-util", "start", "masterd")
    finally:
        load.finish()
    loop_seconds = time.monotonic() - started

    with MasterClient(cluster.paths, timeout=30) as client:
        # every job final (queued ones run after the last restart)
        deadline = time.monotonic() + 120
        while True:
            jobs = client.call("query_jobs", ids=load.jobs)
            pending = [j["id"] for j in jobs if j is None or j["status"] not in FINAL]
            if not pending:
                break
            assert time.monotonic() < deadline, f"jobs not final: {pending}"
            time.sleep(0.5)
        statuses = Counter(j["status"] for j in jobs)
        # no stuck lock: a new job that takes the whole cluster runs
        job_id = client.call("submit_job", ops=[{"OP_ID": "OP_TEST_DELAY", "duration": 0}])
        assert load._wait(client, job_id, until=time.monotonic() + 30) == "success"
    config = cluster.config()  # the config loads, and passes the shape check
    assert config_problem(config) is None

    storage = cluster.paths.file_storage_dir
    orphans = sorted(disk_files(storage) - owned_files(config))
    rounds_with_orphans = Counter(o.split("-", 1)[0] for o in orphans)
    verify = cluster.run("gnt-cluster", "verify", check=False).stdout
    print(f"\nkill loop: seed {seed}, {ROUNDS} rounds in {loop_seconds:.0f} s, {len(load.jobs)} "
          f"jobs {dict(statuses)}, {load.lost_connections} lost connections; orphan disk "
          f"files: {len(orphans)} in {len(rounds_with_orphans)} rounds "
          f"{dict(rounds_with_orphans)}")
    assert not orphans, f"disk files no instance owns: {orphans}"
    assert "is unknown" not in verify, verify
    assert not list((cluster.paths.data_dir / "intents").glob("*.json")), \
        "intent records left after recovery"
    assert loop_seconds < 180
