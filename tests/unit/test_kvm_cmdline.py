"""QEMU command lines built from specs and hvparams, without running QEMU."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.errors import HypervisorError
from herd.hypervisor.base import DiskSpec, InstanceSpec, NicSpec
from herd.hypervisor.kvm import params
from herd.hypervisor.kvm.cmdline import LaunchContext, build_argv, kernel_append
from herd.hypervisor.kvm.runtime import InstanceFiles

RUN = Path("/r/var/run/herd/kvm")


def _spec(**hv: object) -> InstanceSpec:
    return InstanceSpec(name="inst1.example.com", uuid="12345678-aaaa-bbbb-cccc-1234567890ab",
                        memory=512, vcpus=2, hvparams=dict(hv),
                        disks=[DiskSpec(0, "/srv/d0"), DiskSpec(1, "/srv/d1", "ro")],
                        nics=[NicSpec(0, "aa:00:00:11:22:33", "bridged", "br0")])


def _argv(spec: InstanceSpec, **ctx: object) -> list[str]:
    c = LaunchContext(files=InstanceFiles(RUN, spec.name), accel="tcg", taps=["hd12345678n0"])
    for k, v in ctx.items():
        setattr(c, k, v)
    return build_argv(spec, params.fill(spec.hvparams), c)


def _opt(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def test_basics() -> None:
    argv = _argv(_spec())
    assert argv[0] == "qemu-system-x86_64"
    assert _opt(argv, "-accel") == ["tcg"]
    assert _opt(argv, "-name") == ["inst1.example.com"]
    assert _opt(argv, "-uuid") == ["12345678-aaaa-bbbb-cccc-1234567890ab"]
    assert _opt(argv, "-m") == ["512"] and _opt(argv, "-smp") == ["2"]
    assert "-daemonize" in argv and "-nodefaults" in argv
    assert _opt(argv, "-pidfile") == [str(RUN / "inst1.example.com.pid")]
    assert _opt(argv, "-qmp") == [f"unix:{RUN}/inst1.example.com.qmp,server=on,wait=off"]
    assert _opt(argv, "-display") == ["none"]
    assert "-S" not in argv and "-no-reboot" not in argv and "-vnc" not in argv
    assert _opt(argv, "-boot") == ["order=c"]
    assert "-kernel" not in argv


def test_accel_kvm_and_paused() -> None:
    argv = _argv(_spec(), accel="kvm", paused=True)
    assert _opt(argv, "-accel") == ["kvm"] and "-S" in argv


def test_serial_console() -> None:
    argv = _argv(_spec())
    chardev = _opt(argv, "-chardev")[0]
    assert chardev.startswith(f"socket,id=serial0,path={RUN}/inst1.example.com.serial,"
                              "server=on,wait=off,logfile=")
    assert _opt(argv, "-serial") == ["chardev:serial0"]
    assert _opt(_argv(_spec(serial_console=False)), "-serial") == ["none"]


def test_kernel_boot() -> None:
    argv = _argv(_spec(kernel_path="/k", initrd_path="/i", kernel_args="ro quiet",
                       serial_speed=115200))
    assert _opt(argv, "-kernel") == ["/k"] and _opt(argv, "-initrd") == ["/i"]
    assert _opt(argv, "-append") == ["root=/dev/vda1 ro quiet console=ttyS0,115200"]
    hv = params.fill({"root_path": "", "serial_console": False})
    assert kernel_append(hv) == "ro"


def test_disks_and_cache() -> None:
    argv = _argv(_spec(disk_cache="none", disk_aio="native"))
    assert _opt(argv, "-drive") == [
        "file=/srv/d0,format=raw,if=virtio,index=0,cache=none,aio=native",
        "file=/srv/d1,format=raw,if=virtio,index=1,cache=none,aio=native,readonly=on"]
    assert _opt(_argv(_spec(disk_type="ide")), "-drive")[0] == \
        "file=/srv/d0,format=raw,if=ide,index=0"


def test_cdrom_and_boot_order() -> None:
    argv = _argv(_spec(boot_order="cdrom", cdrom_image_path="/iso/a.iso",
                       cdrom2_image_path="/iso/b.iso"))
    drives = _opt(argv, "-drive")
    assert "file=/iso/a.iso,format=raw,media=cdrom,readonly=on,if=ide,index=2" in drives
    assert "file=/iso/b.iso,format=raw,media=cdrom,readonly=on,if=ide,index=3" in drives
    assert _opt(argv, "-boot") == ["order=d"]
    assert _opt(_argv(_spec(boot_order="network")), "-boot") == ["order=n"]


def test_nics() -> None:
    argv = _argv(_spec(vhost_net=True))
    assert _opt(argv, "-netdev") == [
        "tap,id=net0,ifname=hd12345678n0,script=no,downscript=no,vnet_hdr=on,vhost=on"]
    assert _opt(argv, "-device") == ["virtio-net-pci,netdev=net0,mac=aa:00:00:11:22:33,id=nic0"]
    argv = _argv(_spec(nic_type="e1000"))
    assert _opt(argv, "-netdev") == ["tap,id=net0,ifname=hd12345678n0,script=no,downscript=no"]
    assert _opt(argv, "-device")[0].startswith("e1000,netdev=net0,")
    with pytest.raises(HypervisorError):
        _argv(_spec(), taps=[])


def test_vnc_and_keymap() -> None:
    argv = _argv(_spec(vnc_bind_address="0.0.0.0", keymap="de"), vnc_address="0.0.0.0",
                 vnc_port=5903)
    assert _opt(argv, "-vnc") == ["0.0.0.0:3"]
    assert _opt(argv, "-vga") == ["std"] and _opt(argv, "-k") == ["de"]
    argv = _argv(_spec(vnc_bind_address="::1", vnc_tls=True, vnc_x509_path="/x",
                       vnc_password_file="/p"), vnc_address="::1", vnc_port=5900)
    assert _opt(argv, "-vnc") == ["[::1]:0,tls-creds=vnctls0,password=on"]
    assert _opt(argv, "-object")[0].startswith("tls-creds-x509,id=vnctls0")


def test_misc_flags() -> None:
    argv = _argv(_spec(reboot_behavior="exit", acpi=False, machine_version="q35",
                       cpu_type="host", cpu_cores=2, cpu_sockets=1, use_localtime=True,
                       mem_path="/hugepages", usb_mouse="tablet", kvm_extra="-foo 'a b'"))
    assert "-no-reboot" in argv
    assert _opt(argv, "-machine") == ["type=q35,acpi=off"]
    assert _opt(argv, "-cpu") == ["host"] and _opt(argv, "-smp") == ["2,sockets=1,cores=2"]
    assert _opt(argv, "-rtc") == ["base=localtime"]
    assert _opt(argv, "-mem-path") == ["/hugepages"]
    assert "usb-tablet" in _opt(argv, "-device")
    assert argv[-2:] == ["-foo", "a b"]


def test_kvm_path_overrides_binary() -> None:
    assert _argv(_spec(kvm_path="/opt/qemu/bin/qemu"))[0] == "/opt/qemu/bin/qemu"


def _qemu_opts(text: str) -> list[tuple[str, str]]:
    """Split an option list as QEMU's QemuOpts does: ',' separates, ',,' is a literal comma."""
    items, cur, i = [], "", 0
    while i < len(text):
        if text[i] == ",":
            if text[i + 1:i + 2] == ",":
                cur += ","
                i += 2
                continue
            items.append(cur)
            cur = ""
        else:
            cur += text[i]
        i += 1
    items.append(cur)
    return [tuple(item.split("=", 1)) if "=" in item else (item, "") for item in items]


