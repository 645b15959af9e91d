"""What every Herd daemon does at start: logging, a pid file, clean exit on signals.

Logs go to the daemon's file, reopened on SIGHUP so that logrotate can move it away
(``packaging/logrotate.d/herd`` is the snippet: rename, then SIGHUP; lines written in between land
in the renamed file, so a rotation loses none). Under systemd a daemon also logs to stderr,
which is journald's stream, with the syslog level as ``<N>`` prefix so ``journalctl -p``
filters by level; elsewhere stderr is a launcher's file and gets nothing, so no line is
written twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

from herd.fileutil import atomic_write, pid_alive, read_pid

#: Seconds a stopping HTTPS daemon (noded, herd-rapi) waits for its open connections. Without a
#: bound uvicorn waits until every TLS peer answers the close: an idle keep-alive client (the
#: master's RPC pool, a RAPI client) never does, so asyncio's TLS shutdown ran its full 30 s
#: and ``herd-daemon-util stop`` (the watcher, upgrades, renew-crypto, a master failover's
#: step-down) took 30 s and ended in SIGKILL. A request still running after this is
#: cancelled, as the SIGKILL did before.
GRACEFUL_STOP = 5.0

FILE_FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
#: syslog priorities by logging level (sd-daemon(3) prefixes; journald reads them)
_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                    logging.CRITICAL: 2}


class ReopeningFileHandler(logging.FileHandler):
    """A log file that can be reopened (SIGHUP after logrotate renamed it). The handler's
    lock is held while the stream is swapped, so a line being written from another thread
    goes to one file or the other, never nowhere."""

    def reopen(self) -> None:
        self.acquire()
        try:
            old = None
            if self.stream is not None:
                self.stream.flush()
                old = _identity(self.stream.fileno())
                self.stream.close()
            self.stream = self._open()
            # the launcher pointed stdout/stderr at this file too (herd.daemons.util): move
            # them along, so that a crash's traceback lands in the current file
            for fd in (1, 2):
                if old is not None and _identity(fd) == old:
                    os.dup2(self.stream.fileno(), fd)
        finally:
            self.release()


def _identity(fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class JournalFormatter(logging.Formatter):
    """``<N>logger: message``: journald stamps the time and the pid itself."""

    def format(self, record: logging.LogRecord) -> str:
        level = max((lv for lv in _SYSLOG_PRIORITY if lv <= record.levelno), default=logging.DEBUG)
        text = super().format(record).replace("\n", "\n  ")
        return f"<{_SYSLOG_PRIORITY[level]}>{record.name}: {text}"


def stderr_is_journal(environ: dict[str, str] | None = None, fd: int = 2) -> bool:
    """Whether stderr is the journald stream systemd gave us: ``JOURNAL_STREAM`` names its
    device and inode (systemd.exec(5)); a child whose stderr was redirected inherits the
    variable but not the stream, hence the comparison."""
    spec = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    dev, _, ino = spec.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def setup_logging(log_file: Path, debug: bool = False) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    handler = ReopeningFileHandler(log_file)
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    root.addHandler(handler)
    if stderr_is_journal():
        journal = logging.StreamHandler()
        journal.setFormatter(JournalFormatter())
        root.addHandler(journal)
    # one line per HTTP request drowns what matters
    logging.getLogger("httpx").setLevel(logging.WARNING)


def add_log_file(logger_name: str, log_file: Path) -> logging.Logger:
    """A logger that also writes to a file of its own (the audit log), reopened with the
    others; its lines still reach the daemon's log and the journal."""
    logger = logging.getLogger(logger_name)
    handler = ReopeningFileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    return logger


def reopen_logs() -> int:
    """Reopen every log file (SIGHUP); how many."""
    loggers = [logging.getLogger(), *(lg for lg in logging.root.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger))]
    count = 0
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, ReopeningFileHandler):
                handler.reopen()
                count += 1
    return count


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
    """SIGTERM/SIGINT end the daemon cleanly; SIGHUP reopens its log files."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reopen_logs)


def release_free_memory() -> None:
    """Give the kernel back the heap the process freed: glibc keeps freed memory as the
    process's RSS until it is trimmed (masterd's config load of 20,000 instances frees about
    30 MiB of etcd's answer and the parsed document; a list of them as much in rows). glibc
    only; elsewhere nothing happens. ctypes is imported here, at the first big release, not
    by every daemon at start."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
