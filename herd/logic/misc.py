"""Logical units that are not about one object: the test delay (gnt-debug delay)."""

from __future__ import annotations

import asyncio

from herd import errors
from herd.jobs.locking import LEVEL_NODE, LockRequest
from herd.logic.base import LogicalUnit
from herd.opcodes import OpTestDelay


class LUTestDelay(LogicalUnit[OpTestDelay]):
    """Sleeps on the master. Without ``on_nodes`` it takes no locks, so that many run side by
    side (benchmarks); with them it holds those nodes' locks exclusively while it sleeps, as
    Ganeti's does (Herd sleeps on the master only: the locks are what tests need, e.g. a job
    that waits behind it)."""

    OPCODE = OpTestDelay

    def locks(self) -> list[LockRequest]:
        reqs = []
        for name in self.op.on_nodes:
            node = self.cfg.find_node(name)
            reqs.append(LockRequest(LEVEL_NODE, node.uuid if node else name))
        return reqs

    async def check(self) -> None:
        if self.op.duration < 0:
            raise errors.ParameterError(f"invalid duration {self.op.duration}: must be >= 0")
        for name in self.op.on_nodes:
            self.cfg.get_node(name)  # NotFoundError names the node and the known ones

    async def execute(self) -> None:
        rounds = self.op.repeat + 1
        for number in range(rounds):
            if self.op.repeat:  # Ganeti's "Test delay iteration i/n": progress a watcher sees
                self.feedback(f"test delay iteration {number + 1}/{rounds}")
            if self.op.duration:
                await asyncio.sleep(self.op.duration)
        if self.op.fail:
            raise errors.OpExecError("test delay asked to fail")
