"""OP_INSTANCE_MOVE: copy a non-mirrored instance to another node (Ganeti's fields)."""

from __future__ import annotations

import dataclasses

from herd.opcodes.base import OpCode


@dataclasses.dataclass(kw_only=True)
class OpInstanceMove(OpCode):
    OP_ID = "OP_INSTANCE_MOVE"
    SUMMARY_FIELD = "instance_name"
    instance_name: str
    instance_uuid: str | None = None
    #: Seconds the guest gets to shut down on the source before it is stopped hard.
    shutdown_timeout: int = 120
    ignore_ipolicy: bool = False
    target_node: str | None = None
    target_node_uuid: str | None = None
    #: Ganeti's compression tool for the transfer ("none"; Herd copies raw, holes skipped).
    compress: str = "none"
    #: Go on when the guest cannot be shut down on the source (it may still write there).
    ignore_consistency: bool = False
