"""replace-disks: rebuild one side of an instance's mirrored disks (Ganeti's modes).

``-s`` throws the secondary's copy away and copies the primary's again (also the way out of a
split brain, keeping the primary's data); ``--new-secondary NODE`` builds a fresh copy on
another node and drops the old secondary's; ``-p`` rebuilds the primary's copy from the
secondary's, which must therefore hold the data (in sync, not discarded, no split brain);
``-a`` looks at both copies and replaces the faulty one, or says that none is. How each copy
is rebuilt, and why ``-p`` swaps roles the way it does, is in :mod:`mirror_rebuild`; what
makes a copy faulty or consistent is in :mod:`disk_health`.
"""

from __future__ import annotations

from herd import errors
from herd.allocator import protocol
from herd.jobs.locking import LockRequest
from herd.logic import disk_health, group_checks, iallocator, live_move, mirror_rebuild
from herd.logic.base import LogicalUnit
from herd.logic.hooks import HookTargets
from herd.logic.instance_common import instance_locks, is_running
from herd.logic.specs import filled_hvparams
from herd.logic.templates import template_of
from herd.objects import Node
from herd.opcodes import OpInstanceReplaceDisks

MODES = ("replace_on_primary", "replace_on_secondary", "replace_new_secondary", "replace_auto")


