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
    tags: list[str] = dataclasses.field(default_factory=list)


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
