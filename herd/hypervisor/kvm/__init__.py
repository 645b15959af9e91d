"""The kvm hypervisor: QEMU processes that outlive noded, driven through QMP.

Each instance is one daemonized ``qemu-system-x86_64`` with an explicit ``-accel`` (KVM only
where the node probe proved it works, see detect.py), a QMP socket, a serial console socket and
a runtime file; everything noded later says about the instance is read back from those files
and checked against the live process, so a restarted noded finds its VMs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

from herd import qemu_features
from herd.daemonize import scope_argv, scope_unit
from herd.errors import HypervisorError
from herd.hypervisor import stats
from herd.hypervisor.base import (
    DiskSpec,
    Hypervisor,
    InstanceSpec,
    NicSpec,
    RuntimeInfo,
    VncEndpoint,
    read_display_password,
)
from herd.hypervisor.kvm import (
    detect,
    disks,
    display,
    hotplug,
    migration,
    nics,
    params,
    pinning,
    process,
    qmp,
)
from herd.hypervisor.kvm.cmdline import LaunchContext, build_argv, drive_id
from herd.hypervisor.kvm.runtime import (
    InstanceFiles,
    RuntimeRecord,
    is_our_qemu,
    list_names,
    read_pidfile,
    read_record,
    write_record,
)
from herd.network.tap import tap_name
from herd.paths import HerdPaths

log = logging.getLogger(__name__)

#: QEMU run states in which the guest CPUs execute; every other live state is 'paused'.
_RUNNING_STATES = {"running"}


class Kvm(Hypervisor):
    """Ganeti's kvm hypervisor on top of qemu-system-x86_64."""

    name: ClassVar[str] = "kvm"

    def __init__(self, paths: HerdPaths) -> None:
        super().__init__(paths)
        self.run_dir = paths.instance_run_dir
        self._probe: detect.KvmProbe | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._display_lock = asyncio.Lock()

    # -- parameters ---------------------------------------------------------------------------
    @classmethod
    def parameter_defaults(cls) -> dict[str, Any]:
        return params.parameter_defaults()

    @classmethod
    def check_parameters(cls, hvparams: dict[str, Any]) -> dict[str, Any]:
        return params.check_parameters(hvparams)

    # -- node facts and acceleration ----------------------------------------------------------
    def _detect_sync(self) -> detect.KvmProbe:
        if self._probe is None:
            self._probe = detect.detect(self.paths)
        return self._probe

    async def detect_kvm(self, *, force: bool = False) -> detect.KvmProbe:
        """The KVM probe result, probing in a worker thread if needed (at most ~2 s)."""
        if self._probe is None or force:
            self._probe = await asyncio.to_thread(detect.detect, self.paths, force=force)
        return self._probe

    def node_facts(self) -> dict[str, Any]:
        """Sync for the API's sake: cheap once probed (cached); call detect_kvm() at startup."""
        probe = self._detect_sync()
        return {"hypervisor": self.name, "accel": "kvm" if probe.kvm_usable else "tcg",
                "kvm_usable": probe.kvm_usable, "kvm_reason": probe.kvm_reason,
                "qemu_version": probe.qemu_version}

    async def _choose_accel(self, kvm_flag: str) -> str:
        """Herd's kvm_flag: '' = KVM if usable else TCG; enabled = KVM or error; disabled = TCG."""
        if kvm_flag == "disabled":
            return "tcg"
        probe = await self.detect_kvm()
        if probe.kvm_usable:
            return "kvm"
        if kvm_flag == "enabled":
            raise HypervisorError(
                f"kvm_flag=enabled but KVM is not usable on this node: {probe.kvm_reason}")
        return "tcg"

    # -- helpers -----------------------------------------------------------------------------
    def _files(self, name: str) -> InstanceFiles:
        return InstanceFiles(self.run_dir, name)

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def instance_usage(self, info: RuntimeInfo) -> dict[str, Any]:
        out: dict[str, Any] = dict(stats.process_usage(info.pid) or {})
        nic_rows = []
        for nic in info.spec.nics:
            counters = stats.nic_usage(tap_name(info.uuid, nic.index))
            if counters is not None:
                nic_rows.append({"index": nic.index, **counters})
        out["nics"] = nic_rows
        try:
            blocks = stats.block_usage(await qmp.execute(self._files(info.name).qmp,
                                                         "query-blockstats", timeout=2.0))
        except HypervisorError:
            return out  # QEMU busy or going away: CPU, memory and NICs still count
        disk_type = str(info.spec.hvparams.get("disk_type", "paravirtual"))
        ids = {d.index: drive_id(disk_type, d.index) for d in info.spec.disks}
        out["disks"] = [{"index": index, **blocks[name]} for index, name in ids.items()
                        if name in blocks]
        return out

    def console_socket(self, name: str) -> Path:
        return self._files(name).serial

    async def vnc_endpoint(self, name: str) -> VncEndpoint | None:
        """The VNC listener of the running guest, as noded can connect to it (a wildcard bind
        address is reached over loopback), with the security QEMU was started with: noded
        authenticates itself (password, VeNCrypt TLS) and the browser needs neither.
        The parameters are those of the running QEMU (its runtime spec), not the config's
        (a modify takes effect at the next start)."""
        record = await self._live_record(name)
        if record is None or not record.vnc_port:
            return None
        hv = record.spec.hvparams
        address = await asyncio.to_thread(display.resolve_address,
                                          str(hv.get("vnc_bind_address") or "127.0.0.1"))
        tls = bool(hv.get("vnc_tls"))
        return VncEndpoint(host=display.connect_address(address), port=record.vnc_port,
                           password_file=str(hv.get("vnc_password_file") or ""), tls=tls,
                           x509_dir=str(hv.get("vnc_x509_path") or "") if tls else "",
                           x509_verify=bool(hv.get("vnc_x509_verify")) if tls else False)

    async def _live_record(self, name: str) -> RuntimeRecord | None:
        """The runtime record if its QEMU is alive; otherwise clean up what is left."""
        files = self._files(name)
        record = read_record(files.runtime)
        if record is not None and is_our_qemu(record.pid, files, record.spec.uuid):
            return record
        if not self._lock(name).locked():  # a start/stop in progress owns the files
            await self._cleanup(files, record)
        return None

    async def _cleanup(self, files: InstanceFiles, record: RuntimeRecord | None) -> None:
        if record is not None:
            await nics.teardown(record.taps)
        files.remove()

    async def _info(self, record: RuntimeRecord) -> RuntimeInfo:
        files = self._files(record.spec.name)
        try:
            status = await qmp.query_status(files.qmp, timeout=2.0)
            state = "running" if status in _RUNNING_STATES else "paused"
        except HypervisorError as exc:
            log.warning("instance %s: %s", record.spec.name, exc)
            state = "running"
        spec = record.spec
        return RuntimeInfo(name=spec.name, uuid=spec.uuid, pid=record.pid, state=state,
                           memory=spec.memory, vcpus=spec.vcpus, accel=record.accel,
                           started=record.started, spec=spec,
                           migration=(record.migration or {}).get("role"))

    # -- queries -----------------------------------------------------------------------------
    async def instance_info(self, name: str) -> RuntimeInfo | None:
        record = await self._live_record(name)
        return None if record is None else await self._info(record)

    async def list_instances(self) -> list[RuntimeInfo]:
        out = []
        for name in list_names(self.run_dir):
            info = await self.instance_info(name)
            if info is not None:
                out.append(info)
        return out

    # -- start ------------------------------------------------------------------------------
    def _check_startable(self, spec: InstanceSpec, hv: dict[str, Any]) -> None:
        for disk in spec.disks:
            if disks.is_uri(disk.path):
                disks.parse_nbd_uri(disk.path)  # malformed -> error; reachability is QEMU's
            elif not os.path.exists(disk.path):
                raise HypervisorError(f"disk {disk.index} of {spec.name}: {disk.path} not found")
        for key in ("kernel_path", "initrd_path", "cdrom_image_path", "cdrom2_image_path",
                    "floppy_image_path"):
            if hv[key] and not os.path.exists(hv[key]):
                raise HypervisorError(f"{key} {hv[key]} does not exist on this node")
        if hv["security_model"] == "pool":
            raise HypervisorError("security_model=pool is not supported by Herd yet")
        if hv["security_model"] == "user" and not hv["security_domain"]:
            raise HypervisorError("security_model=user needs security_domain")
        if hv["spice_use_tls"]:
            raise HypervisorError("spice_use_tls is not supported by Herd yet")
        if spec.memory <= 0 or spec.vcpus <= 0:
            raise HypervisorError(
                f"invalid memory {spec.memory} MiB / vcpus {spec.vcpus} for {spec.name}")
        pinning.check(hv["cpu_mask"], spec.vcpus)
        nics.check_nics(spec.nics)

    async def _pick_display(self, spec: InstanceSpec, hv: dict[str, Any],
                            ctx: LaunchContext) -> None:
        taken: set[int] = set()
        for other in list_names(self.run_dir):
            rec = read_record(self._files(other).runtime)
            if rec is not None:
                taken.update(p for p in (rec.vnc_port, rec.spice_port) if p)
        if hv["vnc_bind_address"]:
            ctx.vnc_address = await asyncio.to_thread(display.resolve_address,
                                                      hv["vnc_bind_address"])
            if spec.network_port:
                ctx.vnc_port = display.check_assigned(ctx.vnc_address, spec.network_port,
                                                      taken, spec.name)
            else:
                ctx.vnc_port = display.free_port(ctx.vnc_address, display.VNC_BASE,
                                                 display.VNC_LAST, taken)
        if hv["spice_bind"]:
            ctx.spice_address = await asyncio.to_thread(
                display.resolve_address, hv["spice_bind"], hv["spice_ip_version"])
            ctx.spice_port = display.free_port(ctx.spice_address, display.SPICE_BASE,
                                               display.SPICE_LAST, taken)

    async def start(self, spec: InstanceSpec, *, paused: bool = False) -> RuntimeInfo:
        async with self._lock(spec.name):
            return await self._start(spec, paused)

    async def _start(self, spec: InstanceSpec, paused: bool,
                     incoming: tuple[str, int] | None = None) -> RuntimeInfo:
        """Start QEMU; with ``incoming`` (address, port) as a paused migration target."""
        hv = params.fill(spec.hvparams)
        files = self._files(spec.name)
        files.check_socket_paths()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        old = read_record(files.runtime)
        if old is not None and is_our_qemu(old.pid, files, old.spec.uuid):
            raise HypervisorError(f"instance {spec.name} is already running (pid {old.pid})")
        await self._cleanup(files, old)
        self._check_startable(spec, hv)
        ctx = LaunchContext(files=files, accel=await self._choose_accel(hv["kvm_flag"]),
                            paused=paused or incoming is not None,
                            incoming=incoming is not None)
        if hv["use_chroot"]:
            files.chroot_dir.mkdir(parents=True, exist_ok=True)
        ctx.taps = await nics.setup(spec.uuid, spec.nics)
        try:
            async with self._display_lock:
                await self._pick_display(spec, hv, ctx)
                argv = build_argv(spec, hv, ctx)
                started = time.time()
                # the scope carries the uuid too: a guest renamed while running keeps its
                # scope, and a new instance given the old name must not collide with it
                pid = await process.launch(argv, files, scope_argv(
                    self.paths.root, scope_unit("guest", f"{spec.name}-{spec.uuid[:8]}")))
            record = RuntimeRecord(spec=spec, pid=pid, accel=ctx.accel, started=started,
                                   argv=argv, taps=ctx.taps, vnc_port=ctx.vnc_port,
                                   spice_port=ctx.spice_port)
            if incoming is not None:
                record.migration = {"role": "target", "uri": migration.uri(*incoming),
                                    "since": time.time()}
            write_record(files.runtime, record)
            await self._after_launch(spec, hv, pid, files)
            if incoming is not None:
                await migration.listen(files.qmp, *incoming)
        except BaseException:
            await self._abort_start(files, spec.uuid, ctx.taps)
            raise
        return RuntimeInfo(name=spec.name, uuid=spec.uuid, pid=pid,
                           state="paused" if ctx.paused else "running", memory=spec.memory,
                           vcpus=spec.vcpus, accel=ctx.accel, started=started, spec=spec,
                           migration="target" if incoming is not None else None)

    async def _after_launch(self, spec: InstanceSpec, hv: dict[str, Any], pid: int,
                            files: InstanceFiles) -> None:
        for key, protocol in (("vnc_password_file", "vnc"), ("spice_password_file", "spice")):
            if hv[key] and (hv["vnc_bind_address"] if protocol == "vnc" else hv["spice_bind"]):
                password = read_display_password(hv[key], key)
                await qmp.execute(files.qmp, "set_password",
                                  {"protocol": protocol, "password": password})
        if hv["cpu_mask"] != "all":
            threads = await qmp.execute(files.qmp, "query-cpus-fast")
            pinning.apply(hv["cpu_mask"], pid, threads if isinstance(threads, list) else [])

    async def _abort_start(self, files: InstanceFiles, uuid: str, taps: list[str]) -> None:
        """Undo a failed start: end a QEMU that did daemonize, remove taps and files."""
        pid = read_pidfile(files.pidfile)
        if pid is not None and is_our_qemu(pid, files, uuid):
            await process.terminate(pid)
        await nics.teardown(taps)
        files.remove()

    # -- stop / reboot / resume -------------------------------------------------------------
    async def stop(self, name: str, timeout: float) -> None:
        async with self._lock(name):
            files = self._files(name)
            record = read_record(files.runtime)
            if record is not None and is_our_qemu(record.pid, files, record.spec.uuid):
                await self._shutdown(record, files, timeout)
            await self._cleanup(files, record)

    async def _shutdown(self, record: RuntimeRecord, files: InstanceFiles,
                        timeout: float) -> None:
        if timeout > 0:
            try:
                await qmp.execute(files.qmp, "system_powerdown", timeout=min(timeout, 5.0))
                if await process.wait_gone(record.pid, timeout, interval=0.1):
                    return
                log.info("instance %s did not power off within %g s; killing it",
                         record.spec.name, timeout)
            except HypervisorError as exc:
                log.warning("instance %s: ACPI powerdown failed (%s); killing it",
                            record.spec.name, exc)
        await process.terminate(record.pid)

    async def _require(self, name: str) -> RuntimeRecord:
        record = await self._live_record(name)
        if record is None:
            raise HypervisorError(f"instance {name} is not running")
        return record

    async def reboot(self, name: str) -> None:
        """Ganeti's soft reboot for kvm: a hardware reset of the running VM."""
        async with self._lock(name):
            await self._require(name)
            await qmp.execute(self._files(name).qmp, "system_reset")

    async def runstate(self, name: str) -> dict[str, Any] | None:
        """QEMU's own run state ('postmigrate', 'inmigrate', ...) and migration status."""
        out = await super().runstate(name)
        if out is not None:
            sock = self._files(name).qmp
            out["state"] = await qmp.query_status(sock)
            out["migration_status"] = (await migration.query(sock)).get("status")
        return out

    async def resume(self, name: str) -> None:
        async with self._lock(name):
            await self._require(name)
            sock = self._files(name).qmp
            if await qmp.query_status(sock) not in _RUNNING_STATES:
                await qmp.execute(sock, "cont")

    # -- hotplug ----------------------------------------------------------------------------
    async def _hotplug_record(self, name: str) -> RuntimeRecord:
        record = await self._require(name)
        if record.migration:
            raise HypervisorError(f"instance {name} is being migrated; no hotplug now")
        return record

    async def hotplug_add(self, name: str, device: DiskSpec | NicSpec) -> None:
        if device.uuid is None:
            raise HypervisorError(f"cannot hot-plug into {name}: the device has no uuid")
        async with self._lock(name):
            record = await self._hotplug_record(name)
            files = self._files(name)
            hv = params.fill(record.spec.hvparams)
            entry: dict[str, Any]
            if isinstance(device, DiskSpec):
                if disks.is_uri(device.path):
                    disks.parse_nbd_uri(device.path)
                elif not os.path.exists(device.path):
                    raise HypervisorError(f"new disk of {name}: {device.path} not found")
                entry = {"kind": "disk", **await hotplug.add_disk(
                    files.qmp, hv, device.uuid, device.path, device.mode == "ro")}
                record.spec.disks.append(device)
            else:
                hotplug.check_nic_type(hv)
                taken = set(record.taps)
                tap = next(t for t in (tap_name(record.spec.uuid, i) for i in range(1000))
                           if t not in taken)
                await nics.setup_named(tap, device)
                try:
                    ids = await hotplug.add_nic(files.qmp, hv, device.uuid, device.mac, tap)
                except BaseException:
                    await nics.teardown([tap])
                    raise
                entry = {"kind": "nic", "tap": tap, **ids}
                record.spec.nics.append(device)
                record.taps.append(tap)
            record.hotplug[device.uuid] = entry
            record.hotplug["changed"] = True
            write_record(files.runtime, record)
            log.info("instance %s: hot-plugged %s %s", name, entry["kind"], device.uuid)

    async def hotplug_remove(self, name: str, kind: str, uuid: str, index: int) -> None:
        async with self._lock(name):
            record = await self._hotplug_record(name)
            files = self._files(name)
            hv = params.fill(record.spec.hvparams)
            items: list[Any] = record.spec.disks if kind == "disk" else record.spec.nics
            position = next((i for i, d in enumerate(items) if d.uuid == uuid), None)
            if position is None and 0 <= index < len(items) and items[index].uuid is None:
                position = index  # started before runtime specs named their devices
            if position is None:  # never plugged (added without --hotplug), or gone
                log.info("instance %s: no %s %s to unplug", name, kind, uuid)
                return
            item = items[position]
            entry = record.hotplug.get(uuid) or {}
            if kind == "disk":
                if entry:
                    await hotplug.remove_device(files.qmp, entry["device"])
                    with contextlib.suppress(HypervisorError):
                        await qmp.execute(files.qmp, "blockdev-del",
                                          {"node-name": entry["node"]})
                else:  # from the command line: its drive goes with its device
                    hotplug.check_disk_type(hv)
                    await hotplug.remove_device(files.qmp, await hotplug.cold_disk_device(
                        files.qmp, drive_id(hv["disk_type"], item.index)))
            else:
                hotplug.check_nic_type(hv)
                device = entry.get("device") or f"nic{item.index}"
                await hotplug.remove_device(files.qmp, device)
                with contextlib.suppress(HypervisorError):
                    await qmp.execute(files.qmp, "netdev_del",
                                      {"id": entry.get("netdev") or f"net{item.index}"})
                tap = entry.get("tap") or (record.taps[position]
                                           if position < len(record.taps) else None)
                if tap is not None:
                    await nics.teardown([tap])
                    record.taps = [t for t in record.taps if t != tap]
            del items[position]
            record.hotplug.pop(uuid, None)
            record.hotplug["changed"] = True
            write_record(files.runtime, record)
            log.info("instance %s: unplugged %s %s", name, kind, uuid)

    # -- grow-disk, rename ------------------------------------------------------------------
    async def grow_disk(self, name: str, index: int, size_bytes: int,
                        uuid: str | None = None) -> None:
        """QMP ``block_resize`` of the drive of disk ``index``: the guest's virtio (or other)
        device reports the new capacity at once. The volume has grown first (a file is longer,
        a loop device's size limit is raised, a mirror's export was served again at the new
        size), so QEMU only takes the size it already has. A disk read over NBD reconnects
        first (its export dropped it): its client knows the size it saw at connect time."""
        async with self._lock(name):
            record = await self._require(name)
            sock = self._files(name).qmp
            target = resize_target(record, index, uuid)
            path = disk_path(record, index, uuid)
            if path is not None and disks.is_uri(path):
                await hotplug.reconnect(sock, target)
            await qmp.execute(sock, "block_resize", {**target, "size": size_bytes},
                              timeout=30.0)

    async def rename(self, old: str, new: str) -> None:
        """Carry the running QEMU of ``old`` over to ``new``: the runtime record (with the new
        name in its spec) is written first, then pidfile, sockets and logs are renamed (a
        listening unix socket keeps serving under its new path; QEMU keeps writing the
        renamed console log through its open descriptor), then the old record goes. The
        guest notices nothing. :func:`is_our_qemu` accepts the pidfile QEMU was started with
        anywhere in this run directory, so the renamed instance stays recognised."""
        async with self._lock(old), self._lock(new):
            record = await self._require(old)
            src, dst = self._files(old), self._files(new)
            dst.check_socket_paths()
            taken = await self._live_record(new)
            if taken is not None or dst.runtime.exists():
                raise HypervisorError(f"instance {new} already has runtime files on this node")
            record.spec.name = new
            write_record(dst.runtime, record)
            for a, b in ((src.pidfile, dst.pidfile), (src.qmp, dst.qmp),
                         (src.serial, dst.serial), (src.serial_log, dst.serial_log),
                         (src.qemu_log, dst.qemu_log)):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(a, b)
            src.runtime.unlink(missing_ok=True)

    async def pause(self, name: str) -> None:
        """QMP ``stop``: QEMU drains and flushes every disk before the guest is stopped."""
        async with self._lock(name):
            await self._require(name)
            await qmp.execute(self._files(name).qmp, "stop", timeout=60)

    # -- live migration ---------------------------------------------------------------------
    async def accept_migration(self, spec: InstanceSpec, port: int,
                               listen_address: str) -> RuntimeInfo:
        """Target: start QEMU with this node's devices (own taps on its bridge, own disk
        paths), paused, listening for the state on ``listen_address:port``."""
        async with self._lock(spec.name):
            return await self._start(spec, paused=True, incoming=(listen_address, port))

    async def migrate(self, name: str, target_address: str, port: int, *, live: bool = True,
                      bandwidth_mibps: int | None = None, downtime_ms: int | None = None,
                      timeout: float | None = None,
                      then: Callable[[dict[str, Any]], Awaitable[None]] | None = None
                      ) -> dict[str, Any]:
        """Source: send the guest to ``target_address:port`` and wait for the outcome.

        ``timeout`` defaults to a few passes over the RAM at the bandwidth limit; after it the
        migration is cancelled. The lock is held only while starting, so abort_migration
        (another RPC) can cancel a migration that is under way. ``then``: run with the
        figures as soon as QEMU completed (the disks' hand-over), beside the runtime record's
        update; it may add to the figures and should not raise.
        """
        files = self._files(name)
        target = migration.uri(target_address, port)
        async with self._lock(name):
            record = await self._require(name)
            hv = params.fill(record.spec.hvparams)
            bandwidth = bandwidth_mibps or hv["migration_bandwidth"]
            downtime = downtime_ms or hv["migration_downtime"]
            if (record.migration or {}).get("role") == "target":
                raise HypervisorError(
                    f"instance {name} is an incoming migration on this node; finish it first")
            if record.hotplug.get("changed"):
                raise HypervisorError(
                    f"instance {name} had devices hot-plugged since it started: its hardware "
                    "differs from what the target would start; restart it (gnt-instance "
                    "reboot) before migrating")
            state = await qmp.query_status(files.qmp)
            current = (await migration.query(files.qmp)).get("status")
            if state not in ("running", "paused") or \
                    current not in (None, "none", *migration.FINAL_STATES):
                raise HypervisorError(f"cannot migrate {name}: QEMU state '{state}', "
                                      f"migration status '{current}'")
            requested = live
            plan = qemu_features.migration_plan(record.accel,
                                                (await self.detect_kvm()).qemu_version, live)
            if plan.note:
                log.warning("instance %s: %s", name, plan.note)
            live = plan.live
            record.migration = {"role": "source", "uri": target, "live": live,
                                "was_running": state == "running", "since": time.time()}
            write_record(files.runtime, record)
            started = time.monotonic()
            try:
                await migration.start(files.qmp, target_address, port,
                                      bandwidth_mibps=bandwidth, downtime_ms=downtime,
                                      stop_first=not live and state == "running")
            except BaseException:
                await self._resume_source(files, record)
                raise
        if timeout is None:
            timeout = migration.timeout_for(record.spec.memory, bandwidth)
        try:
            stamps: dict[str, float] = {}
            info = last = await migration.wait(files.qmp, timeout, bandwidth, stamps=stamps)
            timed_out = info.get("status") not in migration.FINAL_STATES
            if timed_out:
                log.warning("migration of %s to %s not done after %g s; cancelling",
                            name, target, timeout)
                info = await migration.cancel(files.qmp)
        except HypervisorError:
            with contextlib.suppress(HypervisorError):
                await self.abort_migration(name)
            raise
        result = {**migration.stats(info, paused_throughout=not live), "live": live,
                  "live_requested": requested, "live_note": plan.note, "target": target,
                  "bandwidth_mibps": bandwidth, "downtime_limit_ms": downtime,
                  "wall_time_ms": int((time.monotonic() - started) * 1000),
                  # wall clock: QEMU finished after the first and was seen finished by the second
                  "completed_after": stamps.get("final_after"),
                  "completed_by": stamps.get("final_by")}
        if result["status"] == "completed":
            async def mark() -> None:
                async with self._lock(name):  # re-read: abort_migration may have run meanwhile
                    current = read_record(files.runtime)
                    if current is not None and \
                            (current.migration or {}).get("role") == "source":
                        current.migration = {**(current.migration or {}), "status": "completed"}
                        await asyncio.to_thread(write_record, files.runtime, current)

            # the record (fsync'd) is only bookkeeping (QEMU itself says 'completed' to
            # whoever asks): the caller's next step, on which the guest's pause waits, runs
            # beside its write
            done = await asyncio.gather(mark(), *([then(result)] if then else []),
                                        return_exceptions=True)
            for outcome in done:
                if isinstance(outcome, BaseException):
                    raise outcome
            log.info("migrated %s to %s: %s", name, target, result)
            return result
        try:
            await self.abort_migration(name)
            after = "the instance stays on this node"
        except HypervisorError as exc:
            after = f"undoing it on this node failed too: {exc}"
        if timed_out:
            was = migration.stats(last)
            raise HypervisorError(
                f"migration of {name} to {target} did not finish within {timeout:g} s "
                f"({was['transferred_bytes'] >> 20} of {was['ram_total_bytes'] >> 20} MiB "
                f"sent, status '{was['status']}'); cancelled, {after}")
        raise HypervisorError(
            f"migration of {name} to {target} {result['status']}: "
            f"{info.get('error-desc') or 'QEMU gave no reason'}; {after}")

    async def _resume_source(self, files: InstanceFiles, record: RuntimeRecord) -> None:
        """Give the guest back to the source: cont if it ran before the migration."""
        was_running = (record.migration or {}).get("was_running", False)
        if was_running and await qmp.query_status(files.qmp) not in _RUNNING_STATES:
            await qmp.execute(files.qmp, "cont")
        record.migration = None
        write_record(files.runtime, record)

    async def _end_target(self, files: InstanceFiles, record: RuntimeRecord | None) -> None:
        if record is not None and is_our_qemu(record.pid, files, record.spec.uuid):
            await process.terminate(record.pid)
        await self._cleanup(files, record)

    async def abort_migration(self, name: str) -> None:
        """Target: kill the incoming QEMU. Source: cancel, and resume the guest if it ran."""
        async with self._lock(name):
            files = self._files(name)
            record = read_record(files.runtime)
            if record is None or not is_our_qemu(record.pid, files, record.spec.uuid):
                await self._cleanup(files, record)
                return
            if (record.migration or {}).get("role") == "target":
                await self._end_target(files, record)
                return
            info = await migration.cancel(files.qmp)
            if info.get("status") not in (None, "none", *migration.FINAL_STATES):
                raise HypervisorError(f"migration of {name} could not be cancelled "
                                      f"(status '{info.get('status')}')")
            await self._resume_source(files, record)

    async def finish_migration_source(self, name: str) -> None:
        """Source, after success: end the paused QEMU (it must have handed over), clean up."""
        async with self._lock(name):
            files = self._files(name)
            record = read_record(files.runtime)
            if record is None or not is_our_qemu(record.pid, files, record.spec.uuid):
                await self._cleanup(files, record)
                return
            status = (await migration.query(files.qmp)).get("status")
            state = await qmp.query_status(files.qmp)
            if status != "completed" or state in _RUNNING_STATES:
                raise HypervisorError(
                    f"not ending {name} here: its migration is '{status}' and the guest is "
                    f"'{state}' on this node (use abort_migration to keep it here)")
            # Nothing of the guest is left here: QEMU flushed and inactivated its disks when
            # the migration completed. Its main loop can hang on an NBD client reconnecting
            # to an export the disk hand-over removed (a primary's unix socket), so that
            # neither 'quit' nor SIGTERM ends it: 8 s of the first migration after a start
            # went into waiting for them (a clean quit takes ~0.1 s); so wait briefly and kill.
            with contextlib.suppress(HypervisorError):  # QEMU may exit before it answers
                await qmp.execute(files.qmp, "quit", timeout=0.5)
            if not await process.wait_gone(record.pid, 0.5):
                await process.terminate(record.pid, grace=0.2)
            await self._cleanup(files, record)

    async def finish_migration_target(
            self, name: str, success: bool,
            beforehand: Callable[[], Awaitable[Any]] | None = None) -> float | None:
        """Target: on success wait for the state to be loaded and resume the guest; on
        failure kill the incoming QEMU and remove its taps and files. The wall-clock time
        right after the resume (the end of the guest's pause), None when there was none.

        ``beforehand``: what must be done before the guest may run here (the disks turning
        primary), run while QMP connects and QEMU's incoming state is checked, so that
        their milliseconds overlap in the guest's pause. Its error is raised (before
        QEMU's; it is always let finish) and nothing resumes then."""
        async with self._lock(name):
            files = self._files(name)
            record = read_record(files.runtime)
            if not success:
                await self._end_target(files, record)
                return None
            if record is None or not is_our_qemu(record.pid, files, record.spec.uuid):
                await self._cleanup(files, record)
                raise HypervisorError(f"incoming QEMU of {name} is gone; migration failed")
            resumed = None
            prepared = asyncio.ensure_future(beforehand()) if beforehand else None
            try:
                async with qmp.connected(files.qmp) as run:  # the guest is paused meanwhile
                    state = await migration.wait_incoming_done(run, 30.0)
                    info = await run("query-migrate")
                    if prepared is not None:
                        await prepared
                    status = info.get("status") if isinstance(info, dict) else None
                    if status != "completed":
                        raise HypervisorError(f"incoming migration of {name} is '{status}' "
                                              f"(guest '{state}'); not resuming it")
                    if state not in _RUNNING_STATES:
                        await run("cont")
                        resumed = time.time()
            except BaseException:
                if prepared is not None:
                    await asyncio.wait([prepared])  # never left half-way
                    if not prepared.cancelled() and prepared.exception() is not None:
                        raise prepared.exception() from None  # type: ignore[misc]
                raise
            record.migration = None
            write_record(files.runtime, record)
            return resumed


def disk_path(record: RuntimeRecord, index: int, uuid: str | None) -> str | None:
    """Where the running QEMU reads the config's disk ``index`` (uuid ``uuid``) from: its
    runtime spec's path (a file, a device or an NBD URI); None if the spec has no such disk."""
    for disk in record.spec.disks:
        if uuid and disk.uuid == uuid:
            return disk.path
    if uuid is None:
        return next((d.path for d in record.spec.disks if d.index == index), None)
    return None


def resize_target(record: RuntimeRecord, index: int, uuid: str | None) -> dict[str, str]:
    """Which QEMU block node ``block_resize`` grows for the config's disk ``index`` (uuid
    ``uuid``): a hot-plugged disk has its own node name; a disk from the command line keeps
    the drive id of the position it was started at, which is no longer its config index once
    a disk before it was unplugged."""
    entry = record.hotplug.get(uuid) if uuid else None
    if isinstance(entry, dict) and entry.get("kind") == "disk":
        return {"node-name": str(entry["node"])}
    disk_type = str(params.fill(record.spec.hvparams).get("disk_type", "paravirtual"))
    started = next((d.index for d in record.spec.disks if uuid and d.uuid == uuid), index)
    return {"device": drive_id(disk_type, started)}