class LUInstanceReplaceDisks(LogicalUnit[OpInstanceReplaceDisks]):
    OPCODE = OpInstanceReplaceDisks
    USES_IALLOCATOR = True

    def locks(self) -> list[LockRequest]:
        # with an allocator the new secondary is any node: hold them all (as Ganeti does)
        extra = tuple(n.name for n in self.cfg.nodes.values()) if self.op.iallocator else ()
        return instance_locks(self.cfg, self.op.instance_name,
                              extra_nodes=(self.op.remote_node, *extra))

    async def check(self) -> None:
        op, cfg = self.op, self.cfg
        self.inst = cfg.get_instance(op.instance_name)
        if op.mode not in MODES:
            raise errors.ParameterError(f"invalid replace-disks mode '{op.mode}': allowed are "
                                        f"{', '.join(MODES)}")
        if not template_of(self.inst).replaceable:
            raise errors.OpPrereqError(f"instance's disk layout '{self.inst.disk_template}' "
                                       "has no second copy to replace")
        bad = [i for i in op.disks if not 0 <= i < len(self.inst.disks)]
        if bad or (op.disks and len(op.disks) != len(self.inst.disks)):
            raise errors.OpPrereqError("only all disks at once can be replaced for now "
                                       "(give no --disks)")
        if op.remote_node and op.mode != "replace_new_secondary":
            raise errors.ParameterError("a remote node is only used with --new-secondary")
        self.old = cfg.nodes[self.inst.secondary_nodes[0]]
        self.pnode = cfg.nodes[self.inst.primary_node]
        self.new = self.old
        if self.pnode.offline:
            raise errors.OpPrereqError(f"primary node {self.pnode.name} is offline")
        self.mode: str | None = op.mode
        self.reason = ""
        if op.mode == "replace_auto":
            await self._choose_auto()
        elif op.mode == "replace_on_primary":
            await self._check_on_primary()
        if op.iallocator and (op.mode != "replace_new_secondary" or op.remote_node):
            raise errors.ParameterError("an instance allocator (-I) chooses a new secondary: "
                                        "give it instead of --new-secondary, without -p/-s/-a")
        if op.mode == "replace_new_secondary":
            if op.iallocator:
                self.new = await self._allocate_secondary()
            elif not op.remote_node:
                raise errors.ParameterError("--new-secondary needs a node (or -I ALLOCATOR)")
            else:
                self.new = cfg.get_node(op.remote_node)
            if self.new.uuid in (self.pnode.uuid, self.old.uuid):
                raise errors.OpPrereqError(f"node {self.new.name} already holds a copy of "
                                           f"{self.inst.name}")
            if not op.change_group:
                group_checks.check_same_group(cfg, self.pnode, self.new)
        if self.new.offline or self.new.drained:
            raise errors.OpPrereqError(f"node {self.new.name} is offline or drained")

    async def _allocate_secondary(self) -> Node:
        """The new secondary an allocator picks (Ganeti's relocate request)."""
        cfg, inst = self.cfg, self.inst
        name = protocol.resolve_name(self.op.iallocator, cfg.cluster.default_iallocator)
        request = protocol.relocate_request(
            name=inst.name, relocate_from=[self.old.name],
            disk_space_total=iallocator.disk_space(inst))
        chosen = await iallocator.choose(
            self.ctx, name, request, lvm=template_of(inst).uses_vg(cfg),
            feedback=self.feedback, refusal=f"found no new secondary for {inst.name}",
            chose=f"new secondary for instance {inst.name}")
        return cfg.get_node(chosen[0])

    def hooks_targets(self) -> HookTargets:
        # Ganeti: master, primary and the new secondary when there is one
        new = self.new.name if self.new.uuid != self.old.uuid else None
        return HookTargets(instance=self.inst, target=new)

    def hooks_env(self) -> dict[str, str]:
        return {"NEW_SECONDARY": self.new.name, "OLD_SECONDARY": self.old.name}

    async def _inspect(self) -> tuple[disk_health.CopyState, disk_health.CopyState]:
        return (await disk_health.inspect_copy(self.ctx, self.inst, self.pnode, False),
                await disk_health.inspect_copy(self.ctx, self.inst, self.old, True))

    async def _check_on_primary(self, states: tuple[disk_health.CopyState,
                                                    disk_health.CopyState] | None = None,
                                ) -> None:
        """-p takes the data from the secondary: refuse unless its copy is consistent; a
        running guest must be able to migrate there and back."""
        self.running = await is_running(self.ctx, self.inst, self.pnode)
        if self.running:
            await live_move.check_movable(self.ctx, self.inst, self.pnode, self.old)
            self.live = live_move.migration_mode(
                self.inst, filled_hvparams(self.cfg, self.inst, self.ctx.paths), None, None)
        elif self.old.offline:
            raise errors.OpPrereqError(f"secondary node {self.old.name} is offline")
        pstate, sstate = states or await self._inspect()
        problem = disk_health.secondary_inconsistency(pstate, sstate)
        if problem:
            raise errors.OpPrereqError(f"cannot rebuild the primary's copy of {self.inst.name} "
                                       f"from {self.old.name}: {problem}")

    async def _choose_auto(self) -> None:
        """-a: replace the faulty copy (Ganeti's replace_auto); None when both are sound."""
        inst = self.inst
        if self.old.offline:
            raise errors.OpPrereqError(f"secondary node {self.old.name} is offline")
        pstate, sstate = await self._inspect()
        if pstate.faults and sstate.faults:
            raise errors.OpPrereqError(f"both copies of {inst.name} are faulty, nothing to "
                                       f"rebuild from ({pstate.summary()}; {sstate.summary()})")
        split = disk_health.diverged(pstate, sstate)
        if split:
            raise errors.OpPrereqError(
                f"{', '.join(f'disk/{i}' for i in split)} of {inst.name} changed on both "
                f"{self.pnode.name} and {self.old.name} while apart (split brain): -a cannot "
                f"choose; keep the primary's data with 'gnt-instance replace-disks -s "
                f"{inst.name}'")
        if sstate.faults:
            self.mode, self.reason = "replace_on_secondary", sstate.summary()
        elif pstate.faults:
            self.mode, self.reason = "replace_on_primary", pstate.summary()
            await self._check_on_primary((pstate, sstate))
        else:
            self.mode = None

    async def execute(self) -> None:
        inst = self.inst
        if self.mode is None:
            self.feedback(f"no disks of {inst.name} need replacement: the copies on "
                          f"{self.pnode.name} and {self.old.name} are sound")
            return
        if self.reason:
            self.feedback(f"* faulty copy on {self.reason}")
        if self.mode == "replace_on_primary":
            if self.running:
                await mirror_rebuild.rebuild_primary_running(
                    self.ctx, inst, self.pnode, self.old, self.live, self.feedback)
            else:
                await mirror_rebuild.rebuild_primary_stopped(
                    self.ctx, inst, self.pnode, self.old, self.feedback)
            return
        await mirror_rebuild.rebuild_secondary(self.ctx, inst, self.pnode, self.old, self.new,
                                               self.feedback,
                                               keep_active=inst.admin_state == "up")
