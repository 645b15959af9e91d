"""The hypervisor interface noded talks to, and the specs it passes in.

noded never builds QEMU command lines or talks QMP itself: it hands an :class:`InstanceSpec`
(already-filled parameters, local disk paths, NICs) to a :class:`Hypervisor` and gets
:class:`RuntimeInfo` back. Specs and runtime info are plain dataclasses with ``to_dict`` /
``from_dict`` because they cross the node RPC and are stored in runtime files that a restarted
daemon reads back.
"""

from __future__ import annotations

import copy
import importlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from herd.errors import HypervisorError, ParameterError
from herd.paths import HerdPaths

#: Field names per dataclass (dataclasses.fields() costs more than the copy: noded answers
#: instance_list with one spec per guest, and RAPI clients ask for it many times a second).
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _flat(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, values as they are (for flat, scalar-valued ones)."""
    names = _FIELD_NAMES.get(type(obj))
    if names is None:
        names = _FIELD_NAMES[type(obj)] = tuple(f.name for f in fields(obj))
    return {name: getattr(obj, name) for name in names}


@dataclass
class DiskSpec:
    """One instance disk as the node sees it.

    ``path`` is a local file or block device, or an NBD URI (``nbd+unix:///EXPORT?socket=PATH``
    from the node's storage daemon for the mirrored template, or ``nbd://HOST[:PORT]/EXPORT``).
    The same disk has a different path on each node, so a migration target gets its own spec.
    """

    index: int
    path: str
    mode: str = "rw"
    #: The config's disk uuid (hotplug finds the device by it); None in old runtime files.
    uuid: str | None = None


@dataclass
class NicSpec:
    """One instance NIC; ``mode`` is Ganeti's nic mode, ``link`` its bridge or routing table."""

    index: int
    mac: str
    mode: str
    link: str
    ip: str | None = None
    #: The config's NIC uuid (hotplug finds the device by it); None in old runtime files.
    uuid: str | None = None


@dataclass(frozen=True)
class VncEndpoint:
    """Where noded reaches a running guest's VNC server, and how it must authenticate there
    (noded does the RFB security handshake itself and offers the viewer no security, so the
    browser's noVNC needs neither the password nor TLS). Holds the password file's path,
    never the password: endpoints get passed around and printed."""

    host: str
    port: int
    #: Ganeti's vnc_password_file ("" for none): its first line is the VNC password.
    password_file: str = ""
    #: The server speaks VeNCrypt (QEMU's tls-creds): anything else from it is refused.
    tls: bool = False
    #: vnc_x509_path ("" with TLS: anonymous TLS): ca-cert.pem, client-cert.pem/-key.pem.
    x509_dir: str = ""
    #: vnc_x509_verify: check the server's certificate against x509_dir/ca-cert.pem.
    x509_verify: bool = False


def read_display_password(path: str, param: str) -> str:
    """The password in a Ganeti display password file (vnc_password_file,
    spice_password_file): its first line without surrounding blanks. One reading for QEMU's
    set_password at start and for noded's VNC relay, so both use the same password. The
    error names the parameter and file, never the content."""
    try:
        return Path(path).read_text().splitlines()[0].strip()
    except (OSError, UnicodeDecodeError, IndexError):
        raise HypervisorError(f"cannot read {param} {path}: it must be a readable file whose "
                              "first line is the password") from None


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
    #: The cluster-wide port of the instance's console (Ganeti's network_port), or None.
    network_port: int | None = None

    def to_dict(self) -> dict[str, Any]:
        # by hand: asdict() deep-copies every field of every disk and NIC, and noded answers
        # instance_list with one spec per guest (a big node lists thousands)
        d = _flat(self)
        d["hvparams"] = copy.deepcopy(self.hvparams)
        d["disks"] = [_flat(x) for x in self.disks]
        d["nics"] = [_flat(x) for x in self.nics]
        return d

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
            network_port=int(d["network_port"]) if d.get("network_port") else None,
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
    #: None, or this node's part in a migration in progress: 'source' or 'target'.
    migration: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # field by field: asdict() would deep-copy the spec once more only to be replaced
        # (noded answers instance_list with one of these per guest: 20,000 on a big node)
        d = _flat(self)
        d["spec"] = self.spec.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RuntimeInfo:
        return cls(
            name=str(d["name"]), uuid=str(d["uuid"]), pid=int(d["pid"]), state=str(d["state"]),
            memory=int(d["memory"]), vcpus=int(d["vcpus"]), accel=str(d["accel"]),
            started=float(d["started"]), spec=InstanceSpec.from_dict(d["spec"]),
            migration=d.get("migration"),
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

    async def pause(self, name: str) -> None:
        """Freeze a running guest with its disk writes completed and flushed, so that its
        disks hold one point in time until :meth:`resume` (an export of a running guest)."""
        raise HypervisorError(f"hypervisor {type(self).__name__} cannot pause instance {name}")

    @abstractmethod
    async def list_instances(self) -> list[RuntimeInfo]: ...

    @abstractmethod
    async def instance_info(self, name: str) -> RuntimeInfo | None: ...

    async def runstate(self, name: str) -> dict[str, Any] | None:
        """The guest's run state and its part in a migration, for ``migrate --cleanup``;
        None if it does not run here. ``instance_info`` folds these into running/paused; a
        hypervisor that knows more (a guest that left, one still arriving, one that arrived
        whole) says so: {"state", "migration_role", "migration_status"}."""
        info = await self.instance_info(name)
        if info is None:
            return None
        return {"state": info.state, "migration_role": info.migration,
                "migration_status": None}

    async def instance_usage(self, info: RuntimeInfo) -> dict[str, Any]:
        """What the running guest ``info`` used so far (herd.hypervisor.stats): cpu_seconds,
        rss_bytes, disks [{index, rd_bytes, ...}], nics [{index, rx_bytes, ...}]; keys a
        hypervisor cannot tell are left out (the fake one has no process)."""
        return {}

    @abstractmethod
    def console_socket(self, name: str) -> Path: ...

    async def vnc_endpoint(self, name: str) -> VncEndpoint | None:
        """Where and how noded reaches the running guest's VNC server, or None when it has
        none (no VNC, or not running here)."""
        return None

    # -- hotplug (gnt-instance modify --hotplug) ----------------------------------------------
    async def hotplug_add(self, name: str, device: DiskSpec | NicSpec) -> None:
        """Attach a disk or NIC to the running guest ``name``, all or nothing; the guest's
        runtime spec lists it afterwards. HypervisorError if this hypervisor cannot."""
        raise HypervisorError(f"the {self.name} hypervisor cannot hot-plug devices")

    async def hotplug_remove(self, name: str, kind: str, uuid: str, index: int) -> None:
        """Detach the ``kind`` ('disk' or 'nic') whose config uuid is ``uuid`` (``index``:
        its position in the runtime spec, for devices started before uuids were recorded);
        HypervisorError, the device kept, if the guest does not release it. A device the
        guest does not have (added without hotplug) is not an error: nothing to unplug."""
        raise HypervisorError(f"the {self.name} hypervisor cannot hot-plug devices")

    async def grow_disk(self, name: str, index: int, size_bytes: int,
                        uuid: str | None = None) -> None:
        """Tell the running guest ``name`` that disk ``index`` now has ``size_bytes`` (its
        volume grew underneath): grow-disk without a restart. A hypervisor that cannot says
        so; the caller then leaves the instance as it was."""
        raise HypervisorError(f"the {self.name} hypervisor cannot grow a disk of a running "
                              "instance")

    async def rename(self, old: str, new: str) -> None:
        """Carry the running instance ``old`` over to the name ``new`` (runtime files, sockets,
        console log), without touching the guest; refused if ``new`` is taken here."""
        raise HypervisorError(f"the {self.name} hypervisor cannot rename a running instance")

    # -- live migration (Ganeti's sequence) ---------------------------------------------------
    # target: accept_migration -> source: migrate -> target: finish_migration_target(True) ->
    # source: finish_migration_source.  On failure: target finish_migration_target(False),
    # then source abort_migration (resumes the guest there).  The guest is paused on the
    # target until finish_migration_target, so the caller can switch storage (the mirrored
    # template's mirror) between the two nodes while no side is running.

    @abstractmethod
    async def accept_migration(self, spec: InstanceSpec, port: int,
                               listen_address: str) -> RuntimeInfo:
        """Start ``spec`` paused, waiting for its state on ``listen_address:port`` (TCP).

        ``spec`` carries this node's disk paths; devices must match the source's.
        """

    @abstractmethod
    async def migrate(self, name: str, target_address: str, port: int, *, live: bool = True,
                      bandwidth_mibps: int | None = None,
                      downtime_ms: int | None = None,
                      then: Callable[[dict[str, Any]], Awaitable[None]] | None = None
                      ) -> dict[str, Any]:
        """Send the running instance to the target and wait until the transfer is done.

        ``live=False`` is Ganeti's --non-live: the guest is paused first. Bandwidth (MiB/s) and
        downtime (ms) default to the hvparams migration_bandwidth / migration_downtime.
        ``then``: run with the figures as soon as the transfer completed, before returning
        (the disks' hand-over); it may add to the figures and should not raise.
        Returns statistics (status, total_time_ms, downtime_ms, transferred_bytes, ...).
        On success the source is left paused; on failure or timeout the migration is
        cancelled, the guest keeps (or resumes) running here and HypervisorError is raised.
        """

    @abstractmethod
    async def finish_migration_source(self, name: str) -> None:
        """After a completed migration: end the source QEMU, remove its taps and files."""

    @abstractmethod
    async def finish_migration_target(
            self, name: str, success: bool,
            beforehand: Callable[[], Awaitable[Any]] | None = None) -> float | None:
        """success: resume the guest here. Failure: kill the incoming QEMU and clean up.
        The wall-clock time of the resume, if known (the end of the guest's pause).
        ``beforehand`` (success only): what must be done before the guest runs here (its
        disks turning primary); its error is raised and nothing resumes."""

    @abstractmethod
    async def abort_migration(self, name: str) -> None:
        """Undo this node's part of a migration: the target is killed, the source cancels
        the transfer and resumes its guest. Call on the target first: resuming the source
        while the target runs the guest would corrupt its disks."""

    @abstractmethod
    def node_facts(self) -> dict[str, Any]: ...


#: What a guest of each hypervisor leaves on its node, readable without importing the
#: hypervisor's code: the kvm hypervisor writes ``NAME`` + :data:`KVM_RUNTIME_SUFFIX` in the
#: instances' run folder per guest; the fake one keeps all its guests in one JSON file.
KVM_RUNTIME_SUFFIX = ".runtime.json"
FAKE_STATE_FILE = "fake-hypervisor.json"


def _kvm_guests_may_run(paths: HerdPaths) -> bool:
    folder = paths.instance_run_dir
    return folder.is_dir() and any(p.name.endswith(KVM_RUNTIME_SUFFIX) for p in folder.iterdir())


def _fake_guests_may_run(paths: HerdPaths) -> bool:
    state = paths.run_dir / FAKE_STATE_FILE
    return state.exists() and state.stat().st_size > 2  # more than "{}"


#: Hypervisor name -> ("module:Class", a cheap check for traces of its guests on a node). The
#: class is imported lazily so that importing base stays cheap; the check reads files only.
_REGISTRY: dict[str, tuple[str, Callable[[HerdPaths], bool]]] = {
    "kvm": ("herd.hypervisor.kvm:Kvm", _kvm_guests_may_run),
    "fake": ("herd.hypervisor.fake:FakeHypervisor", _fake_guests_may_run),
}


def hypervisor_names() -> tuple[str, ...]:
    """Every hypervisor a node can run guests with, kvm first (the default)."""
    return tuple(_REGISTRY)


def guests_may_run(paths: HerdPaths) -> bool:
    """Whether any hypervisor has left a trace of a guest on this node, without loading any
    hypervisor's code: noded's usage sampler asks every minute, and a node that never ran a
    guest keeps the hypervisors unimported (noded stays small at rest). False means no guest
    runs here; True that one may (a trace outlives a guest until it is cleaned up)."""
    return any(check(paths) for _target, check in _REGISTRY.values())


def get_hypervisor(name: str, paths: HerdPaths) -> Hypervisor:
    """The hypervisor called ``name`` (Ganeti's names), bound to one node's paths."""
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ParameterError(
            f"unknown hypervisor '{name}': expected one of {', '.join(sorted(_REGISTRY))}")
    module, cls_name = entry[0].split(":")
    cls: type[Hypervisor] = getattr(importlib.import_module(module), cls_name)
    return cls(paths)
