"""gnt-cluster verify-disks: find mirrored disks that are not active or not in sync, and
repair what can be repaired (activate them, reattach a secondary that came back).

This is also what a watcher runs periodically: a secondary that returns after a crash or a
partition gets back only what changed while it was away.
"""

from __future__ import annotations

from typing import Any

from herd import errors
from herd.jobs.locking import LEVEL_CLUSTER, LockRequest
from herd.logic import drbd
from herd.logic.base import LogicalUnit
from herd.logic.templates import template_of
from herd.opcodes import OpClusterVerifyDisks


class LUClusterVerifyDisks(LogicalUnit[OpClusterVerifyDisks]):
    OPCODE = OpClusterVerifyDisks

    def locks(self) -> list[LockRequest]:
        return [LockRequest(LEVEL_CLUSTER, "cluster")]

    async def execute(self) -> dict[str, Any]:
        cfg = self.cfg
        repaired: list[str] = []
        problems: dict[str, str] = {}
        for inst in sorted(cfg.instances.values(), key=lambda i: i.name):
            if template_of(inst).copies < 2 or not inst.disks:
                continue
            wanted = inst.admin_state == "up" or inst.disks_active
            states = await drbd.status(self.ctx, inst)
            if any(st.get("error") for st in states):
                problems[inst.name] = states[0]["error"]
                self.feedback(f"  - ERROR: instance {inst.name}: primary node not answering")
                continue
            active = all(st.get("role") == "primary" for st in states)
            healthy = active and all(st.get("connected") for st in states)
            if healthy and any(st.get("in_sync") for st in states):
                # the secondary's records follow the primary's (queries no longer do this;
                # the watcher runs verify-disks every few minutes)
                await drbd.settle_secondary(self.ctx, inst)
            if not wanted or healthy:
                continue
            what = "not active" if not active else "degraded"
            self.feedback(f"* activating disks of instance '{inst.name}' ({what})")
            try:
                await drbd.activate(self.ctx, inst, self.feedback)
                repaired.append(inst.name)
            except errors.HerdError as exc:
                problems[inst.name] = exc.message
                self.feedback(f"  - ERROR: instance {inst.name}: {exc.message}")
        return {"repaired": repaired, "problems": problems}
