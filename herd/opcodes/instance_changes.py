"""Everyday changes to one instance: grow-disk, rename, reinstall (Ganeti's opcodes and fields).

These take over the placeholders of :mod:`herd.opcodes.instance_extra` (which defines an
OP_ID only if no module registered it first): the fields and defaults are Ganeti's, so that
RAPI bodies and Ganeti's Python client work unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from herd.opcodes.base import OpCode


@dataclasses.dataclass(kw_only=True)
class OpInstanceGrowDisk(OpCode):
    """Grow disk ``disk`` by ``amount`` MiB, or to ``amount`` MiB with ``absolute``."""

    OP_ID = "OP_INSTANCE_GROW_DISK"
    SUMMARY_FIELD = "instance_name"
    instance_name: str
    instance_uuid: str | None = None
    disk: int
    amount: int
    wait_for_sync: bool = True
    absolute: bool = False
    ignore_ipolicy: bool = False


@dataclasses.dataclass(kw_only=True)
class OpInstanceRename(OpCode):
    """Give the instance a new name; Ganeti's defaults: name check on, IP check off."""

    OP_ID = "OP_INSTANCE_RENAME"
    SUMMARY_FIELD = "instance_name"
    instance_name: str
    instance_uuid: str | None = None
    new_name: str
    ip_check: bool = False
    name_check: bool = True


@dataclasses.dataclass(kw_only=True)
class OpInstanceReinstall(OpCode):
    """Write the disks anew with the OS definition's create script (``os_type``: another OS)."""

    OP_ID = "OP_INSTANCE_REINSTALL"
    SUMMARY_FIELD = "instance_name"
    instance_name: str
    instance_uuid: str | None = None
    os_type: str | None = None
    force_variant: bool = False
    osparams: dict[str, Any] | None = None
    osparams_private: dict[str, Any] | None = None
    osparams_secret: dict[str, Any] | None = None
    clear_osparams: bool = False
    clear_osparams_private: bool = False
    remove_osparams: list[str] | None = None
    remove_osparams_private: list[str] | None = None
