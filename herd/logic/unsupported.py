"""The logical unit of operations Herd does not carry out yet (see herd.opcodes.instance_extra).

Their jobs are accepted and fail in the check phase with OpPrereqError naming the operation,
as Ganeti fails an operation the cluster cannot perform; nothing is changed. The unit is
registered only for OP_IDs that no real logical unit claimed, so a module that brings the real
operation wins whatever the import order.
"""

from __future__ import annotations

from typing import Any

from herd import errors
from herd.jobs.locking import LockRequest
from herd.logic import base
from herd.opcodes.instance_extra import UNBACKED, UnbackedOpCode


def allocator_refusal(op: object) -> str | None:
    """Why an operation asking for an instance allocator (``-I NAME``, RAPI ``iallocator``)
    is refused, or None. Herd has no allocator yet; Ganeti's ``-I`` was accepted and quietly
    ignored here before, so a placement the admin did not choose could happen. An
    operation with an allocator must say so in its check (the allocator issue lifts this)."""
    name = getattr(op, "iallocator", None)
    if not name:
        return None
    return (f"instance allocator '{name}' (-I/--iallocator) requested, but Herd has no "
            "allocator yet: name the nodes instead (-n NODE[:SECONDARY] for add, "
            "--new-secondary for replace-disks, -n NODE for migrate, failover and evacuate)")


class LUUnsupported(base.LogicalUnit[UnbackedOpCode]):
    def locks(self) -> list[LockRequest]:
        return []

    async def check(self) -> None:
        what = UNBACKED.get(self.op.OP_ID, (self.op.OP_ID,))[0]
        raise errors.OpPrereqError(
            f"{what} ({self.op.OP_ID}) is not supported by this version of Herd")

    async def execute(self) -> Any:  # never reached: check() always refuses
        raise errors.ProgrammerError(f"{self.op.OP_ID} has no implementation")


for _op_id in UNBACKED:
    base._LU_REGISTRY.setdefault(_op_id, LUUnsupported)
