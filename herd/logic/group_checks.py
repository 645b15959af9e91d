"""Node group decisions, pure functions of the config (no RPC, no locks): whether a change
would split a mirrored instance between groups, whether a group may go, which groups an
instance may move to, and how an allocator's move jobs are submitted.

A mirrored instance (drbd) keeps both copies in one node group: creation, replace-disks and
template conversions refuse a secondary in another group than the primary's; only a
change-group (or a group evacuation) passes through such a state, one step of its plan.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from typing import Any

from herd import errors
from herd.logic.network_pool import missing_networks
from herd.logic.templates import template_of
from herd.objects import ConfigData, Instance, Node, NodeGroup
from herd.opcodes import OpInstanceFailover, OpInstanceMigrate, OpInstanceReplaceDisks

#: The opcodes of move jobs (an allocator's answer holds only these: protocol.EVAC_OPCODES).
_MOVE_OPS = {cls.OP_ID: cls for cls in (OpInstanceFailover, OpInstanceMigrate,
                                         OpInstanceReplaceDisks)}


def groups_of(cfg: ConfigData, inst: Instance) -> set[str]:
    """The uuids of the groups holding the instance's nodes."""
    return {cfg.nodes[n].group for n in inst.all_nodes if n in cfg.nodes}


def secondary_group_refusal(cfg: ConfigData, primary: Node, secondary: Node) -> str | None:
    """Why a mirror with these two nodes is refused (they are in different node groups),
    or None. Ganeti only warns; Herd keeps a mirror's copies in one group, as allocators
    and hbal assume (a split instance is invisible to balancing)."""
    if primary.group == secondary.group:
        return None
    pgroup, sgroup = cfg.nodegroups.get(primary.group), cfg.nodegroups.get(secondary.group)
    return (f"the secondary node {secondary.name} is in node group "
            f"{sgroup.name if sgroup else secondary.group}, the primary {primary.name} in "
            f"{pgroup.name if pgroup else primary.group}: a mirrored instance keeps both "
            "copies in one group (use gnt-instance change-group to move it between groups)")


def check_same_group(cfg: ConfigData, primary: Node, secondary: Node) -> None:
    refusal = secondary_group_refusal(cfg, primary, secondary)
    if refusal is not None:
        raise errors.OpPrereqError(refusal)


def assignment_splits(cfg: ConfigData, node_uuids: Iterable[str],
                      group_uuid: str) -> tuple[list[str], list[str]]:
    """What moving ``node_uuids`` into the group does to mirrored instances (Ganeti's
    CheckAssignmentForSplitInstances): (instances it would newly split between groups,
    instances already split that stay split). Names, sorted."""
    moving = set(node_uuids)

    def group_after(uuid: str) -> str:
        return group_uuid if uuid in moving else cfg.nodes[uuid].group

    new, still = [], []
    for inst in cfg.instances.values():
        if not template_of(inst).needs_secondary or not moving & set(inst.all_nodes):
            continue
        nodes = [n for n in inst.all_nodes if n in cfg.nodes]
        before = {cfg.nodes[n].group for n in nodes}
        after = {group_after(n) for n in nodes}
        if len(after) > 1:
            (new if len(before) == 1 else still).append(inst.name)
    return sorted(new), sorted(still)


def removal_refusal(cfg: ConfigData, group: NodeGroup) -> str | None:
    """Why the group cannot be removed (it has nodes; it is the last one), or None."""
    members = sorted(n.name for n in cfg.nodes.values() if n.group == group.uuid)
    if members:
        return (f"node group {group.name} is not empty: it has node(s) "
                f"{', '.join(members)}; assign them to another group first")
    if len(cfg.nodegroups) <= 1:
        return f"node group {group.name} is the last one and cannot be removed"
    return None


def target_groups(cfg: ConfigData, current: set[str],
                  requested: list[str] | None) -> list[str]:
    """The uuids of the groups an instance (or a group's instances) in ``current`` may move
    to: the ones named (``--to``), none of them a current group, or else every other
    group. Unallocable groups are left to the allocator, which never picks them."""
    if requested:
        out = []
        for name in requested:
            group = cfg.get_group(name)
            if group.uuid in current:
                raise errors.OpPrereqError(
                    f"node group {group.name} cannot be a target: the instance(s) are in it")
            if group.uuid not in out:
                out.append(group.uuid)
        return out
    out = sorted((g.uuid for g in cfg.nodegroups.values() if g.uuid not in current),
                 key=lambda u: cfg.nodegroups[u].name)
    if not out:
        raise errors.OpPrereqError("there is no other node group to move to")
    return out


def without_missing_networks(cfg: ConfigData, instances: list[Instance],
                             targets: list[str]) -> list[str]:
    """The targets every instance's networks are connected to (Ganeti #1016: change-group
    did not check, and left instances without their networks); none left is refused,
    naming what each group lacks."""
    kept, why = [], []
    for uuid in targets:
        lacking = sorted({n for inst in instances for n in missing_networks(cfg, inst, uuid)})
        if lacking:
            why.append(f"{cfg.nodegroups[uuid].name} lacks network(s) {', '.join(lacking)}")
        else:
            kept.append(uuid)
    if not kept:
        raise errors.OpPrereqError("no target node group is connected to the instance's "
                                   f"networks: {'; '.join(why)}")
    return kept


def move_jobs(jobs: list[list[dict[str, Any]]], *, early_release: bool = False,
              force_failover: bool = False, sequential: bool = False,
              stopped: Iterable[str] = ()) -> list[list[dict[str, Any]]]:
    """The jobs a change-group or group evacuation submits, from an allocator's answer (one
    job per instance, as Ganeti): replace-disks steps are marked as group changes (they pass
    through a secondary in the target group) and take ``early_release``; fields Herd's
    opcodes lack are dropped (as node evacuation does); ``force_failover``
    turns migrations into failovers, as is a migration of a ``stopped`` instance (Ganeti's
    allow_failover); ``sequential`` runs every move in one job, one after
    the other, stopping at the first failure (Ganeti chains jobs with dependencies)."""
    stopped_names = set(stopped)
    out: list[list[dict[str, Any]]] = []
    for job in jobs:
        ops = []
        for data in job:
            # fields of Ganeti's opcodes Herd's lack (hail sends some) are left out
            known = {f.name for f in dataclasses.fields(_MOVE_OPS[data["OP_ID"]])}
            op = {k: copy.deepcopy(v) for k, v in data.items()
                  if k == "OP_ID" or (k in known and v is not None)}
            if op["OP_ID"] == "OP_INSTANCE_REPLACE_DISKS":
                op["change_group"] = True
                op["early_release"] = early_release
            elif op["OP_ID"] == "OP_INSTANCE_MIGRATE" and (
                    force_failover or op["instance_name"] in stopped_names):
                op = {"OP_ID": "OP_INSTANCE_FAILOVER", "instance_name": op["instance_name"]}
            ops.append(op)
        if ops:
            out.append(ops)
    if sequential and out:
        return [[op for job in out for op in job]]
    return out
