"""gnt-instance modify: change an instance's parameters, or convert its disk template.

Parameter changes (-B, -H, -O) are checked against the same tables as at creation and apply at
the next start, as in Ganeti. A conversion between ``file`` and ``drbd`` needs the instance
stopped: the data is copied into the new disks on the primary (and, for drbd, mirrored to the
new secondary), and the old disks are removed only once the config names the new ones. NICs
and disks are added, removed and changed by :mod:`herd.logic.instance_devices` (hot-plugged
into a running guest with --hotplug); what a running guest gets only at its next restart is
said in the job's output.
"""

from __future__ import annotations

from herd import errors
from herd.jobs.locking import LockRequest
from herd.logic import group_checks, instance_mods, network_port
from herd.logic.base import LogicalUnit
from herd.logic.hooks import HookTargets
from herd.logic.instance_common import check_vg_space, instance_locks, is_running
from herd.logic.instance_devices import DeviceChanges
from herd.logic.specs import hypervisor_class
from herd.logic.templates import Claim, DiskTemplate, all_templates, by_name, template_of
from herd.objects import Instance, Node, params
from herd.opcodes import OpInstanceSetParams


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
            ("-o/--os-type", op.os_name),
            ("--pnode", op.pnode), ("--offline/--online", op.offline is not None),
            ("runtime memory", op.runtime_mem)) if given]
        if unsupported:
            raise errors.OpPrereqError(f"modifying {', '.join(unsupported)} is not supported "
                                       "yet")
        self.hvparams = hypervisor_class(self.inst.hypervisor, self.ctx.paths) \
            .check_parameters(op.hvparams) if op.hvparams else {}
        self.beparams = params.check_beparams(op.beparams) if op.beparams else {}
        self.convert_to: DiskTemplate | None = None
        pnode = cfg.nodes[self.inst.primary_node]
        self.running = False
        if op.nics or op.disks:
            self.running = await is_running(self.ctx, self.inst, pnode)
        elif self.hvparams or self.beparams:
            try:  # only for the notice: a modify of a stopped node's instance still works
                self.running = await is_running(self.ctx, self.inst, pnode)
            except errors.HerdError:
                self.running = False
        self.devices = DeviceChanges(self, self.inst, self.running)
        if op.nics or op.disks:
            if op.disk_template:
                raise errors.ParameterError("disk template conversion cannot be combined "
                                            "with NIC or disk changes")
            await self.devices.prepare(op.nics, op.disks, op.hotplug, op.hotplug_if_possible)
        source = template_of(self.inst)
        if op.disk_template and op.disk_template != source.name:
            if op.disk_template not in source.converts_to:
                raise errors.OpPrereqError(
                    f"converting disk template {source.name} to {op.disk_template} is not "
                    f"supported; supported: {self._conversions()}")
            target = by_name(op.disk_template)
            if op.disk_template not in cfg.cluster.enabled_disk_templates:
                raise errors.OpPrereqError(f"disk template '{op.disk_template}' is not "
                                           "enabled in this cluster")
            pnode = cfg.nodes[self.inst.primary_node]
            if await is_running(self.ctx, self.inst, pnode):
                raise errors.OpPrereqError(f"instance {self.inst.name} must be stopped to "
                                           "convert its disks")
            self.snode: Node | None = None
            if target.needs_secondary:
                if not op.remote_node:
                    raise errors.OpPrereqError(f"converting to {target.name} needs the "
                                               "secondary node (-n NODE)")
                self.snode = cfg.get_node(op.remote_node)
                if self.snode.uuid == pnode.uuid:
                    raise errors.OpPrereqError("the secondary node must differ from the "
                                               "primary")
                if self.snode.offline or self.snode.drained:
                    raise errors.OpPrereqError(f"node {self.snode.name} is offline or drained")
                group_checks.check_same_group(cfg, pnode, self.snode)
            # the new layout, to see what it needs (ports are claimed by execute)
            probe = Instance.from_dict(self.inst.to_dict())
            target.assign(cfg, probe, probe.disks, pnode.uuid,
                          self.snode.uuid if self.snode is not None else None,
                          Claim(None, self))
            await check_vg_space(self.ctx, target.vg_space(probe),
                                 f"the {target.name} disks of {self.inst.name}")
            self.convert_to = target
        elif op.remote_node:
            raise errors.ParameterError("-n is only used when converting to a mirrored "
                                        "template (-t drbd)")
        if not (self.hvparams or self.beparams or op.osparams or self.convert_to
                or op.remove_osparams or op.clear_osparams or not self.devices.empty):
            raise errors.ParameterError("please give at least one of the parameters to modify")

    async def execute(self) -> list[list[str]]:
        op = self.op
        changes: list[list[str]] = []
        if self.convert_to is not None:
            await self._convert()
            changes.append(["disk_template", self.convert_to.name])
        if not self.devices.empty:
            self.inst = await self.devices.apply(changes)
            self.cfg.instances[self.inst.uuid] = self.inst
        inst = self.inst
        if self.hvparams:
            inst.hvparams = params.update_overrides(inst.hvparams, self.hvparams)
            changes += [[f"hv/{k}", str(v)] for k, v in self.hvparams.items()]
            if network_port.update(self.ctx, inst, self) != network_port.KEEP:
                changes.append(["network_port", str(inst.network_port)])
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
        if not self.devices.empty:
            await self.devices.finish(inst)
        for name, value in changes:
            self.feedback(f" - {name} -> {value}")
        if self.running:
            pending = instance_mods.restart_needed(self.beparams, self.hvparams,
                                                   self.devices.deferred)
            if pending:
                self.feedback(instance_mods.restart_notice(inst.name, pending))
        return changes

    @staticmethod
    def _conversions() -> str:
        """The conversions this version makes, for a refusal's message."""
        return ", ".join(f"{t.name} to {other}" for t in all_templates()
                         for other in sorted(t.converts_to))

    async def _convert(self) -> None:
        """Copy the disks into new ones of the target template on the primary (the instance
        is stopped), then let the target fill its other copies. The old disks are removed
        only once the config names the new ones; a failure before removes the new ones."""
        cfg, inst = self.cfg, self.inst
        target = self.convert_to
        assert target is not None
        source = template_of(inst)
        pnode = cfg.nodes[inst.primary_node]
        prpc = self.ctx.rpc.node(pnode)
        old = Instance.from_dict(inst.to_dict())
        new = Instance.from_dict(inst.to_dict())
        new.disk_template = target.name
        new.disks_active = False
        for disk in new.disks:
            source.forget(disk)
        target.assign(cfg, new, new.disks, pnode.uuid,
                      self.snode.uuid if self.snode is not None else None,
                      Claim(self.ctx.reservations, self))
        old_spec = source.device_specs(cfg, old, pnode.uuid)
        new_spec = target.device_specs(cfg, new, pnode.uuid)
        created = False
        try:
            await source.deactivate(self.ctx, old)  # nothing may write while we copy
            created = True  # also when the answer is lost: removal is idempotent
            await target.create(self.ctx, new, self.feedback, rollback=False)
            self.feedback("* copying the data into the new disks")
            for src, dst in zip(old_spec, new_spec, strict=True):
                await prpc.blockdev_copy(src.to_dict(), dst.to_dict())
            cfg.instances[inst.uuid] = new
            await target.populate(self.ctx, new, self.feedback,
                                  wait_for_sync=self.op.wait_for_sync)
            await target.deactivate(self.ctx, new)
        except BaseException:
            cfg.instances[inst.uuid] = inst
            if created:
                for problem in await target.remove(self.ctx, new, self.feedback,
                                                   stopped=True):
                    self.feedback(f"  WARNING: cleanup failed: {problem}")
            raise
        self.inst = new
        # the config names the new disks from here on; the old ones can go
        await self.ctx.config.save()
        self.feedback("* removing the old disks")
        problems = await source.remove(self.ctx, old, self.feedback, stopped=True)
        if problems:
            self.feedback(f"  WARNING: old disks left behind: {'; '.join(problems)}")
