"""What ``gnt-cluster verify`` says about the cluster's etcd: a pure decision, as disk_health.

Inputs are what the master can learn in one look: etcd's member list, the members the config
wants (the online master candidates, herd.etcd.members.wanted_members) and each wanted
member's own status (None when it does not answer). Findings are (level, text) pairs.
"""

from __future__ import annotations

from herd.etcd.client import Status
from herd.etcd.members import Member, plan_membership

#: etcd refuses writes once its database reaches its quota (2 GiB by default); warn early.
DB_WARN_BYTES = 1 << 30


def etcd_findings(members: list[Member], wanted: dict[str, str],
                  statuses: dict[str, Status | None]) -> list[tuple[str, str]]:
    """``wanted``: node name -> peer URL; ``statuses``: node name -> status or None."""
    out: list[tuple[str, str]] = []
    plan = plan_membership(members, wanted)
    for action in plan.actions:
        if action.kind == "add":
            out.append(("error", f"etcd: master candidate {action.name} has no etcd member "
                                 "(gnt-node modify -C yes re-adds it)"))
        elif action.kind == "promote" and action.member_id:
            out.append(("warning", f"etcd: the member of {action.name} is still a learner "
                                   "(not voting yet)"))
        elif action.kind == "remove":
            out.append(("error", f"etcd: member {action.name} is not a master candidate; "
                                 "remove it (gnt-cluster redist-conf does not)"))
    out += [("warning", f"etcd: {text}") for text in plan.held]
    voters = sum(1 for m in members if not m.is_learner)
    if voters and voters % 2 == 0:
        out.append(("warning", f"etcd: {voters} voting members; an even number tolerates no "
                               f"more node failures than {voters - 1} (prefer an odd number "
                               "of master candidates)"))
    leaders = set()
    for node, status in sorted(statuses.items()):
        if status is None:
            out.append(("error", f"etcd: the member of {node} does not answer"))
            continue
        if not status.leader:
            out.append(("error", f"etcd: the member of {node} knows no leader"))
        else:
            leaders.add(status.leader)
        for text in status.errors:
            out.append(("error", f"etcd: the member of {node} reports: {text}"))
        if status.db_size >= DB_WARN_BYTES:
            out.append(("warning", f"etcd: the database of {node}'s member is "
                                   f"{status.db_size >> 20} MiB (etcd stops writes at its "
                                   "quota, 2 GiB by default)"))
    if len(leaders) > 1:
        out.append(("error", "etcd: the members disagree about the leader "
                             f"({', '.join(f'{x:x}' for x in sorted(leaders))})"))
    return out
