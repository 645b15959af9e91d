"""recreate-disks: make an instance's missing disks again (empty), where the config says
they live — after a node lost its storage, or a copy was deleted by hand. Existing disks are
left alone; the instance must be stopped. For mirrored disks both copies are checked and a
recreated side is filled from the other one at the next activation.
"""

from __future__ import annotations

from herd import errors
from herd.jobs.locking import LockRequest
from herd.logic.base import LogicalUnit
from herd.logic.hooks import HookTargets
from herd.logic.instance_common import instance_locks, is_running
from herd.logic.templates import template_of
from herd.opcodes import OpInstanceRecreateDisks


class LUInstanceRecreateDisks(LogicalUnit[OpInstanceRecreateDisks]):
    OPCODE = OpInstanceRecreateDisks

    def locks(self) -> list[LockRequest]:
        return instance_locks(self.cfg, self.op.instance_name)

    async def check(self) -> None:
        cfg, op = self.cfg, self.op
        self.inst = cfg.get_instance(op.instance_name)
        if op.nodes or op.node_uuids or op.iallocator:
            raise errors.OpPrereqError("recreating disks on other nodes is not supported yet")
        indices = [d if isinstance(d, int) else d[0] for d in op.disks]
        bad = [i for i in indices if not (isinstance(i, int) and 0 <= i < len(self.inst.disks))]
        if bad:
            raise errors.ParameterError(f"invalid disk index(es) {bad} for {self.inst.name}: "
                                        f"it has {len(self.inst.disks)} disk(s)")
        self.indices = indices or list(range(len(self.inst.disks)))
        pnode = cfg.nodes[self.inst.primary_node]
        if await is_running(self.ctx, self.inst, pnode):
            raise errors.OpPrereqError(f"instance {self.inst.name} is running; stop it first")
        for uuid in self.inst.all_nodes:
            if cfg.nodes[uuid].offline:
                raise errors.OpPrereqError(f"node {cfg.nodes[uuid].name} is offline")

    def hooks_targets(self) -> HookTargets:
        return HookTargets(instance=self.inst)

    async def execute(self) -> list[str]:
        cfg, inst = self.cfg, self.inst
        made: list[str] = []
        template = template_of(inst)
        for uuid in inst.all_nodes:
            node = cfg.nodes[uuid]
            missing = await template.missing(self.ctx, inst, node, self.indices)
            if missing:
                await template.recreate(self.ctx, inst, node, missing)
            for index in missing:
                text = f"disk/{index} on {node.name}"
                self.feedback(f"* recreated {text}")
                made.append(text)
        if not made:
            self.feedback("all disks exist; nothing recreated")
        return made
