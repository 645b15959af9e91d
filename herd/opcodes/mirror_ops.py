"""Opcodes of instances with mirrored disks: failover, migrate, node-wide moves (Ganeti's)."""

from __future__ import annotations

import dataclasses
from typing import Any

from herd.opcodes.base import OpCode


@dataclasses.dataclass(kw_only=True)
class OpInstanceFailover(OpCode):
    OP_ID = "OP_INSTANCE_FAILOVER"
    SUMMARY_FIELD = "instance_name"
    instance_name: str
    instance_uuid: str | None = None
    ignore_consistency: bool = False
    shutdown_timeout: int = 120
    ignore_ipolicy: bool = False
    target_node: str | None = None
    target_node_uuid: str | None = None
    iallocator: str | None = None
    cleanup: bool = False


@dataclasses.dataclass(kw_only=True)
class OpInstanceMigrate(OpCode):
    OP_ID = "OP_INSTANCE_MIGRATE"
    SUMMARY_FIELD = "instance_name"
    instance_name: str
    instance_uuid: str | None = None
    mode: str | None = None  # "live" | "non-live"; None: the hypervisor's migration_mode
    live: bool | None = None  # deprecated in Ganeti, still accepted
    #: recover from a migration that stopped half-way (herd.logic.migrate_cleanup)
    cleanup: bool = False
    target_node: str | None = None
    target_node_uuid: str | None = None
    allow_failover: bool = False
    allow_runtime_changes: bool = True
    ignore_ipolicy: bool = False
    ignore_hvversions: bool = False
    iallocator: str | None = None


@dataclasses.dataclass(kw_only=True)
class OpInstanceReplaceDisks(OpCode):
    OP_ID = "OP_INSTANCE_REPLACE_DISKS"
    SUMMARY_FIELD = "instance_name"
    instance_name: str
    instance_uuid: str | None = None
    #: replace_on_primary (-p) | replace_on_secondary (-s) | replace_new_secondary
    #: (--new-secondary, with remote_node) | replace_auto (-a: the faulty side, if any)
    mode: str
    disks: list[int] = dataclasses.field(default_factory=list)
    remote_node: str | None = None
    remote_node_uuid: str | None = None
    iallocator: str | None = None
    early_release: bool = False
    ignore_ipolicy: bool = False
    #: Herd's: this replacement is a step of a change-group (or group evacuation), which
    #: passes through a secondary in the target group; otherwise a new secondary must be in
    #: the primary's node group (a mirror never spans groups)
    change_group: bool = False


@dataclasses.dataclass(kw_only=True)
class OpClusterVerifyDisks(OpCode):
    OP_ID = "OP_CLUSTER_VERIFY_DISKS"
    group_name: str | None = None
    is_strict: bool = True


@dataclasses.dataclass(kw_only=True)
class OpNodeMigrate(OpCode):
    OP_ID = "OP_NODE_MIGRATE"
    SUMMARY_FIELD = "node_name"
    node_name: str
    node_uuid: str | None = None
    mode: str | None = None
    live: bool | None = None
    target_node: str | None = None
    target_node_uuid: str | None = None
    allow_runtime_changes: bool = True
    ignore_ipolicy: bool = False
    iallocator: str | None = None


@dataclasses.dataclass(kw_only=True)
class OpNodeEvacuate(OpCode):
    OP_ID = "OP_NODE_EVACUATE"
    SUMMARY_FIELD = "node_name"
    node_name: str
    node_uuid: str | None = None
    #: "primary-only" | "secondary-only" | "all"
    mode: str = "all"
    remote_node: str | None = None
    remote_node_uuid: str | None = None
    iallocator: str | None = None
    early_release: bool = False
    ignore_soft_errors: bool = False


@dataclasses.dataclass(kw_only=True)
class OpInstanceRecreateDisks(OpCode):
    OP_ID = "OP_INSTANCE_RECREATE_DISKS"
    SUMMARY_FIELD = "instance_name"
    instance_name: str
    instance_uuid: str | None = None
    disks: list[Any] = dataclasses.field(default_factory=list)
    nodes: list[str] = dataclasses.field(default_factory=list)
    node_uuids: list[str] | None = None
    iallocator: str | None = None
