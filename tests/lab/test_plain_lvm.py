"""LVM ``plain`` disks and drbd over LVs on a real lab, with a guest writing records.

Each lab node has its own PV (a loop file) holding the VG herdvg, its LVM restricted to that
device (``herd-lab up --vg``); node1 and node2 hold the disks, node3 only keeps the etcd
quorum while node2 is down. One test, in order, as an admin moves a guest from one copy to
two and back: ``add -t plain`` (started, numbered writes acknowledged on its console); stop;
``modify -t drbd -n node2``; start; failover; the new primary loses power and the instance
fails over back with ``--ignore-consistency`` (the writer goes on after the last write it
acknowledged); the node returns and is resynced; ``modify -t plain``; every record the guest
acknowledged is on the remaining LV; node2 keeps no LV; ``remove`` leaves no LV and no loop
device over any node's PV.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from herd.lab.cluster import lab_cluster
from herd.lab.guest_records import read_records
from herd.lab.single import build_test_guest
from tests.lab.conftest import LabCluster

pytestmark = pytest.mark.slow

VG = "herdvg"
PV_MIB = 256  # the disk (64 MiB) twice on the primary during a conversion, and room to spare
NAME = "p1"
ACK = re.compile(rb"HERD_ACK seq=(\d+)")
START = re.compile(rb"HERD_WRITER start=(\d+)")


def serial_log(lab: LabCluster, node: str) -> bytes:
    path = lab.lab.node(node).paths.instance_run_dir / f"{NAME}.serial.log"
    return path.read_bytes() if path.exists() else b""


def acks(lab: LabCluster, node: str) -> list[int]:
    return [int(m) for m in ACK.findall(serial_log(lab, node))]


def wait_for(what: str, check: object, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def wait_acks(lab: LabCluster, node: str, at_least: int) -> int:
    wait_for(f"{NAME} on {node} to acknowledge write {at_least}",
             lambda: (acks(lab, node) or [0])[-1] >= at_least)
    return acks(lab, node)[-1]


def writer_starts(lab: LabCluster, node: str) -> list[int]:
    return [int(m) for m in START.findall(serial_log(lab, node))]


def node_lvs(lab: LabCluster, node: str) -> list[str]:
    """The LVs of herdvg as the node's own LVM sees them (its devices file, its LVM dir)."""
    script = ("import json\nfrom herd import paths\nfrom herd.storage import node_vg\n"
              f"lvm = node_vg.lvm_node_for(paths.current(), {VG!r})\n"
              "print(json.dumps(sorted(lv.name for lv in lvm.list_lvs())))\n")
    return list(json.loads(lab.lab.run(node, "python3", "-c", script).stdout))


