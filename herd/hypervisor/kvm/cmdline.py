"""Build the QEMU command line of an instance from its spec and effective hvparams.

A pure function of its inputs (no probing, no files touched) so unit tests can pin every flag
without QEMU. Everything node-specific -- acceleration, file paths, tap names, display ports --
is decided by the caller and passed in. The mapping follows Ganeti's kvm hypervisor so that a
given set of hvparams means the same guest hardware as under Ganeti.

Every value that lands inside one of QEMU's comma-separated option lists (``-drive file=...``,
``-object ...,dir=...``, ``-chardev ...,path=...``, ``-machine type=...``) goes through
:func:`escape`, which doubles commas: otherwise ``cdrom_image_path=/x/e.iso,snapshot=on`` names
an existing file for noded's check while QEMU opens ``/x/e.iso`` with ``snapshot=on`` -- the
checked path would not be the opened path. Values QEMU takes as whole arguments (``-kernel``,
``-initrd``, ``-mem-path``, ``-k``, ``-runas``) need no escaping.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from herd.errors import HypervisorError
from herd.hypervisor.base import InstanceSpec
from herd.hypervisor.kvm.disks import escape, source_options
from herd.hypervisor.kvm.runtime import InstanceFiles

#: Ganeti's boot_order values -> QEMU's -boot letters.
BOOT_LETTER = {"floppy": "a", "cdrom": "d", "disk": "c", "network": "n"}
#: Ganeti's nic_type values -> QEMU device models.
NIC_MODEL = {"paravirtual": "virtio-net-pci", "rtl8139": "rtl8139", "ne2k_pci": "ne2k_pci",
             "ne2k_isa": "ne2k_isa", "i82551": "i82551", "i82557b": "i82557b",
             "i82559er": "i82559er", "pcnet": "pcnet", "e1000": "e1000"}
#: Ganeti's disk_type values -> QEMU's -drive if= interfaces.
DRIVE_IF = {"paravirtual": "virtio", "ide": "ide", "scsi": "scsi", "sd": "sd", "mtd": "mtd",
            "pflash": "pflash"}


@dataclass
class LaunchContext:
    """Node-side decisions the command line depends on."""

    files: InstanceFiles
    accel: str  # 'kvm' | 'tcg'
    binary: str = "qemu-system-x86_64"
    taps: list[str] = field(default_factory=list)  # one per spec.nics, same order
    vnc_address: str | None = None  # resolved IP when VNC is on
    vnc_port: int | None = None
    spice_address: str | None = None
    spice_port: int | None = None
    paused: bool = False
    #: Set on a migration target: QEMU waits for the incoming state ('-incoming defer'; the
    #: listening address is given later with QMP migrate-incoming).
    incoming: bool = False


def kernel_append(hv: dict[str, Any]) -> str:
    """Ganeti's -append: root=<root_path> first, then kernel_args, then the serial console."""
    parts = []
    if hv["root_path"]:
        parts.append(f"root={hv['root_path']}")
    if hv["kernel_args"]:
        parts.append(hv["kernel_args"])
    if hv["serial_console"]:
        parts.append(f"console=ttyS0,{hv['serial_speed']}")
    return " ".join(parts)


def _machine(hv: dict[str, Any]) -> list[str]:
    opts = []
    if hv["machine_version"]:
        opts.append(f"type={escape(hv['machine_version'])}")
    if not hv["acpi"]:
        opts.append("acpi=off")
    return ["-machine", ",".join(opts)] if opts else []


def _smp(spec: InstanceSpec, hv: dict[str, Any]) -> list[str]:
    smp = [str(spec.vcpus)]
    for key in ("sockets", "cores", "threads"):
        if hv[f"cpu_{key}"]:
            smp.append(f"{key}={hv[f'cpu_{key}']}")
    return ["-smp", ",".join(smp)]


def _serial(hv: dict[str, Any], files: InstanceFiles) -> list[str]:
    if not hv["serial_console"]:
        return ["-serial", "none"]
    return ["-chardev", f"socket,id=serial0,path={escape(str(files.serial))},server=on,"
                        f"wait=off,logfile={escape(str(files.serial_log))},logappend=on",
            "-serial", "chardev:serial0"]


