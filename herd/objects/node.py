"""Nodes and node groups."""

from __future__ import annotations

import dataclasses
from typing import Any

from herd.objects.base import ConfigObject


@dataclasses.dataclass
class NodeGroup(ConfigObject):
    name: str = "default"
    alloc_policy: str = "preferred"
    #: Overrides of the cluster's parameter families; empty means "as the cluster".
    ndparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    beparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    nicparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    hvparams: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    diskparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Overrides of the cluster's instance policy (params.fill_ipolicy: a key set here
    #: replaces the cluster's value).
    ipolicy: dict[str, Any] = dataclasses.field(default_factory=dict)
    tags: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The stored form; ``ipolicy`` only once set, so that a group without overrides
        stores byte for byte what it stored before groups had policies (and older Herds
        read it)."""
        out = super().to_dict()
        if not out.get("ipolicy"):
            out.pop("ipolicy", None)
        return out


@dataclasses.dataclass
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
