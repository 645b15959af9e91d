"""Noticing a silent peer in about a second and a half, instead of when TCP gives up.

QEMU 7.2's NBD client has no request timeout. When the path to the secondary goes silent (a
partition, a power cut that sends no RST) a replicated write, and the guest with it, waits until
TCP gives up on the connection: net.ipv4.tcp_retries2 says when (about 6 s at 3, 15 minutes at
Linux's default of 15).

The watchdog reads this network namespace's TCP table a few times a second. A connection from a
primary's storage daemon to its peer's replication port whose unacknowledged data went
unanswered through ``MAX_RETRANSMITS`` retransmission timeouts in a row (about 1.4 s at Linux's
200 ms minimum RTO) is destroyed with SOCK_DESTROY (``ss -K``). Kernel ACKs do not depend on
the peer's load, so a busy peer is never mistaken for a silent one. The NBD client then waits
``graph.RECONNECT_DELAY`` for the peer, fails the write to the mirror job (which pauses and
keeps its dirty map) and the guest's write completes on the local copy: the guest stalls for
about the detection time plus the reconnect delay. When the peer is back, ``reconnect``
resumes the job and copies only what changed.

Only connections named by the runtime files of this node's primaries are ever touched.

It is also the mirror's supervisor: about once a second it asks the manager to *observe* each
primary of the node (``observer``; :meth:`MirrorManager.observe`), which applies the events a
look finds (a finished bulk copy becomes write-blocking, a lost peer a new generation, a
recovered one clears ``degraded``). Status queries only read, so without this a record would
wait for the next job to catch up with what happened. The manager (QMP and the rest, about
9 MiB) is loaded only once the node has a primary.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd.storage.mirror import daemon, tcp_table
from herd.storage.mirror.tcp_table import TcpSocket

log = logging.getLogger("herd.mirror.watchdog")

#: Consecutive retransmission timeouts without an ACK that mean "the peer is silent".
MAX_RETRANSMITS = 3
#: Seconds between two reads of the TCP table.
INTERVAL = 0.25
#: Seconds between two observations of each primary (the supervisor's other half).
OBSERVE_EVERY = 1.0


@dataclass(frozen=True)
class Link:
    """A replication connection as the primary's daemon holds it (IPv4, as the TCP table)."""

    local_ip: str
    peer_ip: str
    peer_port: int
    #: the storage daemon that holds it (keep-alive is set on its socket; keepalive.py)
    pid: int | None = field(default=None, compare=False)


def primary_links(run_dir: Path) -> set[Link]:
    """The peer connections this node's primaries replicate over (from their runtime files)."""
    links: set[Link] = set()
    if not run_dir.is_dir():
        return links
    for runtime in run_dir.glob("*.json"):
        files = daemon.DaemonFiles(run_dir, runtime.stem)
        rt = files.read_runtime() or {}
        disk = rt.get("disk") or {}
        if rt.get("role") == "primary" and rt.get("target") == "nbd" and disk.get("peer_ip"):
            links.add(Link(disk.get("local_ip", ""), disk["peer_ip"], int(disk["port"]),
                           files.pid()))
    return links


def primary_disks(run_dir: Path) -> list[dict[str, Any]]:
    """The MirrorDisk dicts of this node's running primaries (from their runtime files)."""
    out: list[dict[str, Any]] = []
    if not run_dir.is_dir():
        return out
    for runtime in sorted(run_dir.glob("*.json")):
        files = daemon.DaemonFiles(run_dir, runtime.stem)
        rt = files.read_runtime() or {}
        if rt.get("role") == "primary" and rt.get("disk") and files.pid() is not None:
            out.append(dict(rt["disk"]))
    return out


def stuck_sockets(table: str, links: set[Link],
                  max_retransmits: int = MAX_RETRANSMITS) -> list[TcpSocket]:
    """Established sockets of ``links`` (in /proc/net/tcp format) the peer stopped answering."""
    wanted = {(link.peer_ip, link.peer_port): link for link in links}
    found = []
    for sock in tcp_table.parse(table):
        link = wanted.get(sock.remote)
        if (link is None or not sock.established
                or (link.local_ip and sock.local[0] != link.local_ip)):
            continue
        if sock.unacked and sock.retransmits >= max_retransmits:
            found.append(sock)
    return found


def to_arm(sockets: list[TcpSocket], links: set[Link],
           armed: set[int]) -> list[tuple[int, int]]:
    """(daemon pid, socket inode) of each established replication socket of ``links`` that
    has no keep-alive yet (``armed``: inodes already done)."""
    wanted = {(link.peer_ip, link.peer_port): link for link in links}
    out = []
    for sock in sockets:
        link = wanted.get(sock.remote)
        if (link is None or link.pid is None or not sock.established or not sock.inode
                or sock.inode in armed or (link.local_ip and sock.local[0] != link.local_ip)):
            continue
        out.append((link.pid, sock.inode))
    return out


