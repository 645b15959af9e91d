"""Logical units for instance life-cycle: startup, shutdown, reboot, remove, disks."""

from __future__ import annotations

from typing import Any

from herd import errors
from herd.jobs.locking import LockRequest
from herd.logic.base import LogicalUnit
from herd.logic.hooks import HookTargets
from herd.logic.instance_common import (
    check_node_free_memory,
    instance_locks,
    is_running,
    start_instance,
)
from herd.logic.specs import hypervisor_class, instance_spec
from herd.logic.templates import template_of
from herd.objects import Instance, Node, params
from herd.opcodes import (
    OpInstanceActivateDisks,
    OpInstanceDeactivateDisks,
    OpInstanceReboot,
    OpInstanceRemove,
    OpInstanceShutdown,
    OpInstanceStartup,
)


class _InstanceLU(LogicalUnit[Any]):
    """Base for operations on one existing instance: lock it and its nodes."""

    NODE_SHARED = True

    def locks(self) -> list[LockRequest]:
        return instance_locks(self.cfg, self.op.instance_name, nodes_shared=self.NODE_SHARED)

    async def check(self) -> None:
        self.inst: Instance = self.cfg.get_instance(self.op.instance_name)
        self.pnode: Node = self.cfg.nodes[self.inst.primary_node]

    def hooks_targets(self) -> HookTargets:
        return HookTargets(instance=self.inst)

    def check_node_online(self) -> None:
        if self.pnode.offline:
            raise errors.OpPrereqError(f"primary node {self.pnode.name} of instance "
                                       f"{self.inst.name} is offline")

    async def set_admin_state(self, state: str) -> None:
        if self.inst.admin_state != state:
            self.inst.admin_state = state
            self.inst.admin_state_source = "admin"
            self.inst.touch()
            await self.ctx.config.save()


class LUInstanceStartup(_InstanceLU):
    OPCODE = OpInstanceStartup

    async def check(self) -> None:
        await super().check()
        self.check_node_online()
        hv_cls = hypervisor_class(self.inst.hypervisor, self.ctx.paths)
        self.hvparams = hv_cls.check_parameters(self.op.hvparams)
        self.beparams = params.check_beparams(self.op.beparams)
        self.running = await is_running(self.ctx, self.inst, self.pnode)
        if not self.running:
            memory = int({**self.cfg.filled_beparams(self.inst), **self.beparams}["maxmem"])
            await check_node_free_memory(self.ctx, self.pnode, memory,
                                         f"starting instance {self.inst.name}")
            missing = await template_of(self.inst).missing(self.ctx, self.inst, self.pnode)
            if missing:
                raise errors.OpPrereqError(
                    f"disk {self.inst.disks[missing[0]].uuid} of {self.inst.name} is missing "
                    f"on node {self.pnode.name}; use 'gnt-instance recreate-disks'")

    async def execute(self) -> None:
        if self.running:
            self.feedback(f"instance {self.inst.name} is already running")
        else:
            await template_of(self.inst).start_disks(self.ctx, self.inst, self.feedback)
            await start_instance(self.ctx, self.inst, self.pnode,
                                 paused=self.op.startup_paused, hvparams=self.hvparams,
                                 beparams=self.beparams)
        if not self.op.no_remember:
            await self.set_admin_state("up")


class LUInstanceShutdown(_InstanceLU):
    OPCODE = OpInstanceShutdown

    async def check(self) -> None:
        await super().check()
        self.check_node_online()
        if self.op.timeout < 0:
            raise errors.ParameterError(f"invalid shutdown timeout {self.op.timeout}: "
                                        "must be >= 0")

    async def execute(self) -> None:
        node_rpc = self.ctx.rpc.node(self.pnode)
        if await node_rpc.instance_info(self.inst.name) is None:
            self.feedback(f"instance {self.inst.name} is not running")
        else:
            await node_rpc.instance_stop(self.inst.name, float(self.op.timeout))
        if not self.inst.disks_active:
            await template_of(self.inst).deactivate(self.ctx, self.inst)
        if not self.op.no_remember:
            await self.set_admin_state("down")


class LUInstanceReboot(_InstanceLU):
    OPCODE = OpInstanceReboot

    async def check(self) -> None:
        await super().check()
        self.check_node_online()
        if self.op.reboot_type not in ("soft", "hard", "full"):
            raise errors.ParameterError(f"invalid reboot type '{self.op.reboot_type}': "
                                        "allowed are soft, hard, full")

    async def execute(self) -> None:
        node_rpc = self.ctx.rpc.node(self.pnode)
        if await node_rpc.instance_info(self.inst.name) is None:
            # as Ganeti: rebooting a stopped instance starts it
            self.feedback(f"instance {self.inst.name} was not running; starting it")
            await template_of(self.inst).start_disks(self.ctx, self.inst, self.feedback)
            await start_instance(self.ctx, self.inst, self.pnode)
        else:
            spec = instance_spec(self.cfg, self.inst, self.ctx.paths)
            await node_rpc.instance_reboot(self.inst.name, self.op.reboot_type, spec,
                                           float(self.op.shutdown_timeout))
        await self.set_admin_state("up")


class LUInstanceRemove(_InstanceLU):
    OPCODE = OpInstanceRemove
    NODE_SHARED = False

    async def execute(self) -> None:
        node_rpc = self.ctx.rpc.node(self.pnode)
        try:
            if await node_rpc.instance_info(self.inst.name) is not None:
                self.feedback(f"* shutting down instance {self.inst.name}")
                await node_rpc.instance_stop(self.inst.name, float(self.op.shutdown_timeout))
            if self.inst.disks:
                self.feedback("* removing disks")
                problems = await template_of(self.inst).remove(self.ctx, self.inst,
                                                               self.feedback)
                if problems:
                    raise errors.OpExecError("; ".join(problems))
        except errors.HerdError as exc:
            if not self.op.ignore_failures:
                raise
            self.feedback(f"ignoring failure: {exc.message}")
        del self.cfg.instances[self.inst.uuid]
        await self.ctx.config.save()


class LUInstanceActivateDisks(_InstanceLU):
    OPCODE = OpInstanceActivateDisks

    async def execute(self) -> list[list[str]]:
        if not self.inst.disks:
            return []
        result = await template_of(self.inst).activate(self.ctx, self.inst, self.feedback,
                                                       wait_for_sync=self.op.wait_for_sync)
        if not self.inst.disks_active:
            self.inst.disks_active = True
            await self.ctx.config.save()
        return result


class LUInstanceDeactivateDisks(_InstanceLU):
    OPCODE = OpInstanceDeactivateDisks

    async def execute(self) -> None:
        if not self.op.force and await is_running(self.ctx, self.inst, self.pnode):
            raise errors.OpPrereqError(f"instance {self.inst.name} is running; stop it first "
                                       "or use --force")
        await template_of(self.inst).deactivate(self.ctx, self.inst)
        if self.inst.disks_active:
            self.inst.disks_active = False
            await self.ctx.config.save()
