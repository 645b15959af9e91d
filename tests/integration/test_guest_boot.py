"""Boot the real test guest under QEMU (TCG) in each of its modes.

Why: every later end-to-end test (failover, migration, crash) relies on the guest's console
protocol, its durable writer and its clean ACPI power-off; this proves them on their own,
with the disk prepared by the bundled busybox OS definition as noded would do it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from herd import osdef
from herd.lab import guest_records
from herd.paths import BUNDLED_OS_DIR

REPO = Path(__file__).resolve().parents[2]
QEMU = shutil.which("qemu-system-x86_64")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 not installed"),
]


class Guest:
    """One QEMU process with its serial console on stdio and a QMP socket."""

    def __init__(self, kernel: Path, initrd: Path, disk: Path, qmp: Path, args: str) -> None:
        self.qmp_path = qmp
        qmp.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [str(QEMU), "-accel", "tcg", "-m", "128", "-nographic", "-no-reboot",
             "-nic", "none", "-kernel", str(kernel), "-initrd", str(initrd),
             "-append", f"console=ttyS0 {args}",
             "-drive", f"file={disk},format=raw,if=virtio",
             "-qmp", f"unix:{qmp},server=on,wait=off"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.output = ""
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := os.read(self.proc.stdout.fileno(), 65536):
            with self._cond:
                self.output += chunk.decode("utf-8", "replace").replace("\r", "")
                self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = 40) -> re.Match[str]:
        """Wait until the console output matches ``pattern`` (a regex, MULTILINE).

        Only complete lines are searched (so ``$`` never matches half a line), except for
        the prompt, which is matched by ``wait_prompt``.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                complete = self.output[:self.output.rfind("\n") + 1]
                m = re.search(pattern, complete, re.MULTILINE)
                if m:
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    tail = self.output[-2000:]
                    raise AssertionError(f"no match for {pattern!r}; console tail:\n{tail}")
                self._cond.wait(min(left, 0.5))

    def wait_prompt(self, timeout: float = 20) -> None:
        """Wait for the shell prompt ``guest# `` (it has no newline after it)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while "guest# " not in self.output:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no prompt; console tail:\n{self.output[-2000:]}")
                self._cond.wait(min(left, 0.5))

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def qmp(self, command: str) -> dict:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(self.qmp_path))
            f = s.makefile("rwb")
            json.loads(f.readline())                       # greeting
            for cmd in ("qmp_capabilities", command):
                f.write(json.dumps({"execute": cmd}).encode() + b"\n")
                f.flush()
                while True:
                    reply = json.loads(f.readline())
                    if "event" not in reply:
                        break
            return reply

    def wait_exit(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def guest_image(test_guest: tuple[str, str]) -> tuple[Path, Path]:
    """The guest every other end-to-end test boots (tools/build-test-guest, built once per
    session, or found up to date; ``make test`` builds it from scratch on a fresh machine)."""
    kernel, initrd = test_guest
    return Path(kernel), Path(initrd)


def _create_disk(path: Path, name: str, banner: str) -> None:
    with open(path, "wb") as f:
        f.truncate(64 << 20)
    d, variant = osdef.lookup("busybox", [BUNDLED_OS_DIR])
    env = osdef.build_env(
        d, variant, instance_name=name, hypervisor="kvm",
        disks=[{"path": str(path), "size": 64, "mode": "rw", "uuid": "u0", "name": None,
                "template": "file"}],
        nics=[], osparams={"banner": banner}, hvparams={}, beparams={})
    asyncio.run(osdef.run_script(d, "create", env, path.with_suffix(".log")))


def test_guest_modes(guest_image: tuple[Path, Path], tmp_path: Path) -> None:
    """Two rounds of two guests at once (each boot takes seconds under TCG): the shell guest
    beside the writer (on a copy of the same prepared disk), then the verifier of the
    writer's disk beside the verifier of a copy with a hole punched in it."""
    kernel, initrd = guest_image
    disk = tmp_path / "disk0.raw"
    _create_disk(disk, "boot-test.example.com", "hello from herd")
    shell_disk = tmp_path / "disk0-shell.raw"
    shutil.copyfile(disk, shell_disk)
    guests: list[Guest] = []

    def boot(args: str, on: Path) -> Guest:
        g = Guest(kernel, initrd, on, on.with_suffix(".qmp"), args)
        guests.append(g)
        return g

    try:
        shell = boot("herd.mode=shell", shell_disk)
        writer = boot("herd.mode=writer", disk)

        # shell: marker line, banner, prompt, a command, then ACPI power-off via QMP.
        g = shell
        ready = g.wait_for(r"^HERD_GUEST_READY (.*)$").group(1)
        facts = dict(kv.split("=", 1) for kv in ready.split())
        assert facts["disk0"] == "boot-test.example.com"
        assert facts["mode"] == "shell" and facts["vcpus"] == "1"
        assert "HERD_BANNER hello from herd" in g.output
        g.wait_prompt()
        g.send("echo answer-$((6*7))\n")
        g.wait_for(r"^answer-42$")
        assert "return" in g.qmp("system_powerdown")
        t0 = time.monotonic()
        assert g.wait_exit(15) == 0
        assert time.monotonic() - t0 < 10
        assert "HERD_POWEROFF reason=acpi" in g.output

        # writer: kill -9 QEMU mid-stream; every acknowledged record must be on the disk.
        g = writer
        g.wait_for(r"^HERD_ACK seq=30$")
        g.kill()
        acked = max(int(n) for n in re.findall(r"^HERD_ACK seq=(\d+)$", g.output, re.M))
        scan = guest_records.read_records(disk)
        assert scan.ok and scan.last >= acked, (scan, acked)

        # a hole (in a copy of the written disk) is found by both readers.
        holed = tmp_path / "disk0-hole.raw"
        shutil.copyfile(disk, holed)
        with open(holed, "r+b") as f:
            f.seek(guest_records.record_offset(10))
            f.write(b"\0" * guest_records.BLOCK_SIZE)
        assert guest_records.read_records(holed).gap_at == 10

        # verify: the guest agrees with the host-side reader, then powers off by itself.
        verify, verify_hole = boot("herd.mode=verify", disk), boot("herd.mode=verify", holed)
        m = verify.wait_for(r"^HERD_VERIFY last=(\d+) (\S+)$")
        assert (int(m.group(1)), m.group(2)) == (scan.last, "ok")
        assert verify.wait_exit(15) == 0
        verify_hole.wait_for(r"^HERD_VERIFY last=9 gap_at=10$")
        assert verify_hole.wait_exit(15) == 0
    finally:
        for g in guests:
            g.kill()
