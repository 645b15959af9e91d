"""gnt-instance grow-disk (Ganeti's OP_INSTANCE_GROW_DISK): a bigger disk, the data kept.

Ganeti's semantics: ``amount`` is the increase, or with ``absolute`` the new size; a disk never
shrinks. Everything that can refuse is checked before anything changes: the target size, the
free space of every node holding a copy (VG or file storage), and whether the template can grow
a disk under a running guest. Then the volumes grow on the secondaries first and the primary
last (a mirror never has a primary larger than its secondary), the running guest is shown the
new size (QMP block_resize), and the config records it.

A mirrored (drbd) disk of a stopped instance grows with the mirror down; both copies' new
tails read as zeros on both nodes. Under a running guest (QEMU >= 10.0 on the primary) the
template pauses the guest for the moment its storage daemons end the in-sync mirror job and
exports, grow both copies and serve them again (a new job copies nothing); the guest's NBD
client then reconnects, which carries the new size (an NBD client learns it when it
connects), and block_resize shows it to the guest.
"""

from __future__ import annotations

from typing import Any

from herd import errors
from herd.jobs.locking import LockRequest
from herd.logic.base import LogicalUnit
from herd.logic.hooks import HookTargets
from herd.logic.instance_common import instance_locks, is_running
from herd.logic.templates import template_of
from herd.objects import Instance, Node
from herd.opcodes import OpInstanceGrowDisk
from herd.units import format_size


def grow_target(index: int, current: int, amount: int, absolute: bool) -> int:
    """The new size (MiB) of disk ``index`` of ``current`` MiB: ``amount`` more, or
    ``amount`` itself with ``absolute``; a request below the current size is refused."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise errors.ParameterError(f"invalid amount {amount!r} for disk {index}: expected a "
                                    "size in MiB, 0 or more")
    if not absolute:
        return current + amount
    if amount < current:
        raise errors.OpPrereqError(
            f"requested size {format_size(amount)} of disk {index} is smaller than its "
            f"current size {format_size(current)}: disks can only grow")
    return amount


def space_refusal(node: str, kind: str, needed: int, info: dict[str, Any]) -> str | None:
    """Why ``node`` cannot give ``needed`` MiB more to a volume of ``kind`` ("vg": the
    cluster's volume group; "file": the file storage directory), from its node_info; None
    when it can (or does not report the figure)."""
    if needed <= 0:
        return None
    if kind == "vg":
        if info.get("vg_error"):
            return f"the volume group on node {node} is not usable: {info['vg_error']}"
        free, where = info.get("vg_free"), f"volume group {info.get('vg_name') or ''}".strip()
    else:
        free, where = info.get("file_storage_free"), "file storage directory"
    if free is not None and needed > int(free):
        return (f"not enough free space in the {where} on node {node}: needed {needed} MiB, "
                f"available {int(free)} MiB")
    return None


def grow_path(running: bool, grows_online: bool, refusal: str | None) -> str:
    """How a disk grows: "volumes" (as they are, under a running guest too: the file
    template), "stopped" (an instance that is not running, its disks' daemons down
    meanwhile), "running" (the template's own way under a running guest: a mirror) or
    "refused" (running, and ``refusal`` says why the template cannot)."""
    if grows_online:
        return "volumes"
    if not running:
        return "stopped"
    return "refused" if refusal else "running"


class LUInstanceGrowDisk(LogicalUnit[OpInstanceGrowDisk]):
    OPCODE = OpInstanceGrowDisk

    def locks(self) -> list[LockRequest]:
        return instance_locks(self.cfg, self.op.instance_name)

    def hooks_targets(self) -> HookTargets:
        return HookTargets(instance=self.inst)

    async def check(self) -> None:
        op, cfg = self.op, self.cfg
        self.inst: Instance = cfg.get_instance(op.instance_name)
        inst = self.inst
        self.template = template_of(inst)
        if isinstance(op.disk, bool) or not isinstance(op.disk, int) or \
                not 0 <= op.disk < len(inst.disks):
            allowed = f"0 to {len(inst.disks) - 1}" if inst.disks else "none: it has no disks"
            raise errors.ParameterError(f"invalid disk index {op.disk!r} of instance "
                                        f"{inst.name}: allowed are {allowed}")
        disk = inst.disks[op.disk]
        self.current = disk.size
        self.target = grow_target(op.disk, disk.size, op.amount, op.absolute)
        self.pnode: Node = cfg.nodes[inst.primary_node]
        for uuid in disk.nodes:
            node = cfg.nodes[uuid]
            if node.offline:
                raise errors.OpPrereqError(f"node {node.name} holding disk {op.disk} of "
                                           f"{inst.name} is offline")
        self.running = await is_running(self.ctx, inst, self.pnode)
        refusal = None
        if self.running and not self.template.grows_online:
            info = await self.ctx.rpc.node(self.pnode).node_info()
            refusal = self.template.online_grow_refusal(
                str((info.get("hypervisor") or {}).get("qemu_version") or ""))
        self.path = grow_path(self.running, self.template.grows_online, refusal)
        if self.path == "refused":
            raise errors.OpPrereqError(f"instance {inst.name} is running and {refusal}: "
                                       "stop it first")
        delta = self.target - self.current
        for uuid, (kind, needed) in self.template.grow_space(inst, op.disk, delta).items():
            node = cfg.nodes[uuid]
            refusal = space_refusal(node.name, kind, needed,
                                    await self.ctx.rpc.node(node).node_info())
            if refusal:
                raise errors.OpPrereqError(f"cannot grow disk {op.disk} of {inst.name} by "
                                           f"{format_size(delta)}: {refusal}")

    async def execute(self) -> None:
        inst, index, template = self.inst, self.op.disk, self.template
        if self.target == self.current:
            self.feedback(f"disk {index} of {inst.name} is {format_size(self.current)} "
                          "already; nothing to grow")
            return
        self.feedback(f"Growing disk {index} of instance '{inst.name}' by "
                      f"{format_size(self.target - self.current)} to "
                      f"{format_size(self.target)}")
        if self.path == "running":
            await template.grow_running(self.ctx, inst, index, self.target, self.feedback)
        elif self.path == "stopped":
            # the mirror's daemons keep a disk's length: grow with them down (a stopped
            # instance normally has none; disks activated by hand are activated again)
            await template.deactivate(self.ctx, inst)
            try:
                await template.grow(self.ctx, inst, index, self.target, self.feedback)
            finally:
                if inst.disks_active:
                    await template.activate(self.ctx, inst, self.feedback)
        else:
            await template.grow(self.ctx, inst, index, self.target, self.feedback)
        # every copy holds the new size now: the config says so, whatever the guest sees
        inst.disks[index].size = self.target
        inst.touch()
        await self.ctx.config.save()
        if self.running:
            try:
                await self.ctx.rpc.node(self.pnode).instance_grow_disk(inst.name, index,
                                                                      self.target,
                                                                      inst.disks[index].uuid)
            except errors.HerdError as exc:
                self.feedback(f"  WARNING: the running guest was not told of the new size "
                              f"({exc.message}); it sees it after its next restart")
            else:
                self.feedback(f"* the running guest sees disk {index} at "
                              f"{format_size(self.target)} now")
