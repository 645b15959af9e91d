"""The node daemon's work: every RPC method maps to one method here.

The master sends instances as plain dicts (see :func:`herd.logic.specs.instance_spec`); this
module turns their disks into local paths and hands them to the hypervisor, storage and OS
script runner. Nothing here keeps state in memory that a restart would lose: running guests are
rediscovered from the hypervisor's runtime files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from herd import __version__, errors
from herd.hypervisor import base as hvbase
from herd.node import transfer
from herd.node.cluster_files import ClusterFiles
from herd.node.etcd_member import EtcdSupervisor
from herd.node.facts import node_facts
from herd.node.usage_history import UsageHistory
from herd.paths import HerdPaths
from herd.rpc import legacy_storage
from herd.storage.blockdev import DeviceFactory, DeviceSpec
from herd.storage.blockdev.spec import MIRROR
from herd.version import RPC_VERSION

log = logging.getLogger(__name__)
#: Hypervisors whose guests a node looks for (the fake one is for scale tests).
HYPERVISORS = hvbase.hypervisor_names()
#: The storage RPC generation this noded speaks: 2 adds ``blockdev_*`` (DeviceSpec lists); the
#: ``disks_*``/``mirror_*`` names of 1 still work (translated, :mod:`herd.rpc.legacy_storage`).


class NodeService:
    def __init__(self, paths: HerdPaths) -> None:
        self.paths = paths
        #: Node figures (memory_total, memory_node, cpu_total) that override the machine's in
        #: node_info: set only by the in-process test harness, to test placement over nodes of
        #: different sizes on one machine; a real node never has any.
        self.simulated_size: dict[str, int] = {}
        #: Every volume goes through these devices, whatever RPC name asked for it.
        self.devices = DeviceFactory(paths)
        self.storage = self.devices.file_storage
        self._hypervisors: dict[str, hvbase.Hypervisor] = {}
        self.files = ClusterFiles(paths)
        self.started = time.time()
        #: OS scripts running now, by the uuids of the disks they write: removing a disk
        #: first ends the script writing it (a dead job's script would recreate the volume).
        self._os_scripts: dict[str, asyncio.Task[None]] = {}
        #: read-only NBD exports of volumes another node copies (gnt-instance move)
        self.nbd_exports = transfer.Exports(paths.run_dir)
        #: the node's etcd member, set by noded (None in tools that use the service alone)
        self.etcd: EtcdSupervisor | None = None
        #: The cluster VG as last resolved: (name, its LvmNode or None, why None).
        self._vg: tuple[str, Any, str | None] = ("", None, None)
        self.devices.resolve_vg = self._resolve_vg
        #: the last hour of the guests' and the node's use (herd.node.usage_history); noded
        #: runs its sampling loop, tools that use the service alone answer fresh readings only
        self.usage = UsageHistory(self._usage_if_guests)

    def hypervisor(self, name: str = "kvm") -> hvbase.Hypervisor:
        if name not in self._hypervisors:
            self._hypervisors[name] = hvbase.get_hypervisor(name, self.paths)
        return self._hypervisors[name]

    async def _running_on(self, name: str) -> hvbase.Hypervisor:
        """The hypervisor running instance ``name`` here (kvm if none does)."""
        for hv_name in HYPERVISORS:
            hv = self.hypervisor(hv_name)
            if await hv.instance_info(name) is not None:
                return hv
        return self.hypervisor()

    # -- node ---------------------------------------------------------------------------------
    async def ping(self) -> dict[str, Any]:
        name_file = self.paths.data_dir / "node-name"
        return {"node_name": name_file.read_text().strip() if name_file.exists() else None,
                "pid": os.getpid(), "uptime": time.time() - self.started,
                "rpc": RPC_VERSION, "herd_version": __version__}

    async def node_info(self) -> dict[str, Any]:
        hv = self.hypervisor()
        used = sum(int(r["memory"]) for r in await self.instance_list())
        # the first call may probe /dev/kvm (seconds): keep it off the event loop
        hv_facts = await asyncio.to_thread(hv.node_facts)
        # a node size the in-process test harness simulates (placement over unequal nodes)
        hv_facts.update(self.simulated_size)
        info = node_facts(self.storage, hv_facts, used)
        info.update(rpc=RPC_VERSION, herd_version=__version__)  # verify compares them
        info["file_storage_total"] = info["storage_total"]
        info["file_storage_free"] = info["storage_free"]
        name, lvm, problem = await self.volume_group()
        if name:
            from herd.storage import node_vg

            # Ganeti's dtotal/dfree come from the VG when the cluster has one
            info.update(vg_name=name, storage_total=None, storage_free=None)
            if lvm is not None:
                try:
                    vg = await asyncio.to_thread(node_vg.summary, lvm)
                except errors.StorageError as exc:
                    problem = exc.message
                else:
                    info.update(vg.to_dict(), storage_total=vg.size_mib,
                                storage_free=vg.free_mib)
            if problem:
                info["vg_error"] = problem
        return info

    # -- the cluster's volume group -----------------------------------------------------------
    async def volume_group(self) -> tuple[str, Any, str | None]:
        """The cluster's VG on this node: (name from the facts file, LvmNode, problem).

        Re-read on every call (a small JSON file): ``gnt-cluster modify --vg-name`` reaches
        nodes as a facts upload, and the device factory must follow without a restart. A VG
        that could not be resolved is tried again on the next call (the admin may fix it)."""
        from herd.config.facts import read_facts
        from herd.storage import node_vg

        name = str((read_facts(self.paths) or {}).get("volume_group_name") or "")
        old_name, old_node, _ = self._vg
        if name == old_name and (old_node is not None or not name):
            return self._vg
        if old_name:
            self.devices.remove_volume_group(old_name)
        self._vg = (name, None, None)
        if name:
            try:
                node = await asyncio.to_thread(node_vg.lvm_node_for, self.paths, name)
            except errors.HerdError as exc:
                self._vg = (name, None, exc.message)
            else:
                self.devices.add_volume_group(node)
                self._vg = (name, node, None)
        return self._vg

    def _resolve_vg(self, vg_name: str) -> Any:
        """The device factory's fallback: the cluster's VG if ``vg_name`` is it (reading the
        devices file is cheap; without one, a ``pvs`` run finds the PVs once)."""
        from herd.config.facts import read_facts
        from herd.storage import node_vg

        if vg_name != (read_facts(self.paths) or {}).get("volume_group_name"):
            return None
        node = node_vg.lvm_node_for(self.paths, vg_name)
        self._vg = (vg_name, node, None)
        return node

    async def vg_info(self, vg_name: str) -> dict[str, Any]:
        """Size, free space, PVs and activation mode of ``vg_name`` on this node, or a
        StorageError saying why it is not usable here (init/modify --vg-name ask every node
        before the name is set)."""
        from herd.storage import node_vg

        node = await asyncio.to_thread(node_vg.lvm_node_for, self.paths, vg_name)
        return (await asyncio.to_thread(node_vg.summary, node)).to_dict()

    async def storage_units(self, storage_type: str) -> list[dict[str, Any]]:
        """Ganeti's storage units of one type on this node (``gnt-node list-storage``): name,
        size, used, free (MiB) and allocatable. ``lvm-vg`` is the cluster's VG (none when the
        cluster has no VG); ``file`` is the file storage directory."""
        if storage_type == "file":
            total, free = self.storage.total_mib(), self.storage.free_mib()
            return [{"name": str(self.storage.base), "size": total, "used": total - free,
                     "free": free, "allocatable": True}]
        if storage_type == "lvm-vg":
            name, lvm, problem = await self.volume_group()
            if not name:
                return []
            if lvm is None:
                raise errors.StorageError(problem or f"volume group {name} is not usable")
            from herd.storage import node_vg

            vg = await asyncio.to_thread(node_vg.summary, lvm)
            return [{"name": vg.name, "size": vg.size_mib, "used": vg.size_mib - vg.free_mib,
                     "free": vg.free_mib, "allocatable": True}]
        raise errors.ParameterError(f"unknown storage type '{storage_type}' on this node: "
                                    "allowed are lvm-vg, file")

    # -- cluster membership and files ---------------------------------------------------------
    async def master_info(self) -> dict[str, Any]:
        return self.files.master_info()

    async def config_upload(self, config: dict[str, Any] | None, facts: dict[str, Any],
                            ssl: dict[str, str] | None = None, force: bool = False) -> int:
        return self.files.config_upload(config, facts, ssl, force)

    async def facts_upload(self, facts: dict[str, Any], drop_config: bool = False,
                           force: bool = False, ssl: dict[str, str] | None = None) -> int:
        if drop_config:
            self.files.drop_config()
        return self.files.facts_upload(facts, force, ssl)

    async def files_checksums(self, paths: list[str]) -> dict[str, str | None]:
        return self.files.checksums(paths)

    async def file_upload(self, path: str, content: str, mode: int = 0o644) -> None:
        self.files.file_upload(path, content, mode)

    async def run_command(self, command: str, command_timeout: float = 300) -> dict[str, Any]:
        """gnt-cluster command: run a shell command as root on this node (admins only: the
        caller holds a cluster certificate)."""
        proc = await asyncio.create_subprocess_shell(
            command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), command_timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return {"exit_code": -9,
                    "output": f"command timed out after {command_timeout:g} s"}
        return {"exit_code": proc.returncode, "output": out.decode(errors="replace")}

    async def master_demote(self, netdev: str, address: str, netmask: int) -> None:
        """Stop being master: stop rapi and masterd, drop the master IP (master failover)."""
        from herd.daemons import util as daemon_util
        from herd.network import masterip

        await asyncio.to_thread(daemon_util.stop, self.paths, "rapi")
        await asyncio.to_thread(daemon_util.stop, self.paths, "masterd")
        await asyncio.to_thread(masterip.deactivate, netdev, address, netmask)
        await self._end_master_term()

    async def _end_master_term(self) -> None:
        """A handover: end the stopped masterd's election term now, so that the node taking
        over need not wait for the lease to run out."""
        from herd.config.facts import node_name, read_facts
        from herd.etcd.client import EtcdClient, EtcdError
        from herd.etcd.election import revoke_saved_term
        from herd.etcd.members import client_urls_from_facts

        state = self.paths.run_dir / "master-term.json"
        urls = client_urls_from_facts(read_facts(self.paths) or {}, node_name(self.paths))
        if not state.exists() or not urls:
            return
        try:
            async with EtcdClient.for_node(self.paths, urls, timeout=5.0) as client:
                await revoke_saved_term(client, state)
        except EtcdError as exc:
            log.warning("could not end the master term in etcd: %s", exc.message)

    async def node_leave(self) -> None:
        """This node was removed from the cluster: forget it and wait to be joined again."""
        from herd.logic.bootstrap import remove_cluster_files
        from herd.rpc.join import _reexec

        if self.etcd is not None:  # its member was removed from etcd already (LUNodeRemove)
            await self.etcd.leave()
        remove_cluster_files(self.paths)
        asyncio.get_running_loop().call_later(0.2, _reexec)

    # -- etcd member (master candidates; herd.node.etcd_member) -------------------------------
    def _etcd(self) -> EtcdSupervisor:
        if self.etcd is None:
            raise errors.HerdError("this noded does not supervise an etcd member")
        return self.etcd

    async def etcd_join(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Run the etcd member ``spec`` (the master added it to etcd's membership first)."""
        from herd.etcd.members import MemberSpec

        try:
            member = MemberSpec.from_dict(spec)
        except (TypeError, ValueError) as exc:
            raise errors.ParameterError(f"invalid etcd member spec: {exc}") from None
        return await self._etcd().join(member)

    async def etcd_leave(self) -> None:
        """Stop the etcd member and drop its data (the master removed it from etcd first)."""
        await self._etcd().leave()

    async def etcd_status(self) -> dict[str, Any]:
        return self._etcd().status()

    async def etcd_force_new_cluster(self) -> dict[str, Any]:
        """master-failover --no-voting on this node: see EtcdSupervisor.force_new_cluster."""
        return await self._etcd().force_new_cluster()

    # -- mirrored disks (drbd template) --------------------------------------------------------
    @property
    def mirror(self) -> Any:
        return self.devices.mirror

    @staticmethod
    def _mdisks(disks: list[dict[str, Any]]) -> list[Any]:
        from herd.storage.mirror import MirrorDisk

        return [MirrorDisk.from_dict(d) for d in disks]

    async def mirror_create(self, disks: list[dict[str, Any]]) -> None:
        await self.devices.create_all([legacy_storage.from_mirror_disk(d) for d in disks])

    async def mirror_remove(self, disks: list[dict[str, Any]]) -> None:
        await self._remove([legacy_storage.from_mirror_disk(d) for d in disks])

    async def mirror_generation(self, disks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [self.mirror.generation(d) for d in self._mdisks(disks)]

    async def mirror_start_secondary(self, disks: list[dict[str, Any]]) -> None:
        for disk in self._mdisks(disks):
            await self.mirror.start_secondary(disk)

    async def mirror_start_primary(self, disks: list[dict[str, Any]], syncs: list[str],
                                   allow_degraded: bool = False) -> list[dict[str, Any]]:
        out = []
        for disk, sync in zip(self._mdisks(disks), syncs, strict=True):
            state = await self.mirror.start_primary(disk, sync, allow_degraded=allow_degraded)
            out.append(state.to_dict())
        return out

    async def mirror_status(self, disks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [(await self.mirror.status(d)).to_dict() for d in self._mdisks(disks)]

    async def mirror_wait_sync(self, disks: list[dict[str, Any]],
                               sync_timeout: float) -> list[dict[str, Any]]:
        return [(await self.mirror.wait_sync(d, sync_timeout)).to_dict()
                for d in self._mdisks(disks)]

    async def mirror_reconnect(self, disks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [(await self.mirror.reconnect(d)).to_dict() for d in self._mdisks(disks)]

    async def mirror_mark_synced(self, disks: list[dict[str, Any]],
                                 generations: list[dict[str, Any]]) -> None:
        for disk, gen in zip(self._mdisks(disks), generations, strict=True):
            await self.mirror.mark_synced(disk, gen)

    async def mirror_stop(self, disks: list[dict[str, Any]]) -> None:
        for disk in self._mdisks(disks):
            await self.mirror.stop(disk)

    async def _vm_disk_path(self, disk: dict[str, Any], incoming: bool = False) -> str:
        """Where the VM opens a disk: the file, or the primary's mirror export for drbd
        (the secondary's, for the VM that receives a migration)."""
        return await self.devices.device(self._spec(disk)).vm_path(incoming)

    # -- block devices (storage RPC 2) --------------------------------------------------------
    @staticmethod
    def _specs(devices: list[dict[str, Any]]) -> list[DeviceSpec]:
        return [DeviceSpec.from_dict(d) for d in devices]

    async def blockdev_create(self, devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Create every device or none (those made are removed again on a failure)."""
        made = await self.devices.create_all(self._specs(devices))
        return [(await d.info()).to_dict() for d in made]

    async def blockdev_remove(self, devices: list[dict[str, Any]]) -> None:
        """Remove the devices (idempotent), ending the OS scripts still writing them first."""
        await self._remove(self._specs(devices))

    async def blockdev_info(self, devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Exists, size and local path of each device; read-only."""
        return [i.to_dict() for i in await self.devices.info_many(self._specs(devices))]

    async def blockdev_grow(self, devices: list[dict[str, Any]],
                            undo: bool = False) -> list[dict[str, Any]]:
        """Grow each device to its spec's ``size_mib`` (a target: a retried grow does not grow
        twice); the devices' info after. Stops at the first failure, which names the device
        (the master grew nothing else on this node yet). ``undo``: give back what a grow
        beyond ``size_mib`` added (a grow-disk that failed on another node)."""
        out = []
        for spec in self._specs(devices):
            device = self.devices.device(spec)
            await (device.undo_grow if undo else device.grow)(spec.size_mib)
            out.append((await device.info()).to_dict())
        return out

    async def blockdev_assemble(self, devices: list[dict[str, Any]], role: str = "primary",
                                syncs: list[str] | None = None,
                                allow_degraded: bool = False) -> list[str]:
        """Make each device usable here (an LV: its loop or device-mapper device; a mirror:
        its storage daemon as ``role``, a primary copying at least ``syncs[i]``); where."""
        specs = self._specs(devices)
        wanted = syncs if syncs is not None else ["auto"] * len(specs)
        if len(wanted) != len(specs):
            raise errors.ParameterError(f"{len(wanted)} sync modes for {len(specs)} devices")
        return [(await self.devices.device(s).assemble(role, sync=sync,
                                                        allow_degraded=allow_degraded)).path
                for s, sync in zip(specs, wanted, strict=True)]

    # -- mirrors (the ``mirror`` kind's own calls: generations and replication state) ------
    def _mirrors(self, devices: list[dict[str, Any]]) -> list[Any]:
        """The MirrorDisks of mirror specs; any other kind is refused by name (only a
        mirror keeps generations and a peer)."""
        from herd.storage.blockdev.mirror import to_mirror_disk

        specs = self._specs(devices)
        other = [s.describe() for s in specs if s.kind != MIRROR]
        if other:
            raise errors.ParameterError(f"not mirrored: {', '.join(other)} (these calls take "
                                        f"devices of kind '{MIRROR}')")
        return [to_mirror_disk(s) for s in specs]

    async def blockdev_generation(self, devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each mirror's generation record (the master decides roles and syncs from both)."""
        return [self.mirror.generation(d) for d in self._mirrors(devices)]

    async def blockdev_sync_status(self, devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each mirror's replication state; reads only (queries call it)."""
        return [(await self.mirror.status(d)).to_dict() for d in self._mirrors(devices)]

    async def blockdev_wait_sync(self, devices: list[dict[str, Any]],
                                 sync_timeout: float) -> list[dict[str, Any]]:
        return [(await self.mirror.wait_sync(d, sync_timeout)).to_dict()
                for d in self._mirrors(devices)]

    async def blockdev_reconnect(self, devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [(await self.mirror.reconnect(d)).to_dict() for d in self._mirrors(devices)]

    async def blockdev_grow_hold(self, devices: list[dict[str, Any]]) -> None:
        """On a primary whose guest is paused: end each mirror's job and VM export, so that
        its copy can grow (MirrorManager.grow_hold)."""
        for disk in self._mirrors(devices):
            await self.mirror.grow_hold(disk)

    async def blockdev_grow_serve(self, devices: list[dict[str, Any]]) -> None:
        """Each mirror's copy takes its spec's size under the running daemon and is served
        again (MirrorManager.grow_serve); the old size undoes a grow."""
        for disk in self._mirrors(devices):
            await self.mirror.grow_serve(disk)

    async def blockdev_sync_record(self, devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """On a primary, per mirror in one atomic read: in sync, generation, export."""
        return [await self.mirror.sync_record(d) for d in self._mirrors(devices)]

    async def blockdev_mark_synced(self, devices: list[dict[str, Any]],
                                   generations: list[dict[str, Any]],
                                   exports: list[str | None]) -> list[bool]:
        """On a secondary: adopt each primary generation if the export matches (CAS)."""
        mirrors = self._mirrors(devices)
        return [await self.mirror.mark_synced(disk, gen, export)
                for disk, gen, export in zip(mirrors, generations, exports, strict=True)]

    async def blockdev_shutdown(self, devices: list[dict[str, Any]]) -> None:
        """Undo ``blockdev_assemble`` (the data stays); one error names every device that
        could not be shut down (an LV still held by a VM is refused)."""
        problems = []
        for spec in self._specs(devices):
            try:
                await self.devices.device(spec).shutdown()
            except errors.StorageError as exc:
                problems.append(f"{spec.describe()}: {exc.message}")
        if problems:
            raise errors.StorageError("could not shut down " + "; ".join(problems))

    @contextlib.asynccontextmanager
    async def _local_volumes(self, specs: list[DeviceSpec]) -> AsyncIterator[list[str]]:
        """The local volumes of ``specs`` for a tool of this node (an OS script, a copy),
        left as active as they were: an LV activated only for the tool is deactivated again,
        so that it keeps no loop device after the job."""
        was_active = [i.active for i in await self.devices.info_many(specs)]
        devices = [self.devices.device(s) for s in specs]
        try:
            yield [await d.local_path() for d in devices]
        finally:
            for device, active in zip(devices, was_active, strict=True):
                if not active:
                    try:
                        await device.shutdown()
                    except errors.StorageError as exc:
                        log.warning("could not deactivate %s after use: %s",
                                    device.spec.describe(), exc.message)

    async def blockdev_list(self) -> dict[str, Any]:
        """Everything this node holds for disks, whoever owns it: files under the file storage
        directory (relative paths), LVs of its volume groups, running storage daemons and
        mirror generation records kept apart from their data. The master compares this with
        the config (verify's orphan check)."""
        await self.volume_group()  # the factory lists the LVs of the VGs it knows
        return await self.devices.list_all()

    async def _remove(self, specs: list[DeviceSpec]) -> None:
        await self._end_os_scripts([s.uuid for s in specs])
        await self.devices.remove_all(specs)

    # -- disks (storage RPC 1: node RPC disk dicts, translated) -------------------------------
    @staticmethod
    def _spec(disk: dict[str, Any]) -> DeviceSpec:
        return legacy_storage.from_disk_dict(disk)

    async def disks_create(self, disks: list[dict[str, Any]]) -> list[str]:
        """Create every disk or none: on failure, remove those already made."""
        made = await self.devices.create_all(legacy_storage.for_disks_create(disks))
        return [await d.local_path() for d in made]

    async def disk_copy(self, source: dict[str, Any], target: dict[str, Any]) -> None:
        """``blockdev_copy`` for node RPC disk dicts (masters before protocol 3)."""
        await self._copy(self._spec(source), self._spec(target))

    async def blockdev_copy(self, source: dict[str, Any], target: dict[str, Any]) -> None:
        """Copy one device's data into another of this node (template conversions), keeping
        holes: the target must exist and be at least as large (a mirror: its data volume)."""
        await self._copy(DeviceSpec.from_dict(source), DeviceSpec.from_dict(target))

    # -- moving a volume to another node (gnt-instance move; herd.node.transfer) -------------
    async def blockdev_export(self, device: dict[str, Any], address: str) -> dict[str, Any]:
        """Serve the (stopped) device read-only over NBD on ``address`` for another node to
        copy; ``{"port": N}``. Ended by :meth:`blockdev_unexport`."""
        spec = DeviceSpec.from_dict(device)
        info = (await self.devices.info_many([spec]))[0]
        if not info.exists:
            raise errors.StorageError(f"cannot export {spec.describe()}: it does not exist "
                                      "on this node")
        path = await self.devices.device(spec).local_path()
        return {"port": await self.nbd_exports.start(spec.uuid, path, address)}

    async def blockdev_unexport(self, device: dict[str, Any]) -> bool:
        """End the device's NBD export (idempotent); whether one ran."""
        return await self.nbd_exports.stop(DeviceSpec.from_dict(device).uuid)

    async def blockdev_fetch(self, device: dict[str, Any], host: str, port: int,
                             source_uuid: str) -> None:
        """Fill the device (made empty, at least as large) from disk ``source_uuid``'s
        export on another node, holes kept, and flush it to stable storage."""
        async with self._local_volumes([DeviceSpec.from_dict(device)]) as paths:
            await transfer.fetch(transfer.nbd_uri(host, int(port), source_uuid), paths[0])

    async def _copy(self, source: DeviceSpec, target: DeviceSpec) -> None:
        async with self._local_volumes([source, target]) as paths:
            src, dst = paths
            proc = await asyncio.create_subprocess_exec(
                "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", "-S", "4k", src, dst,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise errors.StorageError(f"copying {src} to {dst} failed: "
                                      f"{out.decode(errors='replace').strip()}")

    async def disks_remove(self, disks: list[dict[str, Any]]) -> None:
        await self._remove(legacy_storage.for_disks_remove(disks))

    async def _end_os_scripts(self, uuids: list[str]) -> None:
        """End the OS scripts still writing these disks (their job is gone: masterd died and
        its recovery removes what the job made) and wait until they are gone."""
        tasks = {self._os_scripts[u] for u in uuids if u in self._os_scripts}
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    async def storage_list(self) -> dict[str, Any]:
        """``blockdev_list`` as storage RPC 1 answered it (files and storage daemons)."""
        listing = await self.devices.list_all()
        return {"files": listing["files"], "mirror_daemons": listing["mirror_daemons"]}

    async def disks_check(self, disks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Exists, size (MiB) and local path of each disk (a drbd disk's data volume); a
        template without a volume here answers "missing", as before."""
        specs = legacy_storage.for_disks_check(disks)
        known = [s for s in specs if s is not None]
        infos = iter(await self.devices.info_many(known))
        out = []
        for disk, spec in zip(disks, specs, strict=True):
            info = next(infos) if spec is not None else None
            out.append({"uuid": disk.get("uuid"), "exists": bool(info and info.exists),
                        "size": info.size_mib if info else None,
                        "path": info.path if info else None})
        return out

    # -- instances ----------------------------------------------------------------------------
    async def _hv_spec(self, spec: dict[str, Any],
                       incoming: bool = False) -> hvbase.InstanceSpec:
        return hvbase.InstanceSpec(
            name=spec["name"], uuid=spec["uuid"], memory=int(spec["memory"]),
            vcpus=int(spec["vcpus"]), hvparams=dict(spec["hvparams"]),
            disks=[hvbase.DiskSpec(index=d["index"], path=await self._vm_disk_path(d, incoming),
                                   mode=d["mode"], uuid=d.get("uuid"))
                   for d in spec["disks"]],
            nics=[hvbase.NicSpec(index=n["index"], mac=n["mac"], mode=n["mode"], link=n["link"],
                                 ip=n.get("ip"), uuid=n.get("uuid")) for n in spec["nics"]],
            network_port=int(spec["network_port"]) if spec.get("network_port") else None,
        )

    async def instance_start(self, spec: dict[str, Any], paused: bool = False) -> dict[str, Any]:
        hv = self.hypervisor(spec.get("hypervisor", "kvm"))
        if await hv.instance_info(spec["name"]) is not None:
            raise errors.HypervisorError(f"instance {spec['name']} is already running here")
        infos = await self.devices.info_many([self._spec(d) for d in spec["disks"]])
        for disk, info in zip(spec["disks"], infos, strict=True):
            if not info.exists:
                raise errors.StorageError(f"disk {disk['index']} of {spec['name']} is missing "
                                          f"on this node ({info.path})")
        info = await hv.start(await self._hv_spec(spec), paused=paused)
        return info.to_dict()

    async def instance_stop(self, name: str, stop_timeout: float) -> None:
        await (await self._running_on(name)).stop(name, stop_timeout)

    async def instance_reboot(self, name: str, reboot_type: str, spec: dict[str, Any],
                              shutdown_timeout: float) -> None:
        hv = self.hypervisor(spec.get("hypervisor", "kvm"))
        if reboot_type == "soft":
            await hv.reboot(name)
            return
        # hard (and full): stop the process and start a fresh one with the current parameters
        await hv.stop(name, shutdown_timeout if reboot_type == "full" else 0)
        await hv.start(await self._hv_spec(spec))

    async def instance_hotplug(self, name: str, action: str, kind: str,
                               device: dict[str, Any]) -> None:
        """Attach (``add``) or detach (``remove``) one disk or NIC of the running ``name``.
        ``device`` is a disk or NIC as the instance spec carries it (with ``index`` and
        ``uuid``); a disk is opened where a VM on this node opens it (its file, its LV, the
        primary's mirror export, which must be active)."""
        hv = await self._running_on(name)
        if await hv.instance_info(name) is None:
            raise errors.HypervisorError(f"instance {name} is not running on this node")
        if kind not in ("disk", "nic") or action not in ("add", "remove"):
            raise errors.ParameterError(f"invalid hotplug {action!r} of {kind!r}: allowed "
                                        "are add/remove of disk/nic")
        if action == "remove":
            await hv.hotplug_remove(name, kind, str(device["uuid"]), int(device["index"]))
            return
        spec = await self._hv_spec({"name": name, "uuid": "", "memory": 0, "vcpus": 0,
                                    "hvparams": {}, "disks": [device] if kind == "disk" else [],
                                    "nics": [device] if kind == "nic" else []})
        await hv.hotplug_add(name, spec.disks[0] if kind == "disk" else spec.nics[0])

    # -- migration (see herd.logic.instance_migrate for the order of the steps) --------------
    async def instance_accept_migration(self, spec: dict[str, Any], port: int,
                                        listen_address: str) -> dict[str, Any]:
        hv = self.hypervisor(spec.get("hypervisor", "kvm"))
        hv_spec = await self._hv_spec(spec, incoming=True)
        return (await hv.accept_migration(hv_spec, port, listen_address)).to_dict()

    async def instance_migrate(self, name: str, target_address: str, port: int, live: bool,
                               bandwidth_mibps: int | None = None,
                               downtime_ms: int | None = None,
                               hand_over: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Send the guest to the target; with ``hand_over`` (the instance's mirrored disks
        here), once QEMU completed, also turn them secondary at once (the first step of the
        disk hand-over, DESIGN §7) instead of in a further RPC: the guest is paused from
        QEMU's end until the resume on the target, and a round trip through the master is
        time in that pause. The figures say ``handed_over_ms``, or ``hand_over_error`` (the
        master then asks again, as it did before, and reports the error)."""
        hv = await self._running_on(name)

        async def hand_over_disks(stats: dict[str, Any]) -> None:
            if stats.get("status") != "completed":
                return
            began = time.monotonic()
            try:
                await self.blockdev_assemble(hand_over or [], role="secondary")
                stats["handed_over_ms"] = round((time.monotonic() - began) * 1000)
            except Exception as exc:
                # told in the answer, never raised: the migration completed and the guest's
                # memory is on the target; an error here must not read as a failed migration
                # (the master would end the target's QEMU)
                log.exception("disk hand-over of %s after its migration failed", name)
                stats["hand_over_error"] = (exc.message if isinstance(exc, errors.HerdError)
                                            else f"{type(exc).__name__}: {exc}")
            else:
                stats["served"] = self._served(hand_over or [])

        # the hand-over starts the moment QEMU completed (beside the hypervisor's record)
        return await hv.migrate(name, target_address, port, live=live,
                                bandwidth_mibps=bandwidth_mibps, downtime_ms=downtime_ms,
                                then=hand_over_disks if hand_over else None)

    def _served(self, devices: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """What each mirror of ``devices`` serves its peer as a secondary here (export and
        generation summary, MirrorManager.served); None unless every one is a serving
        mirror (the new primary then probes, as before; a hint, so never an error)."""
        from herd.storage.blockdev.mirror import to_mirror_disk

        try:
            specs = self._specs(devices)
            if not specs or any(s.kind != MIRROR for s in specs):
                return None
            served = [self.mirror.served(to_mirror_disk(s)) for s in specs]
        except Exception as exc:  # a hint: the target probes without it
            log.warning("cannot tell what the handed-over disks serve: %s", exc)
            return None
        return None if any(x is None for x in served) else served

    async def _take_over(self, devices: list[dict[str, Any]], syncs: list[str] | None,
                         peers: list[dict[str, Any]] | None) -> None:
        """The target's disks turn primary, mirroring back to the old source; with
        ``peers`` (the source's :meth:`_served`, one per disk) without probing it."""
        if not peers or len(peers) != len(devices):
            await self.blockdev_assemble(devices, role="primary", syncs=syncs)
            return
        from herd.storage.blockdev.mirror import to_mirror_disk

        specs = self._specs(devices)
        wanted = syncs if syncs is not None else ["auto"] * len(specs)
        if any(s.kind != MIRROR for s in specs) or len(wanted) != len(specs):
            raise errors.ParameterError("take-over hints given for disks that are not "
                                        "all mirrors, or syncs of another count")
        for spec, sync, served in zip(specs, wanted, peers, strict=True):
            await self.mirror.start_primary(to_mirror_disk(spec), sync, peer_served=served)

    async def instance_finish_migration(self, name: str, source: bool, success: bool,
                                        take_over: list[dict[str, Any]] | None = None,
                                        syncs: list[str] | None = None,
                                        peers: list[dict[str, Any]] | None = None
                                        ) -> dict[str, Any]:
        """Source: end the old QEMU. Target: resume the guest (success) or end the incoming
        QEMU; with ``take_over`` (the instance's mirrored disks here) its disks first turn
        primary, mirroring back at least ``syncs``, in the same call for the reason told at
        :meth:`instance_migrate` (a failure there is raised before anything resumes);
        ``peers``: what the source said it serves after its hand-over (its migration
        answer's ``served``), so that the disks attach to it without probing. The answer:
        ``resumed_at`` (wall clock right after the resume, if there was one) and
        ``mirror_back_ms``."""
        hv = self.hypervisor()
        if source:
            await hv.finish_migration_source(name)
            return {}
        answer: dict[str, Any] = {}

        async def mirror_back() -> None:
            began = time.monotonic()
            await self._take_over(take_over or [], syncs, peers)
            answer["mirror_back_ms"] = round((time.monotonic() - began) * 1000)

        # the disks turn primary while QEMU's incoming state is looked at (both before the
        # resume, their times overlap)
        answer["resumed_at"] = await hv.finish_migration_target(
            name, success, beforehand=mirror_back if take_over and success else None)
        return answer

    async def instance_abort_migration(self, name: str) -> None:
        await self.hypervisor().abort_migration(name)

    async def instance_grow_disk(self, name: str, index: int, size_mib: int,
                                 uuid: str | None = None) -> None:
        """Tell the running guest that disk ``index`` grew to ``size_mib`` MiB."""
        await (await self._running_on(name)).grow_disk(name, int(index), int(size_mib) << 20,
                                                              uuid)

    async def instance_rename(self, old: str, new: str) -> None:
        """Carry a running instance's runtime state here over to its new name."""
        await (await self._running_on(old)).rename(old, new)

    async def instance_pause(self, name: str) -> None:
        await (await self._running_on(name)).pause(name)

    async def instance_resume(self, name: str) -> None:
        await (await self._running_on(name)).resume(name)

    async def instance_runstate(self, name: str) -> dict[str, Any] | None:
        """What ``migrate --cleanup`` must know of ``name`` here (see Hypervisor.runstate)."""
        return await (await self._running_on(name)).runstate(name)

    async def instance_list(self) -> list[dict[str, Any]]:
        out = []
        for name in HYPERVISORS:
            out += [r.to_dict() for r in await self.hypervisor(name).list_instances()]
        return out

    def os_search_path(self) -> list[Path]:
        """The cluster's OS search path (gnt-cluster modify --os-search-path, from the facts
        every node keeps), under this node's root; the built-in one when none is set."""
        from herd.config.facts import read_facts

        chosen = (read_facts(self.paths) or {}).get("os_search_path") or []
        if not chosen:
            return self.paths.os_search_path
        return [self.paths.root / str(d).lstrip("/") for d in chosen]

    async def instance_usage(self) -> list[dict[str, Any]]:
        """CPU, memory, disk and NIC counters of every guest running here (for /metrics)."""
        out = []
        for name in HYPERVISORS:
            hv = self.hypervisor(name)
            for info in await hv.list_instances():
                out.append({"name": info.name, "hypervisor": name,
                            **await hv.instance_usage(info)})
        return out

    async def _usage_if_guests(self) -> list[dict[str, Any]]:
        """``instance_usage`` when a guest may run here: a node without guests never loads
        the hypervisors' code for the graphs' sampling (noded stays small at rest)."""
        if not hvbase.guests_may_run(self.paths):
            return []
        return await self.instance_usage()

    async def usage_history(self, name: str | None = None) -> dict[str, Any]:
        """The graphs of guest ``name`` (None: this node) over the last hour."""
        return await self.usage.series(name)

    async def instance_info(self, name: str) -> dict[str, Any] | None:
        info = await (await self._running_on(name)).instance_info(name)
        return info.to_dict() if info else None

    # -- hooks (Ganeti's hook scripts, herd.node.hooks) ---------------------------------------
    async def hooks_run(self, hpath: str, phase: str, env: dict[str, str],
                        script_timeout: float) -> list[list[str]]:
        """Run this node's ``<hpath>-<phase>.d`` scripts; [script, status, output] each."""
        from herd.node import hooks

        env = dict(env, GANETI_DATA_DIR=str(self.paths.data_dir))
        results = await asyncio.to_thread(hooks.run_hooks, self.paths.hooks_dir, hpath, phase,
                                          env, float(script_timeout))
        return [r.to_list() for r in results]

    async def hooks_inventory(self) -> dict[str, list[Any]]:
        """Checksum and executable bit of every file in this node's hooks directory."""
        from herd.node import hooks

        return await asyncio.to_thread(hooks.inventory, self.paths.hooks_dir)

    # -- OS definitions -----------------------------------------------------------------------
    async def os_diagnose(self) -> list[dict[str, Any]]:
        from herd import osdef

        found = osdef.discover(self.os_search_path())
        return [d.to_dict() for d in found.values()]

    async def os_run(self, script: str, os_name: str, instance: dict[str, Any],
                     extra_env: dict[str, str]) -> None:
        if script not in ("create", "import", "export", "rename"):
            raise errors.ParameterError(f"invalid OS script '{script}'")
        await self._os_script(script, os_name, instance, extra_env)

    async def _os_script(self, script: str, os_name: str, instance: dict[str, Any],
                         extra_env: dict[str, str] | None = None, *,
                         disk_env: Any = None, stdin: int | None = None,
                         stdout: int | None = None, handed: tuple[int, ...] = ()) -> None:
        """Run an OS script for ``instance`` on its local volumes. ``disk_env(paths)`` adds
        variables that name a volume (export/import: the device of one disk); ``stdin``,
        ``stdout`` and ``handed`` go to :func:`herd.osdef.run_script`."""
        from herd import osdef

        pending = list(handed)  # run_script takes them over; until then they are ours
        try:
            await self._os_script_body(osdef, script, os_name, instance, extra_env, disk_env,
                                       stdin, stdout, pending)
        finally:
            while pending:
                with contextlib.suppress(OSError):
                    os.close(pending.pop())

    async def _os_script_body(self, osdef: Any, script: str, os_name: str,
                              instance: dict[str, Any], extra_env: dict[str, str] | None,
                              disk_env: Any, stdin: int | None, stdout: int | None,
                              pending: list[int]) -> None:
        definition, variant = osdef.lookup(os_name, self.os_search_path())
        # an LV activated for the script is deactivated after it (no loop device stays)
        async with self._local_volumes([self._spec(d) for d in instance["disks"]]) as paths:
            disks = [{"path": path, "size": d["size"], "mode": d["mode"], "uuid": d["uuid"],
                      "name": d.get("name"), "template": d["template"]}
                     for d, path in zip(instance["disks"], paths, strict=True)]
            extra = dict(extra_env or {}, **(disk_env(paths) if disk_env else {}))
            env = osdef.build_env(
                definition, variant, instance_name=instance["name"],
                hypervisor=instance.get("hypervisor", "kvm"), disks=disks, nics=instance["nics"],
                osparams={k: str(v) for k, v in instance.get("osparams", {}).items()},
                hvparams=instance["hvparams"], beparams=instance.get("beparams", {}),
                extra=extra)
            stamp = time.strftime("%Y%m%d%H%M%S")
            log_name = f"{script}-{definition.name}-{instance['name']}-{stamp}.log"
            log_file = self.paths.os_log_dir / log_name
            uuids = [str(d["uuid"]) for d in instance["disks"]]
            handed = tuple(pending)
            pending.clear()  # from here on run_script closes them
            task = asyncio.ensure_future(osdef.run_script(
                definition, script, env, log_file, stdin=stdin, stdout=stdout,
                close_after_start=handed))
            for uuid in uuids:
                self._os_scripts[uuid] = task
            try:
                await task
            except asyncio.CancelledError:
                if task.cancelled() and not self._cancelling():
                    raise errors.OpExecError(f"OS {script} script for {instance['name']} was "
                                             "ended: its disks are being removed") from None
                raise
            finally:
                for uuid in uuids:
                    if self._os_scripts.get(uuid) is task:
                        del self._os_scripts[uuid]
                if script in WRITING_SCRIPTS and not task.cancelled():
                    # also after a failure: a script may have written part of a disk
                    for d in instance["disks"]:
                        await self.devices.device(self._spec(d)).written_offline()

    # -- exports (gnt-backup; herd.node.exports) ----------------------------------------------
    @property
    def exports(self) -> Any:
        from herd.node.exports import ExportStore, export_dir

        return ExportStore(export_dir(self.paths))

    def _peer_client(self) -> Any:
        """An HTTPS client to other nodes' noded, with this node's certificate (the same
        mutual TLS as the master's node RPC)."""
        import httpx

        from herd.rpc import tls

        return httpx.AsyncClient(verify=tls.client_context(self.paths))

    async def export_list(self) -> list[str]:
        """The complete exports in this node's export directory."""
        return self.exports.names()

    async def export_info(self, name: str) -> str:
        """The config.ini of export ``name`` here."""
        return self.exports.config(name)

    async def export_remove(self, name: str) -> bool:
        return self.exports.remove(name)

    async def export_begin(self, name: str) -> None:
        self.exports.begin(name)

    async def export_finish(self, name: str, config: str) -> None:
        self.exports.finish(name, config)

    async def export_abort(self, name: str) -> None:
        self.exports.abort(name)

    async def export_disk(self, instance: dict[str, Any], os_name: str, index: int,
                          peer: dict[str, Any], name: str, dump: str) -> int:
        """Run the OS export script on disk ``index`` and stream what it writes into export
        ``name`` (file ``dump``) on node ``peer``; the bytes stored there."""
        from herd.node import exports

        read_end, write_end = os.pipe()
        script = asyncio.ensure_future(self._os_script(
            "export", os_name, instance, stdout=write_end, handed=(write_end,),
            disk_env=lambda paths: {"EXPORT_DEVICE": paths[index],
                                    "EXPORT_DISK_PATH": paths[index],
                                    "EXPORT_INDEX": str(index)}))
        try:
            async with self._peer_client() as client:
                size = await exports.send_stream(client, peer, name, dump, read_end)
        except BaseException:
            os.close(read_end)  # the script's writes fail: it ends
            read_end = -1
            with contextlib.suppress(BaseException):
                await script
            raise
        finally:
            if read_end >= 0:
                os.close(read_end)
        await script  # a script that failed half-way fails the export
        return size

    async def import_disk(self, instance: dict[str, Any], os_name: str, index: int,
                          peer: dict[str, Any], name: str, dump: str) -> None:
        """Feed dump ``dump`` of export ``name`` on node ``peer`` to the OS import script of
        disk ``index`` of ``instance`` (whose disks exist here)."""
        from herd.node import exports

        read_end, write_end = os.pipe()
        script = asyncio.ensure_future(self._os_script(
            "import", os_name, instance, stdin=read_end, handed=(read_end,),
            disk_env=lambda paths: {"IMPORT_DEVICE": paths[index],
                                    "IMPORT_DISK_PATH": paths[index],
                                    "IMPORT_INDEX": str(index)}))
        broken = False
        try:
            async with self._peer_client() as client, \
                    exports.open_stream(client, peer, name, dump) as chunks:
                async for chunk in chunks:
                    await asyncio.to_thread(exports.write_all, write_end, chunk)
        except OSError:
            broken = True  # the script closed its stdin: its own result says why
        except BaseException:
            os.close(write_end)
            write_end = -1
            script.cancel()
            with contextlib.suppress(BaseException):
                await script
            raise
        finally:
            if write_end >= 0:
                os.close(write_end)
        await script
        if broken:
            raise errors.OpExecError(f"the OS import script of disk {index} ended before "
                                     f"reading all of {dump}")

    @staticmethod
    def _cancelling() -> bool:
        """Whether the current task itself is being cancelled (not only a task it awaits)."""
        current = asyncio.current_task()
        return current is not None and current.cancelling() > 0


#: OS scripts that write the instance's disks (export only reads them).
WRITING_SCRIPTS = ("create", "import", "rename")


def encode_result(value: Any) -> bytes:
    return json.dumps({"ok": True, "result": value}).encode()