async def destroy(sock: TcpSocket) -> bool:
    """SOCK_DESTROY one connection, named by both of its ends; True if ``ss`` did it."""
    (lip, lport), (rip, rport) = sock.local, sock.remote
    argv = ["ss", "-K", "-t", "-n", "src", f"{lip}:{lport}", "dst", f"{rip}:{rport}"]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 5.0)
    except (OSError, TimeoutError) as exc:
        log.error("cannot destroy %s:%s -> %s:%s: %s", lip, lport, rip, rport, exc)
        return False
    if proc.returncode != 0:
        log.error("ss -K failed for %s:%s -> %s:%s: %s", lip, lport, rip, rport,
                  err.decode(errors="replace").strip())
        return False
    return True


Observer = Callable[[dict[str, Any]], Awaitable[Any]]


class LinkWatchdog:
    """One per node (noded runs it): cuts replication connections whose peer went silent,
    and with an ``observer``, observes each primary about every ``observe_every`` seconds."""

    def __init__(self, run_dir: Path, interval: float = INTERVAL,
                 table: Path = tcp_table.TCP_TABLE, observer: Observer | None = None,
                 observe_every: float = OBSERVE_EVERY) -> None:
        self.run_dir, self.interval, self.table = run_dir, interval, table
        self.observer, self.observe_every = observer, observe_every
        self._observed = 0.0
        #: How many observations failed (a daemon going away between two looks is normal).
        self.observe_errors = 0
        self._links: set[Link] = set()
        self._primaries: list[dict[str, Any]] = []
        self._seen: dict[str, tuple[int, int]] = {}
        #: How many connections were cut (for logs and tests).
        self.cut = 0
        #: inodes of the sockets given keep-alive (keepalive.py), and whether the kernel
        #: lets us (False after a refusal: logged once, the data-only watchdog stays)
        self.armed: set[int] = set()
        self.keepalive = True

    def _refresh_links(self) -> set[Link]:
        """Re-read the runtime files when any changed. Each is replaced by a rename, which
        gives it a new inode: (inode, mtime) tells a change even within one clock tick, where
        the directory's coarse mtime would not."""
        try:
            seen = {e.name: (e.inode(), e.stat().st_mtime_ns)
                    for e in os.scandir(self.run_dir) if e.name.endswith(".json")}
        except OSError:
            seen = {}
        if seen != self._seen:
            self._links, self._seen = primary_links(self.run_dir), seen
            self._primaries = primary_disks(self.run_dir)
        return self._links

    async def check(self) -> int:
        """One pass: cut every stuck replication connection; how many were cut."""
        links = self._refresh_links()
        if not links:
            return 0
        try:
            table = self.table.read_text()
        except OSError:
            return 0
        if self.keepalive:
            self._arm(tcp_table.parse(table), links)
        cut = 0
        for sock in stuck_sockets(table, links):
            log.warning("peer %s:%s silent (%d retransmission timeouts, %d bytes unacked): "
                        "cutting the replication connection so that the guest goes on "
                        "degraded", sock.remote[0], sock.remote[1], sock.retransmits,
                        sock.unacked)
            if await destroy(sock):
                cut += 1
        self.cut += cut
        return cut

    def _arm(self, sockets: list[TcpSocket], links: set[Link]) -> None:
        """Keep-alive on each new replication socket, so that an idle link's death is seen
        (keepalive.py); forget sockets that are gone."""
        from herd.storage.mirror import keepalive

        self.armed &= {s.inode for s in sockets}
        for pid, inode in to_arm(sockets, links, self.armed):
            try:
                if keepalive.arm(pid, inode):
                    self.armed.add(inode)
            except OSError as exc:
                self.keepalive = False
                log.warning("cannot set keep-alive on the replication connection of storage "
                            "daemon %d (%s): a link that dies while idle is noticed only at "
                            "the next write", pid, exc)
                return

    async def observe_primaries(self) -> int:
        """One observation of every running primary; how many were observed."""
        if self.observer is None:
            return 0
        self._observed = time.monotonic()
        # read when a runtime file changed (a daemon that died since: its look changes nothing)
        self._refresh_links()
        disks = list(self._primaries)
        for disk in disks:
            try:
                await self.observer(disk)
            except Exception as exc:  # one disk must not stop the others
                self.observe_errors += 1
                log.debug("observing mirrored disk %s failed: %s", disk.get("uuid"), exc)
        return len(disks)

    async def run(self) -> None:
        """Forever, until cancelled; an unexpected error is logged and the loop goes on."""
        while True:
            try:
                await self.check()
                if time.monotonic() - self._observed >= self.observe_every:
                    await self.observe_primaries()
            except Exception:  # the watchdog must outlive any one bad pass
                log.exception("mirror link watchdog pass failed")
            await asyncio.sleep(self.interval)
