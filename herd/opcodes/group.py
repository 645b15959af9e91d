"""Node group opcodes (Ganeti's OP_GROUP_* and OP_INSTANCE_CHANGE_GROUP, with its fields),
and OP_INSTANCE_MULTI_ALLOC, the other operation whose result is jobs it submitted."""

from __future__ import annotations

import dataclasses
from typing import Any

from herd.opcodes.base import OpCode


@dataclasses.dataclass(kw_only=True)
class OpGroupAdd(OpCode):
    OP_ID = "OP_GROUP_ADD"
    SUMMARY_FIELD = "group_name"
    group_name: str
    alloc_policy: str | None = None
    ndparams: dict[str, Any] | None = None
    #: {template: {key: value}}
    diskparams: dict[str, Any] | None = None
    #: overrides of the cluster's policy ({minmax, std, disk-templates, vcpu-ratio, ...})
    ipolicy: dict[str, Any] | None = None
    #: Ganeti's static resource states; Herd measures nodes, so only empty ones are taken
    hv_state: dict[str, Any] | None = None
    disk_state: dict[str, Any] | None = None


@dataclasses.dataclass(kw_only=True)
class OpGroupSetParams(OpCode):
    OP_ID = "OP_GROUP_SET_PARAMS"
    SUMMARY_FIELD = "group_name"
    group_name: str
    alloc_policy: str | None = None
    ndparams: dict[str, Any] | None = None
    diskparams: dict[str, Any] | None = None
    ipolicy: dict[str, Any] | None = None
    hv_state: dict[str, Any] | None = None
    disk_state: dict[str, Any] | None = None


@dataclasses.dataclass(kw_only=True)
class OpGroupRemove(OpCode):
    OP_ID = "OP_GROUP_REMOVE"
    SUMMARY_FIELD = "group_name"
    group_name: str


@dataclasses.dataclass(kw_only=True)
class OpGroupRename(OpCode):
    OP_ID = "OP_GROUP_RENAME"
    SUMMARY_FIELD = "group_name"
    group_name: str
    new_name: str


@dataclasses.dataclass(kw_only=True)
class OpGroupAssignNodes(OpCode):
    OP_ID = "OP_GROUP_ASSIGN_NODES"
    SUMMARY_FIELD = "group_name"
    group_name: str
    nodes: list[str]
    node_uuids: list[str] | None = None
    #: split mirrored instances between groups all the same
    force: bool = False


@dataclasses.dataclass(kw_only=True)
class OpGroupEvacuate(OpCode):
    OP_ID = "OP_GROUP_EVACUATE"
    SUMMARY_FIELD = "group_name"
    group_name: str
    early_release: bool = False
    iallocator: str | None = None
    target_groups: list[str] | None = None
    #: the moves run one instance after the other (one job), not as parallel jobs
    sequential: bool = False
    #: fail over instead of migrating (the guests restart)
    force_failover: bool = False


@dataclasses.dataclass(kw_only=True)
class OpInstanceChangeGroup(OpCode):
    OP_ID = "OP_INSTANCE_CHANGE_GROUP"
    SUMMARY_FIELD = "instance_name"
    instance_name: str
    instance_uuid: str | None = None
    early_release: bool = False
    iallocator: str | None = None
    target_groups: list[str] | None = None


@dataclasses.dataclass(kw_only=True)
class OpInstanceMultiAlloc(OpCode):
    """Place several new instances with one allocator run (Ganeti's OP_INSTANCE_MULTI_ALLOC):
    ``instances`` are OP_INSTANCE_CREATE bodies without nodes; each placed one is created by
    a job of its own."""

    OP_ID = "OP_INSTANCE_MULTI_ALLOC"
    instances: list[dict[str, Any]]
    iallocator: str | None = None
    #: Ganeti's: take only the node locks free now (Herd plans under the cluster lock)
    opportunistic_locking: bool = False
