"""gnt-instance move: copy an instance without a second copy of its disks to another node.

For the templates with one copy per disk (file, plain) and without disks (diskless); a
mirrored instance already has its data on two nodes and moves with failover/migrate (to its
secondary) or replace-disks (a copy elsewhere), so it is refused with that pointer, as Ganeti
refuses templates it cannot copy.

The order keeps the instance whole at every step (Ganeti's LUInstanceMove, with a rollback):

1. the guest is stopped on the source (its disks must not change while copied);
2. the disks are made on the target by the template object, as for an instance whose primary
   is the target, and each one is filled from the source's read-only NBD export
   (herd.node.transfer) and flushed on the target;
3. the config names the target as primary (saved), and the guest starts there if it ran;
4. only then are the source's disks removed.

A failure before 3 completes removes the new disks, puts the config back and starts the guest
again on the source if it ran there: the instance is as it was. The intent journal records
the new disks before they are made, so a masterd that dies mid-copy leaves nothing behind.
"""

from __future__ import annotations

from typing import Any

from herd import errors
from herd.jobs.locking import LockRequest
from herd.logic import intents
from herd.logic.base import LogicalUnit
from herd.logic.hooks import HookTargets
from herd.logic.instance_common import (
    check_node_free_memory,
    check_vg_space,
    instance_locks,
    start_instance,
)
from herd.logic.templates import Claim, DiskTemplate, template_of
from herd.objects import Instance, Node
from herd.opcodes import OpInstanceMove


def move_refusal(inst: Instance, template: DiskTemplate, source: Node,
                 target: Node) -> str | None:
    """Why ``inst`` cannot be moved from ``source`` to ``target`` (None: it can). Pure: the
    checks that need no node."""
    if template.needs_secondary:
        return (f"instance {inst.name} has mirrored disks ({template.name}): it moves with "
                "'gnt-instance failover' or 'migrate' (to its secondary) or 'replace-disks "
                "--new-secondary' (a copy to another node), not with move")
    if target.uuid == source.uuid:
        return f"instance {inst.name} is already on node {target.name}"
    if target.offline:
        return f"target node {target.name} is offline"
    if target.drained:
        return f"target node {target.name} is drained"
    if not target.vm_capable:
        return f"target node {target.name} is not vm_capable"
    if source.offline and inst.disks:
        return (f"primary node {source.name} is offline: the disks of {inst.name} cannot be "
                "copied from it")
    return None


