"""The two records a node keeps per mirrored disk, typed: the generation and the runtime.

Both live in JSON files (the generation record fsync'd beside the data or under the data
directory, the runtime file beside the storage daemon's sockets) and both outlive noded: a new
noded must read what an older one wrote, so ``from_dict`` is tolerant. Unknown keys are kept in
``extra`` and written back unchanged, missing keys take the defaults an older noded implied.
The decisions (:mod:`.states`, :mod:`.generation`) read these types; the manager still stores
plain dicts, converting at the edge, so a record on disk keeps its exact shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

R = TypeVar("R", bound="_Record")


class _Record:
    """``from_dict``/``to_dict`` shared by both records (unknown keys kept in ``extra``)."""

    extra: dict[str, Any]

    @classmethod
    def from_dict(cls: type[R], d: dict[str, Any] | None) -> R:
        d = dict(d or {})
        names = {f.name for f in fields(cls)} - {"extra"}  # type: ignore[arg-type]
        known = {k: d.pop(k) for k in list(d) if k in names}
        # a null from an older noded means "not set": the default says what it implied
        return cls(**{k: v for k, v in known.items() if v is not None}, extra=d)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.extra)
        for f in fields(self):  # type: ignore[arg-type]
            if f.name != "extra":
                out[f.name] = getattr(self, f.name)
        return out


@dataclass
class Generation(_Record):
    """Who has which data (the fields are documented in :mod:`.generation`)."""

    current: str
    history: list[str] = field(default_factory=list)
    fresh: bool = False
    export_token: str | None = None
    role: str = "none"
    clean: bool = True
    needs_full: bool = False
    degraded: bool = False
    dirty_map_valid: bool = False
    map_since: str | None = None
    updated: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def crashed_primary(self) -> bool:
        """Was primary and did not stop cleanly: writes in flight then are unknown."""
        return self.role == "primary" and not self.clean


@dataclass
class Runtime(_Record):
    """What noded set up for a running storage daemon (``KEY.json``).

    ``role`` primary or secondary; ``server`` where the VM export listens (``unix`` for a
    primary's local VM, ``tcp`` on a secondary or a primary that took over by live migration);
    ``target``/``target_child``/``target_seq`` the peer node of the mirror job (``nbd`` or
    ``dead``); ``export`` the peer's export name the job replicates to; ``base_offset`` the job's
    offset when its current sync began; ``copy_mode`` the job's copy mode now and
    ``switch_when_ready`` whether it must become write-blocking once the bulk copy is done;
    ``growing`` a primary held for growing its disk under a paused guest (no job, no exports).
    """

    role: str = ""
    disk: dict[str, Any] = field(default_factory=dict)
    server: str = ""
    pid: int | None = None
    target: str | None = None
    target_child: str | None = None
    export: str | None = None
    target_seq: int = 1
    base_offset: int = 0
    sync_started: float = 0.0
    qsd_version: str = ""
    copy_mode: str = "write-blocking"
    switch_when_ready: bool = False
    sync: str = ""
    started: float = 0.0
    growing: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