def _boot(hv: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    if hv["kernel_path"]:
        argv += ["-kernel", hv["kernel_path"]]
        if hv["initrd_path"]:
            argv += ["-initrd", hv["initrd_path"]]
        argv += ["-append", kernel_append(hv)]
    argv += ["-boot", f"order={BOOT_LETTER[hv['boot_order']]}"]
    return argv


def drive_id(disk_type: str, index: int) -> str:
    """The id QEMU gives a ``-drive`` without one (blockdev.c's rule: interfaces with buses
    name bus, media and unit, ``ide0-hd1``; the others only the unit, ``virtio0``): how
    query-blockstats names an instance's disk ``index``."""
    iface = DRIVE_IF.get(disk_type, disk_type)
    per_bus = {"ide": 2, "scsi": 7}.get(iface)
    if per_bus:
        return f"{iface}{index // per_bus}-hd{index % per_bus}"
    return f"{iface}{index}"


def _disks(spec: InstanceSpec, hv: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    iface = DRIVE_IF[hv["disk_type"]]
    for disk in sorted(spec.disks, key=lambda d: d.index):
        opts = [*source_options(disk.path), "format=raw", f"if={iface}", f"index={disk.index}"]
        if hv["disk_cache"] != "default":
            opts.append(f"cache={hv['disk_cache']}")
        if hv["disk_aio"] != "threads":
            opts.append(f"aio={hv['disk_aio']}")
        if disk.mode == "ro":
            opts.append("readonly=on")
        argv += ["-drive", ",".join(opts)]
    return argv


def _removable(hv: dict[str, Any]) -> list[str]:
    """CD-ROMs at IDE index 2 and 3 (as Ganeti does, leaving 0/1 for IDE disks), floppy."""
    argv: list[str] = []
    cd_if = DRIVE_IF[hv["cdrom_disk_type"] or "ide"]
    for index, key in ((2, "cdrom_image_path"), (3, "cdrom2_image_path")):
        if hv[key]:
            opts = [f"file={escape(hv[key])}", "format=raw", "media=cdrom", "readonly=on",
                    f"if={cd_if}"]
            if cd_if == "ide":
                opts.append(f"index={index}")
            argv += ["-drive", ",".join(opts)]
    if hv["floppy_image_path"]:
        argv += ["-drive", f"file={escape(hv['floppy_image_path'])},format=raw,if=floppy"]
    return argv


def _nics(spec: InstanceSpec, hv: dict[str, Any], taps: list[str]) -> list[str]:
    if len(taps) != len(spec.nics):
        raise HypervisorError(f"internal error: {len(spec.nics)} NICs but {len(taps)} taps")
    argv: list[str] = []
    model = NIC_MODEL[hv["nic_type"]]
    virtio = hv["nic_type"] == "paravirtual"
    for nic, tap in zip(spec.nics, taps, strict=True):
        netdev = [f"tap,id=net{nic.index},ifname={tap},script=no,downscript=no"]
        if virtio:
            netdev.append(f"vnet_hdr={'on' if hv['vnet_hdr'] else 'off'}")
            if hv["vhost_net"]:
                netdev.append("vhost=on")
        argv += ["-netdev", ",".join(netdev),
                 "-device", f"{model},netdev=net{nic.index},mac={nic.mac},id=nic{nic.index}"]
    return argv


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _display(hv: dict[str, Any], ctx: LaunchContext) -> list[str]:
    argv = ["-display", "none"]
    graphics = ctx.vnc_port is not None or ctx.spice_port is not None
    if hv["vga"]:
        argv += ["-vga", hv["vga"]]
    elif graphics:
        argv += ["-vga", "std"]
    if ctx.vnc_port is not None and ctx.vnc_address is not None:
        vnc = f"{_host(ctx.vnc_address)}:{ctx.vnc_port - 5900}"
        if hv["vnc_tls"]:
            verify = "on" if hv["vnc_x509_verify"] else "off"
            creds = "tls-creds-anon,id=vnctls0,endpoint=server"
            if hv["vnc_x509_path"]:
                creds = (f"tls-creds-x509,id=vnctls0,endpoint=server,"
                         f"dir={escape(hv['vnc_x509_path'])},verify-peer={verify}")
            argv += ["-object", creds]
            vnc += ",tls-creds=vnctls0"
        if hv["vnc_password_file"]:
            vnc += ",password=on"
        argv += ["-vnc", vnc]
    if ctx.spice_port is not None and ctx.spice_address is not None:
        spice = [f"port={ctx.spice_port}", f"addr={ctx.spice_address}"]
        if hv["spice_ip_version"]:
            spice.append(f"ipv{hv['spice_ip_version']}=on")
        if not hv["spice_password_file"]:
            spice.append("disable-ticketing=on")
        for key, opt in (("spice_image_compression", "image-compression"),
                         ("spice_jpeg_wan_compression", "jpeg-wan-compression"),
                         ("spice_zlib_glz_wan_compression", "zlib-glz-wan-compression"),
                         ("spice_streaming_video", "streaming-video")):
            if hv[key]:
                spice.append(f"{opt}={hv[key]}")
        spice.append(f"playback-compression={'on' if hv['spice_playback_compression'] else 'off'}")
        argv += ["-spice", ",".join(spice)]
        if hv["spice_use_vdagent"]:
            argv += ["-device", "virtio-serial-pci",
                     "-chardev", "spicevmc,id=vdagent,name=vdagent",
                     "-device", "virtserialport,chardev=vdagent,name=com.redhat.spice.0"]
    if graphics and hv["keymap"]:
        argv += ["-k", hv["keymap"]]
    return argv


def _devices(hv: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    usb = [d for d in hv["usb_devices"].split(",") if d.strip()]
    if hv["usb_mouse"] or usb:
        argv += ["-usb"]
    if hv["usb_mouse"]:
        argv += ["-device", f"usb-{hv['usb_mouse']}"]
    for dev in usb:
        argv += ["-usbdevice", dev.strip()]
    for model in (m.strip() for m in hv["soundhw"].split(",") if m.strip()):
        if "audiodev" not in " ".join(argv):
            argv += ["-audiodev", "none,id=snd0"]
        if model == "hda":
            argv += ["-device", "intel-hda", "-device", "hda-duplex,audiodev=snd0"]
        else:
            argv += ["-device", f"{model},audiodev=snd0"]
    return argv


def build_argv(spec: InstanceSpec, hv: dict[str, Any], ctx: LaunchContext) -> list[str]:
    """The full argv (binary first) for ``spec`` with effective hvparams ``hv``."""
    if ctx.accel not in ("kvm", "tcg"):
        raise HypervisorError(f"internal error: accel must be kvm or tcg, not {ctx.accel!r}")
    files = ctx.files
    argv = [hv["kvm_path"] or ctx.binary,
            "-name", spec.name, "-uuid", spec.uuid,
            "-accel", ctx.accel,
            *_machine(hv),
            "-m", str(spec.memory),
            *_smp(spec, hv)]
    if hv["cpu_type"]:
        argv += ["-cpu", hv["cpu_type"]]
    argv += ["-nodefaults", "-no-user-config",
             "-daemonize", "-pidfile", str(files.pidfile),
             "-qmp", f"unix:{escape(str(files.qmp))},server=on,wait=off"]
    argv += _serial(hv, files)
    argv += _display(hv, ctx)
    if hv["mem_path"]:
        argv += ["-mem-path", hv["mem_path"]]
    if hv["use_localtime"]:
        argv += ["-rtc", "base=localtime"]
    if hv["reboot_behavior"] == "exit":
        argv += ["-no-reboot"]
    if hv["security_model"] == "user":
        argv += ["-runas", hv["security_domain"]]
    if hv["use_chroot"]:
        argv += ["-chroot", str(files.chroot_dir)]
    argv += _boot(hv)
    argv += _disks(spec, hv)
    argv += _removable(hv)
    argv += _nics(spec, hv, ctx.taps)
    argv += _devices(hv)
    if ctx.paused or ctx.incoming:
        argv += ["-S"]  # an incoming guest stays paused until finish_migration_target
    if ctx.incoming:
        argv += ["-incoming", "defer"]
    if hv["kvm_extra"]:
        argv += shlex.split(hv["kvm_extra"])
    return argv
