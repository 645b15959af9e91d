"""Moving a running instance with mirrored disks to its other node, step by step.

Shared by ``gnt-instance migrate``, ``migrate --cleanup`` (which finishes an interrupted
hand-over with the same steps) and ``replace-disks -p`` (which moves the guest away while the
primary's copy is rebuilt, then back). The order keeps every acknowledged write on both nodes
(DESIGN §7):

1. the secondary starts the target VM, paused, on its own copy of the disks (the secondary's
   storage daemon exports it; the primary's mirror keeps writing into it);
2. QEMU moves the guest's memory; the source pauses the guest at the end;
3. with the guest paused and every write mirrored, the old primary's mirror is ended cleanly
   and its storage daemon turns secondary; the new primary's daemon starts a mirror back to it
   (nothing to copy: both copies are equal);
4. only then does the guest resume on the new primary.

A failure before step 3 leaves the guest running where it was. From step 3 on the guest's
memory exists only on the target, so the config names the target as primary even when a
later step fails, and the error points to ``migrate --cleanup``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from herd import errors
from herd.logic import drbd
from herd.logic.base import Feedback, MasterContext
from herd.logic.instance_common import check_node_free_memory
from herd.logic.specs import filled_hvparams, instance_spec
from herd.objects import Instance, Node
from herd.rpc.client import OutcomeUnknown

#: Seconds a disk may look behind before a move is refused: a write in flight makes a
#: write-blocking mirror look behind for an instant; only a real resync lasts this long.
SYNC_GRACE = 10.0
MODES = ("live", "non-live")


def migration_mode(inst: Instance, hvparams: dict[str, Any], mode: str | None,
                   live: bool | None) -> bool:
    """Whether to migrate live: the opcode's mode or (deprecated) live flag, else the
    hypervisor's migration_mode."""
    if live is not None and mode is not None:
        raise errors.ParameterError("give either mode or live, not both")
    if mode is None:
        mode = hvparams.get("migration_mode", "live") if live is None else \
            ("live" if live else "non-live")
    if mode not in MODES:
        raise errors.ParameterError(f"invalid migration mode '{mode}' for {inst.name}: "
                                    f"allowed are {', '.join(MODES)}")
    return mode == "live"


async def wait_in_sync(ctx: MasterContext, inst: Instance, peer: Node,
                       grace: float = SYNC_GRACE) -> None:
    """Refuse (OpPrereqError) unless every disk of the running ``inst`` is in sync with
    ``peer``, waiting up to ``grace`` seconds for writes in flight."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while True:
        states = await drbd.status(ctx, inst)
        behind = [f"disk/{i}" for i, st in enumerate(states) if not st.get("in_sync")]
        if not behind or loop.time() > deadline or any(
                not st.get("connected") for st in states):
            break
        await asyncio.sleep(0.2)
    if behind:
        raise errors.OpPrereqError(
            f"{', '.join(behind)} of {inst.name} not in sync with {peer.name}; wait for the "
            "resync (gnt-instance info shows its progress)")


async def check_movable(ctx: MasterContext, inst: Instance, source: Node,
                        target: Node) -> None:
    """What a live move needs: both nodes online, the guest running on the source, memory
    on the target and the disks in sync."""
    for node in (source, target):
        if node.offline:
            raise errors.OpPrereqError(f"node {node.name} is offline")
    if await ctx.rpc.node(source).instance_info(inst.name) is None:
        raise errors.OpPrereqError(f"instance {inst.name} is not running; use failover to "
                                   "move a stopped instance")
    memory = int(ctx.config.data.filled_beparams(inst)["maxmem"])
    await check_node_free_memory(ctx, target, memory, f"migrating instance {inst.name}")
    await wait_in_sync(ctx, inst, target)


def migration_port(ctx: MasterContext, inst: Instance) -> int:
    return int(filled_hvparams(ctx.config.data, inst, ctx.paths).get("migration_port", 8102))


async def migrate(ctx: MasterContext, inst: Instance, source: Node, target: Node, *,
                  live: bool, feedback: Feedback) -> dict[str, Any]:
    """Steps 1-4: move the running ``inst`` from ``source`` to ``target``; QEMU's figures."""
    cfg = ctx.config.data
    loop = asyncio.get_running_loop()
    began = loop.time()
    src, dst = ctx.rpc.node(source), ctx.rpc.node(target)
    listen = target.secondary_ip or target.primary_ip
    port = migration_port(ctx, inst)
    feedback(f"* starting the target VM on {target.name}")
    await dst.instance_accept_migration(instance_spec(cfg, inst, ctx.paths,
                                                      mirror_node=target.uuid), port, listen)
    feedback(f"* migrating {inst.name} to {target.name} ({'live' if live else 'non-live'})")
    try:
        # the source turns its disks secondary as soon as QEMU completed (same RPC)
        stats = await src.instance_migrate(inst.name, listen, port, live,
                                           hand_over=drbd.mirror_disks(cfg, inst, source.uuid))
    except OutcomeUnknown:
        raise  # the guest may be whole only on the target now: 'migrate --cleanup' decides
    except BaseException:
        await dst.instance_abort_migration(inst.name)
        raise
    if live and stats.get("live") is False:
        feedback("  " + str(stats.get("live_note") or "non-live instead"))
    feedback(f"  memory moved in {stats.get('total_time_ms', 0) / 1000:.2f} s, guest "
             f"paused {stats.get('downtime_ms', '?')} ms so far")
    handed = loop.time()
    steps: dict[str, int] = {}
    marks: dict[str, float] = {}
    if stats.get("hand_over_error"):
        feedback(f"  the disks of {inst.name} on {source.name} did not turn secondary at "
                 f"once ({stats['hand_over_error']}); trying again")
    source_done = stats.get("handed_over_ms")
    resumed = await hand_over(ctx, inst, source, target, feedback, steps=steps, marks=marks,
                              source_done=source_done, served=stats.get("served"))
    handover_ms = (resumed - handed) * 1000 + (source_done or 0)
    stats.update(guest_pause(stats, handover_ms, loop.time() - began))
    stats.update(wall_pause(stats, marks.get("resumed_at")))
    stats["handover_steps_ms"] = steps
    copy = "QEMU's stop-and-copy" if stats.get("live") else "memory copy"
    feedback(f"* instance {inst.name} now runs on {target.name}: guest paused "
             f"{stats['guest_pause_ms']} ms ({copy} {stats.get('downtime_ms', 0)} ms + disk "
             f"hand-over {stats['handover_ms']} ms: "
             f"{', '.join(f'{k} {v}' for k, v in steps.items())}), migration took "
             f"{stats['migration_ms'] / 1000:.2f} s")
    if "wall_pause_max_ms" in stats:
        feedback(f"  guest paused by the nodes' clocks: {stats['wall_pause_min_ms']}-"
                 f"{stats['wall_pause_max_ms']} ms (QEMU's stop on {source.name} to the "
                 f"resume on {target.name}, bounded by the polls that saw QEMU finish)")
    return stats


