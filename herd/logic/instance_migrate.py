"""Migration: move a running instance with mirrored disks to its secondary node.

The steps and their order are in :mod:`herd.logic.live_move`; ``--cleanup`` (recovering from
a migration that stopped half-way) is :mod:`herd.logic.migrate_cleanup`.
"""

from __future__ import annotations

from typing import Any

from herd import errors
from herd.jobs.locking import LockRequest
from herd.logic import live_move, migrate_cleanup
from herd.logic.base import LogicalUnit
from herd.logic.hooks import HookTargets
from herd.logic.instance_common import instance_locks
from herd.logic.specs import filled_hvparams
from herd.logic.templates import template_of
from herd.opcodes import OpInstanceMigrate


class LUInstanceMigrate(LogicalUnit[OpInstanceMigrate]):
    OPCODE = OpInstanceMigrate

    def locks(self) -> list[LockRequest]:
        return instance_locks(self.cfg, self.op.instance_name)

    async def check(self) -> None:
        cfg, op = self.cfg, self.op
        self.inst = cfg.get_instance(op.instance_name)
        if not template_of(self.inst).can_migrate:
            raise errors.OpPrereqError(f"instance's disk layout '{self.inst.disk_template}' "
                                       "does not allow migrations")
        self.source = cfg.nodes[self.inst.primary_node]
        self.target = cfg.nodes[self.inst.secondary_nodes[0]]
        if op.cleanup:
            migrate_cleanup.check(self.inst, self.source, self.target)
            return
        if op.target_node and cfg.get_node(op.target_node).uuid != self.target.uuid:
            raise errors.OpPrereqError(f"instances with mirrored disks can only migrate to "
                                       f"their secondary node ({self.target.name})")
        await live_move.check_movable(self.ctx, self.inst, self.source, self.target)
        self.live = live_move.migration_mode(
            self.inst, filled_hvparams(cfg, self.inst, self.ctx.paths), op.mode, op.live)

    def hooks_targets(self) -> HookTargets:
        return HookTargets(instance=self.inst, target=self.target.name)

    def hooks_env(self) -> dict[str, Any]:
        return {"MIGRATE_LIVE": getattr(self, "live", None),
                "OLD_PRIMARY": self.source.name, "NEW_PRIMARY": self.target.name,
                "OLD_SECONDARY": self.target.name, "NEW_SECONDARY": self.source.name}

    async def execute(self) -> dict[str, Any]:
        if self.op.cleanup:
            return await migrate_cleanup.cleanup(self.ctx, self.inst, self.feedback)
        return await live_move.migrate(self.ctx, self.inst, self.source, self.target,
                                       live=self.live, feedback=self.feedback)
