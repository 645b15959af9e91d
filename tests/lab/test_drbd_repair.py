"""Repairing mirrored (drbd) disks and half-done migrations on a real three-node cluster.

One lab for the module, tests in order, one writer guest w1 (primary node2, secondary node3 at
first): ``replace-disks -p`` while it writes and while it is stopped; ``-a`` on a healthy
instance; ``-p`` refused when the secondary's copy was discarded, which ``-a`` then replaces;
``-a`` replacing a deleted secondary copy, then a deleted primary copy, while the guest
writes; ``migrate --cleanup`` after a migration whose target QEMU (and masterd, and the
source's noded) died mid-way, and after a hand-over interrupted once QEMU's migration had
completed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from herd.fileutil import read_pid
from herd.hypervisor.kvm import qmp
from herd.lab.guest_records import read_records
from tests.lab.conftest import LabCluster
from tests.lab.test_drbd import (
    NAME,
    acks,
    backing_file,
    mirror_state,
    same_copies,
    serial_log,
    wait_acks,
    wait_in_sync,
    where,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab(lab3: LabCluster) -> LabCluster:
    lab3.init()
    lab3.add_node("node2")
    lab3.add_node("node3")
    lab3.gnt("gnt-instance", "add", "-t", "drbd", "-n", "node2:node3", "-o", "busybox+writer",
             "-s", "128M", "--no-name-check", "--no-ip-check", NAME)
    return lab3


def last_ack(lab: LabCluster, node: str) -> int:
    seen = acks(serial_log(lab, node))
    return seen[-1] if seen else 0


def assert_no_gap(lab: LabCluster, first: int, *nodes: str) -> list[int]:
    """The acknowledged writes from ``first`` on, over the consoles of ``nodes``, are one
    unbroken sequence (serial logs append: a node's log holds every stay of the guest)."""
    stream = sorted({s for node in nodes for s in acks(serial_log(lab, node)) if s >= first})
    assert stream and stream[0] == first, (first, stream[:5])
    assert stream == list(range(first, stream[-1] + 1)), "the writer's sequence has a gap"
    return stream


def serial(lab: LabCluster) -> int:
    return lab.config()["serial_no"]


def one_line_error(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    return lines[0]


def qemu_pid(lab: LabCluster, node: str) -> int | None:
    return read_pid(lab.lab.node(node).paths.instance_run_dir / f"{NAME}.pid")


def runs_on(lab: LabCluster, node: str) -> bool:
    """A live QEMU of w1 in ``node`` (its pid file names a process that exists)."""
    pid = qemu_pid(lab, node)
    return pid is not None and Path(f"/proc/{pid}").exists()


def kill(pid: int | None) -> None:
    assert pid is not None
    os.kill(pid, signal.SIGKILL)


def query_migrate(lab: LabCluster, node: str) -> dict:
    sock = lab.lab.node(node).paths.instance_run_dir / f"{NAME}.qmp"
    return asyncio.run(qmp.execute(sock, "query-migrate"))


def test_replace_on_primary_while_running_keeps_every_write(lab: LabCluster) -> None:
    first = wait_acks(lab, "node2", 10)
    out = lab.gnt("gnt-instance", "replace-disks", "-p", NAME).stdout
    assert "moving w1 back to node2" in out, out
    assert where(lab) == ("node2", "node3")
    wait_acks(lab, "node2", last_ack(lab, "node3") + 10)
    stream = assert_no_gap(lab, first, "node2", "node3")
    on_node3 = [s for s in acks(serial_log(lab, "node3")) if s >= first]
    assert on_node3 and stream[0] < on_node3[0] and on_node3[-1] < stream[-1], \
        "the guest did not run on node3 while node2's copy was rebuilt"
    wait_in_sync(lab)
    lab.gnt("gnt-instance", "shutdown", NAME)
    assert same_copies(lab, "node2", "node3")
    scan = read_records(backing_file(lab, "node2"))
    assert scan.gap_at is None and scan.bad_at is None and scan.last >= stream[-1]


def test_replace_on_primary_while_stopped(lab: LabCluster) -> None:
    records = read_records(backing_file(lab, "node2")).last
    before = serial(lab)
    out = lab.gnt("gnt-instance", "replace-disks", "-p", NAME).stdout
    assert "discarding the copy on node2.example.com" in out, out
    assert "copying the disks from node3.example.com to node2.example.com" in out, out
    assert where(lab) == ("node2", "node3") and serial(lab) > before
    assert same_copies(lab, "node2", "node3")
    assert read_records(backing_file(lab, "node2")).last == records
    lab.gnt("gnt-instance", "activate-disks", NAME)  # equal copies: nothing to resync
    wait_in_sync(lab, timeout=30)
    lab.gnt("gnt-instance", "deactivate-disks", NAME)


def test_auto_changes_nothing_on_a_healthy_instance(lab: LabCluster) -> None:
    before = serial(lab)
    out = lab.gnt("gnt-instance", "replace-disks", "-a", NAME).stdout
    assert "no disks of w1 need replacement" in out, out
    assert serial(lab) == before


def test_on_primary_refused_while_the_secondary_copy_is_discarded(lab: LabCluster) -> None:
    # a failover with --ignore-consistency marks the old primary's copy as discarded
    lab.gnt("gnt-instance", "failover", "--ignore-consistency", NAME)
    assert where(lab) == ("node3", "node2")
    before = serial(lab)
    line = one_line_error(lab.gnt("gnt-instance", "replace-disks", "-p", NAME, check=False))
    assert "from node2.example.com" in line and "discarded" in line, line
    assert serial(lab) == before
    out = lab.gnt("gnt-instance", "replace-disks", "-a", NAME).stdout
    assert "faulty copy on node2.example.com" in out and "discarded" in out, out
    cfg = lab.config()
    inst = next(i for i in cfg["instances"].values() if i["name"] == NAME)
    assert not inst["disks"][0]["params"].get("discard_secondary")
    assert mirror_state(lab) == "connected, in sync"


def test_auto_replaces_a_deleted_secondary_copy_while_writing(lab: LabCluster) -> None:
    lab.gnt("gnt-instance", "startup", NAME)
    first = wait_acks(lab, "node3", last_ack(lab, "node3") + 10)
    backing_file(lab, "node2").unlink()
    out = lab.gnt("gnt-instance", "replace-disks", "-a", NAME).stdout
    assert "faulty copy on node2.example.com: disk/0: backing file missing" in out, out
    assert backing_file(lab, "node2").stat().st_size == 128 << 20
    wait_in_sync(lab, timeout=60)  # a write in flight looks "behind" for an instant
    wait_acks(lab, "node3", last_ack(lab, "node3") + 10)
    assert_no_gap(lab, first, "node3")


def test_auto_rebuilds_a_deleted_primary_copy_while_writing(lab: LabCluster) -> None:
    first = wait_acks(lab, "node3", last_ack(lab, "node3") + 10)
    backing_file(lab, "node3").unlink()  # its storage daemon still holds the old file
    out = lab.gnt("gnt-instance", "replace-disks", "-a", NAME).stdout
    assert "faulty copy on node3.example.com: disk/0: backing file missing" in out, out
    assert "moving w1 back to node3" in out, out
    assert where(lab) == ("node3", "node2")
    assert backing_file(lab, "node3").stat().st_size == 128 << 20
    wait_acks(lab, "node3", last_ack(lab, "node2") + 10)
    assert_no_gap(lab, first, "node3", "node2")
    wait_in_sync(lab)


def test_cleanup_after_the_target_died_mid_migration(lab: LabCluster) -> None:
    assert where(lab) == ("node3", "node2")
    # slow migrations from now on: this one is still under way when its target dies.
    # Non-live, so that the guest is paused on the source throughout (a live one, as QEMU
    # >= 9.0 runs under TCG, leaves it running there and there is nothing to resume)
    lab.gnt("gnt-instance", "shutdown", NAME)
    lab.gnt("gnt-instance", "startup", "-H", "migration_bandwidth=1", NAME)
    first = wait_acks(lab, "node3", last_ack(lab, "node3") + 10)
    job = lab.gnt("gnt-instance", "migrate", "--non-live", "--submit", NAME).stdout
    assert re.search(r"JobID: \d+", job), job
    deadline = time.monotonic() + 60
    while query_migrate(lab, "node3").get("status") != "active":
        assert time.monotonic() < deadline, "the migration did not start"
        time.sleep(0.1)
    # masterd and the source's noded die with it: nobody resumes the paused guest
    nodes = {n: lab.lab.node(n).paths for n in ("node1", "node2", "node3")}
    kill(read_pid(nodes["node1"].pid_file("masterd")))
    kill(read_pid(nodes["node3"].pid_file("noded")))
    kill(qemu_pid(lab, "node2"))
    lab.lab.run("node3", "herd-daemon-util", "start", "noded")
    lab.lab.run("node1", "herd-daemon-util", "start", "masterd")
    out = lab.gnt("gnt-instance", "migrate", "--cleanup", "-f", NAME).stdout
    assert "node2.example.com: no QEMU" in out and "resumed w1 on node3.example.com" in out, out
    assert where(lab) == ("node3", "node2")
    assert lab.instances()[NAME]["status"] == "running"
    assert runs_on(lab, "node3") and not runs_on(lab, "node2")
    wait_acks(lab, "node3", last_ack(lab, "node3") + 10)
    assert_no_gap(lab, first, "node3")
    wait_in_sync(lab, timeout=60)


RPC_MIGRATE = """
import asyncio, json, sys
from herd import paths
from herd.config.etcdstore import read_document
from herd.config.facts import node_name, read_facts
from herd.etcd.client import EtcdClient
from herd.etcd.members import client_urls_from_facts
from herd.logic.specs import instance_spec
from herd.objects import ConfigData
from herd.rpc.client import RpcRunner

async def main():
    p = paths.current()
    async with EtcdClient.for_node(p, client_urls_from_facts(read_facts(p), node_name(p))) as c:
        cfg = ConfigData.from_dict(await read_document(c))
    inst = cfg.get_instance(sys.argv[1])
    src, dst = cfg.nodes[inst.primary_node], cfg.nodes[inst.secondary_nodes[0]]
    rpc = RpcRunner(p, cfg.cluster.noded_port)
    try:
        listen = dst.secondary_ip or dst.primary_ip
        spec = instance_spec(cfg, inst, p, mirror_node=dst.uuid)
        await rpc.node(dst).instance_accept_migration(spec, 8102, listen)
        stats = await rpc.node(src).instance_migrate(inst.name, listen, 8102, False,
                                                     bandwidth_mibps=64)
        print(json.dumps(stats))
    finally:
        await rpc.close()

asyncio.run(main())
"""


def test_cleanup_after_a_handover_interrupted_once_qemu_migrated(lab: LabCluster) -> None:
    """What masterd leaves when it dies right after QEMU's migration completed: the source
    paused in 'postmigrate', the target paused with the whole guest, the mirror untouched."""
    first = wait_acks(lab, "node3", last_ack(lab, "node3") + 10)
    stats = json.loads(lab.lab.run("node1", "python3", "-c", RPC_MIGRATE, NAME).stdout)
    assert stats["status"] == "completed"
    before = serial(lab)
    out = lab.gnt("gnt-instance", "migrate", "--cleanup", NAME).stdout
    assert "node3.example.com: QEMU postmigrate" in out, out
    assert "resumed w1 on node2.example.com" in out, out
    assert where(lab) == ("node2", "node3")
    assert serial(lab) > before
    assert lab.instances()[NAME]["status"] == "running"
    assert runs_on(lab, "node2") and not runs_on(lab, "node3")
    wait_acks(lab, "node2", last_ack(lab, "node3") + 10)
    stream = assert_no_gap(lab, first, "node3", "node2")
    assert any(s > last_ack(lab, "node3") for s in stream)
    wait_in_sync(lab, timeout=60)
    lab.gnt("gnt-instance", "shutdown", NAME)
    assert same_copies(lab, "node2", "node3")
    assert read_records(Path(backing_file(lab, "node2"))).gap_at is None
    line = one_line_error(lab.gnt("gnt-instance", "migrate", "--cleanup", NAME, check=False))
    assert "runs on neither" in line, line
