"""Running programs that daemonize themselves (QEMU, qemu-storage-daemon) and ending them.

Both are started the same way: in a new session (so that a node daemon's restart or death
never takes a guest or a disk with it), output appended to a log, and we wait for the launcher
to exit once the real process has forked off and written its pid file. They are not our
children afterwards, so "gone" is polled from /proc rather than waited for.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from herd.fileutil import pid_alive


class LaunchTimeout(Exception):
    """The launcher did not daemonize in time (it was killed)."""


def log_tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


async def run_daemonizing(argv: list[str], log_path: Path, timeout: float) -> int:
    """Run ``argv`` until it daemonizes; its exit status (0 when the daemon is up).

    OSError if it cannot be run; LaunchTimeout if it did not finish in ``timeout`` seconds.
    """
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
