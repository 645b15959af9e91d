"""replace-disks: rebuild one side of an instance's mirrored disks.

``-s`` throws the secondary's copy away and copies the primary's again (also the way out of a
split brain, keeping the primary's data); ``--new-secondary NODE`` builds a fresh copy on
another node and drops the old secondary's. Both copy the whole disk. The guest may keep
running: its writes are mirrored to the new copy while the copy proceeds.
"""

from __future__ import annotations

from herd import errors
from herd.jobs.locking import LockRequest
from herd.logic import drbd
from herd.logic.base import LogicalUnit
from herd.logic.instance_common import instance_locks
from herd.opcodes import OpInstanceReplaceDisks

MODES = ("replace_on_primary", "replace_on_secondary", "replace_new_secondary", "replace_auto")


class LUInstanceReplaceDisks(LogicalUnit[OpInstanceReplaceDisks]):
    OPCODE = OpInstanceReplaceDisks

    def locks(self) -> list[LockRequest]:
        return instance_locks(self.cfg, self.op.instance_name,
                              extra_nodes=(self.op.remote_node,))

    async def check(self) -> None:
        op, cfg = self.op, self.cfg
        self.inst = cfg.get_instance(op.instance_name)
        if op.mode not in MODES:
            raise errors.ParameterError(f"invalid replace-disks mode '{op.mode}': allowed are "
                                        f"{', '.join(MODES)}")
        if self.inst.disk_template != "drbd":
            raise errors.OpPrereqError(f"instance's disk layout '{self.inst.disk_template}' "
                                       "has no second copy to replace")
        if op.mode in ("replace_on_primary", "replace_auto"):
            raise errors.OpPrereqError(f"replace-disks mode {op.mode} is not supported yet; "
                                       "use -s or --new-secondary")
        bad = [i for i in op.disks if not 0 <= i < len(self.inst.disks)]
        if bad or (op.disks and len(op.disks) != len(self.inst.disks)):
            raise errors.OpPrereqError("only all disks at once can be replaced for now "
                                       "(give no --disks)")
        self.old = cfg.nodes[self.inst.secondary_nodes[0]]
        self.pnode = cfg.nodes[self.inst.primary_node]
        self.new = self.old
        if op.mode == "replace_new_secondary":
            if not op.remote_node:
                raise errors.ParameterError("--new-secondary needs a node")
            self.new = cfg.get_node(op.remote_node)
            if self.new.uuid in (self.pnode.uuid, self.old.uuid):
                raise errors.OpPrereqError(f"node {self.new.name} already holds a copy of "
                                           f"{self.inst.name}")
        elif op.remote_node:
            raise errors.ParameterError("a remote node is only used with --new-secondary")
        if self.new.offline or self.new.drained:
            raise errors.OpPrereqError(f"node {self.new.name} is offline or drained")
        if self.pnode.offline:
            raise errors.OpPrereqError(f"primary node {self.pnode.name} is offline")

    async def execute(self) -> None:
        inst, cfg = self.inst, self.cfg
        old_disks = drbd.mirror_disks(cfg, inst, self.old.uuid)
        if self.new.uuid == self.old.uuid:
            self.feedback(f"* discarding the copy on {self.old.name}")
            await self.ctx.rpc.node(self.old).mirror_stop(old_disks)
            await self.ctx.rpc.node(self.old).mirror_remove(old_disks)
            await self.ctx.rpc.node(self.old).mirror_create(old_disks)
        else:
            self.feedback(f"* creating the disks on the new secondary {self.new.name}")
            for disk in inst.disks:
                disk.logical_id[1] = self.new.uuid
                disk.nodes = [self.pnode.uuid, self.new.uuid]
            try:
                await self.ctx.rpc.node(self.new).mirror_create(
                    drbd.mirror_disks(cfg, inst, self.new.uuid))
            except BaseException:
                self._restore_old()
                raise
        for disk in inst.disks:
            disk.params.pop(drbd.DISCARD_SECONDARY, None)
        self.feedback(f"* copying the disks from {self.pnode.name} to {self.new.name}")
        # raw status: drbd.status() would record "in sync" against the new secondary while
        # the primary still mirrors to the old one
        running_primary = all(
            st.get("role") == "primary" for st in await self.ctx.rpc.node(self.pnode)
            .mirror_status(drbd.mirror_disks(cfg, inst, self.pnode.uuid)))
        try:
            if running_primary:
                await self.ctx.rpc.node(self.new).mirror_start_secondary(
                    drbd.mirror_disks(cfg, inst, self.new.uuid))
                await self.ctx.rpc.node(self.pnode).mirror_reconnect(
                    drbd.mirror_disks(cfg, inst, self.pnode.uuid))
            else:
                await drbd.activate(self.ctx, inst, self.feedback)
            states = await self.ctx.rpc.node(self.pnode).mirror_wait_sync(
                drbd.mirror_disks(cfg, inst, self.pnode.uuid), timeout=3600)
        except BaseException:
            if self.new.uuid != self.old.uuid:
                self._restore_old()
            raise
        await drbd.record_sync(self.ctx, inst, states)
        if not running_primary and inst.admin_state != "up":
            await drbd.deactivate(self.ctx, inst)
        inst.touch()
        await self.ctx.config.save()
        if self.new.uuid != self.old.uuid:
            self.feedback(f"* removing the old copy on {self.old.name}")
            try:
                await self.ctx.rpc.node(self.old).mirror_stop(old_disks)
                await self.ctx.rpc.node(self.old).mirror_remove(old_disks)
            except errors.HerdError as exc:
                self.feedback(f"  WARNING: {self.old.name} kept its old copy: {exc.message}")

    def _restore_old(self) -> None:
        for disk in self.inst.disks:
            disk.logical_id[1] = self.old.uuid
            disk.nodes = [self.pnode.uuid, self.old.uuid]
