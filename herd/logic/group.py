"""Node groups: gnt-group add/modify/rename/remove/assign-nodes/evacuate and gnt-instance
change-group (Ganeti's OP_GROUP_* and OP_INSTANCE_CHANGE_GROUP).

Groups are config objects changed like the rest (one save per operation). A group's ndparams,
diskparams and ipolicy are overrides of the cluster's (herd.objects.params). Moving
instances between groups is planned by an instance allocator (a change-group request) and
carried out, as in Ganeti, by jobs this operation submits: one per instance (replace-disks
to the target group, migrate, replace-disks), whose ids are its result.
"""

from __future__ import annotations

from typing import Any

from herd import errors, names
from herd.allocator import protocol
from herd.jobs.locking import LEVEL_CLUSTER, LockRequest
from herd.logic import group_checks, iallocator
from herd.logic.base import LogicalUnit
from herd.logic.hooks import HookTargets
from herd.logic.templates import by_name, template_of
from herd.objects import Instance, NodeGroup, params
from herd.opcodes import (
    OpGroupAdd,
    OpGroupAssignNodes,
    OpGroupEvacuate,
    OpGroupRemove,
    OpGroupRename,
    OpGroupSetParams,
    OpInstanceChangeGroup,
    OpInstanceMultiAlloc,
)

#: Ganeti's key of the job ids in the result of an operation that submits jobs.
JOB_IDS_KEY = "jobs"


def _no_static_state(op: Any) -> None:
    for name in ("hv_state", "disk_state"):
        if getattr(op, name):
            raise errors.ParameterError(
                f"{name} is not supported: Herd measures nodes' resources instead of "
                "taking them from the admin (leave --hypervisor-state/--disk-state out)")


class _GroupParams:
    """The checked parameter changes of an add or modify."""

    def __init__(self, op: Any) -> None:
        _no_static_state(op)
        self.alloc_policy = (params.check_alloc_policy(op.alloc_policy)
                             if op.alloc_policy is not None else None)
        self.ndparams = params.check_ndparams(op.ndparams or {})
        self.diskparams = params.check_diskparams(op.diskparams or {})
        self.ipolicy = params.check_ipolicy(op.ipolicy or {})

    def apply(self, group: NodeGroup) -> None:
        if self.alloc_policy is not None:
            group.alloc_policy = self.alloc_policy
        group.ndparams = params.update_overrides(group.ndparams, self.ndparams)
        group.diskparams = params.update_overrides(group.diskparams, self.diskparams)
        group.ipolicy = params.update_overrides(group.ipolicy, self.ipolicy)


class _GroupLU(LogicalUnit[Any]):
    def hooks_targets(self) -> HookTargets:
        group = getattr(self, "group", None)  # (add: the group does not exist before)
        return HookTargets(group=group.uuid if group is not None else None)


class LUGroupAdd(_GroupLU):
    OPCODE = OpGroupAdd

    async def check(self) -> None:
        names.GROUP.check(self.op.group_name)
        if self.cfg.find_group(self.op.group_name) is not None:
            raise errors.OpPrereqError(f"node group '{self.op.group_name}' already exists")
        self.changes = _GroupParams(self.op)

    async def execute(self) -> str:
        group = NodeGroup(name=self.op.group_name)
        self.changes.apply(group)
        self.cfg.nodegroups[group.uuid] = group
        await self.ctx.config.save()
        return group.uuid


class LUGroupSetParams(_GroupLU):
    OPCODE = OpGroupSetParams

    async def check(self) -> None:
        op = self.op
        self.group = self.cfg.get_group(op.group_name)
        if all(getattr(op, f) is None for f in ("alloc_policy", "ndparams", "diskparams",
                                                  "ipolicy", "hv_state", "disk_state")):
            raise errors.ParameterError("please give at least one of the parameters to modify")
        self.changes = _GroupParams(op)

    async def execute(self) -> list[list[str]]:
        group, cfg = self.group, self.cfg
        self.changes.apply(group)
        group.touch()
        # Ganeti only warns about instances the new policy no longer allows
        policy = cfg.filled_ipolicy(group)
        for inst in sorted(cfg.instances.values(), key=lambda i: i.name):
            if cfg.nodes.get(inst.primary_node) and cfg.nodes[inst.primary_node].group == \
                    group.uuid:
                why = ipolicy_violation(cfg, inst, policy)
                if why:
                    self.feedback(f"WARNING: instance {inst.name} violates the new instance "
                                  f"policy: {why}")
        await self.ctx.config.save()
        changed = [["alloc_policy", group.alloc_policy]] if self.op.alloc_policy else []
        for name in ("ndparams", "diskparams", "ipolicy"):
            if getattr(self.op, name):
                changed.append([name, str(getattr(group, name))])
        return changed


