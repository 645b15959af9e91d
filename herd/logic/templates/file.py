"""The ``file`` template: one raw file per disk on the primary node, no second copy.

Volumes are handled with the ``blockdev_*`` node RPCs (DeviceSpecs), one call per node.
"""

from __future__ import annotations

from typing import Any

from herd import errors
from herd.logic import intents
from herd.logic.base import MasterContext
from herd.logic.templates.base import Claim, DiskTemplate, Feedback, Volumes
from herd.objects import ConfigData, Disk, Instance, Node
from herd.objects.disk_ids import FILE_DRIVER, FileId
from herd.storage.blockdev.spec import FILE, DeviceSpec
from herd.storage.file import volume_name


class FileTemplate(DiskTemplate):
    name = "file"
    copies = 1
    converts_to = frozenset({"drbd"})
    grows_online = True

    def assign(self, cfg: ConfigData, inst: Instance, disks: list[Disk], pnode: str,
               snode: str | None, claim: Claim) -> None:
        super().assign(cfg, inst, disks, pnode, snode, claim)
        for disk in disks:
            disk.logical_id = FileId(FILE_DRIVER, volume_name(disk.uuid, self.name))

    @staticmethod
    def _path(inst: Instance, disk: Disk) -> str:
        path = disk.logical_id.file_path()
        if path is None:
            raise errors.ConfigurationError(
                f"disk {disk.uuid} of {inst.name} has no file id ({disk.logical_id})")
        return path

    def device_specs(self, cfg: ConfigData, inst: Instance, node: str,
                     indices: list[int] | None = None) -> list[DeviceSpec]:
        out = []
        for index, disk in self.disks_on(inst, node, indices):
            path = self._path(inst, disk)
            out.append(DeviceSpec(uuid=disk.uuid, kind=FILE, size_mib=disk.size, name=path,
                                  index=index, path=path))
        return out

    def volumes_on(self, inst: Instance, node: str) -> Volumes:
        return Volumes(files=frozenset(self._path(inst, d) for d in inst.disks
                                       if node in d.nodes))

    def intent_items(self, cfg: ConfigData, inst: Instance) -> list[Any]:
        return [intents.Item(node, intents.DEVICE, spec.to_dict()) for node in inst.all_nodes
                for spec in self.device_specs(cfg, inst, node)]

    @staticmethod
    def _dicts(specs: list[DeviceSpec]) -> list[dict[str, Any]]:
        return [s.to_dict() for s in specs]

    async def create(self, ctx: MasterContext, inst: Instance, feedback: Feedback, *,
                     rollback: bool = True) -> None:
        # one node, and blockdev_create is all or none there: nothing to roll back here
        cfg = ctx.config.data
        pnode = cfg.nodes[inst.primary_node]
        feedback(f"* creating instance disks on {pnode.name}...")
        await ctx.rpc.node(pnode).blockdev_create(
            self._dicts(self.device_specs(cfg, inst, pnode.uuid)))

    async def remove(self, ctx: MasterContext, inst: Instance, feedback: Feedback, *,
                     stopped: bool = False) -> list[str]:
        cfg = ctx.config.data
        problems = []
        for uuid in inst.all_nodes:
            node = cfg.nodes[uuid]
            specs = self.device_specs(cfg, inst, uuid)
            if not specs:
                continue
            try:
                await ctx.rpc.node(node).blockdev_remove(self._dicts(specs))
            except errors.HerdError as exc:
                problems.append(f"could not remove disks on {node.name}: {exc.message}")
        return problems

    async def _infos(self, ctx: MasterContext, inst: Instance, node: Node,
                     indices: list[int] | None) -> list[tuple[DeviceSpec, dict[str, Any]]]:
        specs = self.device_specs(ctx.config.data, inst, node.uuid, indices)
        if not specs:
            return []
        infos = await ctx.rpc.node(node).blockdev_info(self._dicts(specs))
        return list(zip(specs, infos, strict=True))

    async def missing(self, ctx: MasterContext, inst: Instance, node: Node,
                      indices: list[int] | None = None) -> list[int]:
        return [int(spec.index or 0) for spec, info in await self._infos(ctx, inst, node, indices)
                if not info["exists"]]

    async def recreate(self, ctx: MasterContext, inst: Instance, node: Node,
                       indices: list[int]) -> None:
        specs = self.device_specs(ctx.config.data, inst, node.uuid, indices)
        if specs:
            await ctx.rpc.node(node).blockdev_create(self._dicts(specs))

    async def activate(self, ctx: MasterContext, inst: Instance, feedback: Feedback, *,
                       wait_for_sync: bool = False) -> list[list[str]]:
        pnode = ctx.config.data.nodes[inst.primary_node]
        rows = []
        for spec, info in await self._infos(ctx, inst, pnode, None):
            if not info["exists"]:
                raise errors.OpExecError(f"disk/{spec.index} of {inst.name} is missing on "
                                         f"node {pnode.name}")
            rows.append([pnode.name, f"disk/{spec.index}", str(info["path"])])
        return rows
