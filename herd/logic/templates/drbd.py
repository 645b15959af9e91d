"""The ``drbd`` template: each disk mirrored between the primary and one secondary node.

The mirror's protocol (ports, MirrorDisk descriptions, activation from generation ids, the
"synced" marks) stays in :mod:`herd.logic.drbd`, which other modules of the mirror's life
(replace-disks, failover repair, migrate --cleanup) use too; this object is what LUs see. The
node calls are the ``mirror_*`` RPCs until the mirror's state machine (issue 11, step 5)
moves them to ``blockdev_*``.
"""

from __future__ import annotations

from typing import Any

from herd import errors, qemu_features
from herd.logic import drbd, intents
from herd.logic.base import MasterContext
from herd.logic.templates.base import Claim, DiskTemplate, Feedback, Volumes
from herd.objects import ConfigData, Disk, Instance, Node
from herd.storage.blockdev.spec import DeviceSpec

#: Beside each mirrored disk's backing file: its generation record.
GENERATION_SUFFIX = ".gen"


class DrbdTemplate(DiskTemplate):
    name = "drbd"
    copies = 2
    needs_secondary = True
    can_migrate = True
    can_failover = True
    replaceable = True
    converts_to = frozenset({"file", "plain"})
    meta_mib = 128

    def uses_vg(self, cfg: ConfigData) -> bool:
        return bool(cfg.cluster.volume_group_name)  # LVs when the cluster has a VG

    def assign(self, cfg: ConfigData, inst: Instance, disks: list[Disk], pnode: str,
               snode: str | None, claim: Claim) -> None:
        if snode is None:
            raise errors.OpPrereqError(f"disk template '{self.name}' needs a secondary node")
        ports = drbd.allocate_ports(cfg, len(disks), claim.reservations, claim.owner)
        # the data kind of new disks: LVs when the cluster has a VG, else files
        vg = cfg.cluster.volume_group_name
        for index, disk in enumerate(disks):
            disk.dev_type = self.name
            disk.nodes = [pnode, snode]
            disk.logical_id = drbd.new_logical_id(ports[index], disk, vg)

    def forget(self, disk: Disk) -> None:
        disk.params.pop(drbd.DISCARD_SECONDARY, None)

    def volumes_on(self, inst: Instance, node: str) -> Volumes:
        files: set[str] = set()
        daemons: set[str] = set()
        for disk in inst.disks:
            if node not in disk.nodes:
                continue
            path = disk.logical_id.file_path()
            if path is not None:  # over an LV: verify's LV listing checks the data
                files |= {path, path + GENERATION_SUFFIX}
            daemons.add(disk.uuid)
        return Volumes(frozenset(files), frozenset(daemons))

    def device_specs(self, cfg: ConfigData, inst: Instance, node: str,
                     indices: list[int] | None = None) -> list[DeviceSpec]:
        return [drbd.mirror_spec(cfg, inst, index, node)
                for index, _ in self.disks_on(inst, node, indices)]

    def intent_items(self, cfg: ConfigData, inst: Instance) -> list[Any]:
        return [intents.Item(node, intents.DEVICE, spec.to_dict()) for node in inst.all_nodes
                for spec in self.device_specs(cfg, inst, node)]

    async def create(self, ctx: MasterContext, inst: Instance, feedback: Feedback, *,
                     rollback: bool = True) -> None:
        cfg = ctx.config.data
        nodes = [cfg.nodes[u] for u in inst.all_nodes]
        feedback(f"* creating mirrored disks on {' and '.join(n.name for n in nodes)}...")
        made: list[Node] = []
        try:
            for node in nodes:
                made.append(node)  # also when the answer is lost: removal is idempotent
                await ctx.rpc.node(node).blockdev_create(drbd.mirror_disks(cfg, inst, node.uuid))
        except BaseException:
            if rollback:
                for node in made:
                    try:
                        await ctx.rpc.node(node).blockdev_remove(
                            drbd.mirror_disks(cfg, inst, node.uuid))
                    except errors.HerdError as exc:
                        feedback(f"  WARNING: cleanup on {node.name} failed: {exc.message}")
            raise

    async def populate(self, ctx: MasterContext, inst: Instance, feedback: Feedback, *,
                       wait_for_sync: bool = False) -> None:
        feedback("* starting the mirror to the secondary (full sync)")
        await drbd.activate(ctx, inst, feedback, wait_for_sync=wait_for_sync)

    async def remove(self, ctx: MasterContext, inst: Instance, feedback: Feedback, *,
                     stopped: bool = False) -> list[str]:
        cfg = ctx.config.data
        problems = []
        if not stopped:
            try:
                await drbd.deactivate(ctx, inst)  # the primary flushes before its daemon goes
            except errors.HerdError as exc:
                problems.append(exc.message)
        for uuid in inst.all_nodes:
            node = cfg.nodes[uuid]
            try:
                await ctx.rpc.node(node).blockdev_remove(drbd.mirror_disks(cfg, inst, uuid))
            except errors.HerdError as exc:
                problems.append(f"could not remove disks on {node.name}: {exc.message}")
        return problems

    def online_grow_refusal(self, qemu_version: str) -> str | None:
        return qemu_features.mirror_grow_refusal(qemu_version)

    async def grow_running(self, ctx: MasterContext, inst: Instance, index: int,
                           size_mib: int, feedback: Feedback) -> None:
        """Both copies of a running instance's disk grow, the guest paused meanwhile (see
        MirrorManager.grow_hold): the primary ends its in-sync job and VM export, the
        secondary then the primary grow their copies and serve them again, the primary with
        a new job that copies nothing. A failure serves both copies again at the old size;
        the guest runs on as before either way."""
        cfg = ctx.config.data
        pnode, snode = cfg.nodes[inst.primary_node], drbd.secondary_of(cfg, inst)
        prpc, srpc = ctx.rpc.node(pnode), ctx.rpc.node(snode)
        grown = Instance.from_dict(inst.to_dict())
        grown.disks[index].size = size_mib

        def spec(which: Instance, node: Node) -> list[dict[str, Any]]:
            return [drbd.mirror_spec(cfg, which, index, node.uuid).to_dict()]

        mirror = (await drbd.status(ctx, inst))[index]
        if not mirror.get("in_sync"):
            raise errors.OpPrereqError(
                f"disk {index} of {inst.name} is not in sync with {snode.name} (both copies "
                "must hold every write before they grow under the guest): wait for the resync "
                "('gnt-instance info' shows it) or stop the instance")
        state = (await prpc.instance_runstate(inst.name) or {}).get("state")
        feedback(f"* pausing the guest of {inst.name} while its mirror takes the new size")
        await prpc.instance_pause(inst.name)
        held, touched = False, []
        try:
            held = True  # also when the hold fails half-way: serving again is a target
            await prpc.blockdev_grow_hold(spec(inst, pnode))
            for node, rpc in ((snode, srpc), (pnode, prpc)):
                feedback(f"* growing disk {index} on {node.name} to {size_mib} MiB")
                touched.append((node, rpc))  # also when the answer is lost: undo is a target
                await rpc.blockdev_grow_serve(spec(grown, node))
        except BaseException:
            # the copies keep one length and the primary mirrors again, at the old size
            undo = [*touched, (pnode, prpc)] if held else touched
            for node, rpc in {n.uuid: (n, r) for n, r in undo}.values():
                try:
                    await rpc.blockdev_grow_serve(spec(inst, node))
                except errors.HerdError as exc:
                    feedback(f"  WARNING: could not serve disk {index} on {node.name} at "
                             f"{inst.disks[index].size} MiB again: {exc.message}")
            raise
        finally:
            if state in (None, "running"):
                feedback(f"* resuming the guest of {inst.name}")
                await prpc.instance_resume(inst.name)

    async def missing(self, ctx: MasterContext, inst: Instance, node: Node,
                      indices: list[int] | None = None) -> list[int]:
        # a mirror's info is its data volume's on that node
        specs = self.device_specs(ctx.config.data, inst, node.uuid, indices)
        if not specs:
            return []
        infos = await ctx.rpc.node(node).blockdev_info([s.to_dict() for s in specs])
        return [int(s.index or 0) for s, info in zip(specs, infos, strict=True)
                if not info["exists"]]

    async def recreate(self, ctx: MasterContext, inst: Instance, node: Node,
                       indices: list[int]) -> None:
        disks = [d for d in drbd.mirror_disks(ctx.config.data, inst, node.uuid)
                 if d["index"] in indices]
        if disks:
            rpc = ctx.rpc.node(node)
            await rpc.blockdev_remove(disks)  # drops stale metadata of a lost file
            await rpc.blockdev_create(disks)

    async def activate(self, ctx: MasterContext, inst: Instance, feedback: Feedback, *,
                       wait_for_sync: bool = False) -> list[list[str]]:
        await drbd.activate(ctx, inst, feedback, wait_for_sync=wait_for_sync)
        states = await drbd.status(ctx, inst)
        pnode = ctx.config.data.nodes[inst.primary_node]
        return [[pnode.name, f"disk/{i}", str(st.get("vm_uri"))] for i, st in enumerate(states)]

    async def start_disks(self, ctx: MasterContext, inst: Instance,
                          feedback: Feedback) -> None:
        await drbd.activate(ctx, inst, feedback, ignore_secondary=True)

    async def deactivate(self, ctx: MasterContext, inst: Instance,
                         skip: set[str] | None = None) -> None:
        await drbd.deactivate(ctx, inst, skip)

    async def status(self, ctx: MasterContext, inst: Instance) -> list[dict[str, Any]] | None:
        if not inst.disks:
            return None
        return await drbd.status(ctx, inst)
