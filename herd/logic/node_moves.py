"""Emptying a node: ``gnt-node migrate`` (its primaries, live, to their secondaries) and
``gnt-node evacuate`` (its primaries to their secondaries, its secondaries to other nodes).

Each instance is moved by the same logical unit as ``gnt-instance migrate/failover/
replace-disks``, one after the other, so their checks and rollbacks apply unchanged. With
``--new-secondary NODE`` the primaries fail over and the copies go to NODE; otherwise an
instance allocator plans the moves (``-I NAME``, or the cluster's default allocator), as in
Ganeti: a node-evacuate request per phase (primaries, then the secondaries, which include the
copies the first phase left on the node), answered with jobs of migrate/failover/
replace-disks opcodes, which run here in order. Instances the allocator cannot move are
refused before anything moves, each with its reason.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from herd import errors
from herd.allocator import protocol
from herd.jobs.locking import LEVEL_CLUSTER, LockRequest
from herd.logic import hooks, iallocator
from herd.logic.base import LogicalUnit
from herd.logic.instance_failover import LUInstanceFailover
from herd.logic.instance_migrate import LUInstanceMigrate
from herd.logic.instance_replace import LUInstanceReplaceDisks
from herd.logic.templates import template_of
from herd.objects import Instance
from herd.opcodes import (
    OpInstanceFailover,
    OpInstanceMigrate,
    OpInstanceReplaceDisks,
    OpNodeEvacuate,
    OpNodeMigrate,
)

EVAC_MODES = ("primary-only", "secondary-only", "all")


class _NodeMoves(LogicalUnit[Any]):
    def locks(self) -> list[LockRequest]:
        return [LockRequest(LEVEL_CLUSTER, "cluster")]

    async def run_lu(self, lu_cls: type[LogicalUnit[Any]], op: Any) -> Any:
        """One instance's move, with its own hooks (Ganeti runs each as a job of its own)."""
        lu = lu_cls(op, self.ctx, self.feedback)
        try:
            await lu.check()
            return await hooks.execute(lu)
        finally:
            lu.cleanup()

    def hooks_targets(self) -> hooks.HookTargets:
        return hooks.HookTargets(node=self.node.name)


class LUNodeMigrate(_NodeMoves):
    OPCODE = OpNodeMigrate

    async def check(self) -> None:
        self.node = self.cfg.get_node(self.op.node_name)
        self.instances = sorted(
            (i for i in self.cfg.instances.values()
             if i.primary_node == self.node.uuid and i.admin_state == "up"),
            key=lambda i: i.name)
        bad = [i.name for i in self.instances if not template_of(i).can_migrate]
        if bad:
            raise errors.OpPrereqError(f"instance(s) {', '.join(bad)} on {self.node.name} "
                                       "cannot migrate (no mirrored disks)")

    async def execute(self) -> list[str]:
        moved = []
        for inst in self.instances:
            self.feedback(f"* migrating instance {inst.name}")
            await self.run_lu(LUInstanceMigrate, OpInstanceMigrate(
                instance_name=inst.name, mode=self.op.mode, live=self.op.live))
            moved.append(inst.name)
        if not moved:
            self.feedback(f"no running primary instances on {self.node.name}")
        return moved


#: The opcodes of an allocator's evacuation jobs and the units that carry them out.
_MOVES: dict[str, tuple[type[Any], type[LogicalUnit[Any]]]] = {
    "OP_INSTANCE_MIGRATE": (OpInstanceMigrate, LUInstanceMigrate),
    "OP_INSTANCE_FAILOVER": (OpInstanceFailover, LUInstanceFailover),
    "OP_INSTANCE_REPLACE_DISKS": (OpInstanceReplaceDisks, LUInstanceReplaceDisks),
}


def move_opcode(data: dict[str, Any], running: bool) -> tuple[Any, type[LogicalUnit[Any]]]:
    """An allocator's move opcode as Herd's opcode and unit (fields Herd does not know are
    dropped). A migrate of a stopped instance is a failover, as Ganeti's allow_failover."""
    op_id = data["OP_ID"]
    if op_id == "OP_INSTANCE_MIGRATE" and not running:
        op_id = "OP_INSTANCE_FAILOVER"
    op_cls, lu_cls = _MOVES[op_id]
    known = {f.name for f in dataclasses.fields(op_cls)} - {"OP_ID"}
    args = {k: v for k, v in data.items() if k in known and v is not None}
    if op_cls is OpInstanceMigrate:
        args.pop("allow_runtime_changes", None)
        args["allow_failover"] = True
    return op_cls(**args), lu_cls


