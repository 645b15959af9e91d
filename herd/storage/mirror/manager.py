"""MirrorManager: the node-local side of the ``drbd`` template (DESIGN §7).

Stateless between calls on purpose: everything it needs is in files (the generation JSON beside
each backing file, the runtime files of each storage daemon), so a restarted noded picks up the
running daemons where the old one left them. Calls for one disk are serialised by a lock; every
QMP step has a timeout (see :mod:`.qmp`).

The local copy (the "data volume") is a :class:`~herd.storage.blockdev.BlockDevice`: a file
under the file storage directory, as every mirror so far, or an LV. The manager creates,
assembles, checks and removes it only through that interface, so replication does not care
what holds the bytes; the storage daemon opens a block device with QEMU's ``host_device``
driver, limited to the disk's exact size (:func:`graph.local_node`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from herd import qemu_features
from herd.daemonize import scope_argv, scope_unit
from herd.errors import StorageError
from herd.paths import HerdPaths
from herd.storage.blockdev.base import MIB, BlockDevice
from herd.storage.blockdev.spec import FILE, DeviceSpec
from herd.storage.mirror import daemon, generation, graph, peer, tcp_table
from herd.storage.mirror.generation import (
    SYNC_ORDER,
    GenerationFile,
    SplitBrainError,
    bump,
    decide_sync,
    initial,
    split_brain_message,
    summary,
)
from herd.storage.mirror.model import MirrorDisk, MirrorStatus
from herd.storage.mirror.qmp import QmpCommandError, QmpSession, session
from herd.storage.mirror.quickack import ensure_quickack
from herd.storage.mirror.records import Generation, Runtime
from herd.storage.mirror.states import Event, State, classify, observe, transition
from herd.storage.mirror.states import write_in_flight as _write_in_flight

if TYPE_CHECKING:
    from herd.storage.blockdev.factory import DeviceFactory

#: Seconds a clean cancel of an in-sync job may take (it drains what is in flight).
CANCEL_TIMEOUT = 30.0
SETTLE_TIMEOUT = 1.0  # how long a status waits out a guest write in flight
LOCK_POLL = 0.01  # seconds between two tries of another process's disk lock
#: Seconds between looks at a job or export being ended: a hand-over does it while the guest
#: is paused, and a ready job ends in a few milliseconds (50 ms polls made it 50).
END_POLL = 0.003
#: The events that tell a block job's end (cancelled, or completed: a ready mirror cancelled
#: without force completes without pivoting).
JOB_ENDED = ("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED")
#: Seconds between looks at a job being cancelled when no event came (a fallback).
END_LOOK = 0.05
#: QMP calls that may wait for the NBD client (drain of requests stuck on a lost peer).
SLOW_TIMEOUT = graph.RECONNECT_DELAY + 20.0
SYNC_MODES = ("auto", "none", "dirty", "full")
#: A reconnect waits this long for the job's NBD client to be back: QEMU's reconnect thread
#: tries again at most 16 s after its last try, and a connect takes a moment.
RESUME_TIMEOUT = 20.0
RESUME_POLL = 0.02


def data_spec(disk: MirrorDisk) -> DeviceSpec:
    """The data volume of ``disk``: the one it names, else the file at its ``relpath``."""
    if disk.data:
        return DeviceSpec.from_dict(disk.data)
    return DeviceSpec(uuid=disk.uuid, kind=FILE, size_mib=disk.size, name=disk.relpath,
                      index=disk.index, path=disk.relpath)


class MirrorManager:
    def __init__(self, paths: HerdPaths, devices: DeviceFactory | None = None) -> None:
        if devices is None:
            from herd.storage.blockdev.factory import DeviceFactory

            devices = DeviceFactory(paths)
        self.paths = paths
        self.devices = devices
        self.run_dir = paths.run_dir / "mirror"
        self._locks: dict[str, asyncio.Lock] = {}

    # -- files -------------------------------------------------------------------------------
    def backing_file(self, disk: MirrorDisk) -> Path:
        base = self.paths.file_storage_dir
        path = (base / disk.relpath).resolve()
        if base.resolve() not in path.parents:
            raise StorageError(f"disk path {disk.relpath!r} escapes {base}")
        return path

    def _data(self, disk: MirrorDisk) -> BlockDevice:
        return self.devices.device(data_spec(disk))

    def _gen(self, disk: MirrorDisk) -> GenerationFile:
        """Where the generation record is: ``meta`` under the data directory (an LV has no
        sibling file), else beside the backing file, as for every mirror made before."""
        if disk.meta:
            base = self.paths.data_dir
            path = (base / disk.meta).resolve()
            if base.resolve() not in path.parents:
                raise StorageError(f"generation record path {disk.meta!r} escapes {base}")
            return GenerationFile(path)
        path = self.backing_file(disk)
        return GenerationFile(path.with_name(path.name + ".gen"))

    def _files(self, disk: MirrorDisk) -> daemon.DaemonFiles:
        return daemon.DaemonFiles.for_disk(self.run_dir, disk.uuid)

    @contextlib.asynccontextmanager
    async def _lock(self, disk: MirrorDisk) -> AsyncIterator[None]:
        """One changing call per disk at a time: an asyncio lock within noded (its requests
        and its supervisor), and an flock on ``KEY.lock`` against other processes on the node
        (``python -m herd.storage.mirror``, used by benchmarks and tests, next to a noded)."""
        async with self._locks.setdefault(disk.uuid, asyncio.Lock()):
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._files(disk).lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        await asyncio.sleep(LOCK_POLL)
                yield
            finally:
                os.close(fd)  # releases the flock

    # -- lifecycle of the copy ---------------------------------------------------------------
    async def create(self, disk: MirrorDisk) -> None:
        """The data volume (of ``disk.size`` MiB) and a fresh generation; refuse if present.
        A record that cannot be written takes the new volume with it."""
        async with self._lock(disk):
            data, gen = self._data(disk), self._gen(disk)
            if gen.exists() or (await data.info()).exists:
                raise StorageError(f"mirrored disk {disk.relpath} already exists on this node")
            await data.create()
            try:
                path = (await data.info()).path
                if path and os.path.isfile(path):
                    os.chmod(path, 0o600)  # as mirror backings always were: root's only
                gen.write(initial())
            except BaseException:
                await data.remove()
                raise

    async def remove(self, disk: MirrorDisk) -> None:
        """Stop the disk's daemon if any, delete backing file, generation and runtime files."""
        async with self._lock(disk):
            files = self._files(disk)
            pid = files.pid()
            if pid is not None:
                await self._quit(files, pid)
            files.cleanup()
            files.log.unlink(missing_ok=True)
            # the record first: a file backing's directory goes with the data, once empty
            self._gen(disk).path.unlink(missing_ok=True)
            await self._data(disk).remove()
            # held until we return; a removed disk leaves nothing in the run directory either
            files.lock.unlink(missing_ok=True)

    async def grow(self, disk: MirrorDisk, size_mib: int) -> None:
        """Grow this node's copy to ``size_mib`` MiB while its storage daemon is down (a
        target: a retry or a copy already that large changes nothing). Refused while the
        daemon runs: its mirror job and NBD connections keep the old length, and the guest
        over NBD could not see a new one anyway (the NBD protocol fixes the size at connect).

        The new tail must read the same on both nodes, or the copies would differ without a
        generation saying so: a file's new tail is a hole (zeros); an LV's new extents may hold
        old bytes, so they are zeroed here. The generation stays: the copies were equal before
        and are equal after."""
        async with self._lock(disk):
            files = self._files(disk)
            if files.pid() is not None:
                raise StorageError(f"cannot grow mirrored disk {disk.index} while its storage "
                                   "daemon runs: stop the instance and deactivate its disks")
            data = self._data(disk)
            was = await data.info()
            before = was.size_bytes
            if before is None:
                raise StorageError(f"mirrored disk {disk.index} ({disk.relpath}) does not "
                                   "exist on this node")
            await data.grow(size_mib)
            info = await data.info()
            if info.size_bytes and (info.path is None or not os.path.isfile(info.path)):
                try:  # a block device (an LV): activated for the zeroing only
                    await asyncio.to_thread(_zero, await data.local_path(), before,
                                            min(info.size_bytes, size_mib * MIB) - before)
                finally:
                    if not was.active:
                        await data.shutdown()

    async def undo_grow(self, disk: MirrorDisk, size_mib: int) -> None:
        """Cut this copy back to ``size_mib`` after a grow the other node could not follow
        (its daemon down, as for :meth:`grow`): the copies keep one length."""
        async with self._lock(disk):
            if self._files(disk).pid() is not None:
                raise StorageError(f"cannot shrink mirrored disk {disk.index} back while its "
                                   "storage daemon runs")
            await self._data(disk).undo_grow(size_mib)

    # -- growing under a running guest -------------------------------------------------------
    # The mirror job and the NBD exports each forbid resizing the nodes below them, and an
    # NBD client learns an export's size only when it connects. So the master pauses the
    # guest, the primary ends its (in-sync) job and its VM export (grow_hold), each node
    # grows its copy and serves it again (grow_serve: the secondary first, then the primary,
    # which also starts a new job that copies nothing: the copies are equal), and the guest's
    # NBD client reconnects, learning the new size, before block_resize (the hypervisor's
    # grow_disk). The same grow_serve with the old size undoes a grow that did not finish.
    async def grow_hold(self, disk: MirrorDisk) -> None:
        """On the primary, its guest paused: end the VM export and the mirror job (cleanly,
        so both copies are equal) and drop the peer's node. Refused unless in sync. The
        runtime says ``growing`` first, so that no look takes the missing job for a lost
        peer (:data:`.states.State.GROWING`) and a half-done hold is served again whole."""
        async with self._lock(disk):
            files = self._files(disk)
            rt = files.read_runtime() or {}
            transition(await self._settle(disk), Event.GROW_HOLD, f"the mirror of {disk.relpath}")
            refusal = qemu_features.mirror_grow_refusal(str(rt.get("qsd_version", "")))
            if refusal:
                raise StorageError(f"disk {disk.index}: its storage daemon: {refusal}")
            files.write_runtime({**rt, "growing": True})
            async with session(files.qmp, timeout=SLOW_TIMEOUT) as q:
                await self._end_exports(q, ["vm"])
                if await self._job(q) is not None:
                    await self._cancel(q, force=False)
                await self._drop_target(q, rt.get("target_child"))
            files.write_runtime({**rt, "growing": True, "target": None, "target_child": None,
                                 "target_slot": None})

    async def grow_serve(self, disk: MirrorDisk) -> None:
        """Under the running daemon, this copy takes ``disk.size`` MiB (grown, or cut back
        for an undo; a new tail of a block device is zeroed, as :meth:`grow` does) and is
        served again: a secondary re-adds its exports, a primary held by :meth:`grow_hold`
        its VM export and a new mirror job (nothing to copy when the peer still serves the
        export the old job wrote to; a full copy otherwise)."""
        async with self._lock(disk):
            files = self._files(disk)
            rt = files.read_runtime() or {}
            if files.pid() is None:
                raise StorageError(f"mirrored disk {disk.index} has no storage daemon here")
            secondary = rt.get("role") == "secondary"
            served = MirrorDisk.from_dict(rt["disk"]).size if rt.get("disk") else disk.size
            if not secondary and not rt.get("growing") and served == disk.size:
                return  # an undo of a hold that never began: the mirror runs as it was
            transition(await self._phase(disk), Event.GROW_SERVE, f"disk {disk.relpath}")
            async with session(files.qmp, timeout=SLOW_TIMEOUT) as q:
                await self._end_exports(q, ["repl", "vm"] if secondary else ["vm"])
                if not secondary:  # a hold that failed half-way may have left them
                    if await self._job(q) is not None:
                        await self._cancel(q, force=False)
                    await self._drop_target(q, rt.get("target_child"))
                data = self._data(disk)
                await data.grow(disk.size)
                await data.undo_grow(disk.size)
                path = (await data.assemble()).path
                block = stat.S_ISBLK(os.stat(path).st_mode)
                if block and disk.size > served:
                    await asyncio.to_thread(_zero, path, served * MIB,
                                            (disk.size - served) * MIB)
                command, args = graph.resize_local(Path(path), block=block,
                                                   size=disk.size_bytes,
                                                   direct=graph.direct_io_works(Path(path)))
                await q.cmd(command, args)
                if secondary:
                    gen = self._gen(disk).read()
                    await q.cmd("block-export-add",
                                graph.repl_export(self._export_name(disk, gen), summary(gen)))
                    await q.cmd("block-export-add", graph.vm_export(disk.uuid))
                    files.write_runtime({**rt, "disk": disk.to_dict()})
                    return
                export, _ = await peer.probe(disk.peer_ip, disk.port, disk.uuid)
                sync = grow_job_sync(export, rt.get("export"))
                await q.cmd("block-export-add", graph.vm_export(disk.uuid))
                seq = int(rt.get("target_seq", 1)) + 1
                child, kind = await self._add_peer_node(q, disk, export, seq)
                await q.cmd("blockdev-add", graph.target_node(child), timeout=SLOW_TIMEOUT)
                plan = qemu_features.mirror_plan(str(rt.get("qsd_version", "")), sync)
                await q.cmd("blockdev-mirror", graph.mirror_job(sync, disk.size_bytes,
                                                                plan.copy_mode))
            gf = self._gen(disk)
            since = {} if sync == "none" else {"map_since": gf.read()["current"]}
            gf.update(dirty_map_valid=True, **since)
            files.write_runtime({**rt, "growing": False, "disk": disk.to_dict(),
                                 "target": kind, "target_child": child, "target_seq": seq,
                                 "target_slot": 0,
                                 "export": export, "base_offset": 0, "sync": sync,
                                 "copy_mode": plan.copy_mode,
                                 "switch_when_ready": plan.switch_when_ready,
                                 "sync_started": time.time()})

    async def _end_exports(self, q: QmpSession, ids: list[str]) -> None:
        """Remove the exports ``ids`` (dropping their clients) and wait until they are gone:
        an export holds its node's size (QEMU refuses a resize under it)."""
        for ident in ids:
            with contextlib.suppress(QmpCommandError):  # gone already (a retried step)
                await q.cmd("block-export-del", {"id": ident, "mode": "hard"})
        deadline = time.monotonic() + CANCEL_TIMEOUT
        while any(e.get("id") in ids for e in await q.cmd("query-block-exports")):
            if time.monotonic() > deadline:
                raise StorageError(f"exports {', '.join(ids)} did not end")
            await asyncio.sleep(END_POLL)

    async def mark_written(self, disk: MirrorDisk) -> None:
        """This copy's data was written directly (an OS rename or reinstall script while the
        mirror was down): a new generation, whose ancestor the peer holds, so that the next
        start of the mirror makes a full sync instead of trusting equal ids. Its export token
        is renewed too, as for any write as a primary."""
        async with self._lock(disk):
            if self._files(disk).pid() is not None:
                raise StorageError(f"mirrored disk {disk.index} was written beside its running "
                                   "storage daemon")
            gen_file = self._gen(disk)
            gen = generation.bump(gen_file.read())
            gen.update(export_token=generation.new_id(), dirty_map_valid=False, map_since=None)
            gen_file.write(gen)

    def generation(self, disk: MirrorDisk) -> dict[str, Any]:
        """The generation record; ``dirty_map_valid`` only while the daemon holding it lives."""
        gen = self._gen(disk).read()
        files = self._files(disk)
        running = files.pid() is not None
        rt = files.read_runtime() or {}
        gen["running"] = running
        gen["dirty_map_valid"] = bool(gen.get("dirty_map_valid") and running
                                      and rt.get("role") == "primary")
        return gen

    async def mark_synced(self, disk: MirrorDisk, primary_generation: dict[str, Any],
                          export: str | None = None) -> bool:
        """On the secondary: this copy now equals the primary's (the primary said so in one
        :meth:`sync_record` read), so it takes the primary's generation and lineage.

        ``export`` is the export the primary's job replicated to: the copy adopts only if it
        is its own (the name changes whenever the copy is recreated or written as a primary),
        so a copy made in between never inherits a record of writes it lacks. False: not
        adopted. None (an older master) is trusted as before."""
        async with self._lock(disk):
            transition(await self._phase(disk), Event.MARK_SYNCED, f"disk {disk.relpath}")
            gf = self._gen(disk)
            gen = gf.read()
            if export is not None and export != self._export_name(disk, gen):
                return False
            gf.update(current=primary_generation["current"],
                      history=list(primary_generation.get("history", [])),
                      fresh=False, needs_full=False)
            return True

    @staticmethod
    def _export_name(disk: MirrorDisk, gen: dict[str, Any]) -> str:
        """The replication export this copy serves as a secondary (see :mod:`.peer`)."""
        return peer.export_name(disk.uuid, gen.get("export_token", gen["current"]))

    # -- secondary ---------------------------------------------------------------------------
    async def start_secondary(self, disk: MirrorDisk) -> None:
        """A QSD owning the file, exported writable to the peer on local_ip:port."""
        async with self._lock(disk):
            files = self._files(disk)
            pid, rt = files.pid(), files.read_runtime() or {}
            if pid is not None and rt.get("role") == "secondary":
                return
            if pid is not None and rt.get("role") == "primary":
                await self._primary_to_secondary(disk, files)
                return
            gf = self._gen(disk)
            gen = gf.read()
            if gen.get("role") == "primary" and not gen.get("clean", True):
                gen["needs_full"] = True  # crashed primary: writes in flight then are unknown
            gen = gf.write({**gen, "role": "secondary", "clean": False, "degraded": False,
                            "dirty_map_valid": False, "map_since": None})
            local = await self._local_node(disk)
            await asyncio.to_thread(ensure_quickack, disk.peer_ip)
            version = await asyncio.to_thread(daemon.version)
            pid = await daemon.launch(files, self._scope(disk))
            try:
                async with session(files.qmp) as q:
                    await q.cmd("blockdev-add", local)
                    await self._serve_secondary(q, disk, gen)
            except BaseException:
                await daemon.terminate(pid)
                files.cleanup()
                raise
            files.write_runtime({"role": "secondary", "disk": disk.to_dict(), "server": "tcp",
                                 "pid": pid, "qsd_version": version, "started": time.time()})

    async def _serve_secondary(self, q: QmpSession, disk: MirrorDisk,
                               gen: dict[str, Any], server: bool = True) -> None:
        """The secondary's exports; ``server``: start the NBD server (TCP) first, unless it
        runs already (a primary converted from a secondary kept it)."""
        if server:
            await q.cmd("nbd-server-start", graph.tcp_server(disk.local_ip, disk.port))
        name = self._export_name(disk, gen)
        await q.cmd("block-export-add", graph.repl_export(name, summary(gen)))
        await q.cmd("block-export-add", graph.vm_export(disk.uuid))

    async def _primary_to_secondary(self, disk: MirrorDisk, files: daemon.DaemonFiles) -> None:
        """Hand-over after live migration: the guest now runs on the peer. The mirror must be in
        sync; it ends cleanly, and the daemon serves the file to the new primary instead.

        "In sync" is judged by the job alone here, the link to the peer taken as up: the
        guest is stopped and its disk flushed, so a job that holds every acknowledged write
        on the peer (write-blocking, ready, no error, nothing left) says all the peer's copy
        needs; an idle connection that died meanwhile loses nothing (a write on a dead one
        would have paused the job), and the new primary connects anew. That look is the
        node's TCP table, 1-2 ms in the guest's pause."""
        rt = files.read_runtime() or {}
        gf = self._gen(disk)
        async with session(files.qmp, timeout=SLOW_TIMEOUT) as q:  # one: the guest is paused
            state = classify(Generation.from_dict(gf.read()), Runtime.from_dict(rt), True,
                             await self._settled_job(q, rt), linked=True)
            transition(state, Event.HAND_OVER, f"the mirror of {disk.relpath}")
            await self._cancel(q, force=False)  # in sync (just seen): it has a job
            await self._drop_target(q, rt.get("target_child"))
            await q.cmd("block-export-del", {"id": "vm", "mode": "hard"})
            # a primary that took over in a live migration still serves where a secondary
            # does (its TCP server): only a primary started as one serves on a unix socket
            was = rt.get("disk") or {}
            tcp = (rt.get("server") == "tcp" and was.get("local_ip") == disk.local_ip
                   and was.get("port") == disk.port)
            if not tcp:
                await q.cmd("nbd-server-stop")
            gen = {**gf.read(), "role": "secondary", "clean": False, "degraded": False,
                   "dirty_map_valid": False, "map_since": None, "needs_full": False}

            def persist() -> None:
                gf.write(gen)
                files.write_runtime({**rt, "role": "secondary", "server": "tcp",
                                     "target": None, "target_child": None,
                                     "target_slot": None, "export": None})

            # the records (fsync'd) are written while the exports are added: should the node
            # crash before the generation is on disk, the record left says "primary, not
            # clean", and this copy is then fully synced from the new primary (never
            # trusted); should the exports fail, the runtime says primary again, as before
            writing = asyncio.ensure_future(asyncio.to_thread(persist))
            try:
                await self._serve_secondary(q, disk, gen, server=not tcp)
            except BaseException:
                with contextlib.suppress(Exception):
                    await writing
                files.write_runtime(rt)
                raise
            await writing

    def served(self, disk: MirrorDisk) -> dict[str, Any] | None:
        """What this node's secondary serves its peer: the replication export's name and
        the generation summary in its description (what :func:`.peer.probe` reads there);
        None unless a secondary's daemon runs. A live migration's source answers it, so
        that the new primary attaches without probing while the guest is paused."""
        files = self._files(disk)
        if (files.read_runtime() or {}).get("role") != "secondary" or files.pid() is None:
            return None
        gen = self._gen(disk).read()
        return {"export": self._export_name(disk, gen), "generation": summary(gen)}

    # -- primary -----------------------------------------------------------------------------
    async def start_primary(self, disk: MirrorDisk, sync: str, *,
                            allow_degraded: bool = False,
                            peer_served: dict[str, Any] | None = None) -> MirrorStatus:
        """Own the file, replicate every write to the peer, export the result to the local VM.

        ``sync`` is the least the caller wants copied: 'none' asserts that both copies are
        identical (after live migration) and is trusted; otherwise the generation rules may
        ask for more ('dirty' without a live dirty map means 'full'). Split brain is refused.
        ``peer_served``: what the peer said it serves (its :meth:`served`, passed on by the
        master in a live migration) instead of probing it: the probe is a connection and an
        NBD negotiation (1-7 ms) in the guest's pause, and the NBD client's connection to
        the export by that name fails just as well if the peer does not serve it.
        """
        if sync not in SYNC_MODES:
            raise StorageError(f"invalid sync mode {sync!r}, expected one of {SYNC_MODES}")
        async with self._lock(disk):
            files = self._files(disk)
            pid, rt = files.pid(), files.read_runtime() or {}
            if pid is not None and rt.get("role") == "primary":
                await self._settle(disk)
                return await self._status(disk)
            transition(await self._phase(disk), Event.START_PRIMARY, f"disk {disk.relpath}")
            gf = self._gen(disk)
            own = gf.read()
            if pid is None and own.get("role") == "primary" and not own.get("clean", True):
                own["dirty_map_valid"] = False  # our daemon crashed: its dirty map is gone
            if pid is None or rt.get("role") != "secondary":
                # a secondary's daemon made the route when it started; renewing it at a
                # live migration's hand-over cost 5-20 ms of the guest's pause (a thread and
                # a netlink socket on a busy node) for nothing
                await asyncio.to_thread(ensure_quickack, disk.peer_ip)
            try:
                if peer_served is not None:
                    export = str(peer_served["export"])
                    peer_gen = dict(peer_served["generation"])
                else:
                    export, peer_gen = await peer.probe(disk.peer_ip, disk.port, disk.uuid)
            except peer.PeerUnreachable as exc:
                if not allow_degraded:
                    raise StorageError(f"cannot attach mirrored disk {disk.relpath}: {exc} "
                                       f"(start degraded only if the peer is dead)") from None
                export, peer_gen = None, None
            crashed = own.get("role") == "primary" and not own.get("clean", True)
            if peer_gen is not None:
                job_sync, own = self._choose_sync(disk, own, peer_gen, sync)
                map_since = own["current"]
            else:
                job_sync = "full" if own.get("fresh") or sync == "full" else "none"
                map_since = None if crashed else own["current"]
                own = bump(own)
            own.update(role="primary", clean=False, fresh=False, needs_full=False,
                       export_token=generation.new_id(),
                       degraded=peer_gen is None, dirty_map_valid=True, map_since=map_since)
            local = await self._local_node(disk)
            converting = pid is not None and rt.get("role") == "secondary"
            started = pid is None
            if started:
                version = await asyncio.to_thread(daemon.version)
                pid = await daemon.launch(files, self._scope(disk))
            else:  # the running daemon's own version (it may predate an upgrade)
                version = str(rt.get("qsd_version", ""))
            plan = qemu_features.mirror_plan(version, job_sync)
            # the record (fsync'd) is written while the daemon's graph is built, and must be
            # on disk before the job exists: from then on a guest write reaches the peer
            # only through this copy, which the record must call a primary's
            writing = asyncio.ensure_future(asyncio.to_thread(gf.write, own))
            running: asyncio.Future[None] | None = None
            try:
                async with session(files.qmp, timeout=SLOW_TIMEOUT) as q:
                    if converting:
                        # live migration: the incoming VM already uses the TCP "vm" export
                        await q.cmd("block-export-del", {"id": "repl", "mode": "hard"})
                        server = "tcp"
                    else:
                        await q.cmd("blockdev-add", local)
                        await q.cmd("nbd-server-start", graph.unix_server(files.sock))
                        await q.cmd("block-export-add", graph.vm_export(disk.uuid))
                        server = "unix"
                    child, kind = await self._add_peer_node(q, disk, export, seq=1)
                    await q.cmd("blockdev-add", graph.target_node(child), timeout=SLOW_TIMEOUT)
                    await writing
                    # the runtime is written while the job starts (this disk's lock keeps
                    # every reader out until both are done; a failure puts the old back)
                    running = asyncio.ensure_future(asyncio.to_thread(files.write_runtime, {
                        "role": "primary", "disk": disk.to_dict(), "server": server,
                        "pid": pid, "target": kind, "target_child": child, "target_slot": 0,
                        "export": export, "target_seq": 1, "base_offset": 0,
                        "sync_started": time.time(),
                        "qsd_version": version, "copy_mode": plan.copy_mode,
                        "switch_when_ready": plan.switch_when_ready, "sync": job_sync,
                        "started": time.time()}))
                    await q.cmd("blockdev-mirror", graph.mirror_job(job_sync, disk.size_bytes,
                                                                    plan.copy_mode))
                    job = await self._job(q)
                    await running
            except BaseException:
                with contextlib.suppress(Exception):
                    await writing  # a thread: it ends on its own; not left behind
                if running is not None:
                    with contextlib.suppress(Exception):
                        await running
                    if rt:
                        files.write_runtime(rt)
                if started:
                    await daemon.terminate(pid)
                    files.cleanup()
                raise
            # the job's NBD client connected just now, or it has none (degraded)
            return await self._status(disk, job_seen=job, linked=kind == "nbd")

    def _choose_sync(self, disk: MirrorDisk, own: dict[str, Any], peer_gen: dict[str, Any],
                     sync: str) -> tuple[str, dict[str, Any]]:
        """The job's sync mode and our (possibly adopted) generation record."""
        decision = decide_sync(own, peer_gen)
        if sync == "none" and decision != "none":
            behind = own.get("fresh") or own["current"] in [*peer_gen.get("history", []),
                                                            peer_gen["current"]]
            if decision == "split-brain" and not behind:
                raise SplitBrainError(split_brain_message(disk.relpath, own, peer_gen))
            if decision == "split-brain":  # caller asserts equal copies: take the peer's lineage
                own = {**own, "current": peer_gen["current"],
                       "history": list(peer_gen.get("history", []))}
            return "none", own
        if decision == "split-brain":
            raise SplitBrainError(split_brain_message(disk.relpath, own, peer_gen))
        wanted = "none" if sync == "auto" else sync
        strongest = max(wanted, decision, key=SYNC_ORDER.index)
        return ("none" if strongest == "none" else "full"), own  # a new job has no dirty map

    async def _add_peer_node(self, q: QmpSession, disk: MirrorDisk, export: str | None,
                             seq: int) -> tuple[str, str]:
        if export is None:
            name = f"dead{seq}"
            await q.cmd("blockdev-add", graph.dead_node(name, disk.size_bytes))
            return name, "dead"
        name = f"peer{seq}"
        await q.cmd("blockdev-add", graph.nbd_node(name, disk.peer_ip, disk.port, export),
                    timeout=SLOW_TIMEOUT)
        return name, "nbd"

    async def reconnect(self, disk: MirrorDisk) -> MirrorStatus:
        """The peer is back: copy only what changed (the job's dirty map), or all if the rules
        say so; SplitBrainError if both copies moved on."""
        async with self._lock(disk):
            files = self._files(disk)
            rt = files.read_runtime() or {}
            if files.pid() is None or rt.get("role") != "primary":
                raise StorageError(f"mirrored disk {disk.relpath} is not primary on this node")
            transition(await self._settle(disk), Event.RECONNECT, f"disk {disk.relpath}")
            rt = files.read_runtime() or {}
            await asyncio.to_thread(ensure_quickack, disk.peer_ip)
            export, peer_gen = await peer.probe(disk.peer_ip, disk.port, disk.uuid)
            gf = self._gen(disk)
            own = self.generation(disk)
            if (export == rt.get("export") and rt.get("target") == "nbd"
                    and own.get("dirty_map_valid")):
                # The very export our job replicated to: its name changes whenever the peer's
                # copy may have been written by anyone else (it became primary, or was
                # recreated), so the peer lacks exactly what the job's dirty map holds. Its
                # published summary is not asked: it may predate mark_synced (still "fresh").
                decision = "dirty"
            else:
                decision = decide_sync(own, peer_gen)
            if decision == "split-brain":
                raise SplitBrainError(split_brain_message(disk.relpath, own, peer_gen))
            seq = int(rt.get("target_seq", 1)) + 1
            modes = {k: rt.get(k) for k in ("copy_mode", "switch_when_ready")}
            async with session(files.qmp, timeout=SLOW_TIMEOUT) as q:
                job = await self._job(q)
                # The same export: a paused job's retries reconnect its NBD client. A job that
                # is not paused with no connection had an idle client, which learns only at its
                # next request that the peer's daemon went away: give the target a new client.
                # A paused job whose client has not reconnected yet gets a new client too when
                # its target can take one without a flush (a quorum): the old client's own
                # retries come 1, 2, 4, 8, 16 s apart.
                slot = rt.get("target_slot")
                linked = _has_link(disk.local_ip, disk.peer_ip, disk.port)
                waits = bool(job and job.get("paused")) and slot is None
                same_peer = (rt.get("target") == "nbd" and rt.get("export") in (None, export)
                             and (job is None or waits or linked))
                swapped = True
                if decision != "full" and job is not None:
                    kind, child = "nbd", rt.get("target_child")
                    if not same_peer:  # swap the target's peer for the one just checked
                        swapped, child, kind, slot = await self._swap_peer(
                            q, disk, export, seq, child, slot)
                    else:
                        seq -= 1
                    base = int(job.get("offset", 0))
                    if swapped:
                        await self._resume(q, disk)
                if decision == "full" or job is None or not swapped:
                    if job is not None:
                        await self._cancel(q, force=True)
                    await self._drop_target(q, rt.get("target_child"))
                    child, kind = await self._add_peer_node(q, disk, export, seq + 1)
                    await q.cmd("blockdev-add", graph.target_node(child))
                    plan = qemu_features.mirror_plan(str(rt.get("qsd_version", "")), "full")
                    await q.cmd("blockdev-mirror", graph.mirror_job("full", disk.size_bytes,
                                                                    plan.copy_mode))
                    modes = {"copy_mode": plan.copy_mode,
                             "switch_when_ready": plan.switch_when_ready}
                    base, seq, slot = 0, seq + 1, 0
                    gf.update(dirty_map_valid=True, map_since=own["current"])
            files.write_runtime({**rt, "target": kind, "target_child": child,
                                 "target_slot": slot,
                                 "target_seq": seq, "export": export, "base_offset": base,
                                 **modes, "sync_started": time.time()})
            return await self._status(disk)

    # -- state -------------------------------------------------------------------------------
    async def status(self, disk: MirrorDisk) -> MirrorStatus:
        """The disk's replication state. Reads only: nothing on disk or in the daemon changes
        (what a look may find to do is :meth:`observe`'s, run by noded's supervisor). It
        waits for a changing call of this process to end, as the daemon's monitor serves one
        client at a time (no flock: a status never decides anything)."""
        async with self._locks.setdefault(disk.uuid, asyncio.Lock()):
            return await self._status(disk)

    async def observe(self, disk: MirrorDisk) -> State:
        """Apply what one look at a running primary finds (:func:`.states.observe`): switch a
        job whose bulk copy is done to write-blocking, take a new generation when the peer is
        gone, clear ``degraded`` once in sync again. noded's supervisor runs it about once a
        second for each primary, so the record never lags what happens by much more."""
        async with self._lock(disk):
            return await self._settle(disk)

    async def wait_sync(self, disk: MirrorDisk, timeout: float) -> MirrorStatus:
        """Poll until in sync; the last status either way (check ``in_sync``). A job asks for
        this, so each look also settles the records (a background copy becomes
        write-blocking as soon as it is ready, not a supervisor tick later)."""
        began = time.monotonic()
        deadline = began + timeout
        while True:
            await self.observe(disk)
            st = await self.status(disk)
            if st.in_sync or st.role != "primary" or time.monotonic() >= deadline:
                return st
            # a mirror that copies nothing (after a live migration) is ready within a few
            # milliseconds; a migration job waited here a whole 0.2 s step for it
            await asyncio.sleep(0.02 if time.monotonic() - began < 1.0 else 0.2)

    async def sync_record(self, disk: MirrorDisk) -> dict[str, Any]:
        """One atomic read for marking the secondary synced: settled first, then whether
        the mirror is in sync, the generation and lineage the peer would adopt, and the export
        the job replicates to, all under the disk's lock (two separate reads could straddle a
        bump and stamp the secondary with writes it lacks)."""
        async with self._lock(disk):
            state = await self._settle(disk)
            gen = self._gen(disk).read()
            rt = self._files(disk).read_runtime() or {}
            return {"in_sync": state is State.SYNCED, "state": str(state),
                    "current": gen["current"], "history": list(gen.get("history", [])),
                    "export": rt.get("export") if state is State.SYNCED else None}

    @staticmethod
    @contextlib.asynccontextmanager
    async def _qmp(files: daemon.DaemonFiles,
                   q: QmpSession | None) -> AsyncIterator[QmpSession]:
        """``q`` if the caller has a session open (a hand-over, while the guest is paused:
        each new connection costs a millisecond or more), else a new one."""
        if q is not None:
            yield q
            return
        async with session(files.qmp) as new:
            yield new

    async def _look(self, disk: MirrorDisk, files: daemon.DaemonFiles, rt: dict[str, Any],
                    q: QmpSession | None = None) -> tuple[dict[str, Any] | None, bool]:
        """A running primary's mirror job (a write in flight waited out) and its link."""
        async with self._qmp(files, q) as s:
            job = await self._settled_job(s, rt)
        # An idle NBD client notices a dead peer only at its next request: look at the socket
        linked = rt.get("target") == "nbd" and _has_link(disk.local_ip, disk.peer_ip, disk.port)
        return job, linked

    async def _phase(self, disk: MirrorDisk, q: QmpSession | None = None) -> State:
        """The disk's state without a look at a primary's job (enough to refuse an event)."""
        gf, files = self._gen(disk), self._files(disk)
        if not gf.exists():
            return State.ABSENT
        rt = files.read_runtime()
        gen = Generation.from_dict(gf.read())
        if files.pid() is None or rt is None:
            return classify(gen, None, False)
        if rt.get("role") == "secondary":
            return State.SECONDARY
        job, linked = await self._look(disk, files, rt, q)
        return classify(gen, Runtime.from_dict(rt), True, job, linked)

    async def _settle(self, disk: MirrorDisk, q: QmpSession | None = None) -> State:
        """Under the disk's lock: apply the observed events of a running primary (see
        :meth:`observe`); the state after them. ``q``: the caller's open session, if any."""
        files, gf = self._files(disk), self._gen(disk)
        rt = files.read_runtime() or {}
        if files.pid() is None or rt.get("role") != "primary" or not gf.exists():
            return await self._phase(disk, q)
        gen = gf.read()
        job, linked = await self._look(disk, files, rt, q)
        seen = observe(Generation.from_dict(gen), Runtime.from_dict(rt), job, linked)
        if seen.switch:
            # the bulk copy is done: from now on every guest write waits for the peer
            async with self._qmp(files, q) as s:
                await s.cmd("block-job-change", {"id": graph.JOB, "type": "mirror",
                                                 "copy-mode": "write-blocking"})
            files.write_runtime({**rt, "copy_mode": "write-blocking"})
        elif seen.bump:
            # the primary writes without its peer from now on: a new generation
            gf.write({**bump(gen), "degraded": True})
        elif seen.recovered:
            gf.update(degraded=False)
        return seen.state

    async def _status(self, disk: MirrorDisk, job_seen: dict[str, Any] | None = None,
                      linked: bool | None = None) -> MirrorStatus:
        """``job_seen``: a primary's job as just looked at in an open session (saves a
        connection, which a hand-over makes while the guest is paused); ``linked`` with it:
        whether the job's NBD client is connected, when the caller knows (it connected it
        just now), which saves reading the node's TCP table (2 ms in a guest's pause)."""
        files = self._files(disk)
        gen = self._gen(disk).read()
        rt = files.read_runtime() or {}
        if files.pid() is None:
            return MirrorStatus(role="down", connected=False, in_sync=False, degraded=True,
                                generation=gen["current"])
        if rt.get("role") == "secondary":
            connected = _has_client(disk.local_ip, disk.port)
            return MirrorStatus(
                role="secondary", connected=connected,
                in_sync=connected and not gen.get("fresh") and not gen.get("needs_full"),
                degraded=not connected, generation=gen["current"],
                vm_uri=graph.vm_uri_tcp(disk.uuid, disk.local_ip, disk.port))
        if job_seen is not None:
            job = job_seen
            if linked is None:
                linked = _has_link(disk.local_ip, disk.peer_ip, disk.port)
            linked = rt.get("target") == "nbd" and linked
        else:
            job, linked = await self._look(disk, files, rt)
        state = classify(Generation.from_dict(gen), Runtime.from_dict(rt), True, job, linked)
        in_sync = state is State.SYNCED
        uri = (graph.vm_uri_unix(disk.uuid, files.sock) if rt.get("server") == "unix"
               else graph.vm_uri_tcp(disk.uuid, disk.local_ip, disk.port))
        st = MirrorStatus(role="primary", connected=state is not State.DEGRADED,
                          in_sync=in_sync, degraded=not in_sync, generation=gen["current"],
                          vm_uri=uri)
        if job is not None:
            base = int(rt.get("base_offset", 0))
            offset, length = int(job["offset"]), int(job["len"])
            st.copied_bytes = max(0, offset - base)
            st.total_bytes = max(0, length - base)
            st.sync_percent = (100.0 if in_sync or not st.total_bytes
                               else round(100.0 * st.copied_bytes / st.total_bytes, 1))
            # the average since this sync began: a status keeps no samples between calls
            elapsed = time.time() - float(rt.get("sync_started", 0) or 0)
            if not in_sync and st.copied_bytes and 0 < elapsed < 10 * 365 * 86400:
                st.speed_bps = st.copied_bytes / elapsed
                st.eta_seconds = round((length - offset) / st.speed_bps, 1)
        return st

    # -- stopping ----------------------------------------------------------------------------
    async def stop(self, disk: MirrorDisk) -> None:
        """Clean stop (the VM is already stopped): end the job, flush, quit the daemon."""
        async with self._lock(disk):
            files = self._files(disk)
            pid, rt = files.pid(), files.read_runtime() or {}
            gf = self._gen(disk)
            if pid is None:
                files.cleanup()
                # a data volume activated without a daemon (an OS script, a copy, a daemon
                # that died) keeps no loop device once the disk is stopped
                await self._data(disk).shutdown()
                return
            if rt.get("role") == "primary":
                await self._settle(disk)  # e.g. a finished bulk copy: a clean cancel
                st = await self._status(disk)
                async with session(files.qmp, timeout=SLOW_TIMEOUT) as q:
                    if await self._job(q) is not None:
                        await self._cancel(q, force=not st.in_sync)
                if not st.in_sync and not gf.read().get("degraded"):
                    gf.write({**bump(gf.read()), "degraded": True})  # peer misses something
            await self._quit(files, pid)
            gf.update(clean=True, dirty_map_valid=False)
            files.cleanup()
            # only now: the daemon held the data volume open (an LV is refused while in use)
            await self._data(disk).shutdown()

    async def list_active(self) -> list[str]:
        """Uuids of the disks whose storage daemon runs on this node."""
        out = []
        if not self.run_dir.is_dir():
            return out
        for runtime in sorted(self.run_dir.glob("*.json")):
            files = daemon.DaemonFiles(self.run_dir, runtime.stem)
            rt = files.read_runtime() or {}
            uuid = (rt.get("disk") or {}).get("uuid")
            if uuid and files.pid() is not None:
                out.append(uuid)
        return out

    # -- helpers -----------------------------------------------------------------------------
    async def _local_node(self, disk: MirrorDisk) -> dict[str, Any]:
        """Assemble the data volume and check its size: the QMP node of the local copy.

        A file must be the disk's exact size (both copies are); a block device may be larger
        (an LV has whole extents) and is then cut to the disk's size by the node itself."""
        data = self._data(disk)
        info = await data.info()
        if not info.exists:
            raise StorageError(f"mirrored disk {disk.relpath} does not exist here")
        path = (await data.assemble()).path
        block = stat.S_ISBLK(os.stat(path).st_mode)
        size = info.size_bytes or 0
        if (size < disk.size_bytes) if block else (size != disk.size_bytes):
            raise StorageError(f"{path} has {size} bytes, expected {disk.size_bytes}")
        return graph.local_node(Path(path), block=block, size=disk.size_bytes if block else None,
                                direct=graph.direct_io_works(Path(path)))

    @staticmethod
    async def _job(q: QmpSession) -> dict[str, Any] | None:
        for job in await q.cmd("query-block-jobs"):
            if job.get("device") == graph.JOB:
                return dict(job)
        return None

    def _scope(self, disk: MirrorDisk) -> list[str]:
        return scope_argv(self.paths.root, scope_unit("storage", disk.uuid))

    async def _settled_job(self, q: QmpSession, rt: dict[str, Any]) -> dict[str, Any] | None:
        """The job, looked at again for a moment while only a write in flight keeps it from
        being in sync (see :func:`.states.write_in_flight`): one look at a busy guest's disk caught
        such a write now and then and called a mirror in sync a second before "resyncing
        (100 % copied)"."""
        job = await self._job(q)
        deadline = time.monotonic() + SETTLE_TIMEOUT
        runtime = Runtime.from_dict(rt)
        while (job is not None and _write_in_flight(job, runtime)
               and time.monotonic() < deadline):
            await asyncio.sleep(0.02)
            job = await self._job(q)
        return job

    async def _cancel(self, q: QmpSession, *, force: bool) -> None:
        """Cancel the mirror; a ready job cancelled without force ends as a consistent copy.

        The end is awaited on the job's BLOCK_JOB_* event (a hand-over does this while the
        guest is paused: a poll every :data:`END_POLL` added half of that on average, and a
        busy node let a poll take much longer); a look every :data:`END_LOOK` stays as a
        fallback should an event be missed."""
        with q.events(*JOB_ENDED) as ended:
            with contextlib.suppress(QmpCommandError):
                await q.cmd("block-job-cancel", {"device": graph.JOB, "force": force})
            deadline = time.monotonic() + CANCEL_TIMEOUT
            while await self._job(q) is not None:
                if time.monotonic() > deadline:
                    raise StorageError("mirror job did not end after cancel")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(END_LOOK):
                        while (await ended.get()).get("data", {}).get("device") != graph.JOB:
                            pass

    async def _resume(self, q: QmpSession, disk: MirrorDisk,
                      timeout: float = RESUME_TIMEOUT) -> None:
        """Resume the paused job until it runs over a live connection to the peer.

        The job's NBD client reconnects in a thread of its own that QEMU retries 1, 2, 4, 8,
        then every 16 s after the peer went away: until that thread's next try, a request fails
        at once and pauses the job again. So the job is looked at every RESUME_POLL seconds,
        resumed whenever it is paused, and done once it runs with the connection established
        (the TCP table: a job with nothing left to copy makes no request that could fail). It
        slept a fixed 0.5 s twice before, a second of every partial resync."""
        deadline = time.monotonic() + timeout
        while True:
            job = await self._job(q)
            if job is None:
                return
            if not job.get("paused"):
                if _has_link(disk.local_ip, disk.peer_ip, disk.port):
                    return
            else:
                with contextlib.suppress(QmpCommandError):
                    await q.cmd("block-job-resume", {"device": graph.JOB})
            if time.monotonic() > deadline:
                raise StorageError("mirror job keeps failing against the peer after resume")
            await asyncio.sleep(RESUME_POLL)

    async def _swap_peer(self, q: QmpSession, disk: MirrorDisk, export: str, seq: int,
                         old: str | None, slot: int | None
                         ) -> tuple[bool, str | None, str, int | None]:
        """Give the job's target a new peer node, keeping the job and its dirty map:
        (swapped, child, kind, slot). Not swapped: the caller syncs fully.

        A quorum target (``slot``: where it holds the old node, see :func:`graph.target_node`)
        takes the new node beside the old and drops the old. A raw target (a daemon started
        before the quorum, ``slot`` None) is reopened over the new node, which flushes it
        first: that fails while the old child is an NBD client whose peer is gone."""
        child, kind = await self._add_peer_node(q, disk, export, seq)
        try:
            if slot is None:
                await q.cmd("blockdev-reopen", {"options": [graph.raw_target_node(child)]})
            else:
                await q.cmd("x-blockdev-change", {"parent": graph.TARGET, "node": child})
                await q.cmd("x-blockdev-change", {"parent": graph.TARGET,
                                                  "child": graph.quorum_child(slot)})
        except QmpCommandError:
            if slot is not None:  # the new one may have been added: the target goes anyway
                with contextlib.suppress(QmpCommandError):
                    await q.cmd("x-blockdev-change", {"parent": graph.TARGET,
                                                      "child": graph.quorum_child(slot + 1)})
            await self._del_node(q, child)
            return False, old, "nbd", slot
        if old:
            await self._del_node(q, old)
        return True, child, kind, None if slot is None else slot + 1

    @staticmethod
    async def _del_node(q: QmpSession, name: str) -> None:
        with contextlib.suppress(QmpCommandError):
            await q.cmd("blockdev-del", {"node-name": name}, timeout=SLOW_TIMEOUT)
        if name.startswith("dead"):
            with contextlib.suppress(QmpCommandError):
                await q.cmd("blockdev-del", {"node-name": f"{name}-null"})

    async def _drop_target(self, q: QmpSession, child: str | None) -> None:
        with contextlib.suppress(QmpCommandError):
            await q.cmd("blockdev-del", {"node-name": graph.TARGET}, timeout=SLOW_TIMEOUT)
        if child:
            await self._del_node(q, child)

    @staticmethod
    async def _quit(files: daemon.DaemonFiles, pid: int) -> None:
        """QMP quit (the daemon closes and flushes every node), SIGTERM/SIGKILL if it hangs."""
        with contextlib.suppress(StorageError):
            async with session(files.qmp, timeout=5.0) as q:
                await q.cmd("quit")
        if not await daemon.wait_gone(pid, 15.0):
            await daemon.terminate(pid)


def grow_job_sync(export_now: str | None, export_before: str | None) -> str:
    """The sync of the mirror job that follows a grow of a running disk: 'none' when the
    peer serves the very export the ended job replicated to (its copy holds every write the
    guest made: the job ended in sync, the guest was paused); 'full' when that is unknown or
    the peer's copy changed meanwhile (its export name changes with every such change)."""
    return "none" if export_now is not None and export_now == export_before else "full"


def _zero(path: str, offset: int, length: int) -> None:
    """Write zeros over ``length`` bytes of the block device ``path`` from ``offset``."""
    if length <= 0:
        return
    chunk = bytes(MIB)
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        left = length
        while left > 0:
            left -= os.write(fd, chunk[:min(left, MIB)])
        os.fsync(fd)
    finally:
        os.close(fd)


def _has_client(ip: str, port: int) -> bool:
    """Best effort: an established TCP connection to our export (this namespace's table)."""
    return any(s.established and s.local == (ip, port) for s in tcp_table.sockets())


def _has_link(local_ip: str, peer_ip: str, port: int) -> bool:
    """An established TCP connection from this node to the peer's export (this namespace)."""
    return any(s.established and s.remote == (peer_ip, port) and s.local[0] == local_ip
               for s in tcp_table.sockets())
