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


def allocator_refusal(op: object, lu: type[base.LogicalUnit[Any]]) -> str | None:
    """Why an operation naming an instance allocator (``-I NAME``, RAPI ``iallocator``) is
    refused, or None: only logical units that place something with it (``USES_IALLOCATOR``)
    take one. Elsewhere Ganeti's ``-I`` used to be accepted and quietly ignored, so that a
    placement the admin did not choose could happen; instances with mirrored disks move to
    their secondary node, which no allocator chooses."""
    name = getattr(op, "iallocator", None)
    if not name or lu.USES_IALLOCATOR or issubclass(lu, LUUnsupported):
        return None  # (an operation Herd lacks says so itself, more to the point)
    op_id = getattr(op, "OP_ID", type(op).__name__)
    return (f"{op_id} does not take an instance allocator ('{name}', -I/--iallocator): "
            "instances with mirrored disks move to their secondary node; leave -I out")


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
