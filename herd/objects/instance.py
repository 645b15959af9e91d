"""Instances, their disks and NICs."""

from __future__ import annotations

import dataclasses
from typing import Any

from herd.objects.base import ConfigObject

ADMIN_STATES = ("up", "down", "offline")


@dataclasses.dataclass
class Disk(ConfigObject):
    size: int = 0  # MiB
    mode: str = "rw"
    dev_type: str = "file"
    name: str | None = None
    #: Template-specific location; for ``file``: the path of the backing file on the node.
    logical_id: list[Any] = dataclasses.field(default_factory=list)
    nodes: list[str] = dataclasses.field(default_factory=list)  # node uuids holding the disk
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Nic(ConfigObject):
    mac: str = ""
    ip: str | None = None
    name: str | None = None
    network: str | None = None
    #: Overrides of the cluster's nicparams (mode, link, vlan).
    nicparams: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Instance(ConfigObject):
    name: str = ""
    primary_node: str = ""  # node uuid
    os: str = ""
    hypervisor: str = "kvm"
    disk_template: str = "diskless"
    admin_state: str = "down"
    admin_state_source: str = "admin"
    disks: list[Disk] = dataclasses.field(default_factory=list)
    nics: list[Nic] = dataclasses.field(default_factory=list)
    hvparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    beparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    osparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    disks_active: bool = False
    network_port: int | None = None
    tags: list[str] = dataclasses.field(default_factory=list)

    @property
    def all_nodes(self) -> list[str]:
        nodes = [self.primary_node]
        for disk in self.disks:
            nodes.extend(n for n in disk.nodes if n not in nodes)
        return nodes

    @property
    def secondary_nodes(self) -> list[str]:
        return [n for n in self.all_nodes if n != self.primary_node]
