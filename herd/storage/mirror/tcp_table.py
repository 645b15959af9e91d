"""This network namespace's IPv4 TCP sockets, as /proc/net/tcp lists them.

One reader for everything the mirror layer asks of the kernel's socket table: whether a
replication connection is up (status) and whether its peer stopped answering (the watchdog).
Addresses there are little-endian hex (``017100CB:2AF8`` is 203.0.113.1:11000).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

TCP_TABLE = Path("/proc/net/tcp")
ESTABLISHED = "01"


@dataclass(frozen=True)
class TcpSocket:
    local: tuple[str, int]
    remote: tuple[str, int]
    state: str  # the kernel's hex state: "01" established, "08" close-wait, ...
    #: bytes sent and not acknowledged yet
    unacked: int
    #: retransmission timeouts in a row without an ACK (icsk_retransmits)
    retransmits: int
    #: the socket's inode (what /proc/PID/fd links name as socket:[INODE]); 0 if unknown
    inode: int = 0

    @property
    def established(self) -> bool:
        return self.state == ESTABLISHED


def _endpoint(field: str) -> tuple[str, int]:
    addr, port = field.split(":")
    return ".".join(str(b) for b in reversed(bytes.fromhex(addr))), int(port, 16)


def parse(text: str) -> list[TcpSocket]:
    out = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 7:
            continue
        out.append(TcpSocket(local=_endpoint(cols[1]), remote=_endpoint(cols[2]),
                             state=cols[3], unacked=int(cols[4].split(":")[0], 16),
                             retransmits=int(cols[6], 16),
                             inode=int(cols[9]) if len(cols) > 9 and cols[9].isdigit() else 0))
    return out


def sockets(table: Path = TCP_TABLE) -> list[TcpSocket]:
    """The sockets now; none if the table cannot be read."""
    with contextlib.suppress(OSError):
        return parse(table.read_text())
    return []
