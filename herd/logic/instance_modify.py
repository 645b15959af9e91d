"""gnt-instance modify: change an instance's parameters, or convert its disk template.

Parameter changes (-B, -H, -O) are checked against the same tables as at creation and apply at
the next start, as in Ganeti. A conversion between ``file`` and ``drbd`` needs the instance
stopped: the data is copied into the new disks on the primary (and, for drbd, mirrored to the
new secondary), and the old disks are removed only once the config names the new ones. NIC
and disk additions/removals are not built yet and say so.
"""

from __future__ import annotations

from typing import Any

from herd import errors
from herd.jobs.locking import LockRequest
from herd.logic import drbd
from herd.logic.base import LogicalUnit
from herd.logic.hooks import HookTargets
from herd.logic.instance_common import instance_locks, is_running
from herd.logic.specs import hypervisor_class, instance_spec
from herd.objects import Instance, Node, params
from herd.objects.disk_ids import FILE_DRIVER, FileId
from herd.opcodes import OpInstanceSetParams
from herd.storage.file import relative_path

CONVERSIONS = {("file", "drbd"), ("drbd", "file")}


class LUInstanceSetParams(LogicalUnit[OpInstanceSetParams]):
    OPCODE = OpInstanceSetParams

    def locks(self) -> list[LockRequest]:
        return instance_locks(self.cfg, self.op.instance_name,
                              extra_nodes=(self.op.remote_node,))

    def cleanup(self) -> None:
        self.ctx.reservations.release(self)  # mirror ports of a conversion

    def hooks_targets(self) -> HookTargets:
        return HookTargets(instance=self.inst)

    async def check(self) -> None:
        op, cfg = self.op, self.cfg
        self.inst = cfg.get_instance(op.instance_name)
        unsupported = [name for name, given in (
            ("--net", op.nics), ("--disk", op.disks), ("-o/--os-type", op.os_name),
            ("--pnode", op.pnode), ("--offline/--online", op.offline is not None),
            ("runtime memory", op.runtime_mem)) if given]
        if unsupported:
            raise errors.OpPrereqError(f"modifying {', '.join(unsupported)} is not supported "
                                       "yet")
        self.hvparams = hypervisor_class(self.inst.hypervisor, self.ctx.paths) \
            .check_parameters(op.hvparams) if op.hvparams else {}
        self.beparams = params.check_beparams(op.beparams) if op.beparams else {}
        self.convert_to: str | None = None
        if op.disk_template and op.disk_template != self.inst.disk_template:
            pair = (self.inst.disk_template, op.disk_template)
            if pair not in CONVERSIONS:
                raise errors.OpPrereqError(
                    f"converting disk template {pair[0]} to {pair[1]} is not supported; "
                    "supported: file to drbd, drbd to file")
            if op.disk_template not in cfg.cluster.enabled_disk_templates:
                raise errors.OpPrereqError(f"disk template '{op.disk_template}' is not "
                                           "enabled in this cluster")
            pnode = cfg.nodes[self.inst.primary_node]
            if await is_running(self.ctx, self.inst, pnode):
                raise errors.OpPrereqError(f"instance {self.inst.name} must be stopped to "
                                           "convert its disks")
            self.snode: Node | None = None
            if op.disk_template == "drbd":
                if not op.remote_node:
                    raise errors.OpPrereqError("converting to drbd needs the secondary node "
                                               "(-n NODE)")
                self.snode = cfg.get_node(op.remote_node)
                if self.snode.uuid == pnode.uuid:
                    raise errors.OpPrereqError("the secondary node must differ from the "
                                               "primary")
                if self.snode.offline or self.snode.drained:
                    raise errors.OpPrereqError(f"node {self.snode.name} is offline or drained")
            self.convert_to = op.disk_template
        elif op.remote_node:
            raise errors.ParameterError("-n is only used when converting to drbd (-t drbd)")
        if not (self.hvparams or self.beparams or op.osparams or self.convert_to
                or op.remove_osparams or op.clear_osparams):
            raise errors.ParameterError("please give at least one of the parameters to modify")

    async def execute(self) -> list[list[str]]:
        op = self.op
        changes: list[list[str]] = []
        if self.convert_to is not None:
            await self._convert()
            changes.append(["disk_template", self.convert_to])
        inst = self.inst
        if self.hvparams:
            inst.hvparams = params.update_overrides(inst.hvparams, self.hvparams)
            changes += [[f"hv/{k}", str(v)] for k, v in self.hvparams.items()]
        if self.beparams:
            inst.beparams = params.update_overrides(inst.beparams, self.beparams)
            changes += [[f"be/{k}", str(v)] for k, v in self.beparams.items()]
        if op.clear_osparams:
            inst.osparams = {}
        for name in op.remove_osparams:
            inst.osparams.pop(name, None)
        if op.osparams:
            inst.osparams = params.update_overrides(inst.osparams, op.osparams)
            changes += [[f"os/{k}", str(v)] for k, v in op.osparams.items()]
        inst.touch()
        await self.ctx.config.save()
        for name, value in changes:
            self.feedback(f" - {name} -> {value}")
        return changes

    async def _convert(self) -> None:
        cfg, inst = self.cfg, self.inst
        pnode = cfg.nodes[inst.primary_node]
        prpc = self.ctx.rpc.node(pnode)
        old = Instance.from_dict(inst.to_dict())
        new = Instance.from_dict(inst.to_dict())
        new.disk_template = self.convert_to or ""
        new.disks_active = False
        if self.convert_to == "drbd":
            assert self.snode is not None
            ports = drbd.allocate_ports(cfg, len(new.disks), self.ctx.reservations, self)
            for index, disk in enumerate(new.disks):
                disk.dev_type = "drbd"
                disk.nodes = [pnode.uuid, self.snode.uuid]
                disk.logical_id = drbd.new_logical_id(ports[index], inst.name, disk, index)
        else:
            for index, disk in enumerate(new.disks):
                disk.dev_type = "file"
                disk.nodes = [pnode.uuid]
                disk.logical_id = FileId(FILE_DRIVER, relative_path(inst.name, disk.uuid, index))
                disk.params.pop(drbd.DISCARD_SECONDARY, None)
        old_spec = instance_spec(cfg, old, self.ctx.paths)["disks"]
        new_spec = instance_spec(cfg, new, self.ctx.paths)["disks"]
        created: list[tuple[Node, list[dict[str, Any]], bool]] = []
        try:
            if self.convert_to == "drbd":
                assert self.snode is not None
                self.feedback(f"* creating mirrored disks on {pnode.name} and "
                              f"{self.snode.name}")
                for node in (pnode, self.snode):
                    disks = drbd.mirror_disks(cfg, new, node.uuid)
                    await self.ctx.rpc.node(node).mirror_create(disks)
                    created.append((node, disks, True))
            else:
                await drbd.deactivate(self.ctx, old)  # nothing may write while we copy
                self.feedback(f"* creating file disks on {pnode.name}")
                await prpc.disks_create(new_spec)
                created.append((pnode, new_spec, False))
            self.feedback("* copying the data into the new disks")
            for source, target in zip(old_spec, new_spec, strict=True):
                await prpc.disk_copy(source, target)
            cfg.instances[inst.uuid] = new
            if self.convert_to == "drbd":
                self.feedback(f"* copying to the secondary {self.snode.name if self.snode else ''}")
                await drbd.activate(self.ctx, new, self.feedback,
                                    wait_for_sync=self.op.wait_for_sync)
                await drbd.deactivate(self.ctx, new)
        except BaseException:
            cfg.instances[inst.uuid] = inst
            for node, disks, mirrored in created:
                rpc = self.ctx.rpc.node(node)
                try:
                    await (rpc.mirror_remove(disks) if mirrored else rpc.disks_remove(disks))
                except errors.HerdError as exc:
                    self.feedback(f"  WARNING: cleanup on {node.name} failed: {exc.message}")
            raise
        self.inst = new
        # the config names the new disks from here on; the old ones can go
        await self.ctx.config.save()
        self.feedback("* removing the old disks")
        try:
            if old.disk_template == "drbd":
                for uuid in old.all_nodes:
                    await self.ctx.rpc.node(cfg.nodes[uuid]).mirror_remove(
                        drbd.mirror_disks(cfg, old, uuid))
            else:
                await prpc.disks_remove(old_spec)
        except errors.HerdError as exc:
            self.feedback(f"  WARNING: old disks left behind: {exc.message}")
