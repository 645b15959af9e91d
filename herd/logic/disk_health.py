"""Which copy of an instance's mirrored disks can be trusted: the checks behind
``replace-disks -a`` (replace the faulty side) and ``-p`` (rebuild the primary's copy from the
secondary's, so the secondary's must hold the data).

A copy is *faulty* when its backing file is missing or has the wrong size, its generation
record is unreadable, a failover with --ignore-consistency chose to discard it (secondary), or
it was created again and never written (primary: an empty secondary is just one waiting for
its first sync). The
secondary's copy is *consistent* when it is not faulty, was fully copied once (not fresh, no
full resync pending) and carries the primary's generation id: equal ids mean equal data
(DESIGN §7). If the primary's record is lost, nothing can contradict the secondary's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from herd import errors
from herd.logic import drbd
from herd.logic.base import MasterContext
from herd.objects import Instance, Node


@dataclass
class CopyState:
    """One node's copy of all disks of an instance."""

    node: Node
    #: one line per problem, e.g. "disk/0: backing file missing"
    faults: list[str] = field(default_factory=list)
    #: generation record per disk, None where unreadable
    generations: list[dict[str, Any] | None] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.node.name}: {'; '.join(self.faults)}"


async def inspect_copy(ctx: MasterContext, inst: Instance, node: Node,
                       secondary: bool) -> CopyState:
    """Look at ``node``'s copy of every disk of ``inst`` (files, sizes, generations)."""
    cfg = ctx.config.data
    rpc = ctx.rpc.node(node)
    out = CopyState(node)
    try:
        files = await rpc.blockdev_info(drbd.mirror_disks(cfg, inst, node.uuid))
        for index, (disk, st) in enumerate(zip(inst.disks, files, strict=True)):
            size = st.get("size_mib")
            if not st.get("exists"):
                out.faults.append(f"disk/{index}: backing file missing")
            elif size is None or size < disk.size:  # an LV may be larger (whole extents)
                out.faults.append(f"disk/{index}: {size} MiB instead of {disk.size} MiB")
            if secondary and disk.params.get(drbd.DISCARD_SECONDARY):
                out.faults.append(f"disk/{index}: discarded by a failover with "
                                  "--ignore-consistency")
            try:
                gen = (await rpc.blockdev_generation([drbd.mirror_disk(cfg, inst, index,
                                                                     node.uuid)]))[0]
            except errors.StorageError as exc:
                out.faults.append(f"disk/{index}: generation record unreadable "
                                  f"({exc.message})")
                gen = None
            if not secondary and gen is not None and gen.get("fresh"):
                out.faults.append(f"disk/{index}: empty (created again, never written)")
            out.generations.append(gen)
    except errors.RpcError as exc:
        raise errors.OpPrereqError(f"node {node.name} does not answer ({exc.message}); "
                                   f"cannot check its copy of {inst.name}'s disks") from None
    return out


def _lineage(gen: dict[str, Any]) -> list[str]:
    return [*gen.get("history", []), gen["current"]]


def compare(pgen: dict[str, Any], sgen: dict[str, Any]) -> str:
    """'equal', 'behind' (the secondary lacks newer primary data), 'ahead' (the secondary
    holds newer data than the primary) or 'diverged' (split brain)."""
    if sgen["current"] == pgen["current"]:
        return "equal"
    if sgen["current"] in _lineage(pgen):
        return "behind"
    if pgen["current"] in _lineage(sgen):
        return "ahead"
    return "diverged"


def diverged(primary: CopyState, secondary: CopyState) -> list[int]:
    """Indexes of the disks whose two copies changed while apart (split brain)."""
    return [i for i, (p, s) in enumerate(zip(primary.generations, secondary.generations,
                                             strict=True))
            if p is not None and s is not None and not p.get("fresh") and not s.get("fresh")
            and compare(p, s) == "diverged"]


def secondary_inconsistency(primary: CopyState, secondary: CopyState) -> str | None:
    """Why the secondary's copy cannot stand in for the primary's, or None if it can."""
    if secondary.faults:
        return f"its copy is faulty ({'; '.join(secondary.faults)})"
    for index, (pgen, sgen) in enumerate(zip(primary.generations, secondary.generations,
                                             strict=True)):
        assert sgen is not None  # an unreadable record is a fault
        if sgen.get("fresh") or sgen.get("needs_full"):
            return f"disk/{index} there was never fully copied (its resync is pending)"
        if pgen is None or pgen.get("fresh"):
            continue  # the primary's copy is lost or empty: nothing contradicts the secondary
        relation = compare(pgen, sgen)
        if relation == "behind":
            return f"disk/{index} there is behind the primary's (not in sync)"
        if relation == "diverged":
            return (f"disk/{index} there and the primary's changed while apart (split brain, "
                    f"generations {sgen['current']} and {pgen['current']})")
    return None


def mirror_findings(instance: str, primary: str, secondary: str,
                    states: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """What ``gnt-cluster verify`` says of an instance's mirrored disks that should be active,
    from the primary's status of each disk: ``("ERROR", text)`` when the data is not
    mirrored (no connection to the secondary, not active, no status), ``("WARNING", text)``
    while a resync is under way (connected: every new write is mirrored already)."""
    found: list[tuple[str, str]] = []
    for index, st in enumerate(states):
        what = f"instance {instance}: disk/{index}"
        if st.get("error"):
            found.append(("ERROR", f"{what}: no status from its primary node {primary}: "
                                   f"{st['error']}"))
        elif st.get("role") != "primary":
            found.append(("ERROR", f"{what} is not active on its primary node {primary} "
                                   f"({st.get('role') or 'unknown'})"))
        elif not st.get("connected"):
            found.append(("ERROR", f"{what} is degraded: not connected to its secondary node "
                                   f"{secondary}; every write since lives on {primary} only "
                                   "(gnt-cluster verify-disks reattaches it)"))
        elif not st.get("in_sync"):
            percent = st.get("sync_percent")
            done = f" ({percent:.0f} % copied)" if isinstance(percent, int | float) else ""
            found.append(("WARNING", f"{what} is resyncing to {secondary}{done}"))
    return found
