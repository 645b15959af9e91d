"""Opcodes of node storage units (Ganeti's ``gnt-node list-storage``, RAPI
``/2/nodes/NAME/storage``)."""

from __future__ import annotations

import dataclasses

from herd.opcodes.base import OpCode


@dataclasses.dataclass(kw_only=True)
class OpNodeQueryStorage(OpCode):
    """Storage units of nodes; the result is one list of values per unit, in the order of
    ``output_fields`` (Ganeti's). ``storage_type`` None: the cluster's default (lvm-vg when the
    cluster has a volume group, else file)."""

    OP_ID = "OP_NODE_QUERY_STORAGE"
    nodes: list[str] = dataclasses.field(default_factory=list)
    storage_type: str | None = None
    name: str | None = None
    output_fields: list[str] = dataclasses.field(default_factory=list)
