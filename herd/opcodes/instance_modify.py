"""gnt-instance modify (Ganeti's OP_INSTANCE_SET_PARAMS): parameters and disk template."""

from __future__ import annotations

import dataclasses
from typing import Any

from herd.opcodes.base import OpCode


@dataclasses.dataclass(kw_only=True)
class OpInstanceSetParams(OpCode):
    OP_ID = "OP_INSTANCE_SET_PARAMS"
    SUMMARY_FIELD = "instance_name"
    instance_name: str
    instance_uuid: str | None = None
    force: bool = False
    force_variant: bool = False
    nics: list[Any] = dataclasses.field(default_factory=list)
    disks: list[Any] = dataclasses.field(default_factory=list)
    beparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    hvparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    disk_template: str | None = None
    ext_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    file_driver: str | None = None
    file_storage_dir: str | None = None
    pnode: str | None = None
    pnode_uuid: str | None = None
    remote_node: str | None = None
    remote_node_uuid: str | None = None
    iallocator: str | None = None
    os_name: str | None = None
    osparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    osparams_private: dict[str, Any] = dataclasses.field(default_factory=dict)
    clear_osparams: bool = False
    clear_osparams_private: bool = False
    remove_osparams: list[str] = dataclasses.field(default_factory=list)
    remove_osparams_private: list[str] = dataclasses.field(default_factory=list)
    wait_for_sync: bool = True
    offline: bool | None = None
    conflicts_check: bool = True
    hotplug: bool = False
    hotplug_if_possible: bool = False
    instance_communication: bool | None = None
    runtime_mem: int | None = None
