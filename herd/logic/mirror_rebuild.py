"""Rebuilding one copy of an instance's mirrored disks from the other (replace-disks).

:func:`rebuild_secondary` copies the primary's disks onto the secondary (``-s``, its old copy
thrown away first) or onto another node (``--new-secondary``); the guest may run meanwhile,
its writes are mirrored to the new copy while the copy proceeds.

The primary's copy (``-p``) cannot be rebuilt in place: the guest reads from it, and the
storage layer copies only from a primary to a secondary. So the roles are swapped for the
time of the copy, and the copy itself is the secondary rebuild above:

- stopped instance (:func:`rebuild_primary_stopped`): the swap is made on a *private copy*
  of the instance object, never in the config. The storage daemons start with the secondary
  as primary, the old primary's copy is rebuilt, both stop again. The config never names
  the wrong node, not even for a moment or after a crash; a failure leaves the old primary's
  copy empty (its fresh generation makes activation refuse it) and the secondary's intact.
- running instance (:func:`rebuild_primary_running`): the guest must keep running, so it is
  live-migrated to the secondary (the steps of :mod:`live_move`, each saving the config once
  the guest has moved), the old primary's copy is rebuilt as a secondary, and the guest
  migrates back. A failure after the first move leaves the guest running on the secondary
  with the config saying so, and the error names the command that finishes the job.
"""

from __future__ import annotations

import contextlib
import copy

from herd import errors
from herd.logic import drbd, live_move
from herd.logic.base import Feedback, MasterContext
from herd.objects import Instance, Node


async def rebuild_secondary(ctx: MasterContext, inst: Instance, pnode: Node, old: Node,
                            new: Node, feedback: Feedback, *, keep_active: bool) -> None:
    """Copy the primary's disks to ``new`` and wait until in sync. ``new`` == ``old``: the
    secondary's copy is discarded first; else ``new`` replaces ``old`` as secondary and the
    old copy is removed at the end. ``keep_active``: leave the disks active afterwards even
    if they were not (the primary's daemons serving a guest always stay)."""
    cfg = ctx.config.data
    old_disks = drbd.mirror_disks(cfg, inst, old.uuid)

    def restore_old() -> None:
        inst.replace_node(new.uuid, old.uuid)

    if new.uuid == old.uuid:
        feedback(f"* discarding the copy on {old.name}")
        await ctx.rpc.node(old).blockdev_shutdown(old_disks)
        await ctx.rpc.node(old).blockdev_remove(old_disks)
        await ctx.rpc.node(old).blockdev_create(old_disks)
    else:
        feedback(f"* creating the disks on the new secondary {new.name}")
        inst.replace_node(old.uuid, new.uuid)
        try:
            await ctx.rpc.node(new).blockdev_create(drbd.mirror_disks(cfg, inst, new.uuid))
        except BaseException:
            restore_old()
            raise
    for disk in inst.disks:
        disk.params.pop(drbd.DISCARD_SECONDARY, None)
    feedback(f"* copying the disks from {pnode.name} to {new.name}")
    pdisks = drbd.mirror_disks(cfg, inst, pnode.uuid)
    # raw status: drbd.status() would record "in sync" against the new secondary while
    # the primary still mirrors to the old one
    running_primary = all(st.get("role") == "primary"
                          for st in await ctx.rpc.node(pnode).blockdev_sync_status(pdisks))
    try:
        if running_primary:
            await ctx.rpc.node(new).blockdev_assemble(
                drbd.mirror_disks(cfg, inst, new.uuid), role="secondary")
            await ctx.rpc.node(pnode).blockdev_reconnect(pdisks)
        else:
            await drbd.activate(ctx, inst, feedback)
        await ctx.rpc.node(pnode).blockdev_wait_sync(pdisks, timeout=3600)
    except BaseException:
        if new.uuid != old.uuid:
            restore_old()
        raise
    await drbd.settle_secondary(ctx, inst)
    if not running_primary and not keep_active:
        await drbd.deactivate(ctx, inst)
    inst.touch()
    await ctx.config.save()
    if new.uuid != old.uuid:
        feedback(f"* removing the old copy on {old.name}")
        try:
            await ctx.rpc.node(old).blockdev_shutdown(old_disks)
            await ctx.rpc.node(old).blockdev_remove(old_disks)
        except errors.HerdError as exc:
            feedback(f"  WARNING: {old.name} kept its old copy: {exc.message}")


async def rebuild_primary_stopped(ctx: MasterContext, inst: Instance, pnode: Node,
                                  snode: Node, feedback: Feedback) -> None:
    """-p for an instance that does not run: copy the secondary's disks over the primary's
    with the roles swapped on a private copy of ``inst`` (see the module docstring)."""
    cfg = ctx.config.data
    was_active = all(st.get("role") == "primary" for st in await ctx.rpc.node(pnode)
                     .blockdev_sync_status(drbd.mirror_disks(cfg, inst, pnode.uuid)))
    if was_active:
        feedback("* deactivating the disks")
        await drbd.deactivate(ctx, inst)
    swapped = copy.deepcopy(inst)
    swapped.swap_primary()
    try:
        await rebuild_secondary(ctx, swapped, snode, pnode, pnode, feedback,
                                keep_active=False)
    except errors.HerdError as exc:
        with contextlib.suppress(errors.HerdError):
            await drbd.deactivate(ctx, swapped)
        raise errors.OpExecError(
            f"rebuilding {pnode.name}'s copy of {inst.name} failed ({exc.message}); the copy "
            f"on {snode.name} is intact: run 'gnt-instance replace-disks -p {inst.name}' "
            "again") from None
    inst.touch()
    await ctx.config.save()
    if was_active:
        feedback("* activating the disks again")
        await drbd.activate(ctx, inst, feedback)


async def rebuild_primary_running(ctx: MasterContext, inst: Instance, pnode: Node,
                                  snode: Node, live: bool, feedback: Feedback) -> None:
    """-p for a running instance: migrate to the secondary, rebuild the old primary's copy
    as a secondary, migrate back (see the module docstring)."""
    feedback(f"* moving {inst.name} to {snode.name} while the copy on {pnode.name} is "
             "rebuilt")
    await live_move.migrate(ctx, inst, pnode, snode, live=live, feedback=feedback)
    try:
        await rebuild_secondary(ctx, inst, snode, pnode, pnode, feedback, keep_active=True)
    except errors.HerdError as exc:
        raise errors.OpExecError(
            f"rebuilding the copy on {pnode.name} failed ({exc.message}); {inst.name} runs on "
            f"{snode.name} now: 'gnt-instance replace-disks -s {inst.name}' then "
            f"'gnt-instance migrate {inst.name}' finish the job") from None
    feedback(f"* moving {inst.name} back to {pnode.name}")
    try:
        await live_move.wait_in_sync(ctx, inst, pnode)
        await live_move.migrate(ctx, inst, snode, pnode, live=live, feedback=feedback)
    except errors.HerdError as exc:
        if inst.primary_node == pnode.uuid:
            raise  # it did move back (the error says what is left to do)
        raise errors.OpExecError(
            f"{pnode.name}'s copy is rebuilt but moving {inst.name} back failed "
            f"({exc.message}); it runs on {snode.name}: 'gnt-instance migrate {inst.name}' "
            "moves it back") from None
