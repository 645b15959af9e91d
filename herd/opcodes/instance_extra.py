"""Opcodes that RAPI (and later the CLI) submit for operations Herd does not carry out yet.

Ganeti clients call resources such as ``/2/instances/NAME/migrate`` or ``/2/groups`` (POST)
whatever the cluster can do. Herd answers them as Ganeti answers an operation the cluster cannot
perform: the job is accepted and its opcode fails with ``OpPrereqError`` (no logical unit exists
for it, see :func:`herd.logic.base.lu_for`), never with a fake success.

Each opcode here is defined only if no other module registered its ``OP_ID`` first; a module
that brings the real operation (with its own fields and logical unit) and is imported later
simply takes the ``OP_ID`` over. The fields accepted are Ganeti's, so that a request that is
valid for Ganeti is accepted here and a misspelt one is refused (HTTP 400) as Ganeti refuses it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Self

from herd.errors import ParameterError
from herd.opcodes.base import _REGISTRY, OpCode

_BASE_FIELDS = {f.name for f in dataclasses.fields(OpCode)}


@dataclasses.dataclass(kw_only=True)
class UnbackedOpCode(OpCode):
    """An opcode known by name and fields only; its parameters travel flat, as Ganeti's."""

    FIELDS: ClassVar[tuple[str, ...]] = ()
    REQUIRED: ClassVar[tuple[str, ...]] = ()
    #: What the operation is, for the error message of the failed job.
    WHAT: ClassVar[str] = ""

    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"OP_ID": self.OP_ID}
        for f in dataclasses.fields(OpCode):
            out[f.name] = getattr(self, f.name)
        out.update(self.params)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        base: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            if key == "OP_ID":
                continue
            if key in _BASE_FIELDS:
                base[key] = value
            elif key in cls.FIELDS:
                extra[key] = value
            else:
                known = ", ".join(sorted(set(cls.FIELDS) | _BASE_FIELDS))
                raise ParameterError(
                    f"unknown parameter '{key}' for {cls.OP_ID}; known: {known}")
        missing = [name for name in cls.REQUIRED if name not in extra]
        if missing:
            raise ParameterError(f"{cls.OP_ID} requires parameter(s): {', '.join(missing)}")
        op = super().from_dict(base)
        op.params = extra
        return op

    def summary(self) -> str:
        name = self.OP_ID.removeprefix("OP_")
        target = self.params.get("instance_name") or self.params.get("node_name") or \
            self.params.get("group_name")
        return f"{name}({target})" if target else name


_INSTANCE = ("instance_name", "instance_uuid")
_NODE = ("node_name", "node_uuid")

