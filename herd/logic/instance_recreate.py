"""recreate-disks: make an instance's missing disks again (empty), where the config says
they live — after a node lost its storage, or a copy was deleted by hand. Existing disks are
left alone; the instance must be stopped. For mirrored disks both copies are checked and a
recreated side is filled from the other one at the next activation.

With ``-n NODE[:NODE]`` or ``-I ALLOCATOR`` (Ganeti's) every disk is made again, empty, on
other nodes — the way back for an instance whose nodes are gone: the instance then lives
there. An allocator gets an ``allocate`` request with the instance's own specs, as Ganeti's.
"""

from __future__ import annotations

from herd import errors
from herd.allocator import protocol
from herd.jobs.locking import LockRequest
from herd.logic import group_checks, iallocator
from herd.logic.base import LogicalUnit
from herd.logic.hooks import HookTargets
from herd.logic.instance_common import instance_locks, is_running
from herd.logic.templates import Claim, template_of
from herd.objects import Instance, Node
from herd.opcodes import OpInstanceRecreateDisks


class LUInstanceRecreateDisks(LogicalUnit[OpInstanceRecreateDisks]):
    OPCODE = OpInstanceRecreateDisks
    USES_IALLOCATOR = True

    def locks(self) -> list[LockRequest]:
        extra = tuple(self.op.nodes or ())
        if self.op.iallocator:  # the allocator may pick any node
            extra = tuple(n.name for n in self.cfg.nodes.values())
        return instance_locks(self.cfg, self.op.instance_name, extra_nodes=extra)

    async def check(self) -> None:
        cfg, op = self.cfg, self.op
        self.inst = cfg.get_instance(op.instance_name)
        self.new_nodes: list[Node] | None = None
        if op.node_uuids:
            raise errors.ParameterError("give the new nodes by name (nodes), not node_uuids")
        if op.nodes or op.iallocator:
            await self._check_new_nodes()
            return
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

    async def _check_new_nodes(self) -> None:
        cfg, op, inst = self.cfg, self.op, self.inst
        if op.nodes and op.iallocator:
            raise errors.ParameterError(f"give either nodes (-n {':'.join(op.nodes)}) or an "
                                        f"instance allocator (-I {op.iallocator}), not both")
        if op.disks:
            raise errors.ParameterError("recreating on other nodes makes every disk again: "
                                        "give no --disk")
        if inst.admin_state == "up":
            raise errors.OpPrereqError(f"instance {inst.name} is marked up; stop it first "
                                       "(gnt-instance shutdown)")
        count = len(inst.all_nodes)
        if op.iallocator:
            nodes = await self._allocate(count)
        else:
            nodes = [cfg.get_node(n) for n in op.nodes]
        if len(nodes) != count:
            raise errors.ParameterError(
                f"instance {inst.name} has {count} node(s): give {count} with -n, "
                f"not {len(nodes)}")
        if len({n.uuid for n in nodes}) != len(nodes):
            raise errors.ParameterError(f"the same node twice: {', '.join(op.nodes)}")
        holding = [n.name for n in nodes if n.uuid in inst.all_nodes]
        if holding:
            raise errors.OpPrereqError(
                f"node(s) {', '.join(holding)} already hold disks of {inst.name}: give other "
                "nodes, or recreate the missing disks in place (no -n/-I)")
        for node in nodes:
            if node.offline or node.drained or not node.vm_capable:
                raise errors.OpPrereqError(f"node {node.name} is offline, drained or not "
                                           "vm_capable")
        for other in nodes[1:]:
            group_checks.check_same_group(cfg, nodes[0], other)
        self.new_nodes = nodes
        self.indices = list(range(len(inst.disks)))

    async def _allocate(self, count: int) -> list[Node]:
        cfg, inst = self.cfg, self.inst
        name = protocol.resolve_name(self.op.iallocator, cfg.cluster.default_iallocator)
        template = template_of(inst)
        be = cfg.filled_beparams(inst)
        request = iallocator.allocate_request(
            inst.name, inst.disk_template, be, inst.disks, inst.nics,
            disk_space_total=iallocator.disk_space(inst), required_nodes=count,
            hypervisor=inst.hypervisor, os=inst.os, tags=list(inst.tags),
            # other nodes than its own: the copies there have the same names
            restrict_to_nodes=sorted(n.name for n in cfg.nodes.values()
                                     if n.uuid not in inst.all_nodes))
        result = await iallocator.choose(
            self.ctx, name, request, lvm=template.uses_vg(cfg), feedback=self.feedback,
            refusal=f"cannot place the disks of {inst.name}",
            chose=f"nodes for instance {inst.name}")
        return [cfg.get_node(n) for n in result]

    def hooks_targets(self) -> HookTargets:
        return HookTargets(instance=self.inst)

    def cleanup(self) -> None:
        self.ctx.reservations.release(self)

    async def _execute_moved(self, nodes: list[Node]) -> list[str]:
        """Every disk made again, empty, on ``nodes``; the instance lives there from now on.
        Nothing is removed from the old nodes (they are usually gone; a reachable one keeps
        its copies, which verify reports as orphans)."""
        cfg, inst = self.cfg, self.inst
        template = template_of(inst)
        new = Instance.from_dict(inst.to_dict())
        template.assign(cfg, new, new.disks, nodes[0].uuid,
                        nodes[1].uuid if len(nodes) > 1 else None,
                        Claim(self.ctx.reservations, self))
        new.primary_node = nodes[0].uuid
        new.disks_active = False
        await template.create(self.ctx, new, self.feedback, rollback=True)
        new.touch()
        cfg.instances[inst.uuid] = new
        try:
            await self.ctx.config.save()
        except BaseException:
            cfg.instances[inst.uuid] = inst
            await template.remove(self.ctx, new, self.feedback, stopped=True)
            raise
        made = [f"disk/{i} on {n.name}" for n in nodes for i in range(len(new.disks))]
        for text in made:
            self.feedback(f"* recreated {text}")
        return made

    async def execute(self) -> list[str]:
        if self.new_nodes is not None:
            return await self._execute_moved(self.new_nodes)
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
