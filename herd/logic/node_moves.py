"""Emptying a node: ``gnt-node migrate`` (its primaries, live, to their secondaries) and
``gnt-node evacuate`` (its secondaries to other nodes, its primaries by failover).

Each instance is moved by the same logical unit as ``gnt-instance migrate/failover/
replace-disks``, one after the other, so their checks and rollbacks apply unchanged. Without
``--new-secondary`` a new secondary is the least loaded node that can take it.
"""

from __future__ import annotations

from typing import Any

from herd import errors
from herd.jobs.locking import LEVEL_CLUSTER, LockRequest
from herd.logic import hooks
from herd.logic.base import LogicalUnit
from herd.logic.instance_failover import LUInstanceFailover
from herd.logic.instance_migrate import LUInstanceMigrate
from herd.logic.instance_replace import LUInstanceReplaceDisks
from herd.logic.templates import template_of
from herd.objects import ConfigData, Instance, Node
from herd.opcodes import (
    OpInstanceFailover,
    OpInstanceMigrate,
    OpInstanceReplaceDisks,
    OpNodeEvacuate,
    OpNodeMigrate,
)

EVAC_MODES = ("primary-only", "secondary-only", "all")


def least_loaded(cfg: ConfigData, inst: Instance, avoid: set[str]) -> Node:
    """The online, vm_capable node holding the fewest instances, not holding ``inst``."""
    candidates = [n for n in cfg.nodes.values()
                  if n.uuid not in avoid and n.uuid not in inst.all_nodes
                  and not (n.offline or n.drained) and n.vm_capable]
    if not candidates:
        raise errors.OpPrereqError(f"no node can take a copy of {inst.name}'s disks; give "
                                   "--new-secondary")
    load = {n.uuid: sum(1 for i in cfg.instances.values() if n.uuid in i.all_nodes)
            for n in candidates}
    return min(candidates, key=lambda n: (load[n.uuid], n.name))


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


class LUNodeEvacuate(_NodeMoves):
    OPCODE = OpNodeEvacuate

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

    async def execute(self) -> dict[str, list[str]]:
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
                target = self.remote or least_loaded(self.cfg, inst, {self.node.uuid})
                self.feedback(f"* moving the secondary of {inst.name} to {target.name}")
                await self.run_lu(LUInstanceReplaceDisks, OpInstanceReplaceDisks(
                    instance_name=inst.name, mode="replace_new_secondary",
                    remote_node=target.name))
                done["new_secondary"].append(inst.name)
        return done
