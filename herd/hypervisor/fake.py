"""A hypervisor with no processes, for control-plane scale tests.

State lives in one JSON file per node so that, like kvm, a restarted noded still "sees" its
instances; every operation is instant. It accepts any hvparams (it has no hardware to map).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, ClassVar

from herd.errors import HypervisorError
from herd.hypervisor.base import Hypervisor, InstanceSpec, RuntimeInfo
from herd.paths import HerdPaths


class FakeHypervisor(Hypervisor):
    """Instant, process-less instances recorded in run_dir/fake-hypervisor.json."""

    name: ClassVar[str] = "fake"

    def __init__(self, paths: HerdPaths) -> None:
        super().__init__(paths)
        self._file = paths.run_dir / "fake-hypervisor.json"

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
        data = self._load()
        if spec.name in data:
            raise HypervisorError(f"instance {spec.name} is already running")
        info = RuntimeInfo(name=spec.name, uuid=spec.uuid, pid=0,
                           state="paused" if paused else "running", memory=spec.memory,
                           vcpus=spec.vcpus, accel="tcg", started=time.time(), spec=spec)
        data[spec.name] = info.to_dict()
        self._save(data)
        return info

    async def stop(self, name: str, timeout: float) -> None:
        data = self._load()
        if data.pop(name, None) is not None:
            self._save(data)

    async def reboot(self, name: str) -> None:
        if name not in self._load():
            raise HypervisorError(f"instance {name} is not running")

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

    def node_facts(self) -> dict[str, Any]:
        return {"hypervisor": self.name, "accel": "tcg", "kvm_usable": False,
                "kvm_reason": "fake hypervisor", "qemu_version": ""}
