"""Export/import opcodes (Ganeti's OP_BACKUP_*; ``gnt-backup``; RAPI ``/export``).

They take over the placeholders of :mod:`herd.opcodes.instance_extra` (imported after it).
Fields are Ganeti's, so that a request valid for Ganeti is accepted; those for remote
(inter-cluster, X.509-signed) exports are accepted with their "unused" values and refused
otherwise by the logical unit with a clear line (Herd moves exports between clusters as files).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from herd.opcodes.base import OpCode

#: Export modes: Ganeti's "local" (to a node of this cluster) and "remote" (Herd: not yet).
EXPORT_MODES = ("local", "remote")


@dataclasses.dataclass(kw_only=True)
class OpBackupPrepare(OpCode):
    """Prepare an export (Ganeti: for mode remote, a handshake and a key; local: nothing)."""

    OP_ID = "OP_BACKUP_PREPARE"
    SUMMARY_FIELD = "instance_name"
    instance_name: str
    instance_uuid: str | None = None
    mode: str


@dataclasses.dataclass(kw_only=True)
class OpBackupExport(OpCode):
    """Export an instance to a node's export directory (gnt-backup export)."""

    OP_ID = "OP_BACKUP_EXPORT"
    SUMMARY_FIELD = "instance_name"
    instance_name: str
    instance_uuid: str | None = None
    target_node: Any = None
    target_node_uuid: str | None = None
    shutdown: bool = True
    shutdown_timeout: int = 120
    remove_instance: bool = False
    ignore_remove_failures: bool = False
    mode: str = "local"
    compress: str = "none"
    x509_key_name: Any = None
    destination_x509_ca: str | None = None
    zero_free_space: bool = False
    zeroing_timeout_fixed: int | None = None
    zeroing_timeout_per_mib: float | None = None
    long_sleep: bool = False


@dataclasses.dataclass(kw_only=True)
class OpBackupQuery(OpCode):
    """The exports on nodes (gnt-backup list): node name -> export names, or False for a
    node that did not answer (Ganeti's result)."""

    OP_ID = "OP_BACKUP_QUERY"
    nodes: list[str] = dataclasses.field(default_factory=list)
    use_locking: bool = False


@dataclasses.dataclass(kw_only=True)
class OpBackupRemove(OpCode):
    """Remove the exports of an instance from every node (gnt-backup remove)."""

    OP_ID = "OP_BACKUP_REMOVE"
    SUMMARY_FIELD = "instance_name"
    instance_name: str
    instance_uuid: str | None = None
