"""``migrate --cleanup``: finish or undo a migration that stopped half-way (masterd died, a
node daemon restarted, the target QEMU was killed).

Nothing in the config says how far a migration got, so both nodes are asked what their QEMU
is doing (the ``instance_runstate`` node RPC) and the guest is kept where it is whole, in this
order of trust:

1. a running QEMU: it executes the guest, any other copy is stale (running on both nodes is
   refused: only the admin can tell which one's writes matter);
2. a paused QEMU whose incoming migration completed: the target got all of the memory;
3. a paused QEMU that never gave its guest away (a migration that failed or never finished);
4. a QEMU that sent everything ('postmigrate') to a target that is gone since, as long as its
   disks were not handed over: nothing ran elsewhere, so it may go on.

An incoming QEMU still loading ('inmigrate') never holds the whole guest: it is waited for
while its source reports the transfer complete, and ended otherwise. The other node's QEMU is
ended without ACPI (a stale guest must not write again); then the config's primary and the
mirror roles are made to match the kept node (with the hand-over of :mod:`live_move` when the
guest moved), the guest is resumed if paused, and each step is reported as job feedback.
"""

from __future__ import annotations

import asyncio
from typing import Any

from herd import errors
from herd.logic import drbd, live_move
from herd.logic.base import Feedback, MasterContext
from herd.objects import Instance, Node

#: Seconds an incoming QEMU may take to load the last bytes its source reports sent.
ARRIVAL_TIMEOUT = 30.0
NO_QEMU, SENT, HELD, ARRIVED, RUNNING = range(5)


def rank(st: dict[str, Any] | None) -> int:
    """How surely this node's QEMU (``instance_runstate``) holds the live guest; 0: not at
    all. Equal positive ranks on both nodes cannot be decided."""
    if st is None:
        return NO_QEMU
    state, role = st.get("state"), st.get("migration_role")
    if state == "running":
        return RUNNING
    if state == "inmigrate" or role == "target":
        return ARRIVED if state != "inmigrate" and st.get("migration_status") == "completed" \
            else NO_QEMU
    if state == "postmigrate" or (role == "source" and st.get("migration_status") == "completed"):
        return SENT
    return HELD


def describe(st: dict[str, Any] | None) -> str:
    if st is None:
        return "no QEMU"
    text = f"QEMU {st.get('state')}"
    if st.get("migration_role"):
        text += f", {st['migration_role']} of a migration ({st.get('migration_status')})"
    return text


def check(inst: Instance, primary: Node, secondary: Node) -> None:
    for node in (primary, secondary):
        if node.offline:
            raise errors.OpPrereqError(f"node {node.name} is offline: cannot tell whether "
                                       f"{inst.name} runs there")


async def _runstate(ctx: MasterContext, inst: Instance, node: Node) -> dict[str, Any] | None:
    try:
        return await ctx.rpc.node(node).instance_runstate(inst.name)
    except errors.RpcError as exc:
        raise errors.OpExecError(f"node {node.name} does not answer ({exc.message}): cannot "
                                 f"tell whether {inst.name} runs there") from None


