"""Quotas per user and group: what an owner may hold, what a job adds, and the refusal.

The web manager's users (issue 14) own instances by tag (``herd:owner:USER`` or
``herd:owner:@GROUP``, herd.objects.access). A quota caps what one subject (a user, or a group
written ``@group``) owns: vCPUs, memory, disk and the instance count, counted from the
*configured* sizes of every owned instance, stopped ones too (a stopped instance keeps its disks
and can be started at any time; counting only running ones is GWM's model that its users found
confusing, GWM issue 91). An instance owned by a group counts for the group only, not for each
member: one rule, and the overview can show both numbers side by side.

Checked when a job is submitted (masterd, for every job coming through RAPI or the web manager;
local ``gnt-*`` commands run as root, the cluster's administrators, and are not limited), so a
refusal leaves no job behind. Jobs still queued count with what they will add, so two quick
submissions cannot together pass a limit each alone respects.

Everything here is pure: the config and the opcodes in, numbers and messages out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from herd import errors
from herd.objects import access
from herd.objects import params as P
from herd.units import format_size, parse_size

#: The limits a quota has, in the order messages list them: (key, what users read, unit).
RESOURCES: tuple[tuple[str, str, str], ...] = (
    ("vcpus", "vCPUs", "count"),
    ("memory", "memory", "MiB"),
    ("disk", "disk", "MiB"),
    ("instances", "instances", "count"),
)
KEYS = tuple(key for key, _, _ in RESOURCES)


@dataclasses.dataclass(frozen=True)
class Usage:
    """Amounts of each resource (also used for a job's demand and for limits)."""

    vcpus: int = 0
    memory: int = 0
    disk: int = 0
    instances: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, k) + getattr(other, k) for k in KEYS))

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


ZERO = Usage()


def check_limits(subject: str, raw: Mapping[str, Any]) -> dict[str, int]:
    """A quota as stored: {resource: limit}, sizes in MiB; a missing key means no limit.

    ParameterError names the bad value and what is allowed."""
    access.check_grant("viewer", str(subject))  # the same name rules as grants
    out: dict[str, int] = {}
    for key, value in raw.items():
        if key not in KEYS:
            raise errors.ParameterError(f"unknown quota resource {key!r}: allowed are "
                                        f"{', '.join(KEYS)}")
        if value is None or value == "":
            continue
        if key in ("memory", "disk"):
            amount = parse_size(value, f"{key} quota")
        else:
            if isinstance(value, bool) or not str(value).isdigit():
                raise errors.ParameterError(f"invalid {key} quota {value!r}: expected a whole "
                                            "number >= 0")
            amount = int(value)
        out[key] = amount
    return out


def instance_usage(cfg: Any, inst: Any) -> Usage:
    """What one instance counts: its filled vCPUs and maximum memory, the sum of its disks'
    configured sizes, and one instance."""
    be = cfg.filled_beparams(inst)
    return Usage(vcpus=int(be.get("vcpus") or 0), memory=int(be.get("maxmem") or 0),
                 disk=sum(int(d.size) for d in inst.disks), instances=1)


def owners_of(tags: Iterable[str]) -> frozenset[str]:
    return access.owners(tags)


def usage_by_owner(cfg: Any) -> dict[str, Usage]:
    """Every owner subject's usage over the whole config."""
    out: dict[str, Usage] = {}
    for inst in cfg.instances.values():
        owners = owners_of(inst.tags)
        if not owners:
            continue
        used = instance_usage(cfg, inst)
        for owner in owners:
            out[owner] = out.get(owner, ZERO) + used
    return out


# -- what a job adds ---------------------------------------------------------------------------

def _create_demand(cfg: Any, op: Mapping[str, Any]) -> Usage:
    be = P.check_beparams(op.get("beparams") or {})
    filled = P.fill(P.BE_DEFAULTS, cfg.cluster.beparams, be)
    disk = 0
    for d in op.get("disks") or []:
        if isinstance(d, Mapping) and d.get("size") is not None:
            disk += parse_size(d["size"], "disk size")
    return Usage(vcpus=int(filled.get("vcpus") or 0), memory=int(filled.get("maxmem") or 0),
                 disk=disk, instances=1)


def _modify_demand(cfg: Any, inst: Any, op: Mapping[str, Any]) -> Usage:
    """Growth only: a modify that shrinks frees its room once it has run, not before."""
    from herd.logic import instance_mods

    now = instance_usage(cfg, inst)
    vcpus = memory = disk = 0
    if op.get("beparams"):
        be = P.check_beparams(op["beparams"])
        filled = P.fill(cfg.filled_beparams(inst), be)
        vcpus = max(0, int(filled.get("vcpus") or 0) - now.vcpus)
        memory = max(0, int(filled.get("maxmem") or 0) - now.memory)
    for mod in instance_mods.normalize(instance_mods.DISK, op.get("disks") or []):
        if mod.action == instance_mods.ADD and mod.params.get("size") is not None:
            disk += parse_size(mod.params["size"], "disk size")
    return Usage(vcpus=vcpus, memory=memory, disk=disk)