def ipolicy_violation(cfg: Any, inst: Instance, policy: dict[str, Any]) -> str | None:
    """Why the instance's specs fall outside every min/max pair of ``policy`` (or its
    template is not allowed), or None. ``disk-size`` is per disk (Ganeti #474)."""
    be = cfg.filled_beparams(inst)
    if inst.disk_template not in policy.get("disk-templates", [inst.disk_template]):
        return f"disk template {inst.disk_template} is not allowed"
    specs = {"memory-size": int(be["maxmem"]), "cpu-count": int(be["vcpus"]),
             "disk-count": len(inst.disks), "nic-count": len(inst.nics),
             "spindle-use": int(be.get("spindle_use", 1))}
    sizes = [d.size for d in inst.disks]
    reasons = []
    for pair in policy.get("minmax", []):
        low, high = pair["min"], pair["max"]
        bad = [f"{k} {v} not in {low[k]}..{high[k]}" for k, v in specs.items()
               if not low[k] <= v <= high[k]]
        bad += [f"disk-size {s} not in {low['disk-size']}..{high['disk-size']}"
                for s in sizes if not low["disk-size"] <= s <= high["disk-size"]]
        if not bad:
            return None
        reasons.append(", ".join(bad))
    return "; ".join(reasons) or None


class LUGroupRename(_GroupLU):
    OPCODE = OpGroupRename

    async def check(self) -> None:
        self.group = self.cfg.get_group(self.op.group_name)
        names.GROUP.check(self.op.new_name)
        other = self.cfg.find_group(self.op.new_name)
        if other is not None and other.uuid != self.group.uuid:
            raise errors.OpPrereqError(f"node group '{self.op.new_name}' already exists")

    async def execute(self) -> str:
        self.group.name = self.op.new_name
        self.group.touch()
        await self.ctx.config.save()
        return self.op.new_name


class LUGroupRemove(_GroupLU):
    OPCODE = OpGroupRemove

    async def check(self) -> None:
        self.group = self.cfg.get_group(self.op.group_name)
        refusal = group_checks.removal_refusal(self.cfg, self.group)
        if refusal:
            raise errors.OpPrereqError(refusal)

    async def execute(self) -> None:
        del self.cfg.nodegroups[self.group.uuid]
        await self.ctx.config.save()


class LUGroupAssignNodes(_GroupLU):
    OPCODE = OpGroupAssignNodes

    async def check(self) -> None:
        cfg, op = self.cfg, self.op
        self.group = cfg.get_group(op.group_name)
        self.nodes = [cfg.get_node(n) for n in op.nodes]
        moving = [n.uuid for n in self.nodes if n.group != self.group.uuid]
        new, still = group_checks.assignment_splits(cfg, moving, self.group.uuid)
        if still:
            self.feedback(f"WARNING: these instances are split between node groups and stay "
                          f"split: {', '.join(still)}")
        if new:
            text = (f"moving node(s) {', '.join(cfg.node_name(u) for u in moving)} to group "
                    f"{self.group.name} splits these mirrored instances between node groups: "
                    f"{', '.join(new)}")
            if not op.force:
                raise errors.OpPrereqError(text + " (--force to do it anyway)")
            self.feedback(f"WARNING: {text}")
        self.moving = moving

    async def execute(self) -> None:
        for uuid in self.moving:
            node = self.cfg.nodes[uuid]
            node.group = self.group.uuid
            node.touch()
        self.group.touch()
        await self.ctx.config.save()


