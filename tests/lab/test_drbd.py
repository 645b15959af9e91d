"""Mirrored (drbd) disks on a real three-node cluster: no acknowledged write is lost.

One lab for the module, tests in order: a writer guest on node2 (secondary node3); node2 loses
power; failover to node3; node2 returns and is resynced; live migration back and forth while
the guest writes; a split brain is refused and resolved; a new secondary on another node.
"""

from __future__ import annotations

import concurrent.futures
import filecmp
import itertools
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd.lab.guest_records import read_records
from tests.lab.conftest import LabCluster

pytestmark = pytest.mark.slow

NAME = "w1"
ACK = re.compile(rb"HERD_ACK seq=(\d+)")
#: Writes the guest acknowledges before its node loses power. Any number proves the point
#: (the writer restarts after the last one); each record also lengthens every later boot's
#: scan of the disk, so few.
BEFORE_CRASH = 30


@pytest.fixture(scope="module")
def drbd_lab(lab3: LabCluster) -> Iterator[LabCluster]:
    lab3.init()
    lab3.add_node("node2")
    lab3.add_node("node3")
    yield lab3


def serial_log(lab: LabCluster, node: str) -> bytes:
    path = lab.lab.node(node).paths.instance_run_dir / f"{NAME}.serial.log"
    return path.read_bytes() if path.exists() else b""


def acks(data: bytes) -> list[int]:
    return [int(m) for m in ACK.findall(data)]


