"""Failover: restart an instance with mirrored disks on its secondary node.

Used when the primary is down or must be emptied fast (the guest reboots; for no downtime use
migrate). The secondary's copy is only trusted if the primary can confirm it is in sync, i.e.
the primary answers and its disks were in sync when stopped; with the primary dead Herd cannot
know whether it wrote more after losing its peer, so it refuses unless the admin says
``--ignore-consistency`` (as Ganeti does).
"""

from __future__ import annotations

from typing import Any

from herd import errors
from herd.jobs.locking import LockRequest
from herd.logic import drbd
from herd.logic.base import LogicalUnit
from herd.logic.hooks import HookTargets
from herd.logic.instance_common import check_node_free_memory, instance_locks, start_instance
from herd.logic.templates import template_of
from herd.opcodes import OpInstanceFailover


class LUInstanceFailover(LogicalUnit[OpInstanceFailover]):
    OPCODE = OpInstanceFailover

    def locks(self) -> list[LockRequest]:
        return instance_locks(self.cfg, self.op.instance_name)

    async def check(self) -> None:
        cfg = self.cfg
        self.inst = cfg.get_instance(self.op.instance_name)
        if not template_of(self.inst).can_failover:
            raise errors.OpPrereqError(f"instance's disk layout '{self.inst.disk_template}' "
                                       "does not allow failovers")
        self.old = cfg.nodes[self.inst.primary_node]
        self.new = cfg.nodes[self.inst.secondary_nodes[0]]
        if self.op.target_node and cfg.get_node(self.op.target_node).uuid != self.new.uuid:
            raise errors.OpPrereqError(f"instances with mirrored disks can only fail over to "
                                       f"their secondary node ({self.new.name})")
        if self.new.offline or self.new.drained:
            raise errors.OpPrereqError(f"secondary node {self.new.name} is offline or drained")
        self.old_alive = False
        if not self.old.offline:
            try:
                await self.ctx.rpc.node(self.old).ping()
                self.old_alive = True
            except errors.RpcError:
                pass
        if not self.old_alive and not self.op.ignore_consistency:
            raise errors.OpPrereqError(
                f"primary node {self.old.name} is down, so the secondary's data cannot be "
                "checked for consistency; use --ignore-consistency to fail over anyway "
                "(writes not yet on the secondary are lost)")
        if self.inst.admin_state == "up":
            memory = int(cfg.filled_beparams(self.inst)["maxmem"])
            await check_node_free_memory(self.ctx, self.new, memory,
                                         f"failing over instance {self.inst.name}")

    def hooks_targets(self) -> HookTargets:
        return HookTargets(instance=self.inst, target=self.new.name)

    def hooks_env(self) -> dict[str, Any]:
        return {"OLD_PRIMARY": self.old.name, "NEW_PRIMARY": self.new.name,
                "OLD_SECONDARY": self.new.name, "NEW_SECONDARY": self.old.name}

    async def execute(self) -> dict[str, Any]:
        inst = self.inst
        if self.old_alive:
            rpc = self.ctx.rpc.node(self.old)
            if await rpc.instance_info(inst.name) is not None:
                self.feedback(f"* shutting down instance on source node {self.old.name}")
                await rpc.instance_stop(inst.name, float(self.op.shutdown_timeout))
            if not self.op.ignore_consistency:
                # one atomic read per disk, and the secondary marked with what it holds
                records = await drbd.settle_secondary(self.ctx, inst)
                bad = [i for i, rec in enumerate(records)
                       if rec.get("state") in drbd.PRIMARY_STATES and not rec.get("in_sync")]
                if bad:
                    raise errors.OpExecError(
                        f"disk(s) {', '.join(f'disk/{i}' for i in bad)} of {inst.name} are not "
                        f"in sync with {self.new.name}; wait for the resync or use "
                        "--ignore-consistency")
        self.feedback("* deactivating disks on both nodes")
        dead = set() if self.old_alive else {self.old.uuid}
        await drbd.deactivate(self.ctx, inst, skip=dead)
        inst.swap_primary()
        if self.op.ignore_consistency:
            # the admin chose the (new primary's) copy: the old one is discarded on return
            for disk in inst.disks:
                disk.params[drbd.DISCARD_SECONDARY] = True
        try:
            self.feedback(f"* activating disks on {self.new.name} as primary")
            await drbd.activate(self.ctx, inst, self.feedback, ignore_secondary=True,
                                secondary_dead=not self.old_alive)
            if inst.admin_state == "up":
                self.feedback(f"* starting the instance on target node {self.new.name}")
                await start_instance(self.ctx, inst, self.new)
        except BaseException:
            inst.swap_primary()  # the config must not claim a move that did not happen
            for disk in inst.disks:
                disk.params.pop(drbd.DISCARD_SECONDARY, None)
            raise
        await self.ctx.config.save()
        return {"primary": self.new.name, "secondary": self.old.name}
