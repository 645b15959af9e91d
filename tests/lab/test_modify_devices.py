"""gnt-instance modify --net/--disk on a real two-node cluster with a real (TCG) guest.

One test, one cluster, one mirrored (drbd) guest, in the order an admin would go: a second NIC
and a second disk are hot-plugged and the guest sees them on its console (the new interface
with its MAC, the new block device); it writes to the new disk; a -B change says it waits for
a restart; the new disk's two copies are identical once the guest is down; after a restart
both devices are unplugged again and the guest loses them; a hotplug that fails half-way
(its NIC's bridge does not exist) and a disk larger than the node has leave nothing behind.
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.conftest import LabCluster, joined_cluster

pytestmark = pytest.mark.slow

NAME = "hp1"
MARK = "HERD-HOTPLUGGED-DISK-OK"


@pytest.fixture(scope="module")
def lab2() -> Iterator[LabCluster]:
    with joined_cluster(2, LabCluster) as cluster:
        yield cluster


class GuestShell:
    """The test guest's shell on its serial console (the console socket QEMU serves), and
    its output as QEMU logs it: one command at a time, each answered before the next."""

    def __init__(self, run_dir: Path, since: int) -> None:
        """Attach once the guest started after log offset ``since`` shows its prompt (QEMU
        appends each boot to the same log)."""
        self.log = run_dir / f"{NAME}.serial.log"
        self.count = 0
        self._wait(lambda text: "guest# " in text, since, "the shell prompt", timeout=90)
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(run_dir / f"{NAME}.serial"))
        # QEMU also sends the guest's output to the socket: unread, it fills, and QEMU
        # stalls the serial port (the guest hangs mid-echo); the log is what is read
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        with contextlib.suppress(OSError):
            while self.sock.recv(65536):
                pass

    def _wait(self, ready, start: int, what: str, timeout: float = 60) -> str:  # type: ignore
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            data = self.log.read_bytes() if self.log.exists() else b""
            text = data[start:].decode(errors="replace")
            if ready(text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"the guest did not show {what}: {text[-800:]!r}")

    def run(self, command: str, timeout: float = 60) -> str:
        """Run ``command``; its output alone. The markers around it are computed by the
        guest's shell, so the echoed command line (which the shell may wrap) never matches."""
        self.count += 1
        begin, end = f"{self.count}@2S", f"{self.count}@2E"
        start = self.log.stat().st_size
        self.sock.sendall(f"echo {self.count}@$((1+1))S; {command}; "
                          f"echo {self.count}@$((1+1))E\n".encode())
        text = self._wait(lambda t: end in t, start, f"the end of {command!r}", timeout)
        return text.split(begin, 1)[1].split(end, 1)[0].replace("\r", "")

    def close(self) -> None:
        self.sock.close()


def instance(lab: LabCluster) -> dict:
    return next(i for i in lab.config()["instances"].values() if i["name"] == NAME)


def disk_copy(lab: LabCluster, node: str, disk: dict) -> Path:
    return lab.lab.node(node).paths.file_storage_dir / disk["logical_id"][3]


def storage_files(lab: LabCluster) -> dict[str, set[Path]]:
    out = {}
    for node in ("node1", "node2"):
        base = lab.lab.node(node).paths.file_storage_dir
        out[node] = {p for p in base.rglob("*") if p.is_file()} if base.exists() else set()
    return out


