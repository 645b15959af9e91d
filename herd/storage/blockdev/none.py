"""The ``none`` kind: a diskless instance's disks have nothing on any node.

Every operation succeeds and does nothing, so callers never special-case diskless.
"""

from __future__ import annotations

from typing import Any

from herd.errors import StorageError
from herd.storage.blockdev.base import Attached, DeviceBase, DeviceInfo


class NoneDevice(DeviceBase):
    def __init__(self, spec: Any, factory: Any = None) -> None:
        super().__init__(spec)

    async def create(self) -> None:
        return None

    async def remove(self) -> None:
        return None

    async def assemble(self, role: str = "primary", *, sync: str = "auto",
                       allow_degraded: bool = False) -> Attached:
        raise StorageError(f"{self.spec.describe()} has no data to use on this node")

    async def grow(self, size_mib: int) -> None:
        return None

    async def info(self) -> DeviceInfo:
        return DeviceInfo(uuid=self.spec.uuid, kind=self.spec.kind, exists=True,
                          size_bytes=0)

    async def local_path(self) -> str:
        raise StorageError(f"{self.spec.describe()} has no local path on this node")
