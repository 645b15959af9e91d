"""The ``lvm`` kind: one logical volume in a volume group of this node.

:class:`herd.storage.lvm.LvmNode` is synchronous and each LVM command costs a process start
(about 55 ms, plus any wait for the VG's lock), so every call runs in a thread: noded keeps
answering pings and other RPCs meanwhile. Several devices' ``info`` cost one ``lvs`` per volume
group (:meth:`LvmDevice.info_many`), not one per device: verify and queries ask about all the
disks of a node at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from herd.storage.blockdev.base import Attached, DeviceBase, DeviceInfo
from herd.storage.blockdev.spec import DeviceSpec
from herd.storage.lvm import LogicalVolume, LvmNode

#: Tag on every LV Herd makes, so that a listing tells them from the admin's own LVs.
HERD_TAG = "herd.disk"


class LvmDevice(DeviceBase):
    def __init__(self, spec: DeviceSpec, factory: Any) -> None:
        super().__init__(spec)
        self.vg = str(spec.vg)
        self.lv = str(spec.lv)
        self._factory = factory

    @property
    def node(self) -> LvmNode:
        """Resolved on use: a node without the VG can still answer for its other devices."""
        node: LvmNode = self._factory.lvm_node(self.vg)
        return node

    async def create(self) -> None:
        await asyncio.to_thread(self.node.create, self.lv, self.spec.size_mib, (HERD_TAG,))

    async def remove(self) -> None:
        await asyncio.to_thread(self.node.remove, self.lv)

    async def assemble(self, role: str = "primary", *, sync: str = "auto",
                       allow_degraded: bool = False) -> Attached:
        self.check_role(role)
        return Attached(await asyncio.to_thread(self.node.assemble, self.lv))

    async def local_path(self) -> str:
        """The LV's block device, activating it: an OS script or a copy needs it usable."""
        return await asyncio.to_thread(self.node.assemble, self.lv)

    async def shutdown(self) -> None:
        await asyncio.to_thread(self.node.deactivate, self.lv)

    async def grow(self, size_mib: int) -> None:
        await asyncio.to_thread(self.node.grow, self.lv, size_mib)

    async def info(self) -> DeviceInfo:
        return (await self.info_many([self]))[0]

    def _info_from(self, lv: LogicalVolume | None) -> DeviceInfo:
        if lv is None:
            return DeviceInfo(uuid=self.spec.uuid, kind=self.spec.kind, exists=False)
        return DeviceInfo(uuid=self.spec.uuid, kind=self.spec.kind, exists=True,
                          size_bytes=lv.size, path=lv.path, active=lv.path is not None)

    @classmethod
    async def info_many(cls, devices: Sequence[Any]) -> list[DeviceInfo]:
        """One ``lvs`` per volume group for all of ``devices``."""
        by_vg: dict[str, list[LvmDevice]] = {}
        for device in devices:
            by_vg.setdefault(device.vg, []).append(device)
        found: dict[tuple[str, str], LogicalVolume] = {}
        for vg, group in by_vg.items():
            lvs = await asyncio.to_thread(group[0].node.list_lvs)
            found.update(((vg, lv.name), lv) for lv in lvs)
        return [d._info_from(found.get((d.vg, d.lv))) for d in devices]
