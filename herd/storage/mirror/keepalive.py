"""TCP keep-alive on a replication connection that QEMU holds, so an idle link's death is seen.

The watchdog (watchdog.py) notices a silent peer from unacknowledged data; a link over which
nothing is written (a guest that idles, disks activated without a guest) carries no data, so
the kernel would learn of its death only at the next write: ``gnt-instance info`` said "in
sync" about a mirror whose peer had been gone for minutes. Keep-alive probes fix that: on an
idle connection the kernel sends a probe every :data:`IDLE` seconds and closes the connection
after :data:`COUNT` unanswered ones (:data:`INTERVAL` apart), about 2-3 s after the link died.
The closed socket leaves the TCP table, where the mirror's status looks for its link, so the
primary reports itself degraded at once and the supervisor starts a new generation; QEMU's NBD
client finds the closed socket at its next request and reconnects as after any other cut.

QEMU sets per-connection keep-alive times only from 10.1 (``keep-alive-idle`` and friends on
an inet address; Debian's backports ship 10.0), and the namespace-wide sysctls would change
every keep-alive socket of the host. So the watchdog sets them on QEMU's own socket: it takes a
duplicate of the socket's file descriptor from the storage daemon (``pidfd_getfd``, Linux 5.6;
the options belong to the socket, which both descriptors share), sets the options and closes
its copy. Only sockets of this node's primaries, found by the inode the TCP table names, are
touched; a kernel or a permission that refuses is logged once and the link keeps the
data-only watchdog.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("herd.mirror.keepalive")

#: Seconds of silence before the first probe, seconds between probes, unanswered probes that
#: close the connection: a dead idle link is noticed 2-3 s after it died (TCP_KEEPIDLE and
#: TCP_KEEPINTVL take whole seconds).
IDLE, INTERVAL, COUNT = 1, 1, 2
#: pidfd_getfd(2) on every architecture Linux numbers syscalls the generic way and on x86-64
SYS_PIDFD_GETFD = 438

_libc = ctypes.CDLL(None, use_errno=True)


def socket_fd(pid: int, inode: int, proc: Path = Path("/proc")) -> int | None:
    """The number of the descriptor by which process ``pid`` holds socket ``inode``."""
    wanted = f"socket:[{inode}]"
    try:
        entries = list((proc / str(pid) / "fd").iterdir())
    except OSError:
        return None
    for entry in entries:
        try:
            if os.readlink(entry) == wanted:
                return int(entry.name)
        except (OSError, ValueError):
            continue
    return None


def _getfd(pid: int, fd: int) -> int:
    pidfd = os.pidfd_open(pid)
    try:
        got = _libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if got < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return int(got)
    finally:
        os.close(pidfd)


@contextlib.contextmanager
def _borrowed(pid: int, inode: int, proc: Path) -> Iterator[socket.socket | None]:
    """Socket ``inode`` of process ``pid`` through a duplicate descriptor of ours (closed on
    exit; the socket itself stays the owner's), or None if the process holds no such socket."""
    fd = socket_fd(pid, inode, proc)
    if fd is None:
        yield None
        return
    mine = _getfd(pid, fd)
    sock = socket.socket(fileno=mine)
    try:
        yield sock
    finally:
        sock.detach()
        os.close(mine)


def arm(pid: int, inode: int, idle: int = IDLE, interval: int = INTERVAL,
        count: int = COUNT, proc: Path = Path("/proc")) -> bool:
    """Set keep-alive on the socket ``inode`` that process ``pid`` holds; False if it has no
    such socket (gone meanwhile). OSError when the kernel refuses."""
    with _borrowed(pid, inode, proc) as sock:
        if sock is None:
            return False
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
        return True


def armed(pid: int, inode: int, proc: Path = Path("/proc")) -> tuple[int, int, int, int] | None:
    """(SO_KEEPALIVE, idle, interval, count) of the socket, as the kernel has them (tests)."""
    with _borrowed(pid, inode, proc) as sock:
        if sock is None:
            return None
        return (sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT))
