"""The opcodes Herd understands, with Ganeti's OP_IDs and field names."""

from __future__ import annotations

import dataclasses
from typing import Any

from herd.opcodes.base import OpCode, secret_field

# pylint: disable=too-many-instance-attributes


@dataclasses.dataclass(kw_only=True)
class OpTestDelay(OpCode):
    """Sleep, optionally holding locks: Ganeti's gnt-debug delay, used for tests and benchmarks."""

    OP_ID = "OP_TEST_DELAY"
    duration: float
    on_master: bool = True
    on_nodes: list[str] = dataclasses.field(default_factory=list)
    repeat: int = 0
    fail: bool = False


@dataclasses.dataclass(kw_only=True)
class OpClusterModify(OpCode):
    OP_ID = "OP_CLUSTER_SET_PARAMS"
    hvparams: dict[str, Any] | None = None
    beparams: dict[str, Any] | None = None
    nicparams: dict[str, Any] | None = None
    ndparams: dict[str, Any] | None = None
    osparams: dict[str, Any] | None = None
    mac_prefix: str | None = None
    candidate_pool_size: int | None = None
    enabled_hypervisors: list[str] | None = None
    enabled_disk_templates: list[str] | None = None
    #: Ganeti's: the cluster's LVM volume group ("" disables LVM)
    vg_name: str | None = None
    #: Ganeti's: regular expressions of VG/LV names verify ignores (replaces the list)
    reserved_lvs: list[str] | None = None
    #: Herd's: let RAPI answer GETs without credentials (Ganeti's behaviour)
    rapi_anonymous_reads: bool | None = None
    #: Herd's: the nodes' OS search path (absolute directories; [] restores the default)
    os_search_path: list[str] | None = None
    #: Ganeti's: the allocator used when an operation names none ("": Herd's built-in one)
    default_iallocator: str | None = None
    #: Ganeti's: its arguments, {key: value or None}, replacing the stored ones
    default_iallocator_params: dict[str, Any] | None = None
    #: Herd's: grants to add and to remove ([{role, subject, path}], herd.objects.access)
    add_grants: list[dict[str, str]] | None = None
    remove_grants: list[dict[str, str]] | None = None
    #: Herd's: set the members of access groups (group -> users; [] removes the group)
    access_groups: dict[str, list[str]] | None = None
    #: Herd's: set quotas (subject -> {resource: limit}; None or {} removes the quota)
    quotas: dict[str, dict[str, Any] | None] | None = None
    #: Herd's: where non-admins may name image files (herd.logic.host_paths)
    user_image_dirs: list[str] | None = None


@dataclasses.dataclass(kw_only=True)
class OpClusterVerify(OpCode):
    OP_ID = "OP_CLUSTER_VERIFY"
    skip_checks: list[str] = dataclasses.field(default_factory=list)
    verbose: bool = False
    error_codes: bool = False
    debug_simulate_errors: bool = False
    ignore_errors: list[str] = dataclasses.field(default_factory=list)
    group_name: str | None = None


@dataclasses.dataclass(kw_only=True)
class OpInstanceCreate(OpCode):
    OP_ID = "OP_INSTANCE_CREATE"
    SUMMARY_FIELD = "instance_name"
    instance_name: str
    mode: str = "create"
    os_type: str | None = None
    osparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    disk_template: str
    disks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    nics: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    pnode: str | None = None
    snode: str | None = None
    iallocator: str | None = None
    hypervisor: str | None = None
    hvparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    beparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    start: bool = True
    no_install: bool = False
    ip_check: bool = True
    name_check: bool = True
    wait_for_sync: bool = True
    file_storage_dir: str | None = None
    file_driver: str | None = None
    tags: list[str] = dataclasses.field(default_factory=list)
    force_variant: bool = False
    #: mode "import": the node holding the export and its name or path there
    src_node: str | None = None
    src_path: str | None = None


@dataclasses.dataclass(kw_only=True)
class OpInstanceRemove(OpCode):
    OP_ID = "OP_INSTANCE_REMOVE"
    SUMMARY_FIELD = "instance_name"
    instance_name: str
    ignore_failures: bool = False
    shutdown_timeout: int = 120


@dataclasses.dataclass(kw_only=True)
class OpInstanceStartup(OpCode):
    OP_ID = "OP_INSTANCE_STARTUP"
    SUMMARY_FIELD = "instance_name"
    instance_name: str
    force: bool = False
    ignore_offline_nodes: bool = False
    hvparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    beparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    no_remember: bool = False
    startup_paused: bool = False
    shutdown_timeout: int = 120


@dataclasses.dataclass(kw_only=True)
class OpInstanceShutdown(OpCode):
    OP_ID = "OP_INSTANCE_SHUTDOWN"
    SUMMARY_FIELD = "instance_name"
    instance_name: str
    force: bool = False
    ignore_offline_nodes: bool = False
    timeout: int = 120
    no_remember: bool = False
    admin_state_source: str | None = None


@dataclasses.dataclass(kw_only=True)
class OpInstanceReboot(OpCode):
    OP_ID = "OP_INSTANCE_REBOOT"
    SUMMARY_FIELD = "instance_name"
    instance_name: str
    ignore_secondaries: bool = False
    reboot_type: str = "hard"
    shutdown_timeout: int = 120


@dataclasses.dataclass(kw_only=True)
class OpInstanceActivateDisks(OpCode):
    OP_ID = "OP_INSTANCE_ACTIVATE_DISKS"
    SUMMARY_FIELD = "instance_name"
    instance_name: str
    ignore_size: bool = False
    wait_for_sync: bool = False


@dataclasses.dataclass(kw_only=True)
class OpInstanceDeactivateDisks(OpCode):
    OP_ID = "OP_INSTANCE_DEACTIVATE_DISKS"
    SUMMARY_FIELD = "instance_name"
    instance_name: str
    force: bool = False


@dataclasses.dataclass(kw_only=True)
class OpNodeAdd(OpCode):
    OP_ID = "OP_NODE_ADD"
    SUMMARY_FIELD = "node_name"
    node_name: str
    primary_ip: str | None = None
    secondary_ip: str | None = None
    readd: bool = False
    group: str | None = None
    master_capable: bool | None = None
    vm_capable: bool | None = None
    ndparams: dict[str, Any] | None = None
    #: Herd: the token printed by herd-join-token on the new node (replaces Ganeti's SSH).
    #: Secret: stored and shown as "<redacted>"; the executor keeps it in memory only.
    join_token: str | None = secret_field(default=None)


@dataclasses.dataclass(kw_only=True)
class OpNodeRemove(OpCode):
    OP_ID = "OP_NODE_REMOVE"
    SUMMARY_FIELD = "node_name"
    node_name: str


@dataclasses.dataclass(kw_only=True)
class OpNodeSetParams(OpCode):
    OP_ID = "OP_NODE_SET_PARAMS"
    SUMMARY_FIELD = "node_name"
    node_name: str
    force: bool = False
    master_candidate: bool | None = None
    offline: bool | None = None
    drained: bool | None = None
    auto_promote: bool = False
    master_capable: bool | None = None
    vm_capable: bool | None = None
    secondary_ip: str | None = None
    ndparams: dict[str, Any] | None = None
    powered: bool | None = None


@dataclasses.dataclass(kw_only=True)
class OpClusterRedistConf(OpCode):
    OP_ID = "OP_CLUSTER_REDIST_CONF"
