"""gnt-backup between two clusters (two labs): an instance exported on one is imported on the
other, as a file and as a drbd instance, boots there, and its disk bytes are the exported ones.

One test, in order, so that each cluster and guest serves several checks: on cluster A a
writer guest is exported while running (paused for a point-in-time copy, through Ganeti's RAPI
client) and keeps writing; an export to a full target fails and leaves no export and the guest
running again; a stopped guest's export equals its disk. The export directory is copied to
cluster B's node1 (as an admin would with scp); an import of a damaged copy fails and leaves
nothing; B imports it with the CLI (file, same name: same MAC) and with Ganeti's RAPI client
(drbd, another name), and both guests find their records and go on writing; the running drbd
guest is exported again.
"""

from __future__ import annotations

import contextlib
import filecmp
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd import exportinfo
from herd.lab.cluster import lab_cluster
from herd.lab.guest_records import read_records
from herd.lab.single import build_test_guest
from herd.node.exports import export_dir
from tests.rapi.conftest import USERS, RapiLab, wait_rapi

pytestmark = pytest.mark.slow

WRITER = re.compile(rb"HERD_WRITER start=(\d+)")
ACK = re.compile(rb"HERD_ACK seq=(\d+)")


def gnt_backup(cluster: RapiLab) -> list[str]:
    """gnt-backup as installed, or its module (a venv installed before the command was)."""
    script = cluster.lab.bindir / "gnt-backup"
    return [str(script)] if script.exists() else [sys.executable, "-m", "herd.cli.gnt_backup"]


def serial(cluster: RapiLab, node: str, name: str) -> bytes:
    path = cluster.lab.node(node).paths.instance_run_dir / f"{name}.serial.log"
    return path.read_bytes() if path.exists() else b""


