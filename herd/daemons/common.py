"""What every Herd daemon does at start: logging, a pid file, clean exit on signals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

from herd.fileutil import atomic_write, pid_alive, read_pid


def setup_logging(log_file: Path, debug: bool = False) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=str(log_file), level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    # one line per HTTP request drowns what matters
    logging.getLogger("httpx").setLevel(logging.WARNING)


@contextlib.contextmanager
def pid_file(path: Path, daemon: str):
    """Refuse to start twice; remove the pid file at exit (only if it is still ours)."""
    other = read_pid(path)
    if other and other != os.getpid() and pid_alive(other):
        raise SystemExit(f"{daemon} is already running (pid {other}, {path})")
    atomic_write(path, f"{os.getpid()}\n", 0o644)
    try:
        yield
    finally:
        if read_pid(path) == os.getpid():
            path.unlink(missing_ok=True)


def install_stop_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