def loops_over_pv(lab: LabCluster, node: str) -> list[str]:
    """Loop devices mapping the node's PV (an active LV in loop mode is one)."""
    pv = subprocess.run(["losetup", "-n", "-O", "NAME", "-j",
                         str(lab.lab.node(node).root / "lvm-pv.img")],
                        capture_output=True, text=True, check=True).stdout.strip()
    out = subprocess.run(["losetup", "-n", "-O", "NAME", "-j", pv],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def where(lab: LabCluster) -> tuple[str, str]:
    out = lab.gnt("gnt-instance", "list", "--no-headers", "--separator=|", "-o",
                  "pnode,snodes", NAME).stdout.strip()
    pnode, snode = out.split("|")
    return pnode.split(".")[0], snode.split(".")[0]


def mirror_in_sync(lab: LabCluster) -> bool:
    return "mirror: connected, in sync" in lab.gnt("gnt-instance", "info", NAME).stdout


def disk_device(lab: LabCluster) -> Path:
    """Activate the disks: the primary's block device of disk 0 (a path on this kernel)."""
    out = lab.gnt("gnt-instance", "activate-disks", NAME).stdout.strip()
    return Path(out.splitlines()[-1].split(":", 2)[2])


def test_plain_to_drbd_failovers_and_back_lose_no_acknowledged_write() -> None:
    kernel, initrd = build_test_guest()
    # node3 holds no disk: the third etcd member keeps the cluster's quorum while node2 is down
    with lab_cluster(3, vg=VG, vg_size_mib=PV_MIB) as lab_:
        lab = LabCluster(lab_, kernel, initrd)
        lab.init("--vg-name", VG, "--enabled-disk-templates", "plain,drbd,file,diskless")
        lab.add_node("node2")
        lab.add_node("node3")

        lab.gnt("gnt-instance", "add", "-t", "plain", "-n", "node1.example.com", "-o",
                "busybox+writer", "-s", "64M", "--no-name-check", "--no-ip-check", NAME)
        (lv,) = node_lvs(lab, "node1")
        assert lv.endswith("_plain") and node_lvs(lab, "node2") == []
        wait_acks(lab, "node1", 20)
        lab.gnt("gnt-instance", "shutdown", NAME)
        acked = acks(lab, "node1")[-1]
        assert loops_over_pv(lab, "node1") == []  # a stopped plain instance holds none

        lab.gnt("gnt-instance", "modify", "-t", "drbd", "-n", "node2.example.com", NAME)
        assert where(lab) == ("node1", "node2")
        (data1,), (data2,) = node_lvs(lab, "node1"), node_lvs(lab, "node2")
        assert data1 == data2 == lv.replace("_plain", "_drbd")  # the plain LV is gone
        lab.gnt("gnt-instance", "startup", NAME)
        # the writer goes on after the last record on its disk: the copy has every one
        wait_for("the writer to start again", lambda: len(writer_starts(lab, "node1")) == 2)
        assert writer_starts(lab, "node1")[-1] > acked
        wait_for("the mirror to be in sync", lambda: mirror_in_sync(lab))
        acked = wait_acks(lab, "node1", writer_starts(lab, "node1")[-1] + 15)

        lab.gnt("gnt-instance", "failover", NAME)
        assert where(lab) == ("node2", "node1")
        acked = max(acked, acks(lab, "node1")[-1])
        wait_for("the writer on node2", lambda: writer_starts(lab, "node2") != [])
        assert writer_starts(lab, "node2")[-1] > acked, "an acknowledged write was lost"
        wait_acks(lab, "node2", writer_starts(lab, "node2")[-1] + 10)

        # the primary loses power: the other LV has every acknowledged write
        lab_.crash("node2")
        acked = acks(lab, "node2")[-1]
        lab.gnt("gnt-instance", "failover", "--ignore-consistency", NAME)
        assert where(lab) == ("node1", "node2")
        wait_for("the writer on node1 again", lambda: len(writer_starts(lab, "node1")) == 3)
        assert writer_starts(lab, "node1")[-1] > acked, "an acknowledged write was lost"
        lab_.start("node2")
        lab.gnt("gnt-instance", "activate-disks", NAME)
        wait_for("the resync to node2", lambda: mirror_in_sync(lab), timeout=180)
        acked = wait_acks(lab, "node1", writer_starts(lab, "node1")[-1] + 10)

        # live migration over LVs: the same writer goes on on node2, without a restart
        starts = writer_starts(lab, "node2")
        lab.gnt("gnt-instance", "migrate", "-f", NAME)
        assert where(lab) == ("node2", "node1")
        wait_for("records from the migrated writer",
                 lambda: bool(acks(lab, "node2")) and acks(lab, "node2")[-1] > acked + 5)
        assert writer_starts(lab, "node2") == starts, "the guest restarted instead of moving"
        wait_for("the mirror back to node1", lambda: mirror_in_sync(lab), timeout=180)
        lab.gnt("gnt-instance", "shutdown", NAME)
        acked = acks(lab, "node2")[-1]

        lab.gnt("gnt-instance", "modify", "-t", "plain", NAME)
        assert node_lvs(lab, "node1") == []  # the secondary's LV is gone
        assert node_lvs(lab, "node2") == [lv]
        scan = read_records(disk_device(lab))
        lab.gnt("gnt-instance", "deactivate-disks", NAME)
        assert scan.gap_at is None and scan.bad_at is None and scan.last >= acked, scan

        lab.gnt("gnt-instance", "remove", "-f", NAME)
        for node in ("node1", "node2", "node3"):
            assert node_lvs(lab, node) == [] and loops_over_pv(lab, node) == []
            meta = lab_.node(node).paths.data_dir / "mirror-meta"
            assert not meta.is_dir() or list(meta.iterdir()) == []