def _grow_demand(inst: Any, op: Mapping[str, Any]) -> Usage:
    index = op.get("disk")
    if not isinstance(index, int) or not 0 <= index < len(inst.disks):
        return ZERO  # the job refuses it with its own message
    amount = parse_size(op.get("amount", 0), "amount")
    current = int(inst.disks[index].size)
    return Usage(disk=max(0, amount - current) if op.get("absolute") else amount)


def op_demands(cfg: Any, op: Mapping[str, Any]) -> dict[str, Usage]:
    """What one opcode adds to each owner's usage (owners that gain nothing are absent).

    A creation counts for the owners its tags name (masterd has already added the
    submitter's tag where :func:`creation_owner_tags` says so)."""
    op_id = op.get("OP_ID")
    if op_id == "OP_INSTANCE_CREATE":
        owners = owners_of(op.get("tags") or ())
        demand = _create_demand(cfg, op)
        return {o: demand for o in owners}
    inst = cfg.find_instance(str(op.get("instance_name") or op.get("name") or "")) \
        if op_id in ("OP_INSTANCE_SET_PARAMS", "OP_INSTANCE_GROW_DISK", "OP_TAGS_SET") \
        else None
    if inst is None:
        return {}
    if op_id == "OP_TAGS_SET":
        if op.get("kind") != "instance":
            return {}
        new_owners = owners_of(op.get("tags") or ()) - owners_of(inst.tags)
        used = instance_usage(cfg, inst)
        return {o: used for o in new_owners}
    demand = _modify_demand(cfg, inst, op) if op_id == "OP_INSTANCE_SET_PARAMS" \
        else _grow_demand(inst, op)
    if demand == ZERO:
        return {}
    return {o: demand for o in owners_of(inst.tags)}


def job_demands(cfg: Any, ops: Iterable[Mapping[str, Any]]) -> dict[str, Usage]:
    out: dict[str, Usage] = {}
    for op in ops:
        for owner, demand in op_demands(cfg, op).items():
            out[owner] = out.get(owner, ZERO) + demand
    return out


def creation_owner_tags(ops: list[dict[str, Any]], submitter: str,
                        limited: bool) -> list[dict[str, Any]]:
    """The opcodes with ``herd:owner:SUBMITTER`` added to every instance creation that names
    no owner, when the submitter has a quota (``limited``): otherwise creating without an
    owner tag would be a way round the quota. Submitters without a quota are left as Ganeti
    leaves them (no tag added)."""
    if not limited:
        return ops
    out = []
    for op in ops:
        if op.get("OP_ID") == "OP_INSTANCE_CREATE" and not owners_of(op.get("tags") or ()):
            op = {**op, "tags": [*(op.get("tags") or []), f"{access.OWNER_TAG}{submitter}"]}
        out.append(op)
    return out


# -- the decision ------------------------------------------------------------------------------

def _amount(key: str, value: int) -> str:
    unit = next(u for k, _, u in RESOURCES if k == key)
    return format_size(value) if unit == "MiB" else str(value)


def refusal(quotas: Mapping[str, Mapping[str, int]], used: Mapping[str, Usage],
            demands: Mapping[str, Usage]) -> str | None:
    """The first limit a job would pass, as one line, or None when it fits.

    ``used`` is each owner's usage including jobs already queued; ``demands`` what this job
    adds. The message says whose quota, how much of it is used and what the job needs, e.g.
    "quota of alice: memory 3.0G of 4.0G used, this job needs 2.0G"."""
    for owner in sorted(demands):
        limits = quotas.get(owner)
        if not limits:
            continue
        have = used.get(owner, ZERO)
        need = demands[owner]
        for key, label, _ in RESOURCES:
            limit = limits.get(key)
            extra = getattr(need, key)
            if limit is None or extra <= 0:
                continue
            current = getattr(have, key)
            if current + extra > limit:
                return (f"quota of {owner}: {label} {_amount(key, current)} of "
                        f"{_amount(key, limit)} used, this job needs {_amount(key, extra)}")
    return None


def limited_subjects(user: str, groups: Iterable[str],
                     quotas: Mapping[str, Mapping[str, int]]) -> bool:
    """Whether ``user`` or one of its groups has a quota."""
    return bool(quotas.get(user)) or any(quotas.get(f"@{g}") for g in groups)


def headroom(quotas: Mapping[str, Mapping[str, int]], used: Mapping[str, Usage],
             subject: str) -> list[dict[str, Any]]:
    """Rows for pages and ``gnt-cluster list-quotas``: resource, used, limit (None: none)."""
    limits = quotas.get(subject) or {}
    have = used.get(subject, ZERO)
    return [{"resource": key, "label": label, "used": getattr(have, key),
             "limit": limits.get(key), "unit": unit} for key, label, unit in RESOURCES]


def report(cfg: Any, subjects: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """For ``gnt-cluster list-quotas`` and the web manager: every subject with a quota (and
    those asked for), each with its :func:`headroom` rows."""
    quotas = cfg.cluster.access_quotas
    used = usage_by_owner(cfg)
    names = sorted(set(quotas) | set(subjects or ()))
    return [{"subject": s, "resources": headroom(quotas, used, s)} for s in names]