def wait_in_sync(lab: LabCluster, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "connected, in sync" in lab.gnt("gnt-instance", "info", NAME).stdout:
            return
        time.sleep(0.5)
    raise AssertionError("the mirror did not get in sync")


def test_hotplug_nic_and_disk_into_a_mirrored_guest_and_out_again(lab2: LabCluster) -> None:
    lab = lab2
    run_dir = lab.lab.node("node1").paths.instance_run_dir
    lab.gnt("gnt-instance", "add", "-t", "drbd", "-n", "node1:node2", "-o", "busybox+default",
            "-s", "64M", "--net", "0:link=br0", "-H", "kvm_flag=disabled",  # TCG, as meant
            "--no-name-check", "--no-ip-check", NAME)
    shell = GuestShell(run_dir, 0)
    try:
        assert shell.run("ls /sys/block").split() == ["vda"]

        out = lab.gnt("gnt-instance", "modify", "--hotplug", "--net", "add:link=br0,name=backend",
                      "--disk", "add:size=32M,name=data", NAME)
        assert "next restart" not in out.stdout + out.stderr
        inst = instance(lab)
        assert [d["name"] for d in inst["disks"]] == [None, "data"]
        new_mac = inst["nics"][1]["mac"]
        seen = shell.run("ls /sys/block; ls /sys/class/net; cat /sys/class/net/eth1/address")
        assert {"vda", "vdb", "eth0", "eth1"} <= set(seen.split()), seen
        assert new_mac in seen
        wrote = shell.run(f"echo {MARK} | dd of=/dev/vdb conv=fsync 2>/dev/null; "
                          "head -c 23 /dev/vdb; echo")
        assert wrote.split() == [MARK]

        later = lab.gnt("gnt-instance", "modify", "-B", "memory=192M", NAME)
        assert "be/maxmem, be/minmem take(s) effect at its next restart" in \
            later.stdout + later.stderr

        # the new disk is mirrored: in sync, and both copies equal once the guest is down
        wait_in_sync(lab)
    finally:
        shell.close()
    lab.gnt("gnt-instance", "shutdown", NAME)
    new_disk = instance(lab)["disks"][1]
    primary, secondary = disk_copy(lab, "node1", new_disk), disk_copy(lab, "node2", new_disk)
    assert primary.read_bytes()[:len(MARK)] == MARK.encode()
    assert filecmp.cmp(primary, secondary, shallow=False)

    since = (run_dir / f"{NAME}.serial.log").stat().st_size
    lab.gnt("gnt-instance", "startup", NAME)
    shell = GuestShell(run_dir, since)
    try:
        assert shell.run("head -c 23 /dev/vdb; echo").strip() == MARK
        before = storage_files(lab)
        lab.gnt("gnt-instance", "modify", "--hotplug", "--net", "backend:remove",
                "--disk", "1:remove", NAME)
        seen = shell.run("ls /sys/block; ls /sys/class/net")
        assert "vdb" not in seen.split() and "eth1" not in seen.split(), seen
        inst = instance(lab)
        assert len(inst["disks"]) == 1 and len(inst["nics"]) == 1
        gone = {n: before[n] - storage_files(lab)[n] for n in before}
        assert all(primary.name in {p.name for p in gone[n]} for n in gone), gone

        # failures half-way: nothing is left in the config, on the nodes or in the guest
        config_before, files_before = instance(lab), storage_files(lab)
        bad = lab.gnt("gnt-instance", "modify", "--hotplug", "--disk", "add:size=32M",
                      "--net", "add:link=nosuchbr", NAME, check=False)
        assert bad.returncode == 1 and "nosuchbr" in bad.stderr
        huge = lab.gnt("gnt-instance", "modify", "--disk", "add:size=64T", NAME, check=False)
        assert huge.returncode == 1 and "not enough space" in huge.stderr
        after = instance(lab)
        assert (after["disks"], after["nics"]) == (config_before["disks"], config_before["nics"])
        assert storage_files(lab) == files_before
        assert "vdb" not in shell.run("ls /sys/block").split()
    finally:
        shell.close()
    rows = json.loads(lab.gnt("gnt-instance", "list", "--json", "-o", "disk.count,nic.count",
                              NAME).stdout)
    assert (rows[0]["disk.count"], rows[0]["nic.count"]) == (1, 1)
    lab.gnt("gnt-instance", "remove", "--shutdown-timeout=0", NAME)
