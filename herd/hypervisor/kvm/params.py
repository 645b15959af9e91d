"""The kvm hvparams: Ganeti's names, defaults and allowed values, checked in one place.

Herd is a drop-in replacement for Ganeti, so existing clusters' ``-H`` options and RAPI bodies
must mean the same thing here. Values arrive as strings from the command line (``-H acpi=false``)
or typed from RAPI/config; :func:`check_parameters` accepts both and returns typed values, so the
rest of Herd only ever sees booleans as ``bool`` and numbers as ``int``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from herd.errors import ParameterError

BOOT_ORDERS = ("floppy", "cdrom", "disk", "network")
DISK_TYPES = ("paravirtual", "ide", "scsi", "sd", "mtd", "pflash")
NIC_TYPES = ("rtl8139", "ne2k_pci", "ne2k_isa", "paravirtual", "i82551", "i82557b",
             "i82559er", "pcnet", "e1000")
DISK_CACHES = ("default", "none", "writethrough", "writeback")
DISK_AIO = ("threads", "native")
SECURITY_MODELS = ("none", "user", "pool")
REBOOT_BEHAVIORS = ("allow", "exit")
MIGRATION_MODES = ("live", "non-live")
KVM_FLAGS = ("", "enabled", "disabled")
USB_MICE = ("", "mouse", "tablet")
SPICE_IP_VERSIONS = (0, 4, 6)
SPICE_IMAGE_COMPRESSIONS = ("", "auto_glz", "auto_lz", "quic", "glz", "lz", "off")
SPICE_WAN_COMPRESSIONS = ("", "auto", "never", "always")
SPICE_VIDEO_STREAMING = ("", "off", "all", "filter")

_TRUE = {"true", "yes", "y", "on", "1", "enabled"}
_FALSE = {"false", "no", "n", "off", "0", "disabled"}
_IFNAME = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
_CPU_RANGE = re.compile(r"^\d+(-\d+)?$")
_MODEL = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Param:
    """One hvparam: its default, how to convert a raw value, and what is allowed (for errors)."""

    default: Any
    convert: Callable[[str, Any], Any]


def _bad(name: str, value: Any, allowed: str) -> ParameterError:
    return ParameterError(
        f"invalid value {value!r} for hypervisor parameter '{name}': expected {allowed}")


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _bad(name, value, "a boolean (true/false)")


def _int(minimum: int, maximum: int | None = None) -> Callable[[str, Any], int]:
    def convert(name: str, value: Any) -> int:
        if isinstance(value, bool):
            raise _bad(name, value, "an integer")
        try:
            n = int(value.strip()) if isinstance(value, str) else int(value)
        except (TypeError, ValueError):
            n = None
        if n is None or (isinstance(value, float) and value != n):
            raise _bad(name, value, "an integer")
        upper = "" if maximum is None else f" and <= {maximum}"
        if n < minimum or (maximum is not None and n > maximum):
            raise _bad(name, value, f"an integer >= {minimum}{upper}")
        return n
    return convert


def _str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _bad(name, value, "a string")
    return value


def _choice(choices: tuple[Any, ...]) -> Callable[[str, Any], Any]:
    def convert(name: str, value: Any) -> Any:
        if isinstance(choices[0], int):
            value = _int(0)(name, value)
        elif isinstance(value, str):
            value = value.strip()
        if value not in choices:
            shown = ", ".join(repr(c) if c == "" else str(c) for c in choices)
            raise _bad(name, value, f"one of {shown}")
        return value
    return convert


def _path(name: str, value: Any) -> str:
    """Empty (unset) or an absolute path, as Ganeti requires for its *_path parameters.

    Control characters are refused: a path is shown in one-line errors and logs. Commas are
    allowed (they are legal in file names) and escaped where QEMU parses option lists.
    """
    value = _str(name, value)
    if value and not value.startswith("/"):
        raise _bad(name, value, "an absolute path or an empty string")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise _bad(name, value, "a path without control characters")
    return value


def _device_models(name: str, value: Any) -> str:
    """A comma-separated list of QEMU device model names (each becomes one ``-device``).

    A model name is letters, digits, '_', '.', '-': anything else (``ac97,addr=0x1f``) would
    smuggle device properties into the command line.
    """
    value = _str(name, value)
    if not all(_MODEL.fullmatch(m.strip()) for m in value.split(",") if m.strip()):
        raise _bad(name, value, "device model names (letters, digits, '_', '.', '-') "
                                "separated by commas")
    return value


def _bind_address(name: str, value: Any) -> str:
    """Empty, an IP address, or a network interface name (Ganeti accepts both)."""
    value = _str(name, value).strip()
    if not value:
        return value
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _IFNAME.match(value):
            raise _bad(name, value, "an IP address, an interface name or empty") from None
    return value


def _cpu_mask(name: str, value: Any) -> str:
    """'all', a CPU list like '0-2,5', or one such list per vCPU separated by ':'."""
    value = _str(name, value).strip()
    for part in value.split(":"):
        if part == "all":
            continue
        if not part or not all(_CPU_RANGE.match(r) for r in part.split(",")):
            raise _bad(name, value,
                       "'all', a CPU list like '0-2,5', or one list per vCPU joined by ':'")
    return value


def _kvm_extra(name: str, value: Any) -> str:
    import shlex

    value = _str(name, value)
    try:
        shlex.split(value)
    except ValueError as exc:
        raise _bad(name, value, f"shell-like words ({exc})") from None
    return value


PARAMS: dict[str, Param] = {
    # Ganeti's default is /usr/bin/kvm; on Debian that wrapper forces KVM, which Herd must not
    # do (kvm_flag decides), so '' means "qemu-system-x86_64 from PATH".
    "kvm_path": Param("", _path),
    # Ganeti's default is /boot/vmlinuz-3-kvmU; Herd boots from the instance's disk unless a
    # kernel is named, because no such kernel exists on a fresh node.
    "kernel_path": Param("", _path),
    "initrd_path": Param("", _path),
    "kernel_args": Param("ro", _str),
    "root_path": Param("/dev/vda1", _str),
    "acpi": Param(True, _bool),
    "serial_console": Param(True, _bool),
    "serial_speed": Param(38400, _int(1)),
    "vnc_bind_address": Param("", _bind_address),
    "vnc_tls": Param(False, _bool),
    "vnc_x509_path": Param("", _path),
    "vnc_x509_verify": Param(False, _bool),
    "vnc_password_file": Param("", _path),
    "spice_bind": Param("", _bind_address),
    "spice_ip_version": Param(0, _choice(SPICE_IP_VERSIONS)),
    "spice_password_file": Param("", _path),
    "spice_image_compression": Param("", _choice(SPICE_IMAGE_COMPRESSIONS)),
    "spice_jpeg_wan_compression": Param("", _choice(SPICE_WAN_COMPRESSIONS)),
    "spice_zlib_glz_wan_compression": Param("", _choice(SPICE_WAN_COMPRESSIONS)),
    "spice_streaming_video": Param("", _choice(SPICE_VIDEO_STREAMING)),
    "spice_playback_compression": Param(True, _bool),
    "spice_use_tls": Param(False, _bool),
    "spice_tls_ciphers": Param("HIGH:-DES:-3DES:-EXPORT:-DH", _str),
    "spice_use_vdagent": Param(True, _bool),
    "floppy_image_path": Param("", _path),
    "cdrom_image_path": Param("", _path),
    "cdrom2_image_path": Param("", _path),
    "boot_order": Param("disk", _choice(BOOT_ORDERS)),
    "nic_type": Param("paravirtual", _choice(NIC_TYPES)),
    "disk_type": Param("paravirtual", _choice(DISK_TYPES)),
    "cdrom_disk_type": Param("", _choice(("", *DISK_TYPES))),
    "usb_mouse": Param("", _choice(USB_MICE)),
    "keymap": Param("", _str),
    "migration_port": Param(8102, _int(1, 65535)),
    # MiB/s: QEMU's own default since 2.x, not Ganeti's 32 (a quarter of the 1 GbE links of its
    # time): at 32 the memory copy alone of a 128 MiB guest outlasts a 2 s migration
    "migration_bandwidth": Param(128, _int(1)),
    "migration_downtime": Param(30, _int(1)),
    "migration_mode": Param("live", _choice(MIGRATION_MODES)),
    "use_localtime": Param(False, _bool),
    "disk_cache": Param("default", _choice(DISK_CACHES)),
    "disk_aio": Param("threads", _choice(DISK_AIO)),
    "security_model": Param("none", _choice(SECURITY_MODELS)),
    "security_domain": Param("", _str),
    "kvm_flag": Param("", _choice(KVM_FLAGS)),
    "vhost_net": Param(False, _bool),
    "use_chroot": Param(False, _bool),
    "mem_path": Param("", _path),
    "reboot_behavior": Param("allow", _choice(REBOOT_BEHAVIORS)),
    "cpu_mask": Param("all", _cpu_mask),
    "cpu_type": Param("", _str),
    "cpu_cores": Param(0, _int(0)),
    "cpu_threads": Param(0, _int(0)),
    "cpu_sockets": Param(0, _int(0)),
    "soundhw": Param("", _device_models),
    "usb_devices": Param("", _str),
    "vga": Param("", _str),
    "kvm_extra": Param("", _kvm_extra),
    "machine_version": Param("", _str),
    "vnet_hdr": Param(True, _bool),
}


def parameter_defaults() -> dict[str, Any]:
    """A fresh copy of every kvm hvparam with its default."""
    return {name: p.default for name, p in PARAMS.items()}


def check_parameters(hvparams: dict[str, Any]) -> dict[str, Any]:
    """Validate the names and values of a (partial) hvparams dict; return it normalized."""
    out: dict[str, Any] = {}
    for name, value in hvparams.items():
        param = PARAMS.get(name)
        if param is None:
            raise ParameterError(
                f"unknown hypervisor parameter '{name}' for kvm; known: "
                + ", ".join(sorted(PARAMS)))
        out[name] = param.convert(name, value)
    _check_combinations(out)
    return out


def _check_combinations(p: dict[str, Any]) -> None:
    """Cross-parameter rules Ganeti enforces, checked only when both values are given."""
    if p.get("security_model") == "user" and "security_domain" in p \
            and not p["security_domain"]:
        raise ParameterError(
            "hypervisor parameter 'security_domain' must name a user when "
            "security_model is 'user'")
    if p.get("security_model") in ("none", "pool") and p.get("security_domain"):
        raise ParameterError(
            "hypervisor parameter 'security_domain' must be empty unless security_model "
            "is 'user'")
    if p.get("vnc_tls") is False and p.get("vnc_x509_path"):
        raise ParameterError("hypervisor parameter 'vnc_x509_path' needs vnc_tls=true")
    if p.get("boot_order") == "cdrom" and "cdrom_image_path" in p \
            and not p["cdrom_image_path"]:
        raise ParameterError(
            "hypervisor parameter boot_order=cdrom needs a cdrom_image_path")
    if p.get("disk_aio") == "native" and p.get("disk_cache") not in (None, "none"):
        raise ParameterError(
            "hypervisor parameter disk_aio=native needs disk_cache=none (QEMU requires direct "
            "I/O for native AIO)")


def fill(hvparams: dict[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with ``hvparams`` (checked): the effective values for a start."""
    return {**parameter_defaults(), **check_parameters(hvparams)}
