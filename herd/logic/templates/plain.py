"""The ``plain`` template: one LVM logical volume per disk on the primary node, no second copy.

The LV is in the cluster's volume group (``gnt-cluster init/modify --vg-name``), named by the
disk's uuid (``<uuid>_plain``: renaming an instance moves nothing, and a conversion can copy
into a second volume of the same disk, ``<uuid>_drbd``). The one-node actions are those of
the file template (``blockdev_*`` RPCs on DeviceSpecs, one call per node); what differs is
where the volume lives, and that an LV must be activated to be used: by a start or an OS
script on the node (a loop device where the kernel lacks device-mapper, else /dev/VG/LV), and
deactivated again by a shutdown or deactivate-disks, so that a stopped instance holds no
loop device.
"""

from __future__ import annotations

from herd import errors
from herd.logic.base import MasterContext
from herd.logic.templates.base import Claim, Feedback, Volumes
from herd.logic.templates.file import FileTemplate
from herd.objects import ConfigData, Disk, Instance
from herd.objects.disk_ids import LvId
from herd.storage.blockdev.spec import LVM, DeviceSpec


def lv_name(disk: Disk, template: str) -> str:
    """The LV of ``disk`` for ``template`` (``<uuid>_<template>``: by uuid, so that renaming
    the instance renames nothing; verify's LV owners assume this name)."""
    return f"{disk.uuid}_{template}"


def cluster_vg(cfg: ConfigData, template: str) -> str:
    """The cluster's VG, or the one-line refusal saying how to set one."""
    vg = cfg.cluster.volume_group_name
    if not vg:
        raise errors.OpPrereqError(f"disk template '{template}' needs the cluster's volume "
                                   "group: set one with 'gnt-cluster modify --vg-name VG'")
    return vg


class PlainTemplate(FileTemplate):
    name = "plain"
    copies = 1
    converts_to = frozenset({"drbd"})

    def uses_vg(self, cfg: ConfigData) -> bool:
        return True

    def assign(self, cfg: ConfigData, inst: Instance, disks: list[Disk], pnode: str,
               snode: str | None, claim: Claim) -> None:
        from herd.storage.lvm import validate_lv_name

        vg = cluster_vg(cfg, self.name)
        for disk in disks:
            disk.dev_type = self.name
            disk.nodes = [pnode]
            disk.logical_id = LvId(vg, validate_lv_name(lv_name(disk, self.name), vg))

    @staticmethod
    def _lv(inst: Instance, disk: Disk) -> LvId:
        if not isinstance(disk.logical_id, LvId):
            raise errors.ConfigurationError(
                f"disk {disk.uuid} of {inst.name} has no LV id ({disk.logical_id})")
        return disk.logical_id

    def device_specs(self, cfg: ConfigData, inst: Instance, node: str,
                     indices: list[int] | None = None) -> list[DeviceSpec]:
        out = []
        for index, disk in self.disks_on(inst, node, indices):
            ident = self._lv(inst, disk)
            out.append(DeviceSpec(uuid=disk.uuid, kind=LVM, size_mib=disk.size,
                                  name=ident.display(), index=index, vg=ident.vg, lv=ident.lv))
        return out

    def volumes_on(self, inst: Instance, node: str) -> Volumes:
        return Volumes()  # LVs are checked by verify's LV listing, not as files

    async def activate(self, ctx: MasterContext, inst: Instance, feedback: Feedback, *,
                       wait_for_sync: bool = False) -> list[list[str]]:
        """Activate the primary's LVs (one call): their block devices, as Ganeti lists them."""
        cfg = ctx.config.data
        pnode = cfg.nodes[inst.primary_node]
        specs = self.device_specs(cfg, inst, pnode.uuid)
        if not specs:
            return []
        paths = await ctx.rpc.node(pnode).blockdev_assemble(self._dicts(specs))
        return [[pnode.name, f"disk/{spec.index}", str(path)]
                for spec, path in zip(specs, paths, strict=True)]

    async def deactivate(self, ctx: MasterContext, inst: Instance,
                         skip: set[str] | None = None) -> None:
        """Deactivate the primary's LVs (detach their loop devices), unless it is down."""
        cfg = ctx.config.data
        pnode = cfg.nodes[inst.primary_node]
        if pnode.offline or pnode.uuid in (skip or set()):
            return
        specs = self.device_specs(cfg, inst, pnode.uuid)
        if specs:
            await ctx.rpc.node(pnode).blockdev_shutdown(self._dicts(specs))
