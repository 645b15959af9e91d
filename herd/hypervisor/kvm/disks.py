"""How an instance disk path becomes QEMU ``-drive`` options: local files and NBD exports.

The mirrored ``drbd`` template hands the VM its disk from a local qemu-storage-daemon over NBD,
so a DiskSpec path is either a file/device path or an NBD URI:

* ``nbd+unix:///EXPORT?socket=/path``  -- the node's own storage daemon (the normal case);
* ``nbd://HOST[:PORT]/EXPORT``          -- an export on another node (tests, emergencies).

NBD disks are opened with QEMU's structured nbd options rather than ``file=<uri>`` because only
those carry the reconnect settings: with ``reconnect-delay`` a restart of the storage daemon
stalls guest I/O for a moment instead of failing it (the guest would see EIO and e.g. remount
its root read-only), and ``open-timeout`` lets QEMU wait for a daemon that is just starting.
The guest still sees a plain raw disk on the usual interface (virtio, ide, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from herd.errors import HypervisorError

#: Seconds guest requests wait for a lost NBD connection to come back before they fail.
#: QEMU keeps reconnecting after that; only requests issued meanwhile see an error.
NBD_RECONNECT_DELAY = 30
#: Seconds QEMU retries the first connection (the storage daemon may still be starting).
NBD_OPEN_TIMEOUT = 10
NBD_DEFAULT_PORT = 10809
_UNIX_SCHEMES = ("nbd+unix",)
_TCP_SCHEMES = ("nbd", "nbd+tcp")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class NbdTarget:
    """Where an NBD export is: a unix socket, or host and port; plus the export name."""

    export: str
    socket: str | None = None
    host: str | None = None
    port: int = NBD_DEFAULT_PORT


def is_uri(path: str) -> bool:
    """True if ``path`` names a network disk (any ``scheme://``), not a local file."""
    return _URI.match(path) is not None


def parse_nbd_uri(uri: str) -> NbdTarget:
    """Parse an NBD URI (see the module docstring); HypervisorError if it is not one."""
    parts = urlsplit(uri)
    export = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    if parts.scheme in _UNIX_SCHEMES:
        sockets = parse_qs(parts.query).get("socket", [])
        if parts.netloc or len(sockets) != 1 or not sockets[0].startswith("/"):
            raise HypervisorError(
                f"invalid NBD URI {uri!r}: expected nbd+unix:///EXPORT?socket=/absolute/path")
        return NbdTarget(export=export, socket=sockets[0])
    if parts.scheme in _TCP_SCHEMES:
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            host = port = None
        if not host or parts.query:
            raise HypervisorError(f"invalid NBD URI {uri!r}: expected nbd://HOST[:PORT]/EXPORT")
        return NbdTarget(export=export, host=host, port=port or NBD_DEFAULT_PORT)
    raise HypervisorError(
        f"unsupported disk URI {uri!r}: expected a path, nbd+unix:///EXPORT?socket=PATH "
        "or nbd://HOST[:PORT]/EXPORT")


def escape(value: str) -> str:
    """Quote a value for QEMU's comma-separated option syntax (a comma is written twice)."""
    return value.replace(",", ",,")


def nbd_options(target: NbdTarget) -> list[str]:
    """The ``file.*`` options of a -drive that opens ``target`` with the nbd protocol driver."""
    opts = ["file.driver=nbd"]
    if target.socket is not None:
        opts += ["file.server.type=unix", f"file.server.path={escape(target.socket)}"]
    else:
        opts += ["file.server.type=inet", f"file.server.host={escape(target.host or '')}",
                 f"file.server.port={target.port}"]
    opts += [f"file.export={escape(target.export)}",
             f"file.reconnect-delay={NBD_RECONNECT_DELAY}",
             f"file.open-timeout={NBD_OPEN_TIMEOUT}"]
    return opts


def source_options(path: str) -> list[str]:
    """The -drive options naming the data source of one disk (file path or NBD URI)."""
    if is_uri(path):
        return nbd_options(parse_nbd_uri(path))
    return [f"file={escape(path)}"]
