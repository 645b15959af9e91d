"""Nodes and node groups."""

from __future__ import annotations

import dataclasses
from typing import Any

from herd.objects.base import ConfigObject


@dataclasses.dataclass(slots=True)
class NodeGroup(ConfigObject):
    name: str = "default"
    alloc_policy: str = "preferred"
    #: Overrides of the cluster's parameter families; empty means "as the cluster".
    ndparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    beparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    nicparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    hvparams: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    diskparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Networks connected to the group: network uuid -> its NIC parameters here
    #: ({mode, link, vlan}; Ganeti's ``networks`` netparams), set by gnt-network connect.
    networks: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    #: Overrides of the cluster's instance policy (params.fill_ipolicy: a key set here
    #: replaces the cluster's value).
    ipolicy: dict[str, Any] = dataclasses.field(default_factory=dict)
    tags: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The stored form; ``networks`` and ``ipolicy`` only once set, so that a group
        without them stores byte for byte what it stored before they existed (and older
        Herds read it)."""
        out = ConfigObject.to_dict(self)  # (slots=True: no zero-argument super())
        for name in ("networks", "ipolicy"):
            if not out.get(name):
                out.pop(name, None)
        return out


@dataclasses.dataclass(slots=True)
class Node(ConfigObject):
    name: str = ""
    primary_ip: str = ""
    secondary_ip: str = ""
    group: str = ""  # group uuid
    master_candidate: bool = True
    offline: bool = False
    drained: bool = False
    master_capable: bool = True
    vm_capable: bool = True
    ndparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    tags: list[str] = dataclasses.field(default_factory=list)