#: OP_ID -> (what it does, Ganeti's fields, required fields)
UNBACKED: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "OP_INSTANCE_FAILOVER": (
        "failing over instances",
        (*_INSTANCE, "shutdown_timeout", "ignore_consistency", "target_node",
         "target_node_uuid", "iallocator", "cleanup", "ignore_ipolicy"),
        ("instance_name",)),
    "OP_INSTANCE_MIGRATE": (
        "migrating instances",
        (*_INSTANCE, "mode", "live", "cleanup", "target_node", "target_node_uuid",
         "iallocator", "allow_failover", "allow_runtime_changes", "ignore_ipolicy",
         "ignore_hvversions"),
        ("instance_name",)),
    "OP_INSTANCE_REPLACE_DISKS": (
        "replacing the disks of instances",
        (*_INSTANCE, "mode", "disks", "remote_node", "remote_node_uuid", "iallocator",
         "early_release", "ignore_ipolicy"),
        ("instance_name", "mode")),
    "OP_INSTANCE_RENAME": (
        "renaming instances",
        (*_INSTANCE, "new_name", "ip_check", "name_check"),
        ("instance_name", "new_name")),
    "OP_INSTANCE_REINSTALL": (
        "reinstalling instances",
        (*_INSTANCE, "os_type", "force_variant", "osparams", "osparams_private",
         "osparams_secret", "clear_osparams", "clear_osparams_private", "remove_osparams",
         "remove_osparams_private"),
        ("instance_name",)),
    "OP_INSTANCE_RECREATE_DISKS": (
        "recreating the disks of instances",
        (*_INSTANCE, "disks", "nodes", "node_uuids", "iallocator"),
        ("instance_name",)),
    "OP_INSTANCE_GROW_DISK": (
        "growing disks",
        (*_INSTANCE, "disk", "amount", "wait_for_sync", "absolute", "ignore_ipolicy"),
        ("instance_name", "disk", "amount")),
    "OP_INSTANCE_SET_PARAMS": (
        "modifying instances",
        (*_INSTANCE, "force", "force_variant", "nics", "disks", "beparams", "hvparams",
         "disk_template", "ext_params", "file_driver", "file_storage_dir", "pnode",
         "pnode_uuid", "remote_node", "remote_node_uuid", "iallocator", "os_name", "osparams",
         "osparams_private", "clear_osparams", "clear_osparams_private", "remove_osparams",
         "remove_osparams_private", "wait_for_sync", "offline", "conflicts_check", "hotplug",
         "hotplug_if_possible", "instance_communication", "runtime_mem"),
        ("instance_name",)),
    "OP_BACKUP_PREPARE": (
        "exporting instances", (*_INSTANCE, "mode"), ("instance_name", "mode")),
    "OP_BACKUP_EXPORT": (
        "exporting instances",
        (*_INSTANCE, "compress", "shutdown_timeout", "target_node", "target_node_uuid",
         "shutdown", "remove_instance", "ignore_remove_failures", "mode", "x509_key_name",
         "destination_x509_ca", "zero_free_space", "zeroing_timeout_fixed",
         "zeroing_timeout_per_mib", "long_sleep"),
        ("instance_name",)),
    "OP_NODE_MIGRATE": (
        "migrating all instances of a node",
        (*_NODE, "mode", "live", "target_node", "target_node_uuid", "allow_runtime_changes",
         "ignore_ipolicy", "iallocator"),
        ("node_name",)),
    "OP_NODE_EVACUATE": (
        "evacuating nodes",
        (*_NODE, "early_release", "remote_node", "remote_node_uuid", "iallocator", "mode",
         "ignore_soft_errors"),
        ("node_name",)),
    "OP_NODE_POWERCYCLE": (
        "power-cycling nodes", (*_NODE, "force"), ("node_name",)),
    "OP_NODE_MODIFY_STORAGE": (
        "modifying storage units",
        (*_NODE, "storage_type", "name", "changes"), ("node_name", "storage_type", "name")),
    "OP_REPAIR_NODE_STORAGE": (
        "repairing storage units",
        (*_NODE, "storage_type", "name", "ignore_consistency"),
        ("node_name", "storage_type", "name")),
}


def _define(op_id: str, what: str, fields: tuple[str, ...], required: tuple[str, ...]) -> None:
    if op_id in _REGISTRY:  # the real operation exists: leave it alone
        return
    name = "Op" + "".join(p.capitalize() for p in op_id.removeprefix("OP_").split("_"))
    cls = type(name, (UnbackedOpCode,), {
        "__module__": __name__, "OP_ID": op_id, "FIELDS": fields, "REQUIRED": required,
        "WHAT": what, "__annotations__": {}})
    dataclasses.dataclass(kw_only=True)(cls)
    globals()[name] = cls


for _op_id, (_what, _fields, _required) in UNBACKED.items():
    _define(_op_id, _what, _fields, _required)


def is_backed(op_id: str) -> bool:
    """True when the OP_ID names a real operation (not one of the placeholders above)."""
    cls = _REGISTRY.get(op_id)
    return cls is not None and not issubclass(cls, UnbackedOpCode)


@dataclasses.dataclass(kw_only=True)
class OpInstanceQueryData(OpCode):
    """Detailed instance information (gnt-instance info; RAPI /2/instances/NAME/info)."""

    OP_ID = "OP_INSTANCE_QUERY_DATA"
    instance_names: list[str] = dataclasses.field(default_factory=list)
    use_locking: bool = False
    static: bool = False
