"""The ``file`` kind: a sparse raw file under the node's file storage directory.

A thin wrapper of :class:`herd.storage.file.FileStorage`, which keeps the path checks (relative,
inside the directory) and the free-space check. The calls are synchronous and cheap (create
truncates a sparse file), so they run on the event loop as noded always ran them.
"""

from __future__ import annotations

import os
from typing import Any

from herd.errors import StorageError
from herd.storage.blockdev.base import DeviceBase, DeviceInfo
from herd.storage.blockdev.spec import DeviceSpec
from herd.storage.file import FileStorage


class FileDevice(DeviceBase):
    def __init__(self, spec: DeviceSpec, factory: Any) -> None:
        super().__init__(spec)
        self.storage: FileStorage = factory.file_storage
        self.rel = str(spec.path)

    async def create(self) -> None:
        self.storage.create(self.rel, self.spec.size_mib)

    async def remove(self) -> None:
        self.storage.remove(self.rel)

    async def local_path(self) -> str:
        path = self.storage.path_for(self.rel)
        if not path.is_file():
            raise StorageError(f"{self.spec.describe()} does not exist on this node ({path})")
        return str(path)

    async def grow(self, size_mib: int) -> None:
        path = await self.local_path()
        if os.stat(path).st_size < size_mib * 1024 * 1024:
            with open(path, "r+b") as handle:
                handle.truncate(size_mib * 1024 * 1024)
                os.fsync(handle.fileno())

    async def undo_grow(self, size_mib: int) -> None:
        path = await self.local_path()
        if os.stat(path).st_size > size_mib * 1024 * 1024:
            with open(path, "r+b") as handle:
                handle.truncate(size_mib * 1024 * 1024)
                os.fsync(handle.fileno())

    async def info(self) -> DeviceInfo:
        path = self.storage.path_for(self.rel)
        try:
            size: int | None = path.stat().st_size
        except FileNotFoundError:
            size = None
        return DeviceInfo(uuid=self.spec.uuid, kind=self.spec.kind, exists=size is not None,
                          size_bytes=size, path=str(path), active=size is not None)
