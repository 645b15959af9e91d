"""The master's side of mirrored (``drbd``) disks: ports, per-node descriptions, activation.

A mirrored disk lives on the instance's primary and secondary node. Each node runs a storage
daemon per disk (herd.storage.mirror); the primary's mirrors every write to the secondary over
the secondary network and exports the disk to the VM. Activation decides, from the generation
ids both nodes keep, whether the secondary needs nothing, the changed blocks, a full copy, or
whether the two sides diverged (split brain), which is refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from herd import errors
from herd.config.reservations import Reservations
from herd.logic.base import MasterContext
from herd.objects import ConfigData, Disk, Instance, Node
from herd.objects.disk_ids import DrbdId, LvId
from herd.storage.blockdev.spec import FILE, LVM, MIRROR, DeviceSpec
from herd.storage.file import volume_name

DRBD_FILE_KIND = "drbd"
#: Disk param set by failover --ignore-consistency: the secondary's copy may be discarded.
DISCARD_SECONDARY = "discard_secondary"
#: The states of a disk whose primary daemon runs (herd.storage.mirror.states.State values).
PRIMARY_STATES = ("syncing", "synced", "degraded")


def used_ports(cfg: ConfigData) -> set[int]:
    """Ports of the cluster's pool held by mirrored disks and by instances' consoles
    (network_port: Ganeti's pool is shared too, herd.logic.network_port)."""
    return {d.logical_id.port for i in cfg.instances.values() for d in i.disks
            if isinstance(d.logical_id, DrbdId)} | \
        {i.network_port for i in cfg.instances.values() if i.network_port}


def allocate_ports(cfg: ConfigData, count: int, reservations: Reservations | None = None,
                   owner: object = None) -> list[int]:
    """``count`` free mirror ports, claimed for ``owner`` (released with its job) so that
    no other running job gets them before the config holds them."""
    taken = used_ports(cfg) | ({int(str(p)) for p in reservations.claimed("port")}
                               if reservations is not None else set())
    out: list[int] = []
    for port in range(cfg.cluster.drbd_port_first, cfg.cluster.drbd_port_last + 1):
        if port not in taken:
            out.append(port)
            if len(out) == count:
                if reservations is not None:
                    for claimed in out:
                        reservations.claim("port", claimed, owner)
                return out
    raise errors.OpPrereqError("no free port left for mirrored disks in "
                               f"{cfg.cluster.drbd_port_first}-{cfg.cluster.drbd_port_last}")


def new_logical_id(port: int, disk: Disk, vg: str = "") -> DrbdId:
    """The id of a new mirrored disk; its nodes are ``disk.nodes``, not part of the id. With
    the cluster's VG ``vg`` each node keeps the data in an LV ``<uuid>_drbd`` and the
    generation record under its data directory; without, in a file (as before VGs)."""
    if vg:
        from herd.storage.blockdev.factory import META_DIR
        from herd.storage.lvm import validate_lv_name

        lv = validate_lv_name(f"{disk.uuid}_{DRBD_FILE_KIND}", vg)
        return DrbdId(port=port, data=LvId(vg, lv), meta=f"{META_DIR}/{disk.uuid}.gen")
    return DrbdId(port=port, path=volume_name(disk.uuid, DRBD_FILE_KIND))


def drbd_id(inst: Instance, disk: Disk) -> DrbdId:
    """``disk``'s mirror id; a disk of another shape in a mirrored instance is a config error
    worth naming (the shape check lets unknown shapes through unchanged)."""
    if not isinstance(disk.logical_id, DrbdId):
        raise errors.ConfigurationError(
            f"disk {disk.uuid} of {inst.name} has no mirror id ({disk.logical_id})")
    return disk.logical_id


def mirror_spec(cfg: ConfigData, inst: Instance, index: int, node_uuid: str) -> DeviceSpec:
    """The mirror device ``node_uuid`` holds for disk ``index``: its data volume (a file or
    an LV), port, both addresses and where the generation record lives. The peer comes from
    the one record of where the disk is: the primary's peer is the disk's other node
    (``disk.nodes``), any other node's peer is the instance's primary."""
    disk = inst.disks[index]
    ident = drbd_id(inst, disk)
    peer = disk.peer_of(node_uuid) if node_uuid == inst.primary_node else inst.primary_node
    if peer is None:
        raise errors.ConfigurationError(
            f"disk/{index} of {inst.name} has no second node (nodes {disk.nodes})")
    local, other = cfg.nodes[node_uuid], cfg.nodes[peer]
    if ident.data is not None:  # the data in an LV, the generation record apart from it
        name = ident.data.display()
        data = DeviceSpec(uuid=disk.uuid, kind=LVM, size_mib=disk.size, name=name,
                          index=index, vg=ident.data.vg, lv=ident.data.lv)
    else:  # a file; its generation record beside it (meta None)
        name = str(ident.path)
        data = DeviceSpec(uuid=disk.uuid, kind=FILE, size_mib=disk.size, name=name,
                          index=index, path=name)
    return DeviceSpec(uuid=disk.uuid, kind=MIRROR, size_mib=disk.size, name=name, index=index,
                      data=data, port=ident.port,
                      local_ip=local.secondary_ip or local.primary_ip,
                      peer_ip=other.secondary_ip or other.primary_ip, meta=ident.meta)


def mirror_disk(cfg: ConfigData, inst: Instance, index: int, node_uuid: str) -> dict[str, Any]:
    """:func:`mirror_spec` as the node RPC carries it."""
    return mirror_spec(cfg, inst, index, node_uuid).to_dict()


def mirror_disks(cfg: ConfigData, inst: Instance, node_uuid: str) -> list[dict[str, Any]]:
    return [mirror_disk(cfg, inst, i, node_uuid) for i in range(len(inst.disks))]


def secondary_of(cfg: ConfigData, inst: Instance) -> Node:
    return cfg.nodes[inst.secondary_nodes[0]]


async def activate(ctx: MasterContext, inst: Instance, feedback: Callable[[str], None], *,
                   ignore_secondary: bool = False, wait_for_sync: bool = False,
                   secondary_dead: bool = False) -> None:
    """Bring up the storage daemons: the secondary exports, the primary mirrors to it."""
    from herd.storage.mirror import SplitBrainError, decide_sync

    cfg = ctx.config.data
    pnode, snode = cfg.nodes[inst.primary_node], secondary_of(cfg, inst)
    prpc, srpc = ctx.rpc.node(pnode), ctx.rpc.node(snode)
    pdisks, sdisks = mirror_disks(cfg, inst, pnode.uuid), mirror_disks(cfg, inst, snode.uuid)
    pgens = await prpc.blockdev_generation(pdisks)
    secondary_ok = not snode.offline and not secondary_dead
    sgens: list[dict[str, Any]] = []
    if secondary_ok:
        try:
            sgens = await srpc.blockdev_generation(sdisks)
        except errors.RpcError as exc:
            if not ignore_secondary:
                raise errors.OpExecError(
                    f"secondary node {snode.name} of {inst.name} is unreachable "
                    f"({exc.message}); the disks would start degraded") from None
            secondary_ok = False
    elif not ignore_secondary:
        raise errors.OpPrereqError(f"secondary node {snode.name} is offline")
    syncs = []
    for index, pgen in enumerate(pgens):
        if not secondary_ok:
            syncs.append("none")
            continue
        mode = decide_sync(pgen, sgens[index])
        if mode == "split-brain" and inst.disks[index].params.get(DISCARD_SECONDARY):
            # failover --ignore-consistency chose this side: the other copy is thrown away
            feedback(f"  disk/{index}: discarding {snode.name}'s copy (chosen at failover)")
            await srpc.blockdev_remove([sdisks[index]])
            await srpc.blockdev_create([sdisks[index]])
            sgens[index] = (await srpc.blockdev_generation([sdisks[index]]))[0]
            mode = decide_sync(pgen, sgens[index])
        if mode == "split-brain":
            raise SplitBrainError(
                f"disk/{index} of {inst.name}: both {pnode.name} (generation "
                f"{pgen.get('current')}) and {snode.name} (generation "
                f"{sgens[index].get('current')}) changed while apart (split brain); keep one "
                f"side with 'gnt-instance replace-disks -s {inst.name}' (discards the "
                "secondary's data) after checking which copy is right")
        syncs.append(mode)
    current = await prpc.blockdev_sync_status(pdisks)
    if secondary_ok:
        await srpc.blockdev_assemble(sdisks, role="secondary")
    if all(st.get("role") == "primary" for st in current):
        # already serving the VM: only (re)attach the secondary, copying what it lacks
        if secondary_ok and not all(st.get("connected") for st in current):
            feedback(f"  reconnecting the mirror to {snode.name}")
            await prpc.blockdev_reconnect(pdisks)
    else:
        await prpc.blockdev_assemble(pdisks, role="primary", syncs=syncs,
                                     allow_degraded=not secondary_ok)
    for index, mode in enumerate(syncs):
        if mode != "none":
            feedback(f"  disk/{index}: {mode} resync to {snode.name} started")
        elif not secondary_ok:
            feedback(f"  WARNING: disk/{index} runs degraded (no secondary)")
    if wait_for_sync and secondary_ok:
        feedback("* waiting for the disks to be in sync")
        deadline = time.monotonic() + SYNC_WAIT
        while True:  # a few seconds at a time, saying how far each disk got (as Ganeti)
            states = await prpc.blockdev_wait_sync(pdisks, timeout=PROGRESS_EVERY)
            if all(st.get("in_sync") for st in states) or time.monotonic() > deadline:
                break
            for line in sync_progress(states):
                feedback(line)
        await settle_secondary(ctx, inst)


#: how long activate waits for a first sync, and how often it says how far it got
SYNC_WAIT = 3600.0
PROGRESS_EVERY = 5.0


def sync_progress(states: list[dict[str, Any]]) -> list[str]:
    """Ganeti's progress lines for disks still syncing ("- device disk/0: 42.00% done, 12 s
    remaining (estimated)"); gnt-instance add -t drbd used to wait silently."""
    lines = []
    for index, st in enumerate(states):
        if st.get("in_sync") or st.get("role") != "primary":
            continue
        percent = st.get("sync_percent")
        done = f"{percent:5.2f}% done" if isinstance(percent, int | float) else "syncing"
        eta = st.get("eta_seconds")
        when = (f"{eta:.0f} s remaining (estimated)" if isinstance(eta, int | float)
                else "no time estimate")
        lines.append(f"  - device disk/{index}: {done}, {when}")
    return lines


async def settle_secondary(ctx: MasterContext, inst: Instance) -> list[dict[str, Any]]:
    """Tell the secondary which of its copies equal the primary's now, so that a later
    failover or reconnect knows the two were equal; and a discard decision of a failover is
    done with once its disk is in sync. Jobs call this (activation that waited for the sync,
    rebuilds, migrations, failover, verify-disks), never queries: a status only reads.

    The primary answers in one atomic read per disk (in sync, its generation, the export its
    job replicates to), and the secondary adopts only if that export is its own, so a copy
    recreated in between is never stamped with writes it lacks. The primary's records, one
    per disk ({} for all if the primary did not answer)."""
    cfg = ctx.config.data
    if not inst.secondary_nodes or not inst.disks:
        return []
    pnode, snode = cfg.nodes[inst.primary_node], secondary_of(cfg, inst)
    try:
        records = await ctx.rpc.node(pnode).blockdev_sync_record(
            mirror_disks(cfg, inst, pnode.uuid))
    except errors.HerdError:
        return [{} for _ in inst.disks]
    synced = [i for i, rec in enumerate(records) if rec.get("in_sync")]
    if not synced or snode.offline:
        return records
    try:
        adopted = await ctx.rpc.node(snode).blockdev_mark_synced(
            [mirror_disk(cfg, inst, i, snode.uuid) for i in synced],
            [{"current": records[i]["current"], "history": records[i]["history"]}
             for i in synced],
            [records[i].get("export") for i in synced])
    except errors.HerdError:
        return records  # the next job that settles tries again
    changed = False
    for i, ok in zip(synced, adopted, strict=False):
        if ok and inst.disks[i].params.pop(DISCARD_SECONDARY, None):
            changed = True
    if changed and inst.uuid in cfg.instances:
        await ctx.config.save()
    return records


async def deactivate(ctx: MasterContext, inst: Instance, skip: set[str] | None = None) -> None:
    """Stop the storage daemons: the primary first (it flushes), then the secondary.
    ``skip``: node uuids known to be down (a power cut), not worth a timeout."""
    cfg = ctx.config.data
    pnode, snode = cfg.nodes[inst.primary_node], secondary_of(cfg, inst)
    errors_seen = []
    for node in (pnode, snode):
        if node.offline or node.uuid in (skip or set()):
            continue
        try:
            await ctx.rpc.node(node).blockdev_shutdown(mirror_disks(cfg, inst, node.uuid))
        except errors.RpcError as exc:
            errors_seen.append(exc.message)
    if errors_seen and not snode.offline and len(errors_seen) > 1:
        raise errors.OpExecError("; ".join(errors_seen))


async def status(ctx: MasterContext, inst: Instance) -> list[dict[str, Any]]:
    """The primary's view of each disk's mirror. A query: it reads and writes nothing (see
    :func:`settle_secondary` for what jobs record)."""
    cfg = ctx.config.data
    pnode = cfg.nodes[inst.primary_node]
    try:
        return await ctx.rpc.node(pnode).blockdev_sync_status(mirror_disks(cfg, inst, pnode.uuid))
    except errors.HerdError as exc:
        return [{"role": "unknown", "error": exc.message} for _ in inst.disks]


async def gather(*aws: Any) -> list[Any]:
    return list(await asyncio.gather(*aws))
