"""Generation rules of mirrored disks (DESIGN §7) and the fsync'd generation file."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.errors import StorageError
from herd.storage.mirror import SplitBrainError, decide_sync
from herd.storage.mirror.generation import (
    GenerationFile,
    bump,
    initial,
    split_brain_message,
    summary,
)


def synced_pair() -> tuple[dict, dict]:
    """A primary and secondary that were in sync and stopped cleanly."""
    p = {**initial(), "fresh": False, "role": "primary", "clean": True}
    s = {**initial(), "current": p["current"], "fresh": False, "role": "secondary",
         "clean": True}
    return p, s


def test_fresh_secondary_needs_full_sync() -> None:
    assert decide_sync(initial(), initial()) == "full"
    p, _ = synced_pair()
    assert decide_sync(p, initial()) == "full"


def test_equal_generations() -> None:
    p, s = synced_pair()
    assert decide_sync(p, s) == "none"
    assert decide_sync({**p, "clean": False, "dirty_map_valid": True}, s) == "dirty"


def test_crashed_primary_daemon_means_full() -> None:
    p, s = synced_pair()
    crashed = {**p, "clean": False, "dirty_map_valid": False}
    assert decide_sync(crashed, s) == "full"
    # the old primary comes back as secondary after a failover: it may hold writes in flight
    assert decide_sync(p, {**s, "needs_full": True}) == "full"


def test_ancestor_with_map_resyncs_dirty_else_full() -> None:
    p, s = synced_pair()
    degraded = {**bump(p), "clean": False, "dirty_map_valid": True, "map_since": p["current"]}
    assert decide_sync(degraded, s) == "dirty"
    assert decide_sync({**degraded, "dirty_map_valid": False}, s) == "full"
    # the map began after the secondary's generation: it does not cover what s lacks
    later = {**bump(degraded), "map_since": degraded["current"]}
    assert decide_sync(later, s) == "full"


def test_both_moved_is_split_brain() -> None:
    p, s = synced_pair()
    p2, s2 = bump(p), bump(s)
    assert decide_sync(p2, s2) == "split-brain"
    msg = split_brain_message("inst/d.drbd.disk0", p2, s2)
    assert p2["current"] in msg and s2["current"] in msg and "discard" in msg


def test_outdated_or_empty_primary_is_refused() -> None:
    p, s = synced_pair()
    assert decide_sync(s, bump(p)) == "split-brain"  # the peer is newer
    assert "newer" in split_brain_message("d", s, bump(p))
    assert decide_sync(initial(), s) == "split-brain"


def test_split_brain_error_is_a_storage_error() -> None:
    err = SplitBrainError("x")
    assert isinstance(err, StorageError) and err.to_dict()["code"] == "SplitBrainError"


def test_bump_keeps_bounded_lineage() -> None:
    gen = initial()
    ids = [gen["current"]]
    for _ in range(40):
        gen = bump(gen)
        ids.append(gen["current"])
    assert gen["history"] == ids[-33:-1]
    assert len(summary(gen)["history"]) == 16


def test_generation_file_roundtrip(tmp_path: Path) -> None:
    gf = GenerationFile(tmp_path / "d.gen")
    with pytest.raises(StorageError):
        gf.read()
    gf.write(initial())
    gen = gf.update(role="primary")
    assert gf.read()["role"] == "primary" and gen["current"] == gf.read()["current"]
    (tmp_path / "d.gen").write_text("{broken")
    with pytest.raises(StorageError):
        gf.read()