async def runstates(ctx: MasterContext, inst: Instance,
                    nodes: tuple[Node, Node]) -> list[dict[str, Any] | None]:
    """Both nodes' QEMU states; an arriving guest whose source sent everything is waited for."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ARRIVAL_TIMEOUT
    while True:
        states = list(await asyncio.gather(*(_runstate(ctx, inst, n) for n in nodes)))
        sent = any(rank(st) == SENT for st in states)
        loading = any(st is not None and st.get("state") == "inmigrate" for st in states)
        if not (sent and loading) or loop.time() > deadline:
            return states
        await asyncio.sleep(0.2)


def choose(inst: Instance, nodes: tuple[Node, Node],
           states: list[dict[str, Any] | None]) -> int:
    """Index in ``nodes`` of the node whose QEMU to keep (see the module's order of trust)."""
    ranks = [rank(st) for st in states]
    best = max(ranks)
    if best == NO_QEMU:
        raise errors.OpExecError(
            f"{inst.name} runs on neither {nodes[0].name} nor {nodes[1].name}: nothing to "
            f"recover; start it with 'gnt-instance startup {inst.name}'")
    if ranks[0] == ranks[1]:
        raise errors.OpExecError(
            f"{inst.name} looks alive on both {nodes[0].name} ({describe(states[0])}) and "
            f"{nodes[1].name} ({describe(states[1])}); stop the wrong one by hand "
            "(gnt-cluster command), then run migrate --cleanup again")
    return ranks.index(best)


async def _end(ctx: MasterContext, inst: Instance, node: Node, st: dict[str, Any],
               feedback: Feedback) -> None:
    """End the QEMU that is not kept, never letting its guest run again."""
    rpc = ctx.rpc.node(node)
    if st.get("migration_role") == "target" or st.get("state") == "inmigrate":
        feedback(f"* ending the incomplete incoming QEMU on {node.name}")
        await rpc.instance_abort_migration(inst.name)
        return
    if rank(st) == SENT:
        feedback(f"* ending the QEMU on {node.name}: its guest moved away")
        try:
            await rpc.instance_finish_migration(inst.name, source=True, success=True)
            return
        except errors.HerdError:
            pass
    else:
        feedback(f"* killing the stale QEMU on {node.name}")
    await rpc.instance_stop(inst.name, 0)


async def _resume(ctx: MasterContext, inst: Instance, node: Node, st: dict[str, Any],
                  feedback: Feedback) -> None:
    """Resume the kept guest, ending what its runtime record says of the migration."""
    rpc = ctx.rpc.node(node)
    role = st.get("migration_role")
    if role == "target":
        await rpc.instance_finish_migration(inst.name, source=False, success=True)
    elif role == "source":
        await rpc.instance_abort_migration(inst.name)  # cancels what is left, resumes
    now = await rpc.instance_runstate(inst.name)
    if now is None:
        raise errors.OpExecError(f"the QEMU of {inst.name} on {node.name} is gone")
    if now.get("state") != "running":
        await rpc.instance_resume(inst.name)
    if st.get("state") != "running":
        feedback(f"* resumed {inst.name} on {node.name}")


async def _stay(ctx: MasterContext, inst: Instance, node: Node, st: dict[str, Any],
                feedback: Feedback) -> None:
    """The guest is on the config's primary: its disks must still be served there; reattach
    the secondary (copying what the generation rules ask), then resume."""
    cfg = ctx.config.data
    mirror = await ctx.rpc.node(node).blockdev_sync_status(drbd.mirror_disks(cfg, inst, node.uuid))
    roles = [m.get("role") for m in mirror]
    if any(role != "primary" for role in roles):
        raise errors.OpExecError(
            f"the disks of {inst.name} on {node.name} are {', '.join(map(str, roles))}, not "
            f"primary: the paused guest there would find them gone; restart it with "
            f"'gnt-instance shutdown {inst.name}' and 'gnt-instance startup {inst.name}'")
    if not all(m.get("connected") for m in mirror):
        feedback(f"* reattaching the secondary copy on {drbd.secondary_of(cfg, inst).name}")
        await drbd.activate(ctx, inst, feedback)
    await _resume(ctx, inst, node, st, feedback)


async def _move(ctx: MasterContext, inst: Instance, old: Node, new: Node, st: dict[str, Any],
                feedback: Feedback) -> None:
    """The guest is on the config's secondary: finish the hand-over of the mirror to it."""
    cfg = ctx.config.data
    new_roles = [s.get("role") for s in await ctx.rpc.node(new).blockdev_sync_status(
        drbd.mirror_disks(cfg, inst, new.uuid))]
    old_roles = [s.get("role") for s in await ctx.rpc.node(old).blockdev_sync_status(
        drbd.mirror_disks(cfg, inst, old.uuid))]
    if st.get("state") == "running" and any(r != "primary" for r in new_roles):
        sync = "full"  # it wrote into its copy behind the old primary's mirror's back
    elif all(r in ("primary", "secondary") for r in old_roles):
        sync = "none"  # the old primary's mirror ends only if in sync (or already did)
    else:
        sync = "auto"  # the old copy's daemon is gone: the generation rules decide
    feedback(f"* handing the disks over to {new.name} (sync: {sync})")
    await live_move.hand_over(ctx, inst, old, new, feedback, sync=sync,
                              resume=lambda: _resume(ctx, inst, new, st, feedback))


async def cleanup(ctx: MasterContext, inst: Instance, feedback: Feedback) -> dict[str, Any]:
    """Keep the guest on one node, make the config and the mirror agree; what was done."""
    cfg = ctx.config.data
    nodes = (cfg.nodes[inst.primary_node], drbd.secondary_of(cfg, inst))
    feedback(f"* looking for {inst.name} on {nodes[0].name} and {nodes[1].name}")
    states = await runstates(ctx, inst, nodes)
    for node, st in zip(nodes, states, strict=True):
        feedback(f"  {node.name}: {describe(st)}")
    keep = choose(inst, nodes, states)
    kept, other = nodes[keep], nodes[1 - keep]
    kept_state, other_state = states[keep], states[1 - keep]
    assert kept_state is not None  # choose() never picks a node without QEMU
    if other_state is not None:
        await _end(ctx, inst, other, other_state, feedback)
    if keep == 0:
        await _stay(ctx, inst, kept, kept_state, feedback)
    else:
        await _move(ctx, inst, other, kept, kept_state, feedback)
    feedback(f"* {inst.name} runs on {kept.name} (primary); {other.name} holds the "
             "secondary copy")
    return {"primary": kept.name, "secondary": other.name, "moved": keep == 1,
            "stopped_on": other.name if other_state is not None else None,
            "resumed": kept_state.get("state") != "running"}
