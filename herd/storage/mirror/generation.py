"""Generation ids of a mirrored disk: who has the newer data, and how much must be copied.

Like DRBD's UUIDs. Each node keeps, beside the backing file, a small fsync'd JSON file:

``current``          id of the data this copy holds
``history``          older ids of this copy's lineage, oldest first (bounded)
``fresh``            never written as a primary nor synced: its contents mean nothing
``role``/``clean``   role of the last storage daemon here, and whether it stopped cleanly; a
                     primary that did not stop cleanly may hold writes its peer never got
``needs_full``       this copy was such a crashed primary and is now a secondary: only a full
                     sync makes it equal again (writes in flight at the crash are unknown)
``degraded``         the primary wrote without its peer since ``current`` began
``export_token``     names this copy's replication export (``UUID.TOKEN``); renewed whenever
                     the copy is written as a primary, so that a primary's NBD client, which
                     reconnects on its own, can only reach the very copy it was attached to
``dirty_map_valid``  a live storage daemon here keeps a dirty map of every write the peer may
                     lack since generation ``map_since``

Rules (DESIGN §7): the primary takes a new generation when it goes degraded; on reconnect equal
generations resync the dirty map, a peer whose generation is an ancestor resyncs the dirty map
if the map reaches back that far and is otherwise fully synced, and if both moved on from their
common ancestor that is split brain: refused until the admin discards one side.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

from herd.errors import StorageError
from herd.fileutil import atomic_write_json

#: How many older generation ids a copy remembers (enough to recognise any plausible peer).
HISTORY_LIMIT = 32
SYNC_ORDER = ("none", "dirty", "full")


class SplitBrainError(StorageError):
    """Both copies of a mirrored disk were written independently; refused, admin must choose."""

    code = "SplitBrainError"


def new_id() -> str:
    return secrets.token_hex(8)


def initial() -> dict[str, Any]:
    """The generation record of a newly created (empty) copy."""
    return {"current": new_id(), "history": [], "fresh": True, "export_token": new_id(),
            "role": "none", "clean": True, "needs_full": False, "degraded": False,
            "dirty_map_valid": False, "map_since": None, "updated": time.time()}


def bump(gen: dict[str, Any]) -> dict[str, Any]:
    """A new generation: this copy's data diverges from whatever carried the current id."""
    out = dict(gen)
    out["history"] = [*gen.get("history", []), gen["current"]][-HISTORY_LIMIT:]
    out["current"] = new_id()
    return out


def summary(gen: dict[str, Any]) -> dict[str, Any]:
    """What a secondary publishes to its primary (in the NBD export description)."""
    return {"current": gen["current"], "history": gen.get("history", [])[-16:],
            "fresh": bool(gen.get("fresh")), "needs_full": bool(gen.get("needs_full"))}


def _lineage(gen: dict[str, Any]) -> list[str]:
    return [*gen.get("history", []), gen["current"]]


def _crashed_primary(gen: dict[str, Any]) -> bool:
    """Was primary, did not stop cleanly, and keeps no live dirty map."""
    return (gen.get("role") == "primary" and not gen.get("clean", True)
            and not gen.get("dirty_map_valid"))


def decide_sync(primary_gen: dict[str, Any], secondary_gen: dict[str, Any]) -> str:
    """'none' | 'dirty' | 'full' | 'split-brain' for attaching ``secondary`` to ``primary``."""
    p, s = primary_gen, secondary_gen
    lp = _lineage(p)
    if s.get("fresh"):
        return "full"
    if p.get("fresh"):
        return "split-brain"  # the secondary holds data, the would-be primary none
    if s["current"] == p["current"]:
        if _crashed_primary(p) or s.get("needs_full"):
            return "full"
        if p.get("dirty_map_valid"):
            return "dirty"
        return "none"
    if s["current"] in lp:  # the secondary is behind the primary
        if s.get("needs_full") or _crashed_primary(p):
            return "full"
        since = p.get("map_since")
        if p.get("dirty_map_valid") and since in lp and lp.index(s["current"]) >= lp.index(since):
            return "dirty"
        return "full"
    # p behind s (outdated primary), or both moved on from a common ancestor
    return "split-brain"


def split_brain_message(relpath: str, primary_gen: dict[str, Any],
                        secondary_gen: dict[str, Any]) -> str:
    p, s = primary_gen, secondary_gen
    if p.get("fresh"):
        why = "this node's copy is empty while the peer's holds data"
    elif p["current"] in _lineage(s):
        why = "the peer's copy is newer than this node's (this would be an outdated primary)"
    else:
        why = "both copies were written independently since they were last in sync"
    return (f"split brain on mirrored disk {relpath}: {why}; this node has generation "
            f"{p['current']}, the peer {s['current']}. Refusing to attach. Way out: discard "
            f"one side (remove and recreate that node's copy, e.g. replace-disks), then resync "
            f"from the other")


class GenerationFile:
    """The fsync'd JSON beside one backing file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            raise StorageError(f"no generation file {self.path}: disk not created here") from None
        except (OSError, ValueError) as exc:
            raise StorageError(f"unreadable generation file {self.path}: {exc}") from None
        if not isinstance(data, dict) or "current" not in data:
            raise StorageError(f"invalid generation file {self.path}")
        return data

    def write(self, gen: dict[str, Any]) -> dict[str, Any]:
        gen = dict(gen, updated=time.time())
        atomic_write_json(self.path, gen, mode=0o644)
        return gen

    def update(self, **changes: Any) -> dict[str, Any]:
        return self.write({**self.read(), **changes})
