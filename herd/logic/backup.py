"""gnt-backup: exporting an instance to a node's export directory, listing and removing exports.

An export is Ganeti's: a directory named after the instance in the export directory of a node
(any node of the cluster), holding ``config.ini`` (:mod:`herd.exportinfo`) and one dump per
disk, written by the OS definition's ``export`` script on the primary and streamed to the
export node (:mod:`herd.node.exports`). The import side is instance creation with mode
``import`` (:mod:`herd.logic.instance_create`).

Consistency. Ganeti snapshots the disks (LVM) and restarts the instance at once. Herd has no
snapshots of file or mirrored disks, so it keeps the disks still for the whole copy instead:

* by default (``shutdown``) a running instance is shut down, exported and started again;
* with ``--noshutdown`` it is *paused* (QEMU stops the guest after completing and flushing
  every disk write): the export is one point in time of the running guest, as if the power
  had been cut then, and the guest continues where it was when the export is done. The pause
  lasts the whole copy, and the job says so; a guest that must not stop at all is not
  exportable yet (a point-in-time copy with QEMU's block jobs would lift this).

Failure leaves things as they were: the export node drops its staging directory (an older
export of the instance stays untouched), and a stopped or paused instance runs again.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from herd import errors, exportinfo
from herd.jobs.locking import LEVEL_CLUSTER, LEVEL_NODE, LockRequest
from herd.logic.base import LogicalUnit
from herd.logic.hooks import HookTargets
from herd.logic.instance_common import instance_locks, is_running, start_instance
from herd.logic.specs import instance_spec
from herd.logic.templates import template_of
from herd.objects import ConfigData, Instance, Node
from herd.opcodes import OpBackupExport, OpBackupPrepare, OpBackupQuery, OpBackupRemove


def peer(cfg: ConfigData, node: Node) -> dict[str, Any]:
    """How a node's noded reaches another one's export data (herd.node.exports)."""
    return {"name": node.name, "address": node.primary_ip, "port": cfg.cluster.noded_port}


def check_export_options(op: OpBackupExport) -> None:
    """Refuse, one line each, the export options Herd does not carry out (pure)."""
    if op.mode != "local":
        raise errors.ParameterError(
            f"export mode '{op.mode}' is not supported: use 'local' and copy the export "
            "directory to the other cluster")
    if op.compress not in (None, "none"):
        raise errors.ParameterError(f"transport compression '{op.compress}' is not supported;"
                                    " allowed: none")
    if op.zero_free_space:
        raise errors.ParameterError("zeroing free space before an export is not supported")
    if op.x509_key_name or op.destination_x509_ca:
        raise errors.ParameterError("X.509 keys are for remote exports, which Herd does not "
                                    "carry out")
    if op.remove_instance and not op.shutdown:
        raise errors.ParameterError("an instance cannot be removed after an export without "
                                    "being shut down: drop --noshutdown")
    if op.shutdown_timeout < 0:
        raise errors.ParameterError(f"invalid shutdown timeout {op.shutdown_timeout}: must be "
                                    ">= 0")
    if not op.target_node and not op.target_node_uuid:
        raise errors.ParameterError("no target node given (-n NODE)")


class LUBackupPrepare(LogicalUnit[OpBackupPrepare]):
    """Ganeti prepares remote exports (a handshake, a key); a local one needs nothing."""

    OPCODE = OpBackupPrepare

    def locks(self) -> list[LockRequest]:
        return [LockRequest(LEVEL_CLUSTER, "cluster", shared=True)]

    async def check(self) -> None:
        self.cfg.get_instance(self.op.instance_name)
        if self.op.mode != "local":
            raise errors.ParameterError(
                f"export mode '{self.op.mode}' is not supported: use 'local' and copy the "
                "export directory to the other cluster")

    async def execute(self) -> None:
        return None


class LUBackupExport(LogicalUnit[OpBackupExport]):
    OPCODE = OpBackupExport

    def locks(self) -> list[LockRequest]:
        target = self.op.target_node if isinstance(self.op.target_node, str) else None
        return instance_locks(self.cfg, self.op.instance_name,
                              extra_nodes=(target or self.op.target_node_uuid,))

    async def check(self) -> None:
        op, cfg = self.op, self.cfg
        check_export_options(op)
        self.inst: Instance = cfg.get_instance(op.instance_name)
        self.pnode: Node = cfg.nodes[self.inst.primary_node]
        target = op.target_node if isinstance(op.target_node, str) else op.target_node_uuid
        if not isinstance(target, str):
            raise errors.ParameterError(f"invalid target node {op.target_node!r}: a node name")
        self.tnode: Node = cfg.get_node(target)
        for node, role in ((self.pnode, "primary node"), (self.tnode, "target node")):
            if node.offline:
                raise errors.OpPrereqError(f"{role} {node.name} is offline")
        if not self.inst.os and self.inst.disks:
            raise errors.OpPrereqError(f"instance {self.inst.name} has no OS: its disks can "
                                       "only be exported by an OS definition's export script")
        self.running = await is_running(self.ctx, self.inst, self.pnode)

    def hooks_targets(self) -> HookTargets:
        return HookTargets(instance=self.inst, target=self.tnode.name)

    def hooks_env(self) -> dict[str, Any]:
        return {"EXPORT_NODE": self.tnode.name}

    async def execute(self) -> tuple[bool, list[bool]]:
        inst, op = self.inst, self.op
        prpc, trpc = self.ctx.rpc.node(self.pnode), self.ctx.rpc.node(self.tnode)
        stopped = paused = done = False
        await trpc.export_begin(inst.name)
        try:
            if self.running and op.shutdown:
                self.feedback(f"* shutting down instance {inst.name} for the export")
                await prpc.instance_stop(inst.name, float(op.shutdown_timeout))
                stopped = True
            elif self.running:
                self.feedback(f"* pausing instance {inst.name} while its disks are copied "
                              "(no snapshots here: the export is the guest's state at this "
                              "moment, and the guest stands still until the copy is done)")
                await prpc.instance_pause(inst.name)
                paused = True
            await self._export_disks(prpc)
            info = exportinfo.from_instance(
                inst, source=self.pnode.name, filled_beparams=self.cfg.filled_beparams(inst),
                nicparams=[self.cfg.filled_nicparams(inst, n.nicparams) for n in inst.nics],
                timestamp=int(time.time()))
            await trpc.export_finish(inst.name, exportinfo.dumps(info))
            done = True
        except BaseException:
            with contextlib.suppress(errors.HerdError):
                await trpc.export_abort(inst.name)
            raise
        finally:
            await self._restore(stopped=stopped, paused=paused,
                                removing=done and op.remove_instance)
        self.feedback(f"* export of {inst.name} written to node {self.tnode.name}")
        if op.remove_instance:
            await self._remove_instance()
        return True, [True] * len(inst.disks)

    async def _export_disks(self, prpc: Any) -> None:
        inst = self.inst
        spec = instance_spec(self.cfg, inst, self.ctx.paths)
        target = peer(self.cfg, self.tnode)
        for idx, disk in enumerate(inst.disks):
            self.feedback(f"* exporting disk/{idx} ({disk.size} MiB) to node "
                          f"{self.tnode.name}")
            size = await prpc.export_disk(spec, inst.os, idx, target, inst.name,
                                          exportinfo.dump_name(disk.uuid))
            self.feedback(f"  disk/{idx}: {size} bytes written")

    async def _restore(self, *, stopped: bool, paused: bool, removing: bool) -> None:
        """The instance runs again as before the export (unless it is being removed)."""
        inst = self.inst
        if paused:
            self.feedback(f"* resuming instance {inst.name}")
            await self.ctx.rpc.node(self.pnode).instance_resume(inst.name)
        if stopped and not removing:
            self.feedback(f"* starting instance {inst.name} again")
            await template_of(inst).start_disks(self.ctx, inst, self.feedback)
            await start_instance(self.ctx, inst, self.pnode)

    async def _remove_instance(self) -> None:
        inst = self.inst
        self.feedback(f"* removing instance {inst.name}")
        try:
            if inst.disks:
                problems = await template_of(inst).remove(self.ctx, inst, self.feedback)
                if problems:
                    raise errors.OpExecError("; ".join(problems))
        except errors.HerdError as exc:
            if not self.op.ignore_remove_failures:
                raise errors.OpExecError(f"the export was written, but removing instance "
                                         f"{inst.name} failed: {exc.message}") from None
            self.feedback(f"  WARNING: ignoring failure: {exc.message}")
        del self.cfg.instances[inst.uuid]
        await self.ctx.config.save()


class LUBackupQuery(LogicalUnit[OpBackupQuery]):
    """Node name -> its export names, or False for a node that did not answer (Ganeti)."""

    OPCODE = OpBackupQuery

    def locks(self) -> list[LockRequest]:
        return [LockRequest(LEVEL_CLUSTER, "cluster", shared=True)]

    async def check(self) -> None:
        cfg = self.cfg
        if self.op.nodes:
            self.nodes = [cfg.get_node(n) for n in self.op.nodes]
        else:
            self.nodes = sorted(cfg.nodes.values(), key=lambda n: n.name)

    async def execute(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for node in self.nodes:
            if node.offline:
                out[node.name] = False
                continue
            try:
                out[node.name] = await self.ctx.rpc.node(node).export_list()
            except errors.HerdError as exc:
                self.feedback(f"  WARNING: node {node.name}: {exc.message}")
                out[node.name] = False
        return out


class LUBackupRemove(LogicalUnit[OpBackupRemove]):
    """Remove an instance's exports from every node (the instance need not exist any more:
    its name is enough, as in Ganeti)."""

    OPCODE = OpBackupRemove

    def locks(self) -> list[LockRequest]:
        # shared: removals may run together; an export (its node exclusive) is waited for
        return [LockRequest(LEVEL_CLUSTER, "cluster", shared=True),
                *(LockRequest(LEVEL_NODE, uuid, shared=True) for uuid in sorted(self.cfg.nodes))]

    async def check(self) -> None:
        inst = self.cfg.find_instance(self.op.instance_name)
        self.name = exportinfo.check_name(inst.name if inst else self.op.instance_name)

    async def execute(self) -> None:
        found = False
        problems = []
        for node in sorted(self.cfg.nodes.values(), key=lambda n: n.name):
            if node.offline:
                continue
            try:
                if await self.ctx.rpc.node(node).export_remove(self.name):
                    found = True
                    self.feedback(f"* removed the export of {self.name} on node {node.name}")
            except errors.HerdError as exc:
                problems.append(f"node {node.name}: {exc.message}")
        if problems:
            raise errors.OpExecError(f"could not remove the export of {self.name} on "
                                     + "; ".join(problems))
        if not found:
            # Ganeti warns and succeeds: removing what is not there leaves what the admin wants
            self.feedback(f"  WARNING: no export of {self.name} found on any node")