class _GroupMoves(LogicalUnit[Any]):
    """Plans moves between groups with an allocator's change-group request and submits the
    answer's jobs."""

    USES_IALLOCATOR = True

    def locks(self) -> list[LockRequest]:
        return [LockRequest(LEVEL_CLUSTER, "cluster")]

    async def plan(self, instances: list[Instance], current: set[str]) -> None:
        cfg, op = self.cfg, self.op
        bad = [i.name for i in instances if not template_of(i).needs_secondary]
        if bad:
            raise errors.OpPrereqError(
                f"instance(s) {', '.join(sorted(bad))} have no mirrored disks and cannot "
                "change node group (gnt-instance move copies one to a node of the other "
                "group)")
        targets = group_checks.target_groups(cfg, current, op.target_groups)
        targets = group_checks.without_missing_networks(cfg, instances, targets)
        self.targets = targets
        self.allocator = protocol.resolve_name(op.iallocator, cfg.cluster.default_iallocator)
        request = protocol.change_group_request([i.name for i in instances], targets)
        result = await iallocator.plan_moves(
            self.ctx, self.allocator, request, instances,
            cannot="move the instance(s) to another group", feedback=self.feedback)
        self.jobs = group_checks.move_jobs(
            result.jobs, early_release=op.early_release,
            force_failover=getattr(op, "force_failover", False),
            sequential=getattr(op, "sequential", False),
            stopped=[i.name for i in instances if i.admin_state != "up"])

    def hooks_env(self) -> dict[str, Any]:
        return {"TARGET_GROUPS": " ".join(getattr(self, "targets", []))}

    async def execute(self) -> dict[str, Any]:
        submit = self.ctx.submit_job
        if submit is None:
            raise errors.ProgrammerError("this master cannot submit jobs")
        ids = []
        for ops in self.jobs:
            job_id = await submit([{**op, "priority": self.op.priority,
                                    "reason": list(self.op.reason)} for op in ops])
            self.feedback(f"Submitted job {job_id}: "
                          f"{', '.join(o['OP_ID'].removeprefix('OP_') for o in ops)} "
                          f"({ops[0]['instance_name']})")
            ids.append([True, job_id])
        return {JOB_IDS_KEY: ids}


class LUInstanceChangeGroup(_GroupMoves):
    OPCODE = OpInstanceChangeGroup

    async def check(self) -> None:
        self.inst = self.cfg.get_instance(self.op.instance_name)
        await self.plan([self.inst], group_checks.groups_of(self.cfg, self.inst))

    def hooks_targets(self) -> HookTargets:
        return HookTargets(instance=self.inst)


class LUGroupEvacuate(_GroupMoves):
    OPCODE = OpGroupEvacuate

    def hooks_targets(self) -> HookTargets:
        return HookTargets(group=self.group.uuid)

    async def check(self) -> None:
        cfg = self.cfg
        self.group = cfg.get_group(self.op.group_name)
        instances = sorted((i for i in cfg.instances.values()
                            if self.group.uuid in group_checks.groups_of(cfg, i)),
                           key=lambda i: i.name)
        if not instances:
            self.jobs: list[list[dict[str, Any]]] = []
            self.feedback(f"node group {self.group.name} has no instances to move")
            return
        await self.plan(instances, {self.group.uuid})