def guest_pause(stats: dict[str, Any], handover_ms: float, total_s: float) -> dict[str, int]:
    """The guest's whole pause as the job saw it: what QEMU reports (its final stop-and-copy
    when live, the whole memory copy when non-live) plus the disk hand-over that follows while
    no side runs the guest (measured by the master from the source's answer to the resume on
    the target, so a few ms of RPC latency on each end are left out or counted twice)."""
    handover = round(handover_ms)
    return {"handover_ms": handover,
            "guest_pause_ms": int(stats.get("downtime_ms", 0) or 0) + handover,
            "migration_ms": round(total_s * 1000)}


def wall_pause(stats: dict[str, Any], resumed_at: float | None) -> dict[str, int]:
    """The guest's pause by wall clock, from QEMU's stop on the source to the resume on the
    target (both nodes' clocks: equal in a lab, NTP-close in a cluster), as bounds: QEMU
    stopped the guest ``downtime_ms`` before it completed, and completed between the
    source's last two polls (``completed_after`` .. ``completed_by``); ``resumed_at`` is the
    target's time right after its ``cont``. Unlike :func:`guest_pause` this includes the time
    until the source noticed the end and both RPC legs. Empty when a time is missing (an
    older noded, a non-live move)."""
    after, by = stats.get("completed_after"), stats.get("completed_by")
    if resumed_at is None or after is None or by is None or not stats.get("live"):
        return {}
    downtime = float(stats.get("qemu_downtime_ms", stats.get("downtime_ms", 0)) or 0)
    return {"wall_pause_min_ms": round((resumed_at - by) * 1000 + downtime),
            "wall_pause_max_ms": round((resumed_at - after) * 1000 + downtime)}


