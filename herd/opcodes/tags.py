"""Tag opcodes (Ganeti's OP_TAGS_GET/SET/DEL/SEARCH): tags on the cluster, nodes, instances and
node groups, with Ganeti's field names (``kind``, ``name``, ``tags``)."""

from __future__ import annotations

import dataclasses

from herd.opcodes.base import OpCode

#: Ganeti's tag kinds.
TAG_KINDS = ("cluster", "node", "instance", "nodegroup", "network")


@dataclasses.dataclass(kw_only=True)
class OpTagsGet(OpCode):
    OP_ID = "OP_TAGS_GET"
    SUMMARY_FIELD = "kind"
    kind: str
    name: str | None = None
    use_locking: bool = False


@dataclasses.dataclass(kw_only=True)
class OpTagsSearch(OpCode):
    OP_ID = "OP_TAGS_SEARCH"
    SUMMARY_FIELD = "pattern"
    pattern: str


@dataclasses.dataclass(kw_only=True)
class OpTagsSet(OpCode):
    OP_ID = "OP_TAGS_SET"
    SUMMARY_FIELD = "kind"
    kind: str
    tags: list[str]
    name: str | None = None


@dataclasses.dataclass(kw_only=True)
class OpTagsDel(OpCode):
    OP_ID = "OP_TAGS_DEL"
    SUMMARY_FIELD = "kind"
    kind: str
    tags: list[str]
    name: str | None = None
