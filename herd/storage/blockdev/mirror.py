"""The ``mirror`` kind: a data volume (file or LV) replicated to the peer node.

The replication itself is :class:`herd.storage.mirror.manager.MirrorManager` (QSD, generations,
sync decisions); this class only gives it the :class:`BlockDevice` face and turns a
:class:`DeviceSpec` into the :class:`MirrorDisk` the manager and its runtime files know. A spec
whose data is the file the old MirrorDisk named by ``relpath`` gives the very same MirrorDisk,
so a new noded adopts the storage daemons an older one started.
"""

from __future__ import annotations

from typing import Any

from herd.errors import StorageError
from herd.storage.blockdev.base import Attached, DeviceBase, DeviceInfo
from herd.storage.blockdev.spec import FILE, DeviceSpec
from herd.storage.mirror import graph
from herd.storage.mirror.model import MirrorDisk


def to_mirror_disk(spec: DeviceSpec) -> MirrorDisk:
    """The MirrorDisk for a mirror spec (``data`` and ``meta`` only when they say more than
    ``relpath`` does, which keeps runtime files as older nodeds wrote them)."""
    data = spec.data
    assert data is not None  # DeviceSpec checks that a mirror has its data volume
    legacy = data.kind == FILE and spec.meta is None
    relpath = str(data.path) if data.kind == FILE else (spec.name or data.describe())
    return MirrorDisk(uuid=spec.uuid, index=spec.index or 0, size=spec.size_mib,
                      relpath=relpath, port=int(spec.port or 0),
                      local_ip=spec.local_ip or "", peer_ip=spec.peer_ip or "",
                      data=None if legacy else data.to_dict(), meta=spec.meta)


class MirrorDevice(DeviceBase):
    def __init__(self, spec: DeviceSpec, factory: Any) -> None:
        super().__init__(spec)
        self._factory = factory
        self.data = factory.device(spec.data)
        self.disk = to_mirror_disk(spec)

    @property
    def manager(self) -> Any:
        """Loaded on first use: ``info`` and ``local_path`` (queries, OS scripts) need only the
        data volume, not QMP and the rest of the manager (about 9 MiB of noded's memory)."""
        return self._factory.mirror

    async def create(self) -> None:
        await self.manager.create(self.disk)

    async def remove(self) -> None:
        await self.manager.remove(self.disk)

    async def assemble(self, role: str = "primary", *, sync: str = "auto",
                       allow_degraded: bool = False) -> Attached:
        self.check_role(role)
        if role == "primary":
            state = await self.manager.start_primary(self.disk, sync,
                                                     allow_degraded=allow_degraded)
            return Attached(str(state.vm_uri))
        await self.manager.start_secondary(self.disk)
        # where a secondary serves its copy is fixed (no status: the live migration's
        # hand-over turns the source secondary while the guest is paused, and a status
        # reads the node's TCP table for the peer's link, 2-3 ms)
        return Attached(graph.vm_uri_tcp(self.disk.uuid, self.disk.local_ip, self.disk.port))

    async def shutdown(self) -> None:
        await self.manager.stop(self.disk)

    async def grow(self, size_mib: int) -> None:
        """This node's copy, while the mirror is down (see MirrorManager.grow)."""
        await self.manager.grow(self.disk, size_mib)

    async def undo_grow(self, size_mib: int) -> None:
        await self.manager.undo_grow(self.disk, size_mib)

    async def written_offline(self) -> None:
        """An OS script wrote this copy without the mirror: it moves to a new generation, so
        that the next activation copies it whole to the peer (an ancestor generation there)."""
        await self.manager.mark_written(self.disk)

    async def info(self) -> DeviceInfo:
        """The data volume's figures under the mirror's uuid and kind."""
        data = await self.data.info()
        return DeviceInfo(uuid=self.spec.uuid, kind=self.spec.kind, exists=data.exists,
                          size_bytes=data.size_bytes, path=data.path, active=data.active)

    async def local_path(self) -> str:
        """The data volume: OS scripts write it before the first sync (no daemon yet)."""
        return await self.data.local_path()

    async def vm_path(self, incoming: bool = False) -> str:
        """The primary's mirrored export; for the VM receiving a live migration, the
        secondary's."""
        state = await self.manager.status(self.disk)
        if incoming and state.role == "secondary" and state.vm_uri:
            return str(state.vm_uri)
        if state.role != "primary" or not state.vm_uri:
            raise StorageError(f"disk {self.disk.index} is not active as primary on this "
                               "node (activate the instance's disks first)")
        return str(state.vm_uri)

    async def sync_status(self) -> dict[str, Any] | None:
        return dict((await self.manager.status(self.disk)).to_dict())
