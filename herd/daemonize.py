"""Running programs that daemonize themselves (QEMU, qemu-storage-daemon) and ending them.

Both are started the same way: in a new session (so that a node daemon's restart or death
never takes a guest or a disk with it), output appended to a log, and we wait for the launcher
to exit once the real process has forked off and written its pid file. They are not our
children afterwards, so "gone" is polled from /proc rather than waited for.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path

from herd.fileutil import pid_alive
from herd.systemd import SYSTEMD_RUNTIME, systemd_manages


class LaunchTimeout(Exception):
    """The launcher did not daemonize in time (it was killed)."""


def log_tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def scope_argv(root: Path, unit: str, runtime: Path = SYSTEMD_RUNTIME,
               systemd_run: str | None = None) -> list[str]:
    """The prefix that starts a guest or storage daemon in a systemd scope of its own, or []
    (see :func:`systemd_manages`). In its own scope the process is no part of herd-noded's
    unit: restarting or upgrading noded leaves it alone without systemd finding "left-over
    processes", and ``systemctl status herd-guest-*`` shows each guest with its memory and
    CPU."""
    if not systemd_manages(root, runtime):
        return []
    binary = systemd_run if systemd_run is not None else shutil.which("systemd-run")
    if not binary:
        return []
    return [binary, "--scope", "--quiet", "--collect", f"--unit={unit}", "--"]


def scope_unit(kind: str, name: str) -> str:
    """A valid, recognisable unit name for ``kind`` (guest, storage) and a Herd name."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:150]
    return f"herd-{kind}-{safe}.scope"


async def run_daemonizing(argv: list[str], log_path: Path, timeout: float,
                          scope: list[str] | None = None) -> int:
    """Run ``argv`` until it daemonizes; its exit status (0 when the daemon is up).
    ``scope``: a prefix from :func:`scope_argv` (the daemon then lives in that scope).

    OSError if it cannot be run; LaunchTimeout if it did not finish in ``timeout`` seconds.
    """
    argv = [*(scope or []), *argv]
    with open(log_path, "ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True, close_fds=True)
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        # the launcher, alone in its new session, never daemonized: end it; a daemon it may
        # have forked is ended by the caller through the pid file
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise LaunchTimeout(f"{argv[0]} did not start within {timeout:g} s") from None


async def wait_gone(pid: int, timeout: float, interval: float = 0.05) -> bool:
    """Poll until ``pid`` is gone (zombies count as gone); True if it went in time."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)
    return True