async def hand_over(ctx: MasterContext, inst: Instance, source: Node, target: Node,
                    feedback: Feedback, *, sync: str = "none",
                    resume: Callable[[], Awaitable[None]] | None = None,
                    steps: dict[str, int] | None = None,
                    marks: dict[str, float] | None = None,
                    source_done: int | None = None,
                    served: list[dict[str, Any]] | None = None) -> float:
    """Steps 3-4, once the guest's memory is on ``target``: turn the mirror around, name
    ``target`` primary, resume the guest there, then end the source's QEMU (if any); the
    event loop's time when the resume returned (the end of the guest's pause).

    The source's QEMU is ended after the resume, not before: once its migration completed it
    is paused for good with its disks inactive (flushed, no request in flight), so it cannot
    write while the mirror turns around, and quitting it (~100 ms) no longer adds to the
    guest's pause. Its NBD connection is cut when the source's daemon turns secondary.

    ``sync`` 'none' asserts that both copies are equal (the source's mirror ends only if it
    was in sync); 'auto' or 'full' let the generation rules copy more. ``resume`` defaults to
    finishing QEMU's incoming migration. Each step accepts having been done already, so that
    ``migrate --cleanup`` can repeat them. ``steps`` receives each step's milliseconds (where
    the guest's pause goes); ``marks`` the target's wall-clock ``resumed_at``, if it said.

    One RPC per node while the guest is paused (each round trip through the master is time in
    the pause): ``source_done`` (its milliseconds) says the source already turned secondary
    in its migration call, ``served`` what it then serves (passed on, so that the target
    attaches without probing the source); without ``resume`` the target turns primary and
    resumes in one call. If that call fails to start the mirror back, the target is asked
    again allowing a degraded start, then to resume, as separate calls.
    """
    cfg = ctx.config.data
    src, dst = ctx.rpc.node(source), ctx.rpc.node(target)
    lap = _Laps(steps)
    if source_done is None:
        await src.blockdev_assemble(drbd.mirror_disks(cfg, inst, source.uuid),
                                    role="secondary")
        lap("source mirror ended")
    elif steps is not None:
        steps["source mirror ended"] = source_done
    inst.swap_primary()
    tdisks = drbd.mirror_disks(cfg, inst, target.uuid)
    syncs = [sync] * len(inst.disks)
    try:
        answer: dict[str, Any] | None = None
        if resume is None:
            answer = await _finish_on_target(dst, inst.name, tdisks, syncs, served)
        if answer is None:
            await _mirror_back(dst, tdisks, syncs, source, feedback)
            lap("mirror back started")
            if resume is None:
                answer = await dst.instance_finish_migration(inst.name, source=False,
                                                             success=True)
            else:
                await resume()
            resumed = lap("guest resumed")
        else:  # one call: the target's own figure for the mirror, the rest is the resume
            resumed = lap("guest resumed")
            if steps is not None:
                mirror = int(answer.get("mirror_back_ms") or 0)
                rest = steps.pop("guest resumed") - mirror
                steps.update({"mirror back started": mirror, "guest resumed": rest})
        if marks is not None and answer and answer.get("resumed_at") is not None:
            marks["resumed_at"] = float(answer["resumed_at"])
    except errors.HerdError as exc:
        # the guest's memory is on the target only now: the config must say so
        await ctx.config.save()
        raise errors.OpExecError(
            f"{inst.name} moved to {target.name} but did not resume there ({exc.message}); "
            f"'gnt-instance migrate --cleanup {inst.name}' finishes the move") from None
    await ctx.config.save()
    try:
        await src.instance_finish_migration(inst.name, source=True, success=True)
    except errors.HerdError as exc:
        feedback(f"  WARNING: the old QEMU of {inst.name} on {source.name} was not ended "
                 f"({exc.message}); 'gnt-instance migrate --cleanup {inst.name}' ends it")
    # the mirror back starts with nothing to copy (unless told otherwise): end once in sync
    await dst.blockdev_wait_sync(tdisks, timeout=30)
    await drbd.settle_secondary(ctx, inst)
    return resumed


async def _finish_on_target(dst: Any, name: str, tdisks: list[dict[str, Any]],
                            syncs: list[str],
                            served: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """The target's one call: disks primary, then resume; None if it failed (the caller
    goes step by step, which tells why). ``served`` (RPC 5) is offered only when the source
    answered it; a node of RPC 4 refuses the argument before doing anything, and is asked
    again without it."""
    kwargs: dict[str, Any] = {"take_over": tdisks, "syncs": syncs}
    if served:
        try:
            return await dst.instance_finish_migration(name, source=False, success=True,
                                                       peers=served, **kwargs)
        except errors.ParameterError:
            pass  # an older target: the call as RPC 4 knew it
        except errors.HerdError:
            return None
    try:
        return await dst.instance_finish_migration(name, source=False, success=True, **kwargs)
    except errors.HerdError:
        return None


async def _mirror_back(dst: Any, tdisks: list[dict[str, Any]], syncs: list[str],
                       source: Node, feedback: Feedback) -> None:
    """The target's disks turn primary, mirroring back to ``source``; degraded (warned) if
    the mirror back cannot start: the guest's memory is on the target only by now."""
    try:
        await dst.blockdev_assemble(tdisks, role="primary", syncs=syncs)
    except errors.HerdError as exc:
        feedback(f"  WARNING: mirror back to {source.name} failed ({exc.message}); "
                 "running degraded, activate-disks repairs it")
        await dst.blockdev_assemble(tdisks, role="primary", syncs=syncs, allow_degraded=True)


class _Laps:
    """Milliseconds between successive calls, by name, into ``steps`` (if given)."""

    def __init__(self, steps: dict[str, int] | None) -> None:
        self.steps = steps
        self.last = asyncio.get_running_loop().time()

    def __call__(self, name: str) -> float:
        now = asyncio.get_running_loop().time()
        if self.steps is not None:
            self.steps[name] = round((now - self.last) * 1000)
        self.last = now
        return now
