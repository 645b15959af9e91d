"""Tags on the cluster, nodes, instances, node groups and networks (Ganeti's OP_TAGS_*).

Tags already live on every config object; these logical units read and change them with
Ganeti's rules: a tag is 1-128 characters of letters, digits and ``.+*/:@_-``, an object holds
at most 4096, adding an existing tag is a no-op, and deleting a tag the object lacks fails
without changing anything.
"""

from __future__ import annotations

import re
from typing import Any

from herd import errors, names
from herd.jobs.locking import LEVEL_CLUSTER, LEVEL_INSTANCE, LEVEL_NODE, LockRequest
from herd.logic.base import LogicalUnit
from herd.opcodes.tags import TAG_KINDS, OpTagsDel, OpTagsGet, OpTagsSearch, OpTagsSet

MAX_TAG_LEN = names.TAG.max_len
MAX_TAGS_PER_OBJ = 4096


def check_tag(tag: Any) -> str:
    return names.TAG.check(tag)


def tag_target(cfg: Any, kind: str, name: str | None) -> Any:
    """The config object that ``kind``/``name`` names (raises NotFoundError)."""
    if kind not in TAG_KINDS:
        raise errors.ParameterError(f"invalid tag kind '{kind}': allowed are "
                                    f"{', '.join(TAG_KINDS)}")
    if kind == "cluster":
        return cfg.cluster
    if not name:
        raise errors.ParameterError(f"tags of kind '{kind}' need the object's name")
    if kind == "node":
        return cfg.get_node(name)
    if kind == "instance":
        return cfg.get_instance(name)
    if kind == "nodegroup":
        for group in cfg.nodegroups.values():
            if name in (group.name, group.uuid):
                return group
        raise errors.NotFoundError(f"node group '{name}' does not exist")
    return cfg.get_network(name)


class _TagsLU(LogicalUnit[Any]):
    def locks(self) -> list[LockRequest]:
        op = self.op
        if op.kind == "instance" and op.name:
            inst = self.cfg.find_instance(op.name)
            return [LockRequest(LEVEL_CLUSTER, "cluster", shared=True),
                    LockRequest(LEVEL_INSTANCE, inst.name if inst else op.name)]
        if op.kind == "node" and op.name:
            node = self.cfg.find_node(op.name)
            return [LockRequest(LEVEL_CLUSTER, "cluster", shared=True),
                    LockRequest(LEVEL_NODE, node.uuid if node else op.name)]
        return [LockRequest(LEVEL_CLUSTER, "cluster")]

    async def check(self) -> None:
        self.target = tag_target(self.cfg, self.op.kind, self.op.name)
        self.tags = [check_tag(t) for t in self.op.tags]


class LUTagsGet(LogicalUnit[OpTagsGet]):
    OPCODE = OpTagsGet

    def locks(self) -> list[LockRequest]:
        return []

    async def execute(self) -> list[str]:
        return sorted(tag_target(self.cfg, self.op.kind, self.op.name).tags)


class LUTagsSearch(LogicalUnit[OpTagsSearch]):
    OPCODE = OpTagsSearch

    def locks(self) -> list[LockRequest]:
        return []

    async def check(self) -> None:
        try:
            self.regex = re.compile(self.op.pattern)
        except re.error as exc:
            raise errors.ParameterError(f"invalid search pattern '{self.op.pattern}': "
                                        f"{exc}") from None

    async def execute(self) -> list[list[str]]:
        cfg = self.cfg
        objects: list[tuple[str, Any]] = [("/cluster", cfg.cluster)]
        objects += [(f"/instances/{i.name}", i) for i in cfg.instances.values()]
        objects += [(f"/nodes/{n.name}", n) for n in cfg.nodes.values()]
        objects += [(f"/nodegroup/{g.name}", g) for g in cfg.nodegroups.values()]
        objects += [(f"/networks/{n.name}", n) for n in cfg.networks.values()]
        return [[path, tag] for path, obj in sorted(objects, key=lambda o: o[0])
                for tag in sorted(obj.tags) if self.regex.search(tag)]


class LUTagsSet(_TagsLU):
    OPCODE = OpTagsSet

    async def check(self) -> None:
        await super().check()
        new = set(self.target.tags) | set(self.tags)
        if len(new) > MAX_TAGS_PER_OBJ:
            raise errors.OpPrereqError(f"too many tags: {len(new)} > {MAX_TAGS_PER_OBJ}")

    async def execute(self) -> None:
        added = [t for t in dict.fromkeys(self.tags) if t not in self.target.tags]
        if not added:
            return
        self.target.tags = [*self.target.tags, *added]
        self.target.touch()
        await self.ctx.config.save()


class LUTagsDel(_TagsLU):
    OPCODE = OpTagsDel

    async def check(self) -> None:
        await super().check()
        missing = sorted(set(self.tags) - set(self.target.tags))
        if missing:
            raise errors.NotFoundError(f"tag(s) {', '.join(repr(t) for t in missing)} "
                                       "not found")

    async def execute(self) -> None:
        gone = set(self.tags)
        self.target.tags = [t for t in self.target.tags if t not in gone]
        self.target.touch()
        await self.ctx.config.save()