class LUNodeEvacuate(_NodeMoves):
    OPCODE = OpNodeEvacuate
    USES_IALLOCATOR = True

    async def check(self) -> None:
        cfg, op = self.cfg, self.op
        if op.mode not in EVAC_MODES:
            raise errors.ParameterError(f"invalid evacuation mode '{op.mode}': allowed are "
                                        f"{', '.join(EVAC_MODES)}")
        self.node = cfg.get_node(op.node_name)
        self.remote = cfg.get_node(op.remote_node) if op.remote_node else None
        if self.remote is not None and self.remote.uuid == self.node.uuid:
            raise errors.OpPrereqError("the new secondary must be another node")
        on_node = [i for i in cfg.instances.values() if self.node.uuid in i.all_nodes]
        bad = [i.name for i in on_node if not template_of(i).can_failover]
        if bad and op.mode != "secondary-only":
            raise errors.OpPrereqError(f"instance(s) {', '.join(sorted(bad))} have no second "
                                       f"copy and cannot leave {self.node.name}")
        self.secondaries = sorted((i for i in on_node if self.node.uuid in i.secondary_nodes),
                                  key=lambda i: i.name)
        self.primaries = sorted((i for i in on_node if i.primary_node == self.node.uuid
                                 and template_of(i).can_failover), key=lambda i: i.name)
        self.allocator: str | None = None
        if self.remote is not None:
            if op.iallocator:
                raise errors.ParameterError(
                    f"give either a new secondary (-n {op.remote_node}) or an instance "
                    f"allocator (-I {op.iallocator}), not both")
            return
        self.allocator = protocol.resolve_name(op.iallocator, cfg.cluster.default_iallocator)
        # the first phase is planned now: an evacuation the allocator refuses moves nothing
        self.first: protocol.EvacResult | None = None
        if op.mode in ("primary-only", "all") and self.primaries:
            self.first = await self._plan("primary-only", self.primaries)
        elif op.mode == "secondary-only" and self.secondaries:
            self.first = await self._plan("secondary-only", self.secondaries)

    async def _plan(self, mode: str, instances: list[Instance]) -> protocol.EvacResult:
        assert self.allocator is not None
        request = protocol.node_evacuate_request([i.name for i in instances], mode)
        extra = {"ignore-soft-errors": None} if self.op.ignore_soft_errors else None
        result = await iallocator.plan_moves(
            self.ctx, self.allocator, request, instances,
            cannot=f"evacuate node {self.node.name} ({mode})", note=f" ({mode})",
            extra_params=extra, feedback=self.feedback)
        return result

    async def _run_jobs(self, plan: protocol.EvacResult, done: dict[str, list[str]]) -> None:
        for job in plan.jobs:
            for data in job:
                inst = self.cfg.get_instance(data["instance_name"])
                op, lu_cls = move_opcode(data, inst.admin_state == "up")
                if op.OP_ID == "OP_INSTANCE_REPLACE_DISKS":
                    self.feedback(f"* moving the secondary of {inst.name} to "
                                  f"{op.remote_node}")
                else:
                    verb = "migrating" if op.OP_ID == "OP_INSTANCE_MIGRATE" else "failing over"
                    self.feedback(f"* {verb} instance {inst.name}")
                await self.run_lu(lu_cls, op)
                key = "new_secondary" if op.OP_ID == "OP_INSTANCE_REPLACE_DISKS" else \
                    "failed_over"
                if inst.name not in done[key]:
                    done[key].append(inst.name)

    async def _execute_planned(self) -> dict[str, list[str]]:
        done: dict[str, list[str]] = {"failed_over": [], "new_secondary": []}
        if self.first is not None:
            await self._run_jobs(self.first, done)
        if self.op.mode == "all":
            # the copies left here by the first phase, and the node's own secondaries
            moving = sorted((i for i in self.cfg.instances.values()
                             if self.node.uuid in i.secondary_nodes), key=lambda i: i.name)
            if moving:
                await self._run_jobs(await self._plan("secondary-only", moving), done)
        return done

    async def execute(self) -> dict[str, list[str]]:
        if self.allocator is not None:
            return await self._execute_planned()
        done: dict[str, list[str]] = {"failed_over": [], "new_secondary": []}
        if self.op.mode in ("primary-only", "all"):
            for inst in self.primaries:
                self.feedback(f"* failing over instance {inst.name}")
                await self.run_lu(LUInstanceFailover,
                                  OpInstanceFailover(instance_name=inst.name))
                done["failed_over"].append(inst.name)
        if self.op.mode in ("secondary-only", "all"):
            # after a failover the old primary holds the secondary copy: move those too
            moving = [i for i in self.cfg.instances.values()
                      if self.node.uuid in i.secondary_nodes]
            for inst in sorted(moving, key=lambda i: i.name):
                target = self.remote
                self.feedback(f"* moving the secondary of {inst.name} to {target.name}")
                await self.run_lu(LUInstanceReplaceDisks, OpInstanceReplaceDisks(
                    instance_name=inst.name, mode="replace_new_secondary",
                    remote_node=target.name))
                done["new_secondary"].append(inst.name)
        return done
