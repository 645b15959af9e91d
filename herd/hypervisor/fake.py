"""A hypervisor with no processes, for control-plane scale tests.

State lives in one JSON file per node so that, like kvm, a restarted noded still "sees" its
instances; every operation is instant. It accepts any hvparams (it has no hardware to map).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

from herd.errors import HypervisorError
from herd.hypervisor.base import (
    FAKE_STATE_FILE,
    DiskSpec,
    Hypervisor,
    InstanceSpec,
    NicSpec,
    RuntimeInfo,
)
from herd.paths import HerdPaths


def migration_uri(host: str, port: int) -> str:
    """The URI kvm would use (kept here: importing the kvm package is not cheap)."""
    if not host or not 0 < port < 65536:
        raise HypervisorError(f"invalid migration address {host!r} port {port}")
    return f"tcp:[{host}]:{port}" if ":" in host else f"tcp:{host}:{port}"


class FakeHypervisor(Hypervisor):
    """Instant, process-less instances recorded in run_dir/fake-hypervisor.json."""

    name: ClassVar[str] = "fake"

    def __init__(self, paths: HerdPaths) -> None:
        super().__init__(paths)
        self._file = paths.run_dir / FAKE_STATE_FILE

    @classmethod
    def parameter_defaults(cls) -> dict[str, Any]:
        return {"migration_mode": "live"}

    @classmethod
    def check_parameters(cls, hvparams: dict[str, Any]) -> dict[str, Any]:
        return dict(hvparams)

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data: dict[str, dict[str, Any]] = json.loads(self._file.read_text())
        except (OSError, ValueError):
            return {}
        return data

    def _save(self, data: dict[str, dict[str, Any]]) -> None:
        self._file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._file.with_name(f".{self._file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self._file)

    async def start(self, spec: InstanceSpec, *, paused: bool = False) -> RuntimeInfo:
        return self._add(spec, paused, None)

    def _add(self, spec: InstanceSpec, paused: bool, migration: str | None) -> RuntimeInfo:
        data = self._load()
        if spec.name in data:
            raise HypervisorError(f"instance {spec.name} is already running")
        info = RuntimeInfo(name=spec.name, uuid=spec.uuid, pid=0,
                           state="paused" if paused else "running", memory=spec.memory,
                           vcpus=spec.vcpus, accel="tcg", started=time.time(), spec=spec,
                           migration=migration)
        data[spec.name] = info.to_dict()
        self._save(data)
        return info

    async def instance_usage(self, info: RuntimeInfo) -> dict[str, Any]:
        """Made-up but consistent counters (the fake guest has no process): a tenth of a core
        per vCPU since it started, half its memory resident, no I/O. Enough for the scale
        tests and the web manager's graphs to have something that grows."""
        elapsed = max(0.0, time.time() - info.started)
        return {"cpu_seconds": round(0.1 * info.vcpus * elapsed, 3),
                "rss_bytes": info.memory * 2**19, "disks": [], "nics": []}

    def _get(self, data: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
        if name not in data:
            raise HypervisorError(f"instance {name} is not running")
        return data[name]

    # -- migration: the kvm sequence and its checks, with instant transfers --------------------
    async def accept_migration(self, spec: InstanceSpec, port: int,
                               listen_address: str) -> RuntimeInfo:
        migration_uri(listen_address, port)
        return self._add(spec, True, "target")

    async def migrate(self, name: str, target_address: str, port: int, *, live: bool = True,
                      bandwidth_mibps: int | None = None, downtime_ms: int | None = None,
                      timeout: float | None = None,
                      then: Callable[[dict[str, Any]], Awaitable[None]] | None = None
                      ) -> dict[str, Any]:
        data = self._load()
        inst = self._get(data, name)
        if inst.get("migration"):
            raise HypervisorError(f"instance {name} is already migrating ({inst['migration']})")
        inst.update(migration="source", state="paused", was_running=inst["state"] == "running")
        self._save(data)
        total = int(inst["memory"]) << 20
        stats: dict[str, Any] = {
            "status": "completed", "total_time_ms": 0, "downtime_ms": 0, "setup_time_ms": 0,
            "transferred_bytes": total, "ram_total_bytes": total, "live": live,
            "target": migration_uri(target_address, port), "bandwidth_mibps": bandwidth_mibps,
            "downtime_limit_ms": downtime_ms}
        if then is not None:
            await then(stats)
        return stats

    async def finish_migration_source(self, name: str) -> None:
        data = self._load()
        if name not in data:
            return
        if data[name].get("migration") != "source":
            raise HypervisorError(f"instance {name} has not migrated away from this node")
        del data[name]
        self._save(data)

    async def finish_migration_target(
            self, name: str, success: bool,
            beforehand: Callable[[], Awaitable[Any]] | None = None) -> None:
        data = self._load()
        if not success:
            if data.pop(name, None) is not None:
                self._save(data)
            return
        inst = self._get(data, name)
        if beforehand is not None:
            await beforehand()
            data = self._load()
            inst = self._get(data, name)
        inst.update(migration=None, state="running")
        self._save(data)

    async def abort_migration(self, name: str) -> None:
        data = self._load()
        inst = data.get(name)
        if inst is None or not inst.get("migration"):
            return
        if inst["migration"] == "target":
            del data[name]
        else:
            inst.update(migration=None,
                        state="running" if inst.pop("was_running", True) else "paused")
        self._save(data)

    async def stop(self, name: str, timeout: float) -> None:
        data = self._load()
        if data.pop(name, None) is not None:
            self._save(data)

    async def reboot(self, name: str) -> None:
        if name not in self._load():
            raise HypervisorError(f"instance {name} is not running")

    async def pause(self, name: str) -> None:
        data = self._load()
        if name not in data:
            raise HypervisorError(f"instance {name} is not running")
        data[name]["state"] = "paused"
        self._save(data)

    async def resume(self, name: str) -> None:
        data = self._load()
        if name not in data:
            raise HypervisorError(f"instance {name} is not running")
        data[name]["state"] = "running"
        self._save(data)

    async def list_instances(self) -> list[RuntimeInfo]:
        return [RuntimeInfo.from_dict(d) for d in self._load().values()]

    async def instance_info(self, name: str) -> RuntimeInfo | None:
        d = self._load().get(name)
        return None if d is None else RuntimeInfo.from_dict(d)

    def console_socket(self, name: str) -> Path:
        return self.paths.instance_run_dir / f"{name}.serial"

    async def hotplug_add(self, name: str, device: DiskSpec | NicSpec) -> None:
        """The device joins the guest's spec (what kvm's runtime file would list)."""
        data = self._load()
        spec = self._get(data, name)["spec"]
        spec["disks" if isinstance(device, DiskSpec) else "nics"].append(asdict(device))
        self._save(data)

    async def hotplug_remove(self, name: str, kind: str, uuid: str, index: int) -> None:
        data = self._load()
        items = self._get(data, name)["spec"]["disks" if kind == "disk" else "nics"]
        items[:] = [d for d in items if d.get("uuid") != uuid]  # absent: nothing to do
        self._save(data)

    async def grow_disk(self, name: str, index: int, size_bytes: int,
                        uuid: str | None = None) -> None:
        data = self._load()
        inst = self._get(data, name)
        sizes = inst.setdefault("disk_sizes", {})
        sizes[str(index)] = size_bytes
        self._save(data)

    async def rename(self, old: str, new: str) -> None:
        data = self._load()
        inst = self._get(data, old)
        if new in data:
            raise HypervisorError(f"instance {new} is already running here")
        inst["name"] = new
        inst["spec"]["name"] = new
        data[new] = data.pop(old)
        self._save(data)

    def node_facts(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"hypervisor": self.name, "accel": "tcg", "kvm_usable": False,
                                 "kvm_reason": "fake hypervisor", "qemu_version": ""}
        return facts