def wait_acks(lab: LabCluster, node: str, at_least: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = acks(serial_log(lab, node))
        if seen and seen[-1] >= at_least:
            return seen[-1]
        time.sleep(0.1)  # reads a file: cheap; the writer acknowledges ~20 records a second
    raise AssertionError(f"{NAME} on {node} did not acknowledge {at_least} writes")


def mirror_state(lab: LabCluster, name: str = NAME) -> str:
    info = lab.gnt("gnt-instance", "info", name).stdout
    return re.search(r"mirror: (.*)", info).group(1)  # type: ignore[union-attr]


def wait_in_sync(lab: LabCluster, timeout: float = 180, name: str = NAME) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if mirror_state(lab, name) == "connected, in sync":
            return
        time.sleep(0.3)  # each look is a CLI run of its own (~0.6 s)
    raise AssertionError(f"not in sync: {mirror_state(lab, name)}")


def backing_file(lab: LabCluster, node: str, cfg: dict | None = None) -> Path:
    """Where ``node`` keeps its copy of w1's disk (``cfg``: a config already read)."""
    cfg = cfg or lab.config()
    inst = next(i for i in cfg["instances"].values() if i["name"] == NAME)
    rel = inst["disks"][0]["logical_id"][3]
    return lab.lab.node(node).paths.file_storage_dir / rel


def same_copies(lab: LabCluster, a: str, b: str) -> bool:
    """Nodes ``a`` and ``b`` hold byte-identical copies of w1's disk (one config read)."""
    cfg = lab.config()
    return filecmp.cmp(backing_file(lab, a, cfg), backing_file(lab, b, cfg), shallow=False)


def where(lab: LabCluster) -> tuple[str, str]:
    return where_of(lab, NAME)


def test_primary_crash_failover_loses_no_acknowledged_write(drbd_lab: LabCluster) -> None:
    lab = drbd_lab
    lab.gnt("gnt-instance", "add", "-t", "drbd", "-n", "node2:node3", "-o", "busybox+writer",
            "-s", "128M", "--no-name-check", "--no-ip-check", NAME)
    assert mirror_state(lab) == "connected, in sync"
    wait_acks(lab, "node2", BEFORE_CRASH)
    lab.lab.crash("node2")
    last_acked = acks(serial_log(lab, "node2"))[-1]
    proc = lab.gnt("gnt-instance", "failover", NAME, check=False)
    assert proc.returncode == 1 and "--ignore-consistency" in proc.stderr
    lab.gnt("gnt-instance", "failover", "--ignore-consistency", NAME)
    assert where(lab) == ("node3", "node2")
    assert "degraded" in mirror_state(lab)
    # the guest boots again on node3 and continues after the last record on its disk
    deadline = time.monotonic() + 120
    while b"HERD_WRITER start=" not in serial_log(lab, "node3"):
        assert time.monotonic() < deadline, "the guest did not restart its writer"
        time.sleep(0.5)
    start = int(re.search(rb"HERD_WRITER start=(\d+)", serial_log(lab, "node3")).group(1))
    assert start > last_acked, f"acknowledged write {last_acked} lost (restart at {start})"


def test_old_primary_returns_and_is_resynced(drbd_lab: LabCluster) -> None:
    lab = drbd_lab
    lab.lab.start("node2")
    lab.gnt("gnt-instance", "activate-disks", NAME)
    wait_in_sync(lab)
    lab.gnt("gnt-instance", "shutdown", NAME)
    assert same_copies(lab, "node3", "node2")
    scan = read_records(backing_file(lab, "node3"))
    assert scan.gap_at is None and scan.bad_at is None and scan.last > BEFORE_CRASH


def test_migration_back_and_forth_while_writing(drbd_lab: LabCluster) -> None:
    lab = drbd_lab
    lab.gnt("gnt-instance", "startup", NAME)
    wait_in_sync(lab)
    first = wait_acks(lab, "node3", acks(serial_log(lab, "node3"))[-1] + 10
                      if acks(serial_log(lab, "node3")) else 10)
    out = lab.gnt("gnt-instance", "migrate", NAME).stdout
    assert "Migration done" in out
    assert where(lab) == ("node2", "node3")
    wait_acks(lab, "node2", acks(serial_log(lab, "node3"))[-1] + 10)
    wait_in_sync(lab, timeout=60)
    lab.gnt("gnt-instance", "migrate", NAME)
    assert where(lab) == ("node3", "node2")
    wait_acks(lab, "node3", acks(serial_log(lab, "node2"))[-1] + 10)
    # serial logs append: node3's holds before and after, node2's the middle part
    on_node2 = [s for s in acks(serial_log(lab, "node2")) if s >= first]
    stream = sorted(set(acks(serial_log(lab, "node3")) + on_node2))
    stream = [s for s in stream if s >= first]
    assert on_node2, "the guest wrote nothing while on node2"
    assert stream == list(range(stream[0], stream[-1] + 1)), "the writer's sequence has a gap"
    assert stream[0] < on_node2[0] and on_node2[-1] < stream[-1]
    wait_in_sync(lab)
    lab.gnt("gnt-instance", "shutdown", NAME)
    assert same_copies(lab, "node3", "node2")
    assert read_records(backing_file(lab, "node3")).gap_at is None


def ack_times(lab: LabCluster, node: str, stop: threading.Event) -> list[tuple[float, int]]:
    """(monotonic time first seen, seq) of every new ACK on ``node``'s console until ``stop``."""
    seen: list[tuple[float, int]] = []
    last = acks(serial_log(lab, node))[-1:] or [0]
    while not stop.is_set():
        now = time.monotonic()
        seen += [(now, s) for s in acks(serial_log(lab, node)) if s > last[0]]
        if seen:
            last = [seen[-1][1]]
        time.sleep(0.05)
    return seen


def test_partition_stalls_the_guest_briefly(drbd_lab: LabCluster) -> None:
    lab = drbd_lab
    lab.gnt("gnt-instance", "startup", NAME)
    pnode, snode = where(lab)
    wait_in_sync(lab)
    wait_acks(lab, pnode, acks(serial_log(lab, pnode))[-1] + 5)
    stop = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        watcher = pool.submit(ack_times, lab, pnode, stop)
        time.sleep(0.5)  # the watcher thread takes its starting point
        cut = time.monotonic()
        lab.lab.partition(pnode, snode)
        try:
            # longer than the allowed stall (so a guest frozen throughout fails the test) and
            # than the watchdog's detection plus reconnect delay (~2.5 s, so writes follow)
            time.sleep(6)
            assert "degraded" in mirror_state(lab)
        finally:
            lab.lab.heal()
            healed = time.monotonic()
            stop.set()
        seen = watcher.result()
    during = [t for t, _ in seen if cut <= t <= healed]
    assert during, "the guest wrote nothing while its nodes were partitioned"
    stamps = [cut, *during, healed]
    stall = max(b - a for a, b in itertools.pairwise(stamps))
    print(f"partition: longest pause between acknowledged writes {stall:.1f} s, "
          f"{len(during)} writes in {healed - cut:.0f} s")
    assert stall < 5, f"the guest stalled {stall:.1f} s"
    before = acks(serial_log(lab, pnode))[-1]
    out = lab.gnt("gnt-cluster", "verify-disks").stdout
    assert f"Disks of instance {NAME} activated" in out
    wait_in_sync(lab)
    copied = storage_cli(lab, pnode, "status")["copied_bytes"]
    assert copied < 16 * 1048576, f"resync after the partition copied {copied} bytes"
    assert acks(serial_log(lab, pnode))[-1] > before
    lab.gnt("gnt-instance", "shutdown", NAME)
    lab.gnt("gnt-instance", "deactivate-disks", NAME)
    assert same_copies(lab, pnode, snode)


def test_new_secondary_then_failover_keeps_data(drbd_lab: LabCluster) -> None:
    lab = drbd_lab
    lab.gnt("gnt-instance", "replace-disks", "--new-secondary", "node1", NAME)
    assert where(lab) == ("node3", "node1")
    assert not backing_file(lab, "node2").exists(), "the old secondary kept its copy"
    assert same_copies(lab, "node3", "node1")
    lab.gnt("gnt-instance", "failover", NAME)
    assert where(lab) == ("node1", "node3")
    lab.gnt("gnt-instance", "activate-disks", NAME)
    wait_in_sync(lab)
    lab.gnt("gnt-instance", "deactivate-disks", NAME)
    assert same_copies(lab, "node1", "node3")


def mirror_disk_json(lab: LabCluster, node: str) -> str:
    """The MirrorDisk of w1's disk 0 as ``node`` sees it (for the storage layer's own CLI)."""
    from herd.logic.drbd import mirror_spec
    from herd.objects import ConfigData
    from herd.storage.blockdev.mirror import to_mirror_disk

    cfg = ConfigData.from_dict(lab.config())
    inst = cfg.get_instance(NAME)
    return json.dumps(to_mirror_disk(mirror_spec(cfg, inst, 0, cfg.get_node(node).uuid))
                      .to_dict())


def storage_cli(lab: LabCluster, node: str, *args: str, check: bool = True) -> dict:
    proc = lab.lab.run(node, "python3", "-m", "herd.storage.mirror", args[0],
                       mirror_disk_json(lab, node), *args[1:], check=check)
    return json.loads(proc.stdout or "null")


def test_lost_secondary_daemon_resyncs_only_changes(drbd_lab: LabCluster) -> None:
    lab = drbd_lab
    assert where(lab) == ("node1", "node3")
    lab.gnt("gnt-instance", "startup", NAME)
    wait_in_sync(lab)
    before = wait_acks(lab, "node1", 40)
    disk_uuid = lab.config()["instances"][next(
        u for u, i in lab.config()["instances"].items() if i["name"] == NAME)]["disks"][0]["uuid"]
    pid_file = lab.lab.node("node3").paths.run_dir / "mirror" / f"{disk_uuid}.pid"
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    # the guest goes on writing on the primary alone (after the reconnect delay)
    during = wait_acks(lab, "node1", before + 20, timeout=180)
    assert "degraded" in mirror_state(lab)
    # verify fails on it (it used to pass while only `info` said "degraded")
    proc = lab.gnt("gnt-cluster", "verify", check=False)
    assert proc.returncode == 1
    assert f"ERROR: instance {NAME}: disk/0 is degraded: not connected to its secondary " \
        "node node3.example.com" in proc.stdout, proc.stdout
    out = lab.gnt("gnt-cluster", "verify-disks").stdout  # what a watcher runs: reattach
    assert f"Disks of instance {NAME} activated" in out
    wait_in_sync(lab)
    assert f"instance {NAME}: disk/0" not in lab.gnt("gnt-cluster", "verify",
                                                      check=False).stdout
    copied = storage_cli(lab, "node1", "status")["copied_bytes"]
    changed = (acks(serial_log(lab, "node1"))[-1] - before + 64) * 4096
    assert copied <= changed + 4 * 1048576, (copied, changed)
    assert copied < 32 * 1048576, "resync copied far more than what changed"
    assert during > before
    lab.gnt("gnt-instance", "shutdown", NAME)
    lab.gnt("gnt-instance", "deactivate-disks", NAME)
    assert same_copies(lab, "node1", "node3")


def test_split_brain_refused_then_resolved_by_discarding_one_side(drbd_lab: LabCluster) -> None:
    lab = drbd_lab
    # each side is brought up alone as primary: both copies move on without the other
    for node in ("node3", "node1"):
        storage_cli(lab, node, "start-primary", "auto", "degraded")
        storage_cli(lab, node, "stop")
    serial = lab.config()["serial_no"]
    proc = lab.gnt("gnt-instance", "activate-disks", NAME, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "split brain" in lines[0] and "replace-disks -s" in lines[0]
    assert lab.config()["serial_no"] == serial
    lab.gnt("gnt-instance", "replace-disks", "-s", NAME)
    lab.gnt("gnt-instance", "activate-disks", NAME)
    wait_in_sync(lab)
    # an idle link (disks active, no guest writing) that dies is noticed within seconds:
    # keep-alive on QEMU's replication socket (herd.storage.mirror.keepalive); without it
    # the mirror said "in sync" until the next write
    lab.lab.partition("node1", "node3")
    cut = time.monotonic()
    try:
        while "degraded" not in mirror_state(lab):
            assert time.monotonic() - cut < 20, "the death of an idle link went unnoticed"
            time.sleep(0.2)
        noticed = time.monotonic() - cut
    finally:
        lab.lab.heal()
    print(f"idle link: its death seen by gnt-instance info after {noticed:.1f} s")
    assert noticed < 8, f"an idle link's death took {noticed:.1f} s to be noticed"
    lab.gnt("gnt-cluster", "verify-disks")
    wait_in_sync(lab)
    lab.gnt("gnt-instance", "deactivate-disks", NAME)
    assert same_copies(lab, "node1", "node3")


def test_node_migrate_and_evacuate(drbd_lab: LabCluster) -> None:
    lab = drbd_lab
    assert where(lab) == ("node1", "node3")
    lab.gnt("gnt-instance", "startup", NAME)
    wait_in_sync(lab)
    lab.gnt("gnt-node", "migrate", "node1")
    assert where(lab) == ("node3", "node1")
    assert lab.instances()[NAME]["status"] == "running"
    wait_in_sync(lab)
    lab.gnt("gnt-node", "evacuate", "-s", "node1")
    assert where(lab) == ("node3", "node2")
    assert not backing_file(lab, "node1").exists()
    wait_in_sync(lab)
    # the guest was started, moved and re-mirrored within its boot: once it writes, it is up
    # and heeds the ACPI power button (one pressed during boot is lost: 120 s, then a kill)
    wait_acks(lab, "node3", (acks(serial_log(lab, "node3")) or [0])[-1] + 3)
    lab.gnt("gnt-instance", "shutdown", NAME)
    assert read_records(backing_file(lab, "node3")).gap_at is None


def test_volumes_and_recreate_lost_copy(drbd_lab: LabCluster) -> None:
    lab = drbd_lab
    assert where(lab) == ("node3", "node2")
    lab.gnt("gnt-instance", "deactivate-disks", NAME)
    rows = json.loads(lab.gnt("gnt-node", "volumes", "--json").stdout)
    mine = {r["node"].split(".")[0]: r for r in rows if r["instance"] == NAME}
    assert set(mine) == {"node2", "node3"} and mine["node2"]["size"] == 128
    backing_file(lab, "node2").unlink()  # node2 lost its copy
    rows = json.loads(lab.gnt("gnt-node", "volumes", "--json", "-o", "instance,exists",
                              "node2").stdout)
    assert [r["exists"] for r in rows if r["instance"] == NAME] == [False]
    out = lab.gnt("gnt-instance", "recreate-disks", NAME).stdout
    assert "recreated disk/0 on node2.example.com" in out
    lab.gnt("gnt-instance", "activate-disks", NAME)
    wait_in_sync(lab)
    lab.gnt("gnt-instance", "deactivate-disks", NAME)
    assert same_copies(lab, "node3", "node2")


def test_modify_parameters_and_convert_file_drbd_file(drbd_lab: LabCluster) -> None:
    from herd.lab.guest_records import read_header

    lab = drbd_lab
    lab.gnt("gnt-instance", "add", "-t", "file", "-n", "node1", "-o", "busybox+default", "-s",
            "64M", "--no-name-check", "--no-ip-check", "--no-start", "c1")
    lab.gnt("gnt-instance", "modify", "-B", "memory=192M", "c1")
    row = json.loads(lab.gnt("gnt-instance", "list", "--json", "-o", "be/maxmem", "c1").stdout)
    assert row[0]["be/maxmem"] == 192
    proc = lab.gnt("gnt-instance", "modify", "-H", "nosuch=1", "c1", check=False)
    assert proc.returncode == 1 and "unknown hypervisor parameter 'nosuch'" in proc.stderr

    def disk_file(node: str) -> Path:
        cfg = lab.config()
        inst = next(i for i in cfg["instances"].values() if i["name"] == "c1")
        disk = inst["disks"][0]
        rel = disk["logical_id"][3 if disk["dev_type"] == "drbd" else 1]
        return lab.lab.node(node).paths.file_storage_dir / rel

    file_path = disk_file("node1")
    lab.gnt("gnt-instance", "modify", "-t", "drbd", "-n", "node2", "c1")
    assert where_of(lab, "c1") == ("node1", "node2")
    assert not file_path.exists(), "the old file disk was left behind"
    assert read_header(disk_file("node1")).instance == "c1"
    assert filecmp.cmp(disk_file("node1"), disk_file("node2"), shallow=False)
    lab.gnt("gnt-instance", "startup", "c1")
    assert lab.instances()["c1"]["status"] == "running"
    lab.gnt("gnt-instance", "shutdown", "--timeout=0", "c1")
    drbd_files = (disk_file("node1"), disk_file("node2"))
    lab.gnt("gnt-instance", "modify", "-t", "file", "c1")
    assert read_header(disk_file("node1")).instance == "c1"
    assert not any(p.exists() for p in drbd_files), "mirrored copies were left behind"
    lab.gnt("gnt-instance", "remove", "c1")


def where_of(lab: LabCluster, name: str) -> tuple[str, str]:
    out = lab.gnt("gnt-instance", "list", "--no-headers", "--separator=|", "-o",
                  "pnode,snodes", name).stdout.strip()
    pnode, snode = out.split("|")
    return pnode.split(".")[0], snode.split(".")[0]


def test_verify_warns_about_slow_tcp_timeouts_on_mirror_nodes(drbd_lab: LabCluster) -> None:
    lab = drbd_lab
    assert "w1" in lab.instances()  # node2 and node3 hold its copies
    lab.lab.run("node2", "sysctl", "-q", "-w", "net.ipv4.tcp_retries2=15")
    try:
        out = lab.gnt("gnt-cluster", "verify", check=False).stdout
    finally:
        lab.lab.run("node2", "sysctl", "-q", "-w", "net.ipv4.tcp_retries2=5")
    warned = [line for line in out.splitlines() if "tcp_retries2" in line]
    assert len(warned) == 1 and "node2" in warned[0] and "is 15" in warned[0], out
    out = lab.gnt("gnt-cluster", "verify", check=False).stdout
    assert "tcp_retries2" not in out
