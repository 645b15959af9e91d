"""Is KVM really usable on this node? Decided by a short guest boot in a child process.

Opening /dev/kvm and the basic ioctls can succeed on hosts where guests then never make
progress (nested virtualisation without proper support): a plain-ioctl probe would say "usable"
and every instance would hang. So the probe boots a real (tiny) guest the way instances boot:
``qemu-system-x86_64 -accel kvm`` runs SeaBIOS, which loads a 512-byte boot sector that writes
to QEMU's isa-debug-exit port. A healthy KVM does this in well under a second; if the child has
not exited after :data:`PROBE_TIMEOUT` seconds it is killed (by its PID, in its own session) and
KVM is reported unusable with the reason. The result is cached in a file in run_dir keyed by the
host's boot id and the QEMU binary's identity (inode, size, mtime: an upgrade from 7.2 to 10.0
without a reboot must not keep the old version's fallbacks, see :mod:`herd.qemu_features`), so
the probe runs once per host boot and QEMU install, never per instance start, and never in the
daemon's own process.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from herd.fileutil import atomic_write_json
from herd.paths import HerdPaths

#: Seconds the probe guest may take to reach its boot sector (healthy KVM: ~0.2 s).
PROBE_TIMEOUT = 2.0
#: Exit status of QEMU when the boot sector wrote 0x21 to isa-debug-exit: (0x21 << 1) | 1.
_PROBE_OK_STATUS = 0x43
_CACHE_VERSION = 3
QEMU_BINARY = "qemu-system-x86_64"


@dataclass
class KvmProbe:
    """Outcome of the probe, as cached and reported in node facts."""

    kvm_usable: bool
    kvm_reason: str
    qemu_version: str
    boot_id: str = ""
    binary_id: str = ""
    probed_at: float = 0.0
    version: int = _CACHE_VERSION


def _boot_sector() -> bytes:
    """mov al,0x21; out 0xf4,al; hlt; jmp $ -- then the 0x55AA boot signature."""
    code = bytes([0xB0, 0x21, 0xE6, 0xF4, 0xF4, 0xEB, 0xFE])
    return code + bytes(510 - len(code)) + b"\x55\xaa"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def binary_id(binary: str = QEMU_BINARY) -> str:
    """Identity of the installed QEMU binary ('' if absent): changes when a package upgrade
    replaces it."""
    path = shutil.which(binary) or binary
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def qemu_version(binary: str = QEMU_BINARY) -> str:
    """'7.2.22' etc., or '' if QEMU cannot be run (bounded: never hangs the caller)."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10,
                             check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    first = out.splitlines()[0] if out else ""
    words = first.split()
    return words[3] if len(words) > 3 and words[:3] == ["QEMU", "emulator", "version"] else first


def _end_child(proc: subprocess.Popen[bytes]) -> str:
    """Kill the probe (its own process group, which we created); '' or a note if it is stuck."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        state = ""
        with contextlib.suppress(OSError, IndexError):
            state = Path(f"/proc/{proc.pid}/stat").read_text().split(")")[-1].split()[0]
        return f"; probe process {proc.pid} did not die after SIGKILL (state {state or '?'})"
    return ""


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln]
    return lines[-1][:80] if lines else ""


def hardware_virt(cpuinfo: str) -> str | None:
    """The CPU's virtualisation extension named in /proc/cpuinfo's flags ('vmx' Intel, 'svm'
    AMD), None if it has neither.

    Without one, a /dev/kvm is a software backend such as kvm-pvm, which runs the probe's
    real-mode boot sector (slowly) but never boots a Linux guest: seen on a nested host whose
    every lab guest then hung with an empty console."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            for ext in ("vmx", "svm"):
                if ext in flags:
                    return ext
    return None


def run_probe(binary: str = QEMU_BINARY, timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    """Boot the probe guest under KVM in a child process; (usable, reason)."""
    if not os.path.exists("/dev/kvm"):
        return False, "/dev/kvm does not exist"
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    if cpuinfo and hardware_virt(cpuinfo) is None:
        return False, ("the CPU has no vmx/svm flag in /proc/cpuinfo: /dev/kvm is not "
                       "hardware-assisted KVM (e.g. kvm-pvm) and guests would not boot")
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK))
    except OSError as exc:
        return False, f"cannot open /dev/kvm: {exc.strerror}"
    if shutil.which(binary) is None and not os.path.exists(binary):
        return False, f"{binary} not found"
    with tempfile.TemporaryDirectory(prefix="herd-kvm-probe-") as tmp:
        disk = Path(tmp, "boot.img")
        disk.write_bytes(_boot_sector())
        debug = Path(tmp, "seabios.log")
        argv = [binary, "-accel", "kvm", "-machine", "pc", "-m", "16", "-nodefaults",
                "-no-user-config", "-display", "none",
                "-drive", f"file={disk},format=raw,if=ide",
                "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                "-chardev", f"file,id=dbg,path={debug}",
                "-device", "isa-debugcon,iobase=0x402,chardev=dbg"]
        started = time.monotonic()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            return False, f"cannot run {binary}: {exc}"
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stuck = _end_child(proc)
            where = _last_line(debug)
            hint = f" (firmware stopped at: {where!r})" if where else ""
            return False, (f"/dev/kvm probe timed out after {timeout:g} s: a KVM guest did not "
                           f"reach its boot sector{hint}{stuck}")
        elapsed = time.monotonic() - started
        if proc.returncode == _PROBE_OK_STATUS:
            return True, f"KVM probe guest booted in {elapsed:.2f} s"
        msg = err.decode(errors="replace").strip().splitlines()
        detail = msg[-1] if msg else f"exit status {proc.returncode}"
        return False, f"/dev/kvm probe failed: {detail}"


def _cache_file(paths: HerdPaths) -> Path:
    return paths.run_dir / "kvm-probe.json"


def _read_cache(path: Path, boot_id: str, bin_id: str) -> KvmProbe | None:
    try:
        data = json.loads(path.read_text())
        probe = KvmProbe(**data)
    except (OSError, ValueError, TypeError):
        return None
    if probe.version != _CACHE_VERSION or probe.boot_id != boot_id or \
            probe.binary_id != bin_id:
        return None
    return probe


def _write_cache(path: Path, probe: KvmProbe) -> None:
    # a temporary name of its own per write: two node_info calls of one noded probed at once
    # and shared a pid-named file, and the second rename failed the job (seen in CI's load run)
    atomic_write_json(path, asdict(probe), 0o644)


#: one probe at a time per process; the others wait and read its result
_PROBE_LOCK = threading.Lock()


def detect(paths: HerdPaths, *, force: bool = False, binary: str = QEMU_BINARY) -> KvmProbe:
    """The cached probe result for this host boot and QEMU binary, probing (bounded, ~2 s) if
    there is none."""
    boot_id, bin_id = _boot_id(), binary_id(binary)
    cache = _cache_file(paths)
    with _PROBE_LOCK:
        if not force:
            cached = _read_cache(cache, boot_id, bin_id)
            if cached is not None:
                return cached
        usable, reason = run_probe(binary)
        probe = KvmProbe(kvm_usable=usable, kvm_reason=reason,
                         qemu_version=qemu_version(binary), boot_id=boot_id, binary_id=bin_id,
                         probed_at=time.time())
        _write_cache(cache, probe)
        return probe
