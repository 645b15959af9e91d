"""What the master tells a node about one mirrored disk, and what the node reports back.

Both cross the node RPC as plain dicts, so each has ``to_dict``/``from_dict`` and nothing else:
the logic lives in :mod:`herd.storage.mirror.manager`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

ROLES = ("primary", "secondary", "down")


@dataclass
class MirrorDisk:
    """One mirrored disk as seen from one of its two nodes (addresses are per node)."""

    uuid: str
    index: int
    size: int  # MiB
    #: Backing file relative to ``paths.file_storage_dir``; the same on both nodes.
    relpath: str
    #: NBD TCP port of this disk on the secondary network (cluster pool, like DRBD ports).
    port: int
    local_ip: str
    peer_ip: str
    #: The data volume as a DeviceSpec dict (file or lvm); None: the file at ``relpath``.
    data: dict[str, Any] | None = None
    #: Where the generation record lives, relative to the data directory; None: beside the
    #: file at ``relpath`` (``<relpath>.gen``), as for every mirror made before block devices.
    meta: str | None = None

    @property
    def size_bytes(self) -> int:
        return self.size * 1024 * 1024

    def to_dict(self) -> dict[str, Any]:
        """Without ``data``/``meta`` when unset: runtime files of file-backed mirrors stay as
        older nodeds wrote them (and read them back)."""
        out = asdict(self)
        for key in ("data", "meta"):
            if out[key] is None:
                del out[key]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MirrorDisk:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class MirrorStatus:
    """The replication state of one disk on one node, DRBD-like."""

    role: str  # 'primary' | 'secondary' | 'down' (no storage daemon)
    #: primary: the mirror to the peer is healthy; secondary: a primary is connected (best effort)
    connected: bool
    #: primary: job ready, not paused, io-status ok, offset == len
    in_sync: bool
    sync_percent: float | None = None
    copied_bytes: int | None = None
    total_bytes: int | None = None
    speed_bps: float | None = None
    eta_seconds: float | None = None
    degraded: bool = True
    generation: str = ""
    #: The NBD URI a VM on this node opens: the primary's mirrored disk (unix socket), or on a
    #: secondary the export an incoming live-migration VM opens (TCP, secondary network).
    vm_uri: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MirrorStatus:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