EVIL = "/x/e.iso,snapshot=on,file.locking=off"


@pytest.mark.parametrize(("hv", "flag", "key"), [
    ({"cdrom_image_path": EVIL}, "-drive", "file"),
    ({"cdrom2_image_path": EVIL}, "-drive", "file"),
    ({"floppy_image_path": EVIL}, "-drive", "file"),
    ({"vnc_tls": True, "vnc_x509_path": EVIL}, "-object", "dir"),
    ({"machine_version": "pc,kernel-irqchip=off"}, "-machine", "type"),
])
def test_comma_in_a_value_is_not_an_option(hv: dict[str, object], flag: str, key: str) -> None:
    """The path noded checks is the path QEMU opens: commas are doubled, so a value cannot add
    options (snapshot=on, locking off, another file) to the list it is written into."""
    value = next(iter(v for v in hv.values() if isinstance(v, str)))
    argv = _argv(_spec(**hv), vnc_address="127.0.0.1", vnc_port=5900)
    lists = [_qemu_opts(text) for text in _opt(argv, flag)]
    mine = [opts for opts in lists if (key, value) in opts]
    assert len(mine) == 1, lists
    keys = [k for k, _ in mine[0]]
    assert "snapshot" not in keys and "file.locking" not in keys and "kernel-irqchip" not in keys


def test_own_socket_paths_are_escaped_too() -> None:
    spec = InstanceSpec(name="a", uuid="u", memory=64, vcpus=1, hvparams={})
    files = InstanceFiles(Path("/r,x=1"), "a")
    argv = build_argv(spec, params.fill({}), LaunchContext(files=files, accel="tcg"))
    first, *rest = _qemu_opts(_opt(argv, "-qmp")[0])
    assert "=".join(first).rstrip("=") == "unix:/r,x=1/a.qmp"
    assert [k for k, _ in rest] == ["server", "wait"]
    chardev = dict(_qemu_opts(_opt(argv, "-chardev")[0]))
    assert chardev["path"] == str(files.serial) and "x" not in chardev


@pytest.mark.parametrize(("key", "value"), [
    ("soundhw", "ac97,addr=0x1f"), ("soundhw", "hda;x"),
    ("cdrom_image_path", "/x/a.iso\nsnapshot=on"), ("kernel_path", "/boot/vmlinuz\t"),
])
def test_values_that_would_smuggle_options_are_refused(key: str, value: str) -> None:
    from herd.errors import ParameterError

    with pytest.raises(ParameterError) as exc:
        params.check_parameters({key: value})
    assert key in exc.value.message and "\n" not in exc.value.message


def test_sound_models_still_pass() -> None:
    argv = _argv(_spec(soundhw="hda,ac97"))
    assert "hda-duplex,audiodev=snd0" in _opt(argv, "-device")
    assert "ac97,audiodev=snd0" in _opt(argv, "-device")
