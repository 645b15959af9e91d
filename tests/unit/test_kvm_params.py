"""kvm hvparams: Ganeti's names/defaults, value conversion and the error messages users see."""

from __future__ import annotations

import pytest

from herd.errors import ParameterError
from herd.hypervisor.base import get_hypervisor
from herd.hypervisor.kvm import Kvm, params
from herd.paths import HerdPaths


def test_defaults_follow_ganeti() -> None:
    d = Kvm.parameter_defaults()
    assert d["boot_order"] == "disk"
    assert d["nic_type"] == "paravirtual" and d["disk_type"] == "paravirtual"
    assert d["serial_console"] is True and d["serial_speed"] == 38400
    assert d["kernel_args"] == "ro" and d["root_path"] == "/dev/vda1"
    assert d["kernel_path"] == ""  # Herd: boot from disk unless a kernel is named
    assert d["kvm_flag"] == "" and d["reboot_behavior"] == "allow"
    assert d["migration_bandwidth"] == 128  # Herd: QEMU's default, Ganeti has 32
    assert d["migration_downtime"] == 30
    assert d["migration_port"] == 8102 and d["disk_cache"] == "default"
    for name in ("cdrom2_image_path", "floppy_image_path", "vnc_bind_address", "vnc_tls",
                 "keymap", "cpu_type", "cpu_cores", "cpu_threads", "cpu_sockets",
                 "machine_version", "acpi", "use_chroot", "security_model", "mem_path",
                 "usb_mouse", "kvm_extra", "vhost_net", "soundhw", "spice_bind"):
        assert name in d


def test_defaults_pass_their_own_check() -> None:
    assert Kvm.check_parameters(Kvm.parameter_defaults()) == Kvm.parameter_defaults()


def test_strings_are_normalized() -> None:
    out = Kvm.check_parameters({"acpi": "false", "serial_console": "True", "serial_speed": "115200",
                                "cpu_cores": " 2 ", "vhost_net": "yes"})
    assert out == {"acpi": False, "serial_console": True, "serial_speed": 115200,
                   "cpu_cores": 2, "vhost_net": True}


def test_unknown_name_lists_known() -> None:
    with pytest.raises(ParameterError, match=r"unknown hypervisor parameter 'foo' for kvm; "
                                             r"known: acpi, boot_order, "):
        Kvm.check_parameters({"foo": 1})


@pytest.mark.parametrize(("name", "value", "allowed"), [
    ("boot_order", "usb", "floppy, cdrom, disk, network"),
    ("disk_type", "nvme", "paravirtual, ide, scsi"),
    ("nic_type", "virtio", "rtl8139"),
    ("kvm_flag", "maybe", "'', enabled, disabled"),
    ("disk_cache", "unsafe", "default, none, writethrough, writeback"),
    ("reboot_behavior", "halt", "allow, exit"),
    ("acpi", "perhaps", "a boolean"),
    ("serial_speed", "fast", "an integer"),
    ("serial_speed", 0, "an integer >= 1"),
    ("migration_port", 70000, "<= 65535"),
    ("cpu_sockets", -1, "an integer >= 0"),
    ("kernel_path", "vmlinuz", "an absolute path"),
    ("vnc_bind_address", "not an ip!", "an IP address"),
    ("cpu_mask", "0-x", "'all'"),
    ("kvm_extra", "-foo 'unbalanced", "shell-like words"),
])
def test_bad_values_name_param_value_and_allowed(name: str, value: object, allowed: str) -> None:
    with pytest.raises(ParameterError) as exc:
        Kvm.check_parameters({name: value})
    msg = str(exc.value)
    assert f"'{name}'" in msg and repr(value).strip("'") in msg and allowed in msg


def test_good_values() -> None:
    out = Kvm.check_parameters({"vnc_bind_address": "0.0.0.0", "cpu_mask": "0-1:1",
                                "boot_order": "network", "kvm_flag": "disabled",
                                "kernel_path": "/boot/vmlinuz"})
    assert out["boot_order"] == "network"
    assert Kvm.check_parameters({"vnc_bind_address": "eth0"}) == {"vnc_bind_address": "eth0"}


def test_combinations() -> None:
    with pytest.raises(ParameterError, match="security_domain"):
        Kvm.check_parameters({"security_model": "user", "security_domain": ""})
    with pytest.raises(ParameterError, match="disk_cache=none"):
        Kvm.check_parameters({"disk_aio": "native", "disk_cache": "writeback"})


def test_fill_overlays_defaults() -> None:
    hv = params.fill({"boot_order": "cdrom", "cdrom_image_path": "/x.iso"})
    assert hv["boot_order"] == "cdrom" and hv["nic_type"] == "paravirtual"


def test_get_hypervisor(tmp_path) -> None:
    assert get_hypervisor("kvm", HerdPaths(tmp_path)).name == "kvm"
    assert get_hypervisor("fake", HerdPaths(tmp_path)).name == "fake"
    with pytest.raises(ParameterError, match="unknown hypervisor 'xen-pvm'"):
        get_hypervisor("xen-pvm", HerdPaths(tmp_path))
