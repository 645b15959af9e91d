"""Instances, their disks and NICs."""

from __future__ import annotations

import dataclasses
from typing import Any

from herd.objects.base import ConfigObject
from herd.objects.disk_ids import TYPED, DiskId, RawId, parse

ADMIN_STATES = ("up", "down", "offline")


@dataclasses.dataclass(slots=True)
class Disk(ConfigObject):
    size: int = 0  # MiB
    mode: str = "rw"
    dev_type: str = "file"
    name: str | None = None
    #: Where the template keeps the disk, typed (herd.objects.disk_ids); built from the stored
    #: list at construction. It names no node: see :meth:`v1_logical_id`.
    logical_id: DiskId = dataclasses.field(default_factory=RawId)
    #: Node uuids holding a copy (in no meaningful order: the instance's primary_node says
    #: which one runs the VM). The one record of where the disk is.
    nodes: list[str] = dataclasses.field(default_factory=list)
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        # from_dict and callers give the stored list; parse it once, here
        if not isinstance(self.logical_id, TYPED):
            self.logical_id = parse(self.dev_type, self.logical_id)

    def peer_of(self, node: str | None) -> str | None:
        """The other node holding a copy (mirrored disks), or None."""
        return next((n for n in self.nodes if n != node), None)

    def ordered_nodes(self, primary: str | None) -> list[str]:
        """``nodes`` with ``primary`` first: the stored order, so that a failover (which sets
        only the instance's primary) saves the lists it always saved."""
        nodes = self.nodes
        if not nodes or nodes[0] == primary or primary not in nodes:
            return list(nodes)
        return [primary, *(n for n in nodes if n != primary)]

    def v1_logical_id(self, primary: str | None = None) -> list[Any]:
        """The stored (v1) list; a drbd list's nodes are derived here, and only here, from
        ``primary`` (the instance's; default: the first of ``nodes``) and the disk's other
        node, so no writer has to keep a copy of them in step."""
        if primary is None and self.nodes:
            primary = self.nodes[0]
        ident = self.logical_id
        if not isinstance(ident, TYPED):  # assigned a list after construction
            ident = parse(self.dev_type, ident)
        return ident.to_v1(primary, self.peer_of(primary))

    def to_dict(self, primary: str | None = None) -> dict[str, Any]:
        """The stored form; ``primary``: the instance's primary node (see v1_logical_id)."""
        return self._fields_dict({"logical_id": self.v1_logical_id(primary),
                                  "nodes": self.ordered_nodes(primary)})


@dataclasses.dataclass(slots=True)
class Nic(ConfigObject):
    mac: str = ""
    ip: str | None = None
    name: str | None = None
    network: str | None = None
    #: Overrides of the cluster's nicparams (mode, link, vlan).
    nicparams: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(slots=True)
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

    def to_dict(self) -> dict[str, Any]:
        """The stored form: the disks' node lists and drbd ids follow ``primary_node``."""
        return self._fields_dict({"disks": self.disk_dicts()})

    def disk_dicts(self) -> list[dict[str, Any]]:
        """The stored form of the disks (query rows, node RPC)."""
        return [d.to_dict(self.primary_node) for d in self.disks]

    def swap_primary(self) -> None:
        """Make the secondary the primary (failover, migration). Only ``primary_node``
        changes: the disks' nodes are the same two, and a drbd id names no node (its
        stored list is derived from these, in :meth:`Disk.v1_logical_id`)."""
        self.primary_node = self.secondary_nodes[0]
        self.touch()

    def replace_node(self, old: str, new: str) -> None:
        """``new`` holds the copies ``old`` held (a new secondary; or back, to undo that).
        The primary moves with :meth:`swap_primary` instead, never here. Not touched: the
        caller saves once the copy exists."""
        if old == self.primary_node:
            raise ValueError(f"{old} is the primary of {self.name}; swap_primary moves it")
        for disk in self.disks:
            disk.nodes = [new if n == old else n for n in disk.nodes]

    @property
    def all_nodes(self) -> list[str]:
        nodes = [self.primary_node]
        for disk in self.disks:
            nodes.extend(n for n in disk.nodes if n not in nodes)
        return nodes

    @property
    def secondary_nodes(self) -> list[str]:
        return [n for n in self.all_nodes if n != self.primary_node]