def wait_serial(cluster: RapiLab, node: str, name: str, pattern: re.Pattern[bytes],
                after: int = 0, timeout: float = 180) -> int:
    """The first number ``pattern`` captures after byte ``after`` of the serial log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = pattern.search(serial(cluster, node, name), after)
        if found:
            return int(found.group(1))
        time.sleep(0.2)
    raise AssertionError(f"{name} on {node}: no {pattern.pattern!r} in its console: "
                         f"{serial(cluster, node, name)[-800:]!r}")


def wait_acks(cluster: RapiLab, node: str, name: str, beyond: int) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        seen = [int(s) for s in ACK.findall(serial(cluster, node, name))]
        if seen and seen[-1] > beyond:
            return seen[-1]
        time.sleep(0.2)
    raise AssertionError(f"{name} on {node} does not write beyond seq {beyond}; console: "
                         f"{serial(cluster, node, name)[-800:]!r}")


def disk_file(cluster: RapiLab, node: str, name: str) -> Path:
    """Where ``node`` keeps disk 0 of ``name`` (file: its file; drbd: its data volume)."""
    inst = next(i for i in cluster.config()["instances"].values() if i["name"] == name)
    lid = inst["disks"][0]["logical_id"]
    rel = lid[1] if inst["disk_template"] == "file" else lid[3]
    return cluster.lab.node(node).paths.file_storage_dir / rel


def same_bytes(disk: Path, dump: Path) -> bool:
    """``disk`` starts with exactly the bytes of ``dump`` (a drbd data volume may be longer)."""
    size = dump.stat().st_size
    with open(disk, "rb") as a, open(dump, "rb") as b:
        while chunk := b.read(1 << 20):
            if a.read(len(chunk)) != chunk:
                return False
    return disk.stat().st_size >= size


@contextlib.contextmanager
def cluster(kernel: Path, initrd: Path) -> Iterator[RapiLab]:
    from herd.rapi.auth import ha1

    with lab_cluster(2) as lab:
        c = RapiLab(lab, kernel, initrd)
        c.init()
        # TCG: this host's /dev/kvm passes the boot-sector probe, yet kernels hang on it
        c.gnt("gnt-cluster", "modify", "-H", "kvm:kvm_flag=disabled")
        c.add_node("node2")
        c.write_users(USERS % ha1("jessica", "jesspw"))
        yield c


@contextlib.contextmanager
def full_disk(cluster: RapiLab, node: str, path: Path) -> Iterator[list[str]]:
    """A 1 MiB file system on ``path`` as ``node``'s noded sees it (``ip netns exec`` gave it
    a mount namespace of its own); yields the command prefix that runs in that namespace."""
    from herd.fileutil import read_pid

    pid = read_pid(cluster.lab.node(node).paths.pid_file("noded"))
    inside = ["nsenter", "-t", str(pid), "-m"]
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run([*inside, "mount", "-t", "tmpfs", "-o", "size=1m", "herdtest", str(path)],
                   check=True)
    try:
        yield inside
    finally:
        subprocess.run([*inside, "umount", str(path)], check=True)


def test_export_on_one_cluster_import_on_another() -> None:
    kernel, initrd = build_test_guest()
    with cluster(kernel, initrd) as a, cluster(kernel, initrd) as b:
        wait_rapi(a)
        # -- cluster A: a running writer guest, exported without shutdown (paused) ----------
        a.gnt("gnt-instance", "add", "-t", "file", "-n", "node1", "-o", "busybox+writer",
              "-s", "32M", "--no-name-check", "--no-ip-check", "w1")
        mac = a.config()["instances"]
        mac = next(i for i in mac.values() if i["name"] == "w1")["nics"][0]["mac"]
        before = wait_acks(a, "node1", "w1", 5)
        assert a.run_job("PrepareExport", "w1", "local")["status"] == "success"
        done = a.run_job("ExportInstance", "w1", "local", "node2.example.com", shutdown=False)
        assert done["status"] == "success", done
        assert any("pausing instance w1" in m for m in done["log"]), done["log"]
        exported = export_dir(a.lab.node("node2").paths) / "w1"
        info = exportinfo.loads((exported / "config.ini").read_text())
        assert (info.name, info.os, info.disk_template) == ("w1", "busybox+writer", "file")
        assert info.nics[0].mac == mac and info.disks[0].size == 32
        # a point in time of the running guest: every record whole, none missing
        scan = read_records(exported / info.disks[0].dump)
        assert scan.ok and scan.last >= before, scan
        wait_acks(a, "node1", "w1", scan.last + 5)  # and the guest goes on writing

        # -- an export to a full target fails; no export, the guest runs again ---------------
        target = export_dir(a.lab.node("node2").paths)
        with full_disk(a, "node2", target) as inside:
            log_mark = len(serial(a, "node1", "w1"))
            proc = a.gnt(*gnt_backup(a), "export", "-n", "node2", "w1", check=False)
            assert proc.returncode == 1 and "no space left" in proc.stderr, proc.stderr
            assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
            listing = subprocess.run([*inside, "ls", "-A", str(target)], check=True,
                                     capture_output=True, text=True).stdout
            assert listing == ""  # no staging directory, no partial dump
            assert a.instances()["w1"]["status"] == "running"
            wait_serial(a, "node1", "w1", WRITER, after=log_mark)  # rebooted, writing again
        assert (exported / "config.ini").exists()  # the earlier export is untouched

        # -- a stopped guest's export is its disk, byte for byte -----------------------------
        a.gnt("gnt-instance", "shutdown", "w1")
        a.gnt(*gnt_backup(a), "export", "-n", "node2", "w1")
        assert a.instances()["w1"]["status"] == "ADMIN_down"
        dump = exported / exportinfo.loads((exported / "config.ini").read_text()).disks[0].dump
        assert filecmp.cmp(disk_file(a, "node1", "w1"), dump, shallow=False)
        last = read_records(dump).last

        # -- the admin copies the export to cluster B ----------------------------------------
        copied = export_dir(b.lab.node("node1").paths) / "w1"
        shutil.copytree(exported, copied)
        listing = b.gnt(*gnt_backup(b), "list", "--no-headers").stdout.split()
        assert listing == ["node1.example.com", "w1"]

        # -- an import whose dump is missing fails and leaves no instance and no disk ---------
        copied_dump = copied / dump.name
        copied_dump.rename(copied / "moved-away")
        proc = b.gnt(*gnt_backup(b), "import", "-t", "file", "-n", "node1", "--src-dir", "w1",
                     "--no-start", "--no-name-check", "--no-ip-check", "w1", check=False)
        assert proc.returncode == 1 and f"has no file {dump.name}" in proc.stderr, proc.stderr
        assert b.config()["instances"] == {}
        assert list(b.lab.node("node1").paths.file_storage_dir.rglob("*.file")) == []
        (copied / "moved-away").rename(copied_dump)

        # -- B imports it as a file instance of the same name: same data, same MAC -----------
        b.gnt(*gnt_backup(b), "import", "-t", "file", "-n", "node1", "--src-node", "node1",
              "--src-dir", "w1", "--no-start", "--no-name-check", "--no-ip-check", "w1")
        assert same_bytes(disk_file(b, "node1", "w1"), dump)
        imported = next(i for i in b.config()["instances"].values() if i["name"] == "w1")
        assert imported["nics"][0]["mac"] == mac and imported["os"] == "busybox+writer"
        b.gnt("gnt-instance", "startup", "w1")
        assert wait_serial(b, "node1", "w1", WRITER) == last + 1

        # -- and through Ganeti's RAPI client as a drbd instance under another name ----------
        wait_rapi(b)
        done = b.run_job("CreateInstance", "import", "w2", "drbd", [], [],
                         src_node="node1.example.com", src_path="/srv/herd/export/w1",
                         pnode="node2.example.com", snode="node1.example.com",
                         name_check=False, ip_check=False, start=False)
        assert done["status"] == "success", done
        for node in ("node2", "node1"):
            assert same_bytes(disk_file(b, node, "w2"), dump), node
        w2 = next(i for i in b.config()["instances"].values() if i["name"] == "w2")
        assert w2["nics"][0]["mac"] != mac  # another name: a new machine, a new MAC
        b.gnt("gnt-instance", "startup", "w2")
        assert wait_serial(b, "node2", "w2", WRITER) == last + 1

        # a running drbd instance exports as well (from its primary's copy, paused)
        seen = wait_acks(b, "node2", "w2", last + 3)
        b.gnt(*gnt_backup(b), "export", "--noshutdown", "-n", "node1", "w2")
        exported = export_dir(b.lab.node("node1").paths) / "w2"
        info = exportinfo.loads((exported / "config.ini").read_text())
        assert info.disk_template == "drbd"
        scan = read_records(exported / info.disks[0].dump)
        assert scan.ok and scan.last >= seen, scan
        wait_acks(b, "node2", "w2", scan.last + 3)

        b.gnt(*gnt_backup(b), "remove", "w2")
        assert b.gnt(*gnt_backup(b), "list", "--no-headers").stdout.split() == \
            ["node1.example.com", "w1"]
        b.gnt(*gnt_backup(b), "remove", "w1")
        assert b.gnt(*gnt_backup(b), "list", "--no-headers").stdout.strip() == ""
