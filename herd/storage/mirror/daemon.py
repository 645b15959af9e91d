"""One qemu-storage-daemon (QSD) per mirrored disk and node: its files, start and end.

The QSD runs daemonized in its own session (``--daemonize``, pidfile), so it outlives noded and
a signal to noded's process group; noded rediscovers it from the files under
``run_dir/mirror``: ``KEY.pid``, ``KEY.qmp`` (monitor), ``KEY.sock`` (NBD for the local VM),
``KEY.json`` (what we set up: role, disk, target), ``KEY.log`` (QSD's own messages).
Unix socket paths must stay below 108 bytes; lab roots are long, so KEY is the disk uuid when it
fits and a short hash of it otherwise. Ending a QSD always targets its verified PID.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.daemonize import LaunchTimeout, run_daemonizing, wait_gone
from herd.errors import StorageError
from herd.fileutil import atomic_write_json

QSD_BINARY = "qemu-storage-daemon"
#: sun_path is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107
LAUNCH_TIMEOUT = 20.0


@dataclass(frozen=True)
class DaemonFiles:
    run_dir: Path
    key: str

    @classmethod
    def for_disk(cls, run_dir: Path, uuid: str) -> DaemonFiles:
        files = cls(run_dir, uuid)
        if len(str(files.sock)) > MAX_SOCKET_PATH - 1 or len(str(files.qmp)) > MAX_SOCKET_PATH:
            files = cls(run_dir, hashlib.sha1(uuid.encode()).hexdigest()[:12])
        if len(str(files.sock)) > MAX_SOCKET_PATH:
            raise StorageError(f"runtime directory {run_dir} is too long for unix sockets")
        return files

    def _f(self, suffix: str) -> Path:
        return self.run_dir / f"{self.key}.{suffix}"

    @property
    def pidfile(self) -> Path:
        return self._f("pid")

    @property
    def lock(self) -> Path:
        """What changing calls on the disk flock (MirrorManager._lock)."""
        return self._f("lock")

    @property
    def qmp(self) -> Path:
        return self._f("qmp")

    @property
    def sock(self) -> Path:
        return self._f("sock")

    @property
    def runtime(self) -> Path:
        return self._f("json")

    @property
    def log(self) -> Path:
        return self._f("log")

    def read_runtime(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.runtime.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_runtime(self, data: dict[str, Any]) -> None:
        atomic_write_json(self.runtime, data, mode=0o644)

    def pid(self) -> int | None:
        """The running QSD's PID, verified by its command line (no stale or reused PIDs)."""
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError):
            return None
        if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
            return None
        if not cmdline or not cmdline[0].endswith(QSD_BINARY.encode()):
            return None
        return pid if str(self.qmp).encode() in b" ".join(cmdline) else None

    def cleanup(self) -> None:
        for f in (self.pidfile, self.qmp, self.sock, self.runtime):
            f.unlink(missing_ok=True)


_versions: dict[str, str] = {}


def version(binary: str = QSD_BINARY) -> str:
    """The installed QSD's version ('7.2.22', '10.0.2'), '' if it cannot run. Asked once per
    installed binary (its inode, size and mtime), so a package upgrade is seen at the next
    daemon start; a daemon's own version is kept in its runtime file, since daemons started
    before an upgrade go on running the old one."""
    path = shutil.which(binary) or binary
    try:
        st = os.stat(path)
    except OSError:
        return ""
    key = f"{path}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    if key not in _versions:
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True,
                                 timeout=10, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ""
        words = (out.splitlines() or [""])[0].split()
        _versions[key] = words[2] if len(words) > 2 and words[1] == "version" else ""
    return _versions[key]


def command_line(files: DaemonFiles) -> list[str]:
    """QSD with only its monitor: all block nodes and exports are set up over QMP, so that a
    running daemon can change role in place (live migration) the same way it was set up."""
    return [QSD_BINARY, "--daemonize", "--pidfile", str(files.pidfile),
            "--chardev", f"socket,id=qmp,path={files.qmp},server=on,wait=off",
            "--monitor", "chardev=qmp"]


async def launch(files: DaemonFiles, scope: list[str] | None = None) -> int:
    """Start the QSD, wait until it daemonized; its PID. StorageError with its message.
    ``scope``: herd.daemonize.scope_argv's prefix (the daemon's own systemd scope)."""
    files.run_dir.mkdir(parents=True, exist_ok=True)
    for f in (files.pidfile, files.qmp, files.sock):
        f.unlink(missing_ok=True)
    argv = command_line(files)
    try:
        rc = await run_daemonizing(argv, files.log, LAUNCH_TIMEOUT, scope)
    except OSError as exc:
        raise StorageError(f"cannot run {QSD_BINARY}: {exc}") from None
    except LaunchTimeout as exc:
        raise StorageError(str(exc)) from None
    pid = files.pid()
    if rc != 0 or pid is None:
        tail = " | ".join(files.log.read_text(errors="replace").splitlines()[-3:])
        raise StorageError(f"{QSD_BINARY} failed to start (status {rc}): {tail}")
    return pid


async def terminate(pid: int, grace: float = 5.0) -> None:
    """SIGTERM (QSD closes its nodes, flushing them), SIGKILL after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if await wait_gone(pid, wait):
            return
    raise StorageError(f"{QSD_BINARY} process {pid} survives SIGKILL")
