"""The watcher on a real two-node cluster: what an admin relies on it for between visits.

One instance with a mirrored disk (node1 primary, node2 secondary); tests in order.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import pytest

from herd.storage.mirror.daemon import DaemonFiles
from tests.lab.conftest import LabCluster, joined_cluster
from tests.lab.test_drbd import mirror_state, wait_in_sync

pytestmark = pytest.mark.slow

NAME = "wd1"


@pytest.fixture(scope="module")
def lab() -> Iterator[LabCluster]:
    with joined_cluster(2, LabCluster) as cluster:
        cluster.gnt("gnt-instance", "add", "-t", "drbd", "-n", "node1:node2", "-o",
                    "busybox+default", "-s", "64M", "--no-name-check", "--no-ip-check", NAME)
        yield cluster


def watcher(lab: LabCluster, node: str = "node1", ok: bool = True) -> list[str]:
    proc = lab.gnt("herd-watcher", node=node, check=False)
    assert (proc.returncode == 0) == ok, (proc.stdout, proc.stderr)
    return proc.stdout.splitlines()


def status(lab: LabCluster) -> str:
    return lab.instances()[NAME]["status"]


def kill_guest(lab: LabCluster) -> None:
    pidfile = lab.lab.node("node1").paths.instance_run_dir / f"{NAME}.pid"
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    deadline = time.monotonic() + 20
    while status(lab) != "ERROR_down":
        assert time.monotonic() < deadline, status(lab)
        time.sleep(0.2)


def test_nothing_to_do_on_a_healthy_cluster(lab: LabCluster) -> None:
    assert status(lab) == "running"
    assert watcher(lab) == []
    assert watcher(lab, "node2") == []


def test_restarts_an_instance_that_should_run(lab: LabCluster) -> None:
    kill_guest(lab)
    lines = watcher(lab)
    assert f"restarted instance {NAME} (attempt 1)" in lines
    assert status(lab) == "running"
    assert watcher(lab) == []  # seen running: its count is reset


def test_reattaches_a_mirror_whose_secondary_came_back(lab: LabCluster) -> None:
    cfg = lab.config()
    disk = next(i for i in cfg["instances"].values() if i["name"] == NAME)["disks"][0]
    run = lab.lab.node("node2").paths.run_dir / "mirror"
    pidfile = DaemonFiles.for_disk(run, disk["uuid"]).pidfile
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while "degraded" not in mirror_state(lab, NAME):
        assert time.monotonic() < deadline, mirror_state(lab, NAME)
        time.sleep(0.5)
    lines = watcher(lab)
    assert f"activated the disks of instance {NAME}" in lines
    wait_in_sync(lab, timeout=60, name=NAME)
    assert status(lab) == "running"


def test_pause_holds_on_every_node_until_continue(lab: LabCluster) -> None:
    out = lab.gnt("gnt-cluster", "watcher", "pause", "1h").stdout
    assert out.startswith("The watcher is paused until")
    assert lab.gnt("gnt-cluster", "watcher", "info", node="node2").stdout.startswith(
        "The watcher is paused until")
    kill_guest(lab)
    assert watcher(lab)[0].startswith("watcher paused until")
    assert watcher(lab, "node2")[0].startswith("watcher paused until")
    assert status(lab) == "ERROR_down"
    proc = lab.gnt("gnt-cluster", "watcher", "pause", "soon", check=False)
    assert proc.returncode == 1 and "invalid duration 'soon'" in proc.stderr
    assert lab.gnt("gnt-cluster", "watcher", "continue").stdout.strip() == \
        "The watcher is no longer paused."
    assert lab.gnt("gnt-cluster", "watcher", "info", node="node2").stdout.strip() == \
        "The watcher is not paused."
    assert f"restarted instance {NAME} (attempt 1)" in watcher(lab)
    assert status(lab) == "running"


def test_gives_up_after_five_failed_restarts(lab: LabCluster) -> None:
    data = lab.lab.node("node1").paths.data_dir / "watcher.data"
    data.write_text(json.dumps({"restarts": {NAME: {"count": 5, "last": time.time()}}}))
    kill_guest(lab)
    lines = watcher(lab)
    assert any(line.startswith(f"not restarting {NAME}: failed too often") for line in lines)
    assert status(lab) == "ERROR_down"
    lab.gnt("gnt-instance", "startup", NAME)
    assert watcher(lab) == []
    assert NAME not in json.loads(data.read_text())["restarts"]


def test_starts_a_node_daemon_that_is_not_running(lab: LabCluster) -> None:
    started = time.monotonic()
    lab.lab.run("node2", "herd-daemon-util", "stop", "noded")
    # the master's idle keep-alive connection once held the stop for 30 s (then SIGKILL)
    assert time.monotonic() - started < 15, "stopping noded took the full stop timeout"
    lines = watcher(lab, "node2")
    assert "herd-noded was not running: started it" in lines
    assert lab.nodes()["node2.example.com"]["role"] in ("C", "R")