class LUInstanceMultiAlloc(LogicalUnit[OpInstanceMultiAlloc]):
    """One multi-allocate request for every instance, then one creation job per placed
    instance with the nodes the allocator chose (Ganeti's LUInstanceMultiAlloc). Instances
    it cannot place are reported, each with its reason, in ``allocation_failed``; the
    operation fails only when the allocator itself refuses."""

    OPCODE = OpInstanceMultiAlloc
    USES_IALLOCATOR = True

    def locks(self) -> list[LockRequest]:
        return [LockRequest(LEVEL_CLUSTER, "cluster")]

    async def check(self) -> None:
        cfg, op = self.cfg, self.op
        if not op.instances:
            raise errors.ParameterError("no instances to allocate (instances is empty)")
        creates = [multi_alloc_create(cfg, index, data)
                   for index, data in enumerate(op.instances)]
        seen: set[str] = set()
        for create in creates:
            if create.instance_name in seen:
                raise errors.ParameterError(f"instance {create.instance_name} is given twice")
            seen.add(create.instance_name)
        requests = [multi_alloc_request(cfg, c) for c in creates]
        name = protocol.resolve_name(op.iallocator, cfg.cluster.default_iallocator)
        lvm = any(by_name(c.disk_template).uses_vg(cfg) for c in creates)
        success, info, result = await iallocator.run(
            self.ctx, name, protocol.multi_allocate_request(requests), lvm=lvm,
            feedback=self.feedback)
        if not success:
            raise errors.OpPrereqError(f"instance allocator '{name}' cannot place the "
                                       f"instances: {info}")
        placed, failed = result
        self.failed = list(failed)
        self.jobs: list[dict[str, Any]] = []
        for create in creates:
            nodes = placed.get(create.instance_name)
            if nodes is None:
                continue
            self.feedback(f"Selected nodes for instance {create.instance_name} via "
                          f"iallocator {name}: {', '.join(nodes)}")
            body = {k: v for k, v in create.to_dict().items() if k != "iallocator"}
            body.update(pnode=nodes[0], snode=nodes[1] if len(nodes) > 1 else None,
                        priority=op.priority, reason=list(op.reason))
            self.jobs.append(body)
        if self.failed:
            self.feedback(f"WARNING: instance allocator '{name}' could not place "
                          f"{', '.join(self.failed)}: {info}")

    async def execute(self) -> dict[str, Any]:
        submit = self.ctx.submit_job
        if submit is None:
            raise errors.ProgrammerError("this master cannot submit jobs")
        ids = []
        for body in self.jobs:
            ids.append([True, await submit([body])])
        return {JOB_IDS_KEY: ids,
                "allocatable": [b["instance_name"] for b in self.jobs],
                "allocation_failed": self.failed}


def multi_alloc_create(cfg: Any, index: int, data: Any) -> Any:
    """One instance of a multi-allocation as its OP_INSTANCE_CREATE, refused with the reason
    when it names nodes or an allocator of its own (the multi-allocation chooses)."""
    from herd.opcodes import opcode_from_dict

    if not isinstance(data, dict) or data.get("OP_ID", "OP_INSTANCE_CREATE") != \
            "OP_INSTANCE_CREATE":
        raise errors.ParameterError(f"instance {index} of the multi-allocation must be an "
                                    "OP_INSTANCE_CREATE body")
    create = opcode_from_dict({**data, "OP_ID": "OP_INSTANCE_CREATE"})
    if create.pnode or create.snode or create.iallocator:
        raise errors.ParameterError(
            f"instance {create.instance_name}: the multi-allocation chooses the nodes; give "
            "no pnode, snode or iallocator per instance")
    if cfg.find_instance(create.instance_name) is not None:
        raise errors.OpPrereqError(f"instance {create.instance_name} already exists")
    return create


def multi_alloc_request(cfg: Any, create: Any) -> dict[str, Any]:
    """The allocate request of one instance of a multi-allocation, from its create body."""
    from herd.units import parse_size

    template = by_name(create.disk_template)
    be = params.fill(params.BE_DEFAULTS, cfg.cluster.beparams,
                     params.check_beparams(create.beparams or {}))
    disks = [{"size": parse_size(d.get("size"), f"size of disk {i}"),
              "mode": d.get("mode", "rw")} for i, d in enumerate(create.disks)]
    return protocol.allocate_request(
        name=create.instance_name, disk_template=template.name, memory=int(be["maxmem"]),
        vcpus=int(be["vcpus"]), spindle_use=int(be.get("spindle_use", 1)), disks=disks,
        disk_space_total=template.disk_space_total([d["size"] for d in disks]),
        nics=[dict(n) for n in create.nics],
        required_nodes=2 if template.needs_secondary else 1,
        hypervisor=create.hypervisor or cfg.cluster.enabled_hypervisors[0],
        os=create.os_type or "", tags=list(create.tags))
