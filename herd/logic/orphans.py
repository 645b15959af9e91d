"""Orphan volumes: what a node holds for disks that no instance of the config owns.

``gnt-cluster verify`` compares each node's listing (the ``storage_list`` node RPC: files under
the file storage directory, running storage daemons of mirrored disks) with the config, as
Ganeti compares a node's logical volumes ("volume X is unknown"). Pure functions, so that the
rules are unit tests; verify only reports, it never removes anything.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from herd.logic.templates import template_of
from herd.logic.templates.drbd import GENERATION_SUFFIX
from herd.objects import ConfigData


@dataclass(frozen=True)
class Expected:
    """What a node should hold: file paths (relative) and mirrored disk uuids."""

    files: frozenset[str]
    mirror_uuids: frozenset[str]


def expected_on(cfg: ConfigData, node_uuid: str) -> Expected:
    """What the config's instances keep on ``node_uuid``, as each one's template says."""
    files: set[str] = set()
    uuids: set[str] = set()
    for inst in cfg.instances.values():
        volumes = template_of(inst).volumes_on(inst, node_uuid)
        files |= volumes.files
        uuids |= volumes.daemons
    return Expected(frozenset(files), frozenset(uuids))


def _is_temp_of(rel: str, owned: frozenset[str]) -> bool:
    """An atomic write's temporary file (``.NAME.xxxx`` beside NAME) of an owned file."""
    head, name = posixpath.split(rel)
    if not name.startswith("."):
        return False
    return any(posixpath.dirname(o) == head and name.startswith(f".{posixpath.basename(o)}.")
               for o in owned)


def orphan_volumes(expected: Expected, listing: dict[str, Any],
                   in_flight: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """The orphans in a node's ``storage_list`` answer, one description each, sorted.

    ``in_flight``: relative paths that running jobs are creating now (not orphans yet).
    """
    out = []
    for rel in listing.get("files", []):
        if rel in expected.files or rel in in_flight or _is_temp_of(rel, expected.files):
            continue
        base = rel.removesuffix(GENERATION_SUFFIX)
        if base in in_flight:
            continue
        out.append(f"volume {rel} is unknown (a disk file no instance owns)")
    for daemon in listing.get("mirror_daemons", []):
        uuid, rel = daemon.get("uuid"), daemon.get("relpath")
        if uuid in expected.mirror_uuids or rel in in_flight:
            continue
        out.append(f"storage daemon of mirrored disk {uuid or daemon.get('key')} "
                   f"({rel or 'unknown file'}, pid {daemon.get('pid')}) is unknown")
    return sorted(out)
