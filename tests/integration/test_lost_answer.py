"""A lost RPC answer is not a failure: noded SIGKILLed while `gnt-instance startup` runs.

To kill noded at the right moment every time, the instance's VNC password file is a FIFO:
after QEMU is up and its runtime record written, noded reads that file (to set the VNC
password over QMP) and blocks until the test writes to it, so the start has happened and its
answer is still to come when noded dies.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd.fileutil import pid_alive
from herd.lab.single import SingleNodeCluster
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

ADD = ("gnt-instance", "add", "-t", "file", "-o", "busybox+default", "-s", "64M",
       "--no-name-check", "--no-ip-check", "--no-start")
#: masterd's wait for a node whose answer was lost (production: 30 s, for the watcher's
#: restart): the second test keeps noded down through all of it; the first restarts noded
#: at once, well within it
LOST_ANSWER_WAIT = 10


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory,
            test_guest: tuple[str, str]) -> Iterator[SingleNodeCluster]:
    c = SingleNodeCluster(f"herdt{os.getpid()}lost", tmp_path_factory.mktemp("herd-root"))
    c.env["HERD_LOST_ANSWER_WAIT"] = str(LOST_ANSWER_WAIT)
    c.create(*map(Path, test_guest))
    try:
        yield c
    finally:
        c.destroy()


def add_blocking_instance(cluster: SingleNodeCluster, name: str) -> Path:
    fifo = cluster.root / f"{name}.vncpass"
    os.mkfifo(fifo)
    cluster.run(*ADD, "-H", f"vnc_bind_address=127.0.0.1,vnc_password_file={fifo}", name)
    return fifo


def start_and_kill_noded(cluster: SingleNodeCluster, name: str) -> tuple[str, int]:
    """Submit the startup, wait until QEMU runs and noded is inside the RPC, kill noded."""
    job_id = cluster.run("gnt-instance", "startup", "--submit", name).stdout.strip().split()[-1]
    runtime = cluster.paths.instance_run_dir / f"{name}.runtime.json"
    qemu = wait_until("the QEMU process and its runtime record",
                    lambda: runtime.exists() and cluster.qemu_pid(name))
    noded = cluster.daemon_pid("noded")
    assert noded
    # the record is written just before noded reads the FIFO: it is inside the RPC now
    os.kill(noded, signal.SIGKILL)
    wait_until("noded's end", lambda: not pid_alive(noded))
    return job_id, qemu


def job_info(cluster: SingleNodeCluster, job_id: str) -> str:
    return cluster.run("gnt-job", "info", job_id).stdout


def wait_job_final(cluster: SingleNodeCluster, job_id: str, timeout: float = 90) -> str:
    def status() -> str | None:
        out = cluster.run("gnt-job", "list", "--no-headers", "-o", "status", job_id).stdout
        return out.strip() if out.strip() in ("success", "error", "canceled") else None
    return wait_until(f"job {job_id} final", status, timeout=timeout, interval=0.3)


def admin_state(cluster: SingleNodeCluster, name: str) -> str:
    config = cluster.config()
    return next(i["admin_state"] for i in config["instances"].values() if i["name"] == name)


def remove(cluster: SingleNodeCluster, name: str) -> None:
    cluster.run("gnt-instance", "remove", "--shutdown-timeout=0", name)


def test_noded_killed_and_restarted_during_startup_job_succeeds(
        cluster: SingleNodeCluster) -> None:
    add_blocking_instance(cluster, "lost1")
    job_id, qemu = start_and_kill_noded(cluster, "lost1")
    cluster.run("herd-daemon-util", "start", "noded")  # as an admin (or the watcher) would
    assert wait_job_final(cluster, job_id) == "success", job_info(cluster, job_id)
    info = job_info(cluster, job_id)
    assert "the answer of node node1.example.com to the start of lost1 was lost" in info
    assert "confirmed by asking node node1.example.com again: the instance is running " \
           f"there (QEMU pid {qemu}); the start of lost1 happened" in info
    assert pid_alive(qemu), "the guest died"
    row = json.loads(cluster.run("gnt-instance", "list", "--json", "-o", "name,status",
                                 "lost1").stdout)[0]
    assert row["status"] == "running"
    assert admin_state(cluster, "lost1") == "up"
    remove(cluster, "lost1")
    assert not pid_alive(qemu)


def test_noded_that_stays_down_makes_the_job_fail_with_outcome_unknown(
        cluster: SingleNodeCluster) -> None:
    add_blocking_instance(cluster, "lost2")
    job_id, qemu = start_and_kill_noded(cluster, "lost2")
    try:
        assert wait_job_final(cluster, job_id) == "error"
        proc = cluster.run("gnt-job", "info", job_id)
        lines = [line for line in proc.stdout.splitlines() if "outcome unknown" in line]
        assert lines, proc.stdout
        assert "the answer of node node1.example.com to the start of lost2 was lost and the " \
               f"node has not answered for {LOST_ANSWER_WAIT} s" in lines[-1]
        assert "herd-daemon-util start noded" in lines[-1]
        assert "gnt-instance list lost2" in lines[-1]
    finally:
        if cluster.daemon_pid("noded") is None:
            cluster.run("herd-daemon-util", "start", "noded")
    # the config claims no more than is known: the admin state stays as it was (read once
    # noded, and with it the node's etcd member, runs again)
    assert admin_state(cluster, "lost2") == "down"
    # the guest did start; verify says so, and the admin can bring config and guest together
    assert pid_alive(qemu)
    verify = cluster.run("gnt-cluster", "verify", check=False).stdout
    assert "instance lost2: instance is running on node1.example.com but its admin state " \
           "is down" in verify
    remove(cluster, "lost2")
