"""grow-disk, rename and reinstall on real TCG guests in a two-node lab, through the CLI and
through Ganeti's own RAPI client.

One lab, two guests, checks in order:

* file guest ``g1`` on node1 (a busybox shell on its serial console): grow-disk while it runs,
  and the guest's /sys/block/vda/size shows the new size without a restart (same QEMU);
  refusals (space short, shrinking) change nothing; rename while running (same QEMU, same
  MAC, its console answers under the new name), then rename while stopped through RAPI (the
  OS rename script writes the new name into the disk header, the guest reports it at boot,
  data written by the guest before is still there); reinstall refused while running, then
  through RAPI (Ganeti's shutdown + reinstall + start): the guest's marker is gone.
* drbd guest ``d1`` (node1 primary, node2 secondary): the node steps of a grow that fails
  half-way and their undo leave both copies at the old size, in sync, the guest reading on;
  grow-disk while it runs (the same QEMU
  sees the new size, both copies have it, the guest writes into the new tail, the mirror is in
  sync and the cluster verifies clean), a failover boots the secondary's copy with that size
  and data; then grown through RAPI while stopped: both copies grow, and a stopped rename (OS
  script on the primary's copy) is copied whole to the secondary at the next start: both
  copies are byte-identical afterwards.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.conftest import joined_cluster
from tests.rapi.conftest import USERS, RapiLab, wait_rapi
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

ADD = ("gnt-instance", "add", "-o", "busybox+default", "-s", "64M", "--no-name-check",
       "--no-ip-check")
NO_CHECKS = ("--no-name-check", "--no-ip-check")
#: Where the guest writes its marker (4 KiB blocks): past the 64 KiB header area, inside what
#: the OS create script clears (16 MiB).
MARKER_BLOCK = 100
#: A block in what grow-disk adds to a 64 MiB disk (at 80 MiB).
TAIL_BLOCK = 80 * 256


@pytest.fixture(scope="module")
def lab() -> Iterator[RapiLab]:
    from herd.rapi.auth import ha1

    with joined_cluster(2, RapiLab) as cluster:
        # TCG whatever the node's KVM probe says (a /dev/kvm without vmx/svm boots nothing)
        cluster.gnt("gnt-cluster", "modify", "-H", "kvm:kvm_flag=disabled")
        cluster.write_users(USERS % ha1("jessica", "jesspw"))
        wait_rapi(cluster)
        yield cluster


class Guest:
    """The serial console of one instance on one node: its log, and its socket for typing."""

    def __init__(self, lab: RapiLab, node: str, name: str) -> None:
        self.run_dir = lab.lab.node(node).paths.instance_run_dir
        self.name = name

    @property
    def log(self) -> Path:
        return self.run_dir / f"{self.name}.serial.log"

    def text(self) -> str:
        return self.log.read_bytes().decode(errors="replace") if self.log.exists() else ""

    def wait(self, pattern: str, since: int = 0, timeout: float = 120) -> re.Match[str]:
        try:
            return wait_until(f"{pattern!r} on the console of {self.name}",
                              lambda: re.search(pattern, self.text()[since:]), timeout, 0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; console tail:\n{self.text()[-1500:]}") from None

    def ready(self, since: int = 0) -> None:
        """Booted into its shell (the prompt follows the ready line)."""
        self.wait(r"HERD_GUEST_READY[^\n]*\n(?:.|\n)*guest# ", since)

    def run(self, command: str, pattern: str, timeout: float = 60) -> re.Match[str]:
        """Type ``command`` on the console; the first match of ``pattern`` in what follows."""
        since = len(self.text())
        with socket.socket(socket.AF_UNIX) as sock:
            # connected until the answer is there: QEMU takes input as fast as the guest's
            # UART does and drops what is still unread when the client goes
            sock.settimeout(10)
            sock.connect(str(self.run_dir / f"{self.name}.serial"))
            sock.sendall(command.encode() + b"\n")
            return self.wait(pattern, since, timeout)

    def sectors(self) -> int:
        return int(self.run("echo SZ=$(cat /sys/block/vda/size)", r"SZ=(\d+)\r?\n").group(1))

    def pid(self) -> int:
        return int(json.loads((self.run_dir / f"{self.name}.runtime.json").read_text())["pid"])


def one_line_error(proc, text: str) -> None:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], proc.stderr


def config_of(lab: RapiLab, name: str) -> dict:
    cfg = lab.config()
    return next(i for i in cfg["instances"].values() if i["name"] == name)


def disk_file(lab: RapiLab, node: str, inst: dict) -> Path:
    """Where ``node`` keeps the data of the instance's disk 0 (a file, or a mirror's backing
    file: the lab cluster has no volume group)."""
    from herd.objects import Instance

    rel = Instance.from_dict(inst).disks[0].logical_id.file_path()
    assert rel is not None, inst["disks"][0]
    return lab.lab.node(node).paths.file_storage_dir / rel


def mirror_steps(lab: RapiLab, node: str, uuid: str, *steps: tuple[str, int]) -> None:
    """Call MirrorManager methods on ``node`` for the running mirrored disk ``uuid`` (as
    described by its storage daemon's runtime file), each with a size in MiB, as a job's
    node calls would."""
    script = (
        "import asyncio, dataclasses\n"
        "from herd import paths\n"
        "from herd.storage.mirror import MirrorDisk, MirrorManager\n"
        "from herd.storage.mirror.daemon import DaemonFiles\n"
        "m = MirrorManager(paths.current())\n"
        f"rt = DaemonFiles.for_disk(m.run_dir, {uuid!r}).read_runtime()\n"
        "disk = MirrorDisk.from_dict(rt['disk'])\n"
        "async def main():\n"
        + "".join(f"    await m.{name}(dataclasses.replace(disk, size={size}))\n"
                  for name, size in steps)
        + "asyncio.run(main())\n")
    lab.lab.run(node, "python3", "-c", script)


def marker(path: Path) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(MARKER_BLOCK * 4096)
        return handle.read(16)


def test_file_guest_grow_rename_reinstall(lab: RapiLab) -> None:
    lab.gnt(*ADD, "-t", "file", "-n", "node1", "g1")
    g1 = Guest(lab, "node1", "g1")
    g1.ready()
    pid, mac = g1.pid(), config_of(lab, "g1")["nics"][0]["mac"]
    assert g1.sectors() == 64 * 2048

    # grow while running: the guest sees it at once, from the same QEMU
    lab.gnt("gnt-instance", "grow-disk", "g1", "0", "32M")
    assert g1.sectors() == 96 * 2048 and g1.pid() == pid
    assert config_of(lab, "g1")["disks"][0]["size"] == 96
    serial = lab.config()["serial_no"]
    one_line_error(lab.gnt("gnt-instance", "grow-disk", "g1", "0", "100T", check=False),
                   "not enough free space in the file storage directory on node "
                   "node1.example.com")
    one_line_error(lab.gnt("gnt-instance", "grow-disk", "--absolute", "g1", "0", "32M",
                           check=False), "smaller than its current size")
    assert lab.config()["serial_no"] == serial and g1.sectors() == 96 * 2048

    # data the guest writes, kept by renames
    g1.run(f"echo KEEP-ME | dd of=/dev/vda bs=4096 seek={MARKER_BLOCK} conv=fsync "
           "2>/dev/null; echo WROTE=$?", r"WROTE=0")
    path = disk_file(lab, "node1", config_of(lab, "g1"))
    assert marker(path).startswith(b"KEEP-ME")

    # rename while running: the same QEMU carries on under the new name
    out = lab.gnt("gnt-instance", "rename", *NO_CHECKS, "g1", "g2").stdout
    assert "Instance 'g1' renamed to 'g2'" in out
    g2 = Guest(lab, "node1", "g2")
    assert g2.pid() == pid and not (g1.run_dir / "g1.runtime.json").exists()
    assert g2.run("echo ALIVE-$((6*7))", r"ALIVE-42")  # its console, under the new name
    rows = json.loads(lab.gnt("gnt-instance", "list", "--json", "-o",
                              "name,status,nic.macs", "g2").stdout)
    assert rows == [{"name": "g2", "status": "running", "nic.macs": [mac]}]

    # rename while stopped, through Ganeti's client: the OS rename script runs
    lab.gnt("gnt-instance", "shutdown", "g2")
    done = lab.run_job("RenameInstance", "g2", "g3", ip_check=False, name_check=False)
    assert done["status"] == "success", done
    rows = json.loads(lab.gnt("gnt-instance", "list", "--json", "-o",
                              "name,status,nic.macs").stdout)
    assert rows == [{"name": "g3", "status": "ADMIN_down", "nic.macs": [mac]}]
    assert marker(path).startswith(b"KEEP-ME")
    lab.gnt("gnt-instance", "startup", "g3")
    g3 = Guest(lab, "node1", "g3")
    g3.ready()
    assert "HERD_GUEST_READY disk0=g3 " in g3.text()  # the header names the new name
    assert g3.sectors() == 96 * 2048

    # reinstall: refused while running, then Ganeti's RAPI reinstall (stop, install, start)
    one_line_error(lab.gnt("gnt-instance", "reinstall", "-f", "g3", check=False),
                   "is running, cannot reinstall")
    assert marker(path).startswith(b"KEEP-ME")
    boots = g3.text().count("HERD_GUEST_READY")
    done = lab.run_job("ReinstallInstance", "g3", os="busybox+default",
                       osparams={"banner": "again"})
    assert done["status"] == "success", done
    assert marker(path) == bytes(16)  # the create script cleared the guest's data
    g3.wait(r"HERD_BANNER again", since=0)
    wait_until("a second boot", lambda: g3.text().count("HERD_GUEST_READY") > boots, 120)
    assert config_of(lab, "g3")["osparams"] == {"banner": "again"}
    lab.gnt("gnt-instance", "remove", "-f", "g3")


def test_drbd_guest_grows_both_copies_and_renames(lab: RapiLab) -> None:
    lab.gnt(*ADD, "-t", "drbd", "-n", "node1:node2", "d1")
    d1 = Guest(lab, "node1", "d1")
    d1.ready()
    assert d1.sectors() == 64 * 2048
    wait_until("d1's mirror in sync", lambda: "connected, in sync" in lab.gnt(
        "gnt-instance", "info", "d1").stdout, 180, 0.5)

    # a grow that fails half-way (the primary's step after the secondary grew) is undone by
    # the job with the same node calls it makes here: both copies served at 64 MiB again,
    # the mirror in sync, the guest reading its disk (its NBD client reconnects)
    uuid = config_of(lab, "d1")["disks"][0]["uuid"]
    mirror_steps(lab, "node1", uuid, ("grow_hold", 64))
    mirror_steps(lab, "node2", uuid, ("grow_serve", 96), ("grow_serve", 64))
    mirror_steps(lab, "node1", uuid, ("grow_serve", 64))
    d1.run("dd if=/dev/vda of=/dev/null bs=4096 count=64 skip=1000 2>/dev/null; echo R=$?",
           r"R=0")
    wait_until("d1's mirror in sync again", lambda: "connected, in sync" in lab.gnt(
        "gnt-instance", "info", "d1").stdout, 60, 0.5)
    assert [os.path.getsize(p) for p in (disk_file(lab, n, config_of(lab, "d1"))
                                          for n in ("node1", "node2"))] == [64 << 20] * 2

    # grown while running: the same QEMU sees the new size, both copies have it, and the
    # guest's write into the new tail reaches both
    pid = d1.pid()
    out = lab.gnt("gnt-instance", "grow-disk", "d1", "0", "32M").stdout
    assert "pausing the guest" in out and "sees disk 0 at 96M now" in out, out
    assert d1.sectors() == 96 * 2048 and d1.pid() == pid
    inst = config_of(lab, "d1")
    assert inst["disks"][0]["size"] == 96
    copies = [disk_file(lab, node, inst) for node in ("node1", "node2")]
    assert [os.path.getsize(p) for p in copies] == [96 << 20, 96 << 20]
    d1.run(f"echo NEW-TAIL | dd of=/dev/vda bs=4096 seek={TAIL_BLOCK} conv=fsync "
           "2>/dev/null; echo WROTE=$?", r"WROTE=0")
    info = lab.gnt("gnt-instance", "info", "d1").stdout
    assert "connected, in sync" in info, info
    # verify: nothing wrong with the instance or its mirror (this lab's RAPI users file is
    # written on the master only, which verify rightly reports)
    verify = lab.gnt("gnt-cluster", "verify", check=False).stdout
    assert "Verifying mirrored disks" in verify, verify
    assert not [line for line in verify.splitlines()
                if "ERROR" in line and "rapi/users" not in line], verify

    # failover: the secondary's copy boots with the new size and the guest's data
    lab.gnt("gnt-instance", "failover", "d1")
    d1 = Guest(lab, "node2", "d1")
    d1.ready()
    assert d1.sectors() == 96 * 2048
    d1.run(f"dd if=/dev/vda bs=4096 skip={TAIL_BLOCK} count=1 2>/dev/null | head -c 8; "
           "echo", r"NEW-TAIL")

    lab.gnt("gnt-instance", "shutdown", "d1")
    done = lab.run_job("GrowInstanceDisk", "d1", 0, 32)
    assert done["status"] == "success", done
    assert config_of(lab, "d1")["disks"][0]["size"] == 128
    assert [os.path.getsize(p) for p in copies] == [128 << 20, 128 << 20]

    # renamed while stopped: the script writes the primary's copy; the next start syncs it
    lab.gnt("gnt-instance", "rename", *NO_CHECKS, "d1", "d2")
    lab.gnt("gnt-instance", "startup", "d2")
    d2 = Guest(lab, "node2", "d2")
    d2.ready()
    assert "HERD_GUEST_READY disk0=d2 " in d2.text() and d2.sectors() == 128 * 2048
    wait_until("d2's mirror in sync", lambda: "connected, in sync" in lab.gnt(
        "gnt-instance", "info", "d2").stdout, 180, 0.5)
    lab.gnt("gnt-instance", "shutdown", "d2")
    assert filecmp.cmp(copies[0], copies[1], shallow=False)
