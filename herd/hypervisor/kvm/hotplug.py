"""Hot-plugging disks and NICs into a running QEMU, and out again (QMP).

A disk goes in as ``blockdev-add`` (its data source: a file, a block device, or the node's
mirror export over NBD) plus ``device_add`` of a virtio-blk-pci device on it; a NIC as a tap
on the host, ``netdev_add`` and ``device_add`` of the instance's NIC model. Each step that
fails undoes the ones before it, so a refused hotplug leaves the guest as it was.

Removal is a request to the guest (ACPI PCI hot-unplug): ``device_del`` returns at once, and
the device is gone only when the guest let it go. :func:`wait_gone` polls for that; a guest
that does not answer within the timeout refused the unplug, and the caller keeps the device
in its records. Devices from the command line have QEMU's ids (``nic<i>``/``net<i>`` as
cmdline.py names NICs, the drive id of a disk from which ``query-block`` gives its device);
hot-plugged ones get ids from the item's uuid, so that the ids do not depend on indices that
change as items come and go.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from pathlib import Path
from typing import Any

from herd.errors import HypervisorError
from herd.hypervisor.kvm import qmp
from herd.hypervisor.kvm.cmdline import NIC_MODEL
from herd.hypervisor.kvm.disks import (
    NBD_OPEN_TIMEOUT,
    NBD_RECONNECT_DELAY,
    is_uri,
    parse_nbd_uri,
)

#: Seconds a guest gets to release a device (TCG guests are slow to run their ACPI code).
UNPLUG_TIMEOUT = 30.0
#: NIC models on a PCI bus (the ISA one cannot be hot-plugged).
HOTPLUG_NIC_TYPES = frozenset(k for k, v in NIC_MODEL.items() if v != "ne2k_isa")


def short(uuid: str) -> str:
    """Eight hex digits of an item's uuid: enough to tell an instance's devices apart."""
    digits = uuid.replace("-", "").lower()[:8]
    if len(digits) < 8:
        raise HypervisorError(f"invalid device uuid '{uuid}' for a hotplug id")
    return digits


def disk_ids(uuid: str) -> dict[str, str]:
    """QEMU's names of a hot-plugged disk: its block node and its device."""
    s = short(uuid)
    return {"node": f"hpdrive-{s}", "device": f"hpdisk-{s}"}


def nic_ids(uuid: str) -> dict[str, str]:
    """QEMU's names of a hot-plugged NIC: its netdev and its device."""
    s = short(uuid)
    return {"netdev": f"hpnet-{s}", "device": f"hpnic-{s}"}


def _is_block_device(path: str) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def nbd_client_args(path: str) -> dict[str, Any]:
    """An NBD client node's options for the export at the URI ``path``, with the reconnect
    settings of a disk from the command line."""
    target = parse_nbd_uri(path)
    server = ({"type": "unix", "path": target.socket} if target.socket is not None else
              {"type": "inet", "host": target.host, "port": str(target.port)})
    return {"driver": "nbd", "server": server, "export": target.export,
            "reconnect-delay": NBD_RECONNECT_DELAY, "open-timeout": NBD_OPEN_TIMEOUT}


def io_probe(target: dict[str, str]) -> str:
    """The HMP command line that reads one sector of the disk ``target`` (``{"device": drive
    id}`` or ``{"node-name": ...}``, as block_resize takes it): QEMU's NBD client reconnects
    to an export that dropped it only at its next request, and learns the export's size on
    that connection."""
    name = target.get("device") or target["node-name"]
    return f'qemu-io {name} "read 0 512"'


async def reconnect(sock: Path, target: dict[str, str]) -> None:
    """Have the NBD client of the disk ``target`` reconnect to its export (which dropped it:
    a mirror served again at a new size) by one read, so that it knows the export's size now
    and block_resize can grow the disk to it ("Cannot grow NBD nodes" otherwise)."""
    out = await qmp.execute(sock, "human-monitor-command", {"command-line": io_probe(target)},
                            timeout=60.0)
    if isinstance(out, str) and out.strip().startswith("Error"):
        raise HypervisorError(f"cannot read disk {target}: {out.strip()}")