class LUInstanceMove(LogicalUnit[OpInstanceMove]):
    OPCODE = OpInstanceMove

    def locks(self) -> list[LockRequest]:
        return instance_locks(self.cfg, self.op.instance_name,
                              extra_nodes=(self.op.target_node,))

    def cleanup(self) -> None:
        self.ctx.reservations.release(self)

    async def check(self) -> None:
        cfg, op = self.cfg, self.op
        self.inst: Instance = cfg.get_instance(op.instance_name)
        if not op.target_node:
            raise errors.ParameterError("the target node is required (-n NODE)")
        if op.shutdown_timeout < 0:
            raise errors.ParameterError(f"invalid shutdown timeout {op.shutdown_timeout}: "
                                        "must be >= 0")
        if op.compress not in ("none", ""):
            raise errors.ParameterError(f"invalid compression '{op.compress}': Herd copies "
                                        "raw data (holes skipped); allowed is none")
        self.template = template_of(self.inst)
        self.source: Node = cfg.nodes[self.inst.primary_node]
        self.target: Node = cfg.get_node(op.target_node)
        refusal = move_refusal(self.inst, self.template, self.source, self.target)
        if refusal:
            raise errors.OpPrereqError(refusal)
        self.new = self._moved_copy(Claim(None, self))
        await check_vg_space(self.ctx, self.template.vg_space(self.new),
                             f"the disks of {self.inst.name}")
        if self.inst.admin_state == "up":
            memory = int(cfg.filled_beparams(self.inst)["maxmem"])
            await check_node_free_memory(self.ctx, self.target, memory,
                                         f"moving instance {self.inst.name}")

    def _moved_copy(self, claim: Claim) -> Instance:
        """The instance as it will be on the target: same disks (uuids, sizes), made by the
        template for the target as primary."""
        new = Instance.from_dict(self.inst.to_dict())
        new.primary_node = self.target.uuid
        new.disks_active = False
        self.template.assign(self.cfg, new, new.disks, self.target.uuid, None, claim)
        return new

    def hooks_targets(self) -> HookTargets:
        return HookTargets(instance=self.inst, target=self.target.name)

    def hooks_env(self) -> dict[str, Any]:
        return {"TARGET_NODE": self.target.name}

    async def execute(self) -> dict[str, Any]:
        inst, source, target = self.inst, self.source, self.target
        template = self.template
        new = self._moved_copy(Claim(self.ctx.reservations, self))
        was_running = await self._stop_on_source()
        journal = intents.IntentJournal.for_master(self.ctx.paths.data_dir)
        intent = intents.Intent(instance_name=inst.name, instance_uuid=inst.uuid,
                                items=template.intent_items(self.cfg, new))
        if intent.items:
            journal.record(intent)
        created = switched = False
        try:
            if inst.disks:
                created = True  # also when the answer is lost: removal is idempotent
                await template.create(self.ctx, new, self.feedback, rollback=False)
                await self._copy_disks(new)
            self.cfg.instances[inst.uuid] = new
            new.touch()
            switched = True
            await self.ctx.config.save()
            if inst.admin_state == "up":
                self.feedback(f"* starting the instance on {target.name}")
                await template.start_disks(self.ctx, new, self.feedback)
                await start_instance(self.ctx, new, target)
        except BaseException as exc:
            undone = await self._roll_back(new, created, switched, was_running, exc)
            if intent.items:
                # a record whose disks could not all be removed stays for the next start
                (journal.done if undone else journal.release)(intent)
            if isinstance(exc, errors.HerdError) and undone:
                # the node's words do not name the node; the admin needs both
                raise errors.OpExecError(
                    f"moving {inst.name} failed on {target.name}: {exc.message}; the move "
                    f"was undone, {inst.name} stays on {source.name}") from exc
            raise
        if intent.items:
            journal.done(intent)
        self.inst = new
        if inst.disks:
            self.feedback(f"* removing the disks on {source.name}")
            problems = await template.remove(self.ctx, inst, self.feedback, stopped=True)
            for problem in problems:
                self.feedback(f"  WARNING: old disks left behind: {problem}")
        return {"primary": target.name}

    async def _stop_on_source(self) -> bool:
        """Stop the guest on the source (and its disks); whether it was running."""
        inst, source = self.inst, self.source
        if source.offline:
            return False
        rpc = self.ctx.rpc.node(source)
        try:
            running = await rpc.instance_info(inst.name) is not None
            if running:
                self.feedback(f"* shutting down instance {inst.name} on {source.name}")
                await rpc.instance_stop(inst.name, float(self.op.shutdown_timeout))
            await self.template.deactivate(self.ctx, inst)
        except errors.HerdError as exc:
            if not self.op.ignore_consistency:
                raise errors.OpExecError(
                    f"could not shut down instance {inst.name} on {source.name}: "
                    f"{exc.message}; use --ignore-consistency to move it anyway") from None
            self.feedback(f"  WARNING: could not shut down {inst.name} on {source.name} "
                          f"({exc.message}); going on as asked (--ignore-consistency)")
            return False
        return running

    async def _copy_disks(self, new: Instance) -> None:
        """Fill each new disk on the target from the source's read-only export."""
        cfg, template = self.cfg, self.template
        src_rpc = self.ctx.rpc.node(self.source)
        dst_rpc = self.ctx.rpc.node(self.target)
        address = self.source.secondary_ip or self.source.primary_ip
        old_specs = template.device_specs(cfg, self.inst, self.source.uuid)
        new_specs = template.device_specs(cfg, new, self.target.uuid)
        for src, dst in zip(old_specs, new_specs, strict=True):
            self.feedback(f"* copying disk/{src.index} ({src.size_mib} MiB) from "
                          f"{self.source.name} to {self.target.name}")
            port = await src_rpc.blockdev_export(src.to_dict(), address)
            try:
                await dst_rpc.blockdev_fetch(dst.to_dict(), address, port, src.uuid)
            finally:
                try:
                    await src_rpc.blockdev_unexport(src.to_dict())
                except errors.HerdError as exc:
                    self.feedback(f"  WARNING: could not end the export of disk/{src.index} "
                                  f"on {self.source.name}: {exc.message}")

    async def _roll_back(self, new: Instance, created: bool, switched: bool,
                         was_running: bool, cause: BaseException) -> bool:
        """Undo a move that failed: config back to the source, new disks removed, the guest
        started again where it was. Each step is tried; what fails is reported. Whether the
        config and the disks are as before (the guest's restart is only warned about)."""
        inst, template = self.inst, self.template
        undone = True
        if switched:
            rpc = self.ctx.rpc.node(self.target)
            try:
                if await rpc.instance_info(inst.name) is not None:
                    await rpc.instance_stop(inst.name, 0)
            except errors.HerdError as exc:
                # the guest may run on the target (a start whose answer was lost): the config
                # keeps naming the target and no disk is removed anywhere
                self.feedback(f"  WARNING: cannot tell whether {inst.name} runs on "
                              f"{self.target.name} ({exc.message}): it stays there in the "
                              f"config, and its old disks on {self.source.name} are kept")
                return False
            self.cfg.instances[inst.uuid] = inst
            try:
                await self.ctx.config.save()
            except errors.HerdError as exc:
                self.feedback(f"  WARNING: could not save the config back: {exc.message}")
                undone = False
        if created:
            self.feedback(f"* removing the disks made on {self.target.name}")
            for problem in await template.remove(self.ctx, new, self.feedback, stopped=True):
                self.feedback(f"  WARNING: {problem}")
                undone = False
        if was_running and isinstance(cause, Exception):
            self.feedback(f"* starting the instance again on {self.source.name}")
            try:
                await template.start_disks(self.ctx, inst, self.feedback)
                await start_instance(self.ctx, inst, self.source)
            except errors.HerdError as exc:
                self.feedback(f"  WARNING: could not start {inst.name} on "
                              f"{self.source.name} again: {exc.message}")
        return undone
