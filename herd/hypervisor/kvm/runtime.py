"""Per-instance runtime files and the liveness check that makes them trustworthy.

QEMU outlives noded, so what noded knows about a running instance must be on disk: the runtime
JSON (spec, pid, accel, start time, argv, taps) written atomically after QEMU daemonized. A
file alone proves nothing (QEMU may have died, the PID may be reused), so :func:`is_our_qemu`
checks /proc/PID/cmdline for this instance's pidfile and uuid before anyone trusts it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd.errors import HypervisorError
from herd.hypervisor.base import KVM_RUNTIME_SUFFIX, InstanceSpec

#: Linux limit for a unix socket path (sun_path is 108 bytes including the NUL).
MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class InstanceFiles:
    """The files of one instance in the hypervisor's run directory."""

    run_dir: Path
    name: str

    def _f(self, suffix: str) -> Path:
        return self.run_dir / f"{self.name}.{suffix}"

    @property
    def pidfile(self) -> Path:
        return self._f("pid")

    @property
    def qmp(self) -> Path:
        return self._f("qmp")

    @property
    def serial(self) -> Path:
        """Unix socket of the serial console."""
        return self._f("serial")

    @property
    def serial_log(self) -> Path:
        return self._f("serial.log")

    @property
    def runtime(self) -> Path:
        return self.run_dir / f"{self.name}{KVM_RUNTIME_SUFFIX}"

    @property
    def qemu_log(self) -> Path:
        """QEMU's stdout/stderr until it daemonizes (start errors end up here)."""
        return self._f("qemu.log")

    @property
    def chroot_dir(self) -> Path:
        return self.run_dir / "chroot" / self.name

    def check_socket_paths(self) -> None:
        for sock in (self.qmp, self.serial):
            if len(os.fsencode(sock)) > MAX_SOCKET_PATH:
                raise HypervisorError(
                    f"socket path {sock} is longer than {MAX_SOCKET_PATH} bytes; use a shorter "
                    "HERD_ROOT or instance name")

    def remove(self) -> None:
        """Remove everything but the serial log (kept for post-mortems) and qemu log."""
        for f in (self.pidfile, self.qmp, self.serial, self.runtime):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()


@dataclass
class RuntimeRecord:
    """Content of the runtime JSON file."""

    spec: InstanceSpec
    pid: int
    accel: str
    started: float
    argv: list[str]
    taps: list[str] = field(default_factory=list)
    vnc_port: int | None = None
    spice_port: int | None = None
    #: Set while a migration involves this QEMU, so that a restarted noded can still finish
    #: or abort it: {"role": "source"|"target", "uri": ..., "stopped": bool (source paused
    #: the guest itself for a non-live migration), "status": ...}.
    migration: dict[str, Any] | None = None
    #: Devices hot-plugged or unplugged since the start (uuid -> their QEMU ids, and
    #: "changed": True once any was): the guest's hardware no longer matches what its spec
    #: would start, so a live migration (which needs the same on both sides) is refused.
    hotplug: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"version": 1, "spec": self.spec.to_dict(), "pid": self.pid,
                "accel": self.accel, "started": self.started, "argv": self.argv,
                "taps": self.taps, "vnc_port": self.vnc_port, "spice_port": self.spice_port,
                "migration": self.migration, "hotplug": self.hotplug}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RuntimeRecord:
        return cls(spec=InstanceSpec.from_dict(d["spec"]), pid=int(d["pid"]),
                   accel=str(d["accel"]), started=float(d["started"]),
                   argv=[str(a) for a in d["argv"]], taps=[str(t) for t in d.get("taps", [])],
                   vnc_port=d.get("vnc_port"), spice_port=d.get("spice_port"),
                   migration=d.get("migration"), hotplug=dict(d.get("hotplug") or {}))


def write_record(path: Path, record: RuntimeRecord) -> None:
    """Write atomically (temp file + fsync + rename) so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(record.to_dict(), fh, indent=1)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_record(path: Path) -> RuntimeRecord | None:
    """The record, or None if the file is missing or unreadable (treated as stale)."""
    try:
        return RuntimeRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def is_our_qemu(pid: int, files: InstanceFiles, uuid: str) -> bool:
    """True if ``pid`` is alive and is the QEMU started for this instance (not a reused PID).

    Its ``-uuid`` is the instance's and its ``-pidfile`` lies in this run directory (the
    node's: lab nodes share one machine, and a migration has the same uuid on two of them).
    The pidfile's own name may be an earlier name of the instance: a running instance that
    was renamed keeps the command line it was started with."""
    if pid <= 0 or _is_zombie(pid):
        return False
    argv = _cmdline(pid)
    pairs = set(itertools.pairwise(argv))
    if ("-uuid", uuid) not in pairs:
        return False
    return any(flag == "-pidfile" and os.path.dirname(value) == str(files.run_dir)
               for flag, value in pairs)


def list_names(run_dir: Path) -> list[str]:
    """Instance names that have a runtime file."""
    if not run_dir.is_dir():
        return []
    return sorted(p.name.removesuffix(KVM_RUNTIME_SUFFIX) for p in run_dir.iterdir()
                  if p.name.endswith(KVM_RUNTIME_SUFFIX) and not p.name.startswith("."))
