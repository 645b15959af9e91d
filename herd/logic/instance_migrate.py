"""Migration: move a running instance with mirrored disks to its secondary node.

The order is what keeps every acknowledged write on both nodes (DESIGN §7):
1. the secondary starts the target VM, paused, on its own copy of the disks (the secondary's
   storage daemon exports it; the primary's mirror keeps writing into it);
2. QEMU moves the guest's memory; the source pauses the guest at the end;
3. with the guest paused and every write mirrored, the old primary's mirror is ended cleanly
   and its storage daemon turns secondary; the new primary's daemon starts a mirror back to it
   (nothing to copy: both copies are equal);
4. only then does the guest resume on the new primary.
A failure before step 3 leaves the guest running where it was.
"""

from __future__ import annotations

import asyncio
from typing import Any

from herd import errors
from herd.jobs.locking import LockRequest
from herd.logic import drbd
from herd.logic.base import LogicalUnit
from herd.logic.instance_common import check_node_free_memory, instance_locks
from herd.logic.instance_failover import swap_primary
from herd.logic.specs import filled_hvparams, instance_spec
from herd.opcodes import OpInstanceMigrate


class LUInstanceMigrate(LogicalUnit[OpInstanceMigrate]):
    OPCODE = OpInstanceMigrate

    def locks(self) -> list[LockRequest]:
        return instance_locks(self.cfg, self.op.instance_name)

    async def check(self) -> None:
        cfg, op = self.cfg, self.op
        self.inst = cfg.get_instance(op.instance_name)
        if self.inst.disk_template != "drbd":
            raise errors.OpPrereqError(f"instance's disk layout '{self.inst.disk_template}' "
                                       "does not allow migrations")
        if op.cleanup:
            raise errors.OpPrereqError("migrate --cleanup is not supported yet")
        self.source = cfg.nodes[self.inst.primary_node]
        self.target = cfg.nodes[self.inst.secondary_nodes[0]]
        if op.target_node and cfg.get_node(op.target_node).uuid != self.target.uuid:
            raise errors.OpPrereqError(f"instances with mirrored disks can only migrate to "
                                       f"their secondary node ({self.target.name})")
        for node in (self.source, self.target):
            if node.offline:
                raise errors.OpPrereqError(f"node {node.name} is offline")
        if await self.ctx.rpc.node(self.source).instance_info(self.inst.name) is None:
            raise errors.OpPrereqError(f"instance {self.inst.name} is not running; use "
                                       "failover to move a stopped instance")
        await check_node_free_memory(self.ctx, self.target,
                                     int(cfg.filled_beparams(self.inst)["maxmem"]),
                                     f"migrating instance {self.inst.name}")
        # a write in flight makes a write-blocking mirror look behind for an instant: only a
        # disk that stays out of sync for a few seconds is really resyncing
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            states = await drbd.status(self.ctx, self.inst)
            behind = [f"disk/{i}" for i, st in enumerate(states) if not st.get("in_sync")]
            if not behind or asyncio.get_running_loop().time() > deadline or any(
                    not st.get("connected") for st in states):
                break
            await asyncio.sleep(0.2)
        if behind:
            raise errors.OpPrereqError(
                f"{', '.join(behind)} of {self.inst.name} not in sync with {self.target.name}; "
                "wait for the resync (gnt-instance info shows its progress)")
        hv = filled_hvparams(cfg, self.inst, self.ctx.paths)
        mode = op.mode or ("live" if op.live is not False else "non-live")
        if op.live is not None and op.mode is not None:
            raise errors.ParameterError("give either mode or live, not both")
        if op.mode is None and op.live is None:
            mode = hv.get("migration_mode", "live")
        if mode not in ("live", "non-live"):
            raise errors.ParameterError(f"invalid migration mode '{mode}': allowed are live, "
                                        "non-live")
        self.live = mode == "live"
        self.port = int(hv.get("migration_port", 8102))

    async def execute(self) -> dict[str, Any]:
        inst, cfg = self.inst, self.cfg
        src, dst = self.ctx.rpc.node(self.source), self.ctx.rpc.node(self.target)
        listen = self.target.secondary_ip or self.target.primary_ip
        self.feedback(f"* starting the target VM on {self.target.name}")
        target_spec = instance_spec(cfg, inst, self.ctx.paths, mirror_node=self.target.uuid)
        await dst.instance_accept_migration(target_spec, self.port, listen)
        self.feedback(f"* migrating {inst.name} to {self.target.name} "
                      f"({'live' if self.live else 'non-live'})")
        try:
            stats = await src.instance_migrate(inst.name, listen, self.port, self.live)
        except BaseException:
            await dst.instance_abort_migration(inst.name)
            raise
        self.feedback(f"  memory moved in {stats.get('total_time_ms', 0) / 1000:.2f} s, guest "
                      f"paused {stats.get('downtime_ms', '?')} ms so far")
        # the guest is paused on both sides now; hand the mirror over, then resume
        await src.instance_finish_migration(inst.name, source=True, success=True)
        await src.mirror_start_secondary(drbd.mirror_disks(cfg, inst, self.source.uuid))
        swap_primary(inst)
        try:
            await dst.mirror_start_primary(drbd.mirror_disks(cfg, inst, self.target.uuid),
                                           ["none"] * len(inst.disks))
        except errors.HerdError as exc:
            self.feedback(f"  WARNING: mirror back to {self.source.name} failed "
                          f"({exc.message}); running degraded, activate-disks repairs it")
            await dst.mirror_start_primary(drbd.mirror_disks(cfg, inst, self.target.uuid),
                                           ["none"] * len(inst.disks), allow_degraded=True)
        await dst.instance_finish_migration(inst.name, source=False, success=True)
        await self.ctx.config.save()
        # the mirror back starts with nothing to copy; end the job once it reports in sync
        states = await dst.mirror_wait_sync(drbd.mirror_disks(cfg, inst, self.target.uuid),
                                            timeout=30)
        await drbd.record_sync(self.ctx, inst, states)
        self.feedback(f"* instance {inst.name} now runs on {self.target.name}")
        return stats