def blockdev_args(node: str, path: str, *, readonly: bool, cache: str) -> dict[str, Any]:
    """``blockdev-add`` arguments of a raw disk at ``path`` (file, block device or NBD URI,
    with the same reconnect settings as a disk from the command line)."""
    file: dict[str, Any]
    if is_uri(path):
        file = nbd_client_args(path)
    else:
        file = {"driver": "host_device" if _is_block_device(path) else "file",
                "filename": path}
    args: dict[str, Any] = {"driver": "raw", "node-name": node, "file": file,
                            "read-only": readonly}
    if cache == "none":
        args["cache"] = {"direct": True, "no-flush": False}
    elif cache == "unsafe":
        args["cache"] = {"direct": False, "no-flush": True}
    return args


def check_disk_type(hv: dict[str, Any]) -> None:
    if hv["disk_type"] != "paravirtual":
        raise HypervisorError(f"disk_type '{hv['disk_type']}' cannot be hot-plugged; only "
                              "paravirtual (virtio) disks can")


def check_nic_type(hv: dict[str, Any]) -> None:
    if hv["nic_type"] not in HOTPLUG_NIC_TYPES:
        raise HypervisorError(f"nic_type '{hv['nic_type']}' cannot be hot-plugged (not a PCI "
                              "device)")


async def add_disk(sock: Path, hv: dict[str, Any], uuid: str, path: str,
                   readonly: bool) -> dict[str, str]:
    """Attach the disk; its ids. On a failure nothing of it is left in QEMU."""
    check_disk_type(hv)
    ids = disk_ids(uuid)
    await qmp.execute(sock, "blockdev-add", blockdev_args(
        ids["node"], path, readonly=readonly, cache=hv["disk_cache"]), timeout=30.0)
    try:
        await qmp.execute(sock, "device_add", {"driver": "virtio-blk-pci", "id": ids["device"],
                                               "drive": ids["node"]})
    except BaseException:
        await _quietly(sock, "blockdev-del", {"node-name": ids["node"]})
        raise
    return ids


async def add_nic(sock: Path, hv: dict[str, Any], uuid: str, mac: str,
                  tap: str) -> dict[str, str]:
    """Attach a NIC on the (already made) ``tap``; its ids. All or nothing in QEMU."""
    check_nic_type(hv)
    ids = nic_ids(uuid)
    netdev: dict[str, Any] = {"type": "tap", "id": ids["netdev"], "ifname": tap,
                              "script": "no", "downscript": "no"}
    if hv["nic_type"] == "paravirtual":
        netdev["vnet_hdr"] = bool(hv["vnet_hdr"])
        if hv["vhost_net"]:
            netdev["vhost"] = True
    await qmp.execute(sock, "netdev_add", netdev)
    try:
        await qmp.execute(sock, "device_add", {"driver": NIC_MODEL[hv["nic_type"]],
                                               "id": ids["device"], "netdev": ids["netdev"],
                                               "mac": mac})
    except BaseException:
        await _quietly(sock, "netdev_del", {"id": ids["netdev"]})
        raise
    return ids


async def cold_disk_device(sock: Path, drive: str) -> str:
    """The QOM path of the device of a command-line drive (``virtio1``), for device_del."""
    for entry in await qmp.execute(sock, "query-block") or []:
        if entry.get("device") == drive and entry.get("qdev"):
            qdev = str(entry["qdev"])
            return qdev.removesuffix("/virtio-backend")
    raise HypervisorError(f"QEMU has no disk '{drive}'")


def device_path(device: str) -> str:
    """The QOM path of a device given by id or by path."""
    return device if device.startswith("/") else f"/machine/peripheral/{device}"


async def remove_device(sock: Path, device: str, *, timeout: float = UNPLUG_TIMEOUT) -> None:
    """Ask the guest to release ``device`` (id or QOM path) and wait until it did."""
    await qmp.execute(sock, "device_del", {"id": device})
    if not await wait_gone(sock, device_path(device), timeout):
        raise HypervisorError(f"the guest did not release device {device} within "
                              f"{timeout:g} s (it refused or ignores the unplug request); "
                              "it stays attached")


async def wait_gone(sock: Path, path: str, timeout: float) -> bool:
    """Poll until QEMU no longer has the object at ``path``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await qmp.execute(sock, "qom-list", {"path": path})
        except HypervisorError as exc:
            if "not found" in str(exc).lower() or "no such" in str(exc).lower():
                return True
            raise
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)


async def _quietly(sock: Path, command: str, arguments: dict[str, Any]) -> None:
    """An undo step: its failure must not hide the error being undone."""
    with contextlib.suppress(HypervisorError):
        await qmp.execute(sock, command, arguments)
