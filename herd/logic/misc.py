"""Logical units that are not about one object: the test delay (gnt-debug delay)."""

from __future__ import annotations

import asyncio

from herd import errors
from herd.jobs.locking import LockRequest
from herd.logic.base import LogicalUnit
from herd.opcodes import OpTestDelay


class LUTestDelay(LogicalUnit[OpTestDelay]):
    """Sleeps on the master; takes no locks, so that many run side by side (benchmarks)."""

    OPCODE = OpTestDelay

    def locks(self) -> list[LockRequest]:
        return []

    async def check(self) -> None:
        if self.op.duration < 0:
            raise errors.ParameterError(f"invalid duration {self.op.duration}: must be >= 0")
        if self.op.on_nodes:
            raise errors.ParameterError("delays on nodes are not supported; use on_master")

    async def execute(self) -> None:
        for _ in range(self.op.repeat + 1):
            if self.op.duration:
                await asyncio.sleep(self.op.duration)
        if self.op.fail:
            raise errors.OpExecError("test delay asked to fail")
