"""The hypervisor interface noded talks to, and the specs it passes in.

noded never builds QEMU command lines or talks QMP itself: it hands an :class:`InstanceSpec`
(already-filled parameters, local disk paths, NICs) to a :class:`Hypervisor` and gets
:class:`RuntimeInfo` back. Specs and runtime info are plain dataclasses with ``to_dict`` /
``from_dict`` because they cross the node RPC and are stored in runtime files that a restarted
daemon reads back.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from herd.errors import ParameterError
from herd.paths import HerdPaths


@dataclass
class DiskSpec:
    """One instance disk as the node sees it: a local file or block device."""

    index: int
    path: str
    mode: str = "rw"


@dataclass
class NicSpec:
    """One instance NIC; ``mode`` is Ganeti's nic mode, ``link`` its bridge or routing table."""

    index: int
    mac: str
    mode: str
    link: str
    ip: str | None = None


@dataclass
class InstanceSpec:
    """Everything a hypervisor needs to start one instance on this node."""

    name: str
    uuid: str
    memory: int  # MiB
    vcpus: int
    hvparams: dict[str, Any]
    disks: list[DiskSpec] = field(default_factory=list)
    nics: list[NicSpec] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InstanceSpec:
        return cls(
            name=str(d["name"]),
            uuid=str(d["uuid"]),
            memory=int(d["memory"]),
            vcpus=int(d["vcpus"]),
            hvparams=dict(d.get("hvparams") or {}),
            disks=[DiskSpec(**x) for x in d.get("disks") or []],
            nics=[NicSpec(**x) for x in d.get("nics") or []],
        )


@dataclass
class RuntimeInfo:
    """What is running now: read from the runtime file and checked against the live process."""

    name: str
    uuid: str
    pid: int
    state: str  # 'running' | 'paused'
    memory: int
    vcpus: int
    accel: str  # 'kvm' | 'tcg'
    started: float
    spec: InstanceSpec

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["spec"] = self.spec.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RuntimeInfo:
        return cls(
            name=str(d["name"]), uuid=str(d["uuid"]), pid=int(d["pid"]), state=str(d["state"]),
            memory=int(d["memory"]), vcpus=int(d["vcpus"]), accel=str(d["accel"]),
            started=float(d["started"]), spec=InstanceSpec.from_dict(d["spec"]),
        )


class Hypervisor(ABC):
    """One hypervisor type on one node (its files live under ``paths``)."""

    name: ClassVar[str]

    def __init__(self, paths: HerdPaths) -> None:
        self.paths = paths

    @classmethod
    @abstractmethod
    def parameter_defaults(cls) -> dict[str, Any]:
        """Ganeti-compatible defaults of every hvparam of this hypervisor."""

    @classmethod
    @abstractmethod
    def check_parameters(cls, hvparams: dict[str, Any]) -> dict[str, Any]:
        """Validate a (partial) hvparams dict; return it normalized. Raises ParameterError."""

    @abstractmethod
    async def start(self, spec: InstanceSpec, *, paused: bool = False) -> RuntimeInfo: ...

    @abstractmethod
    async def stop(self, name: str, timeout: float) -> None: ...

    @abstractmethod
    async def reboot(self, name: str) -> None: ...

    @abstractmethod
    async def resume(self, name: str) -> None: ...

    @abstractmethod
    async def list_instances(self) -> list[RuntimeInfo]: ...

    @abstractmethod
    async def instance_info(self, name: str) -> RuntimeInfo | None: ...

    @abstractmethod
    def console_socket(self, name: str) -> Path: ...

    @abstractmethod
    def node_facts(self) -> dict[str, Any]: ...


#: Hypervisor name -> "module:Class"; imported lazily so that importing base stays cheap.
_REGISTRY = {
    "kvm": "herd.hypervisor.kvm:Kvm",
    "fake": "herd.hypervisor.fake:FakeHypervisor",
}


def get_hypervisor(name: str, paths: HerdPaths) -> Hypervisor:
    """The hypervisor called ``name`` (Ganeti's names), bound to one node's paths."""
    target = _REGISTRY.get(name)
    if target is None:
        raise ParameterError(
            f"unknown hypervisor '{name}': expected one of {', '.join(sorted(_REGISTRY))}")
    module, cls_name = target.split(":")
    cls: type[Hypervisor] = getattr(importlib.import_module(module), cls_name)
    return cls(paths)
