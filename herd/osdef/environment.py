"""The environment OS scripts run with (Ganeti's OS API variables).

Why: OS definitions written for Ganeti read everything from their environment and nothing
else (since Ganeti 2.5 the environment is cleaned), so Herd must build the same variables
with the same names, formats and presence rules as ganeti-os-interface(7) describes: e.g.
``DISK_N_NAME``/``NIC_N_IP`` only when set, ``NIC_N_BRIDGE`` only in bridged mode,
``*_FRONTEND_TYPE`` only when the hypervisor has ``disk_type``/``nic_type``, and
hypervisor/backend parameters as ``INSTANCE_HV_<name>``/``INSTANCE_BE_<name>`` with the
parameter name as is (Ganeti does not upper-case it) and the value as Python ``str()``.
"""

from __future__ import annotations

from typing import Any

from herd import errors
from herd.osdef.definition import OsDefinition

#: PATH given to scripts (Ganeti's hooks path): the node daemon's own PATH is not passed on.
SCRIPT_PATH = "/sbin:/bin:/usr/sbin:/usr/bin"

#: Disk templates whose disks are block devices on the node, and file-based ones
#: (``DISK_N_BACKEND_TYPE`` is ``block`` or ``file:<driver>`` for them).
BLOCK_TEMPLATES = frozenset({"plain", "drbd", "blockdev", "rbd", "ext"})
FILE_TEMPLATES = frozenset({"file", "sharedfile", "gluster"})
DEFAULT_FILE_DRIVER = "loop"


def _core_env(osdef: OsDefinition, variant: str | None, osparams: dict[str, str],
              debug_level: int) -> dict[str, str]:
    api = osdef.api_version
    # Variants exist from API 15 on; a bare OS name means the first declared variant.
    chosen = (variant or osdef.variants[0]) if (api >= 15 and osdef.variants) else ""
    env = {
        "OS_API_VERSION": str(api),
        "OS_NAME": osdef.name,
        "OS_VARIANT": chosen,
        "DEBUG_LEVEL": str(int(debug_level)),
        "PATH": SCRIPT_PATH,
    }
    for pname, pvalue in osparams.items():
        env[f"OSP_{pname.upper()}"] = str(pvalue)
    return env


def _disk_env(idx: int, disk: dict[str, Any], hvparams: dict[str, Any]) -> dict[str, str]:
    prefix = f"DISK_{idx}_"
    try:
        env = {prefix + "PATH": str(disk["path"]), prefix + "ACCESS": str(disk["mode"]),
               prefix + "UUID": str(disk["uuid"])}
    except KeyError as exc:
        raise errors.ProgrammerError(f"disk {idx} lacks key {exc}") from None
    if disk.get("name"):
        env[prefix + "NAME"] = str(disk["name"])
    if "disk_type" in hvparams:
        env[prefix + "FRONTEND_TYPE"] = str(hvparams["disk_type"])
    template = disk.get("template")
    if template in BLOCK_TEMPLATES:
        env[prefix + "BACKEND_TYPE"] = "block"
    elif template in FILE_TEMPLATES:
        env[prefix + "BACKEND_TYPE"] = f"file:{disk.get('file_driver') or DEFAULT_FILE_DRIVER}"
    return env


def _nic_env(idx: int, nic: dict[str, Any], hvparams: dict[str, Any]) -> dict[str, str]:
    prefix = f"NIC_{idx}_"
    try:
        env = {prefix + "MAC": str(nic["mac"]), prefix + "UUID": str(nic["uuid"]),
               prefix + "MODE": str(nic["mode"])}
    except KeyError as exc:
        raise errors.ProgrammerError(f"NIC {idx} lacks key {exc}") from None
    if nic.get("name"):
        env[prefix + "NAME"] = str(nic["name"])
    if nic.get("ip"):
        env[prefix + "IP"] = str(nic["ip"])
    link = nic.get("link")
    if nic["mode"] == "bridged" and link:
        env[prefix + "BRIDGE"] = str(link)
    if link:
        env[prefix + "LINK"] = str(link)
    if "nic_type" in hvparams:
        env[prefix + "FRONTEND_TYPE"] = str(hvparams["nic_type"])
    return env


def build_env(osdef: OsDefinition, variant: str | None, *, instance_name: str,
              hypervisor: str, disks: list[dict[str, Any]], nics: list[dict[str, Any]],
              osparams: dict[str, str], hvparams: dict[str, Any], beparams: dict[str, Any],
              debug_level: int = 0, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The complete environment of one OS script run (nothing is inherited from noded).

    ``variant`` None means the OS's first declared variant. ``extra`` adds the variables of
    one script (``OLD_INSTANCE_NAME``, ``EXPORT_DEVICE``/``EXPORT_DISK_PATH``/``EXPORT_INDEX``,
    ``IMPORT_*``, ``INSTANCE_REINSTALL``, ``EXP_SIZE_FD``); it may not replace common ones.
    """
    env = _core_env(osdef, variant, osparams, debug_level)
    full_os = osdef.name + (f"+{env['OS_VARIANT']}" if env["OS_VARIANT"] else "")
    env["INSTANCE_NAME"] = instance_name
    env["INSTANCE_OS"] = full_os
    env["HYPERVISOR"] = hypervisor
    env["DISK_COUNT"] = str(len(disks))
    env["NIC_COUNT"] = str(len(nics))
    for idx, disk in enumerate(disks):
        env.update(_disk_env(idx, disk, hvparams))
    for idx, nic in enumerate(nics):
        env.update(_nic_env(idx, nic, hvparams))
    for kind, params in (("BE", beparams), ("HV", hvparams)):
        for key, value in params.items():
            env[f"INSTANCE_{kind}_{key}"] = str(value)
    for key, value in (extra or {}).items():
        if key in env:
            raise errors.ProgrammerError(f"extra OS environment variable {key} would replace "
                                         "a common one")
        env[key] = str(value)
    return env
