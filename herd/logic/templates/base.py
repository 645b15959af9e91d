"""DiskTemplate: what the master knows about one disk template, as capabilities and actions.

Logical units used to branch on the template's name (``if inst.disk_template == "drbd"``) in
each operation, so adding a template meant finding every branch. Here each template is one
object: LUs ask it what the instance can do (``can_failover``, ``needs_secondary``...) and tell
it what to do (create, remove, activate...), and a new template is a new module plus one
registry entry (``herd.logic.templates``). Nothing here names a template.

The per-node work goes through node RPC; the default methods are those of a template with no
volumes (diskless), so a template only overrides what it has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from herd import errors
from herd.config.reservations import Reservations
from herd.logic.base import MasterContext
from herd.objects import ConfigData, Disk, Instance, Node
from herd.objects.disk_ids import LvId
from herd.storage.blockdev.spec import DeviceSpec

Feedback = Callable[[str], None]


@dataclass
class NewDisk:
    """A disk as the user asked for it at creation (checked: size in MiB, mode, name)."""

    size: int
    mode: str = "rw"
    name: str | None = None


@dataclass
class Claim:
    """Where a template claims cluster-wide resources for a job (mirror ports), released with
    the job, so that two running jobs cannot take the same one before the config holds it."""

    reservations: Reservations | None
    owner: object


@dataclass(frozen=True)
class Volumes:
    """What a node holds for an instance's disks (verify's orphan check, intents): relative
    paths under the file storage directory, and the uuids of disks with a storage daemon."""

    files: frozenset[str] = frozenset()
    daemons: frozenset[str] = frozenset()


def grow_order(inst: Instance, disk: Disk) -> list[str]:
    """The nodes of ``disk`` in the order a grow visits them: secondaries, then the primary."""
    return [n for n in disk.nodes if n != inst.primary_node] + \
        [n for n in disk.nodes if n == inst.primary_node]


class DiskTemplate:
    """One disk template (subclassed once per template, used as a stateless singleton)."""

    #: The template's name as the config and the OpCodes spell it.
    name: ClassVar[str] = ""
    #: How many copies of each disk the cluster keeps (0: no disks at all).
    copies: ClassVar[int] = 0
    #: Creation needs a second node (``-n PRIMARY:SECONDARY``).
    needs_secondary: ClassVar[bool] = False
    #: A live migration or a failover keeps the data (a copy is on the target already).
    can_migrate: ClassVar[bool] = False
    can_failover: ClassVar[bool] = False
    #: replace-disks can rebuild a copy (there is a second copy to rebuild from).
    replaceable: ClassVar[bool] = False
    #: Templates ``gnt-instance modify -t`` converts this one to (data is copied).
    converts_to: ClassVar[frozenset[str]] = frozenset()
    #: MiB the allocator protocol counts per disk beyond its size (Ganeti's DRBD_META_SIZE:
    #: hail and Ganeti's checks expect it in ``disk_space_total``).
    meta_mib: ClassVar[int] = 0
    #: grow-disk grows the volumes of a running instance as they are (the guest opens the
    #: volume itself, so QMP block_resize shows it the new size). A mirror's volumes are held
    #: by its storage daemons and its guest reads an NBD export: it grows a running
    #: instance's disk its own way (:meth:`grow_running`) and a stopped one's with the
    #: mirror down.
    grows_online: ClassVar[bool] = False

    def disk_space_total(self, sizes: list[int]) -> int:
        """The disk space the allocator protocol counts for disks of ``sizes`` MiB."""
        return sum(size + self.meta_mib for size in sizes) if self.copies else 0

    def uses_vg(self, cfg: ConfigData) -> bool:
        """Whether new disks of this template take space in the cluster's volume group (else
        in the file storage directory): which free space an allocator looks at."""
        return False

    def __repr__(self) -> str:
        return f"<disk template {self.name}>"

    # -- building the config ------------------------------------------------------------------
    def check_disk_count(self, count: int) -> None:
        """Refuse a creation with disks for a template without any, or the reverse."""
        if self.copies == 0 and count:
            raise errors.ParameterError(f"the {self.name} template takes no disks")
        if self.copies and not count:
            raise errors.ParameterError(f"disk template '{self.name}' needs at least one disk "
                                        "(--disk 0:size=... or -s SIZE)")

    def new_disks(self, cfg: ConfigData, inst: Instance, wanted: list[NewDisk], pnode: str,
                  snode: str | None, claim: Claim) -> list[Disk]:
        """The disks of a new instance (or of a conversion): typed ids, ``nodes`` set."""
        disks = [Disk(size=w.size, mode=w.mode, name=w.name) for w in wanted]
        self.assign(cfg, inst, disks, pnode, snode, claim)
        return disks

    def assign(self, cfg: ConfigData, inst: Instance, disks: list[Disk], pnode: str,
               snode: str | None, claim: Claim) -> None:
        """Make ``disks`` (existing uuids kept) disks of this template on these nodes."""
        for disk in disks:
            disk.dev_type = self.name
            disk.nodes = [pnode]

    def forget(self, disk: Disk) -> None:
        """Drop the per-disk parameters only this template uses (a conversion away from it)."""

    def device_specs(self, cfg: ConfigData, inst: Instance, node: str,
                     indices: list[int] | None = None) -> list[DeviceSpec]:
        """What ``node`` holds of the instance's disks (of ``indices``, default all), one
        DeviceSpec per disk it holds."""
        return []

    @staticmethod
    def disks_on(inst: Instance, node: str,
                 indices: list[int] | None = None) -> list[tuple[int, Disk]]:
        """(index, disk) of the instance's disks with a copy on ``node`` (all of them, or
        those of ``indices``): what every template's device_specs walks."""
        return [(index, disk) for index, disk in enumerate(inst.disks)
                if node in disk.nodes and (indices is None or index in indices)]

    def vg_space(self, inst: Instance) -> dict[str, int]:
        """MiB each node (uuid) needs free in the cluster's VG for the disks' LVs (a plain
        disk's, a mirror's data over LVM), so that a check phase can refuse early, as
        Ganeti does, instead of half-way through; empty when no volume is an LV."""
        out: dict[str, int] = {}
        for disk in inst.disks:
            ident = disk.logical_id
            if not isinstance(getattr(ident, "data", None) or ident, LvId):
                continue
            for node in disk.nodes:
                out[node] = out.get(node, 0) + disk.size
        return out

    @staticmethod
    def grow_space(inst: Instance, index: int, delta: int) -> dict[str, tuple[str, int]]:
        """Where growing disk ``index`` by ``delta`` MiB takes room: node uuid -> ("vg", MiB)
        for an LV (a plain disk's, a mirror's data over LVM) or ("file", MiB) for a file in
        the file storage directory; every node holding a copy, secondaries first."""
        disk = inst.disks[index]
        ident = disk.logical_id
        kind = "vg" if isinstance(getattr(ident, "data", None) or ident, LvId) else "file"
        return {node: (kind, delta) for node in grow_order(inst, disk)}

    def volumes_on(self, inst: Instance, node: str) -> Volumes:
        """What ``node`` should hold for ``inst`` (anything else there is an orphan)."""
        return Volumes()

    def intent_items(self, cfg: ConfigData, inst: Instance) -> list[Any]:
        """What :meth:`create` makes, as intent journal items (``herd.logic.intents.Item``)."""
        return []

    def hook_vars(self, inst: Instance, disk: Disk) -> dict[str, Any]:
        """``INSTANCE_DISKn_*`` suffixes of the disk's id (Ganeti's names)."""
        primary = inst.primary_node
        return disk.logical_id.hook_vars(primary, disk.peer_of(primary))

    # -- actions on nodes -----------------------------------------------------------------------
    async def create(self, ctx: MasterContext, inst: Instance, feedback: Feedback, *,
                     rollback: bool = True) -> None:
        """Make the (empty) volumes on every node. With ``rollback``, a failure removes what
        was made before it is raised; without, the caller removes (it has more to undo)."""

    async def populate(self, ctx: MasterContext, inst: Instance, feedback: Feedback, *,
                       wait_for_sync: bool = False) -> None:
        """After the primary's volumes were written (OS install, a conversion's copy): bring
        the other copies up to date."""

    async def remove(self, ctx: MasterContext, inst: Instance, feedback: Feedback, *,
                     stopped: bool = False) -> list[str]:
        """Remove the volumes on every node (idempotent), trying each node even when one
        fails; the failures, one line per node (empty: all gone). ``stopped``: the caller
        knows nothing was activated, so no orderly stop is needed first (saves RPCs)."""
        return []

    async def grow(self, ctx: MasterContext, inst: Instance, index: int, size_mib: int,
                   feedback: Feedback) -> None:
        """Grow disk ``index``'s volume to ``size_mib`` MiB on every node holding a copy,
        secondaries first (Ganeti's order: a mirror never has a primary larger than its
        secondary); ``inst`` keeps its size (the caller records it once all grew)."""
        cfg = ctx.config.data
        probe = Instance.from_dict(inst.to_dict())
        probe.disks[index].size = size_mib
        grown: list[Node] = []
        try:
            for uuid in grow_order(inst, inst.disks[index]):
                node = cfg.nodes[uuid]
                specs = self.device_specs(cfg, probe, uuid, [index])
                if specs:
                    feedback(f"* growing disk {index} on {node.name} to {size_mib} MiB")
                    grown.append(node)  # also when the answer is lost: the undo is a target
                    await ctx.rpc.node(node).blockdev_grow([s.to_dict() for s in specs])
        except BaseException:
            # the copies keep one length (a mirror refuses copies of two): cut back
            for node in grown:
                specs = self.device_specs(cfg, inst, node.uuid, [index])
                try:
                    await ctx.rpc.node(node).blockdev_grow([s.to_dict() for s in specs],
                                                           undo=True)
                except errors.HerdError as exc:
                    feedback(f"  WARNING: could not cut disk {index} back to "
                             f"{inst.disks[index].size} MiB on {node.name}: {exc.message}")
            raise

    def online_grow_refusal(self, qemu_version: str) -> str | None:
        """Why a disk of a running instance cannot grow on a primary with QEMU
        ``qemu_version`` (the instance must be stopped); None when :meth:`grow_running` can."""
        if self.grows_online:
            return None
        return f"its {self.name} disks grow only while it is stopped"

    async def grow_running(self, ctx: MasterContext, inst: Instance, index: int,
                           size_mib: int, feedback: Feedback) -> None:
        """:meth:`grow` under a running guest (the caller then shows the guest the size)."""
        await self.grow(ctx, inst, index, size_mib, feedback)

    async def missing(self, ctx: MasterContext, inst: Instance, node: Node,
                      indices: list[int] | None = None) -> list[int]:
        """Indices of the disks (of ``indices``, default all) ``node`` should hold and does
        not; read-only."""
        return []

    async def recreate(self, ctx: MasterContext, inst: Instance, node: Node,
                       indices: list[int]) -> None:
        """Make the disks ``indices`` again (empty) on ``node``."""

    async def activate(self, ctx: MasterContext, inst: Instance, feedback: Feedback, *,
                       wait_for_sync: bool = False) -> list[list[str]]:
        """Make the disks usable on the primary: ``[node name, "disk/i", path]`` per disk."""
        return []

    async def start_disks(self, ctx: MasterContext, inst: Instance,
                          feedback: Feedback) -> None:
        """What a start needs before the VM runs (a mirror's daemons; a missing secondary
        is only warned about)."""

    async def deactivate(self, ctx: MasterContext, inst: Instance,
                         skip: set[str] | None = None) -> None:
        """Stop what :meth:`activate` started (``skip``: node uuids known to be down)."""

    async def status(self, ctx: MasterContext, inst: Instance) -> list[dict[str, Any]] | None:
        """Live per-disk state for templates that have one (a mirror's), else None. A query:
        it changes nothing anywhere."""
        return None
