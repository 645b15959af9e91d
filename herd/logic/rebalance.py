"""``gnt-cluster rebalance``'s plan, computed in masterd from the same document the
allocators read (herd.logic.iallocator), by the pure planner herd.allocator.balance.

Planning is a query, not a job: it changes nothing and holds no lock. Carrying a plan out is
ordinary jobs (migrate, failover, replace-disks), submitted by the caller batch after batch
as hbal -X submits its jobsets, each of which checks its own prerequisites under its locks
when it runs; a plan that has gone stale therefore fails a job, never the cluster.
"""

from __future__ import annotations

import asyncio
from typing import Any

from herd import errors
from herd.allocator import balance, protocol
from herd.fields import NODE_OS_CPUS, disk_usage
from herd.logic import iallocator
from herd.logic.base import MasterContext

#: The options a caller may pass (balance.Options' fields).
OPTIONS = ("max_length", "min_gain", "min_gain_limit", "min_score", "disk_moves",
           "instance_moves", "evac_mode", "static_kvm_node_memory")


async def document(ctx: MasterContext) -> dict[str, Any]:
    """The allocator input document of the cluster as it is now, with what hbal reads
    besides or otherwise (each instance's ``auto_balance`` and ``disk_usage``; the CPUs a
    node keeps, as RAPI's ``cnos``).
    Disk figures are the volume group's when the cluster has one, as RAPI's dtotal/dfree."""
    cfg = ctx.config.data
    lvm = bool(cfg.cluster.volume_group_name)
    runtime = await iallocator.node_runtimes(ctx, cfg, lvm=lvm)
    data = protocol.build_input(cfg, runtime, {"type": "rebalance"},
                                disk_space=iallocator.disk_space)
    for inst in cfg.instances.values():
        entry = data["instances"][inst.name]
        entry["auto_balance"] = bool(cfg.filled_beparams(inst).get("auto_balance", True))
        # what the disks really take on a node (the protocol's figure adds Ganeti's DRBD
        # metadata size, which Herd's mirrors keep outside the volume group): moves are
        # then predicted as they turn out, and as hbal -m reads them from RAPI
        entry["disk_space_total"] = disk_usage(inst)
    for entry in data["nodes"].values():
        if "total_cpus" in entry:
            entry["reserved_cpus"] = NODE_OS_CPUS
    return data


def options(values: dict[str, Any]) -> balance.Options:
    """The planner's options from a caller's; an unknown or ill-typed one is refused."""
    unknown = sorted(set(values) - set(OPTIONS))
    if unknown:
        raise errors.ParameterError(f"unknown rebalance option(s) {', '.join(unknown)}; "
                                    f"allowed are {', '.join(OPTIONS)}")
    opts = balance.Options()
    for key, value in values.items():
        if value is None:
            continue
        default = getattr(opts, key)
        kind = type(default)
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if (kind is bool) != isinstance(value, bool) or (kind is not bool and not numeric):
            raise errors.ParameterError(f"invalid value {value!r} for rebalance option "
                                        f"{key}: expected {kind.__name__}")
        if key in ("min_gain", "min_gain_limit", "min_score", "static_kvm_node_memory") \
                and value < 0:
            raise errors.ParameterError(f"invalid value {value!r} for rebalance option "
                                        f"{key}: expected a number >= 0")
        setattr(opts, key, kind(value))
    return opts


async def plan(ctx: MasterContext, group: str | None = None,
               **values: Any) -> list[dict[str, Any]]:
    """The plans (one per node group, or for ``group``) as plain data: scores, moves with
    their opcodes, and the batches to submit them in."""
    opts = options(values)
    data = await document(ctx)
    try:  # seconds on a large cluster: off masterd's event loop
        plans = await asyncio.to_thread(balance.plan, data, group, opts)
    except ValueError as exc:
        raise errors.ParameterError(str(exc)) from None
    return [p.to_dict() for p in plans]
