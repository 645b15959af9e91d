"""The cluster's volume group on this node: which devices hold it, and its figures.

The master keeps the cluster's VG name (``gnt-cluster init/modify --vg-name``, Ganeti's
``volume_group_name``) in the config and every node gets it in its cluster facts file; noded
builds an :class:`~herd.storage.lvm.LvmNode` for it from here.

Which PVs are the node's: :class:`LvmNode` restricts every LVM command to given devices
(``--devices``), because in the lab all nodes share one kernel and each has a VG of the same
name. A node says its devices in ``<data_dir>/lvm-devices`` (one absolute path a line; the lab
writes it). Without that file, the PVs of the VG are found by one unrestricted ``pvs`` run with the
host's own LVM configuration, which is right on a real node (its LVM sees only its own disks).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.errors import StorageError
from herd.fileutil import atomic_write
from herd.paths import HerdPaths
from herd.storage.lvm import (
    LVM_TIMEOUT,
    MIB,
    LvmNode,
    VolumeGroup,
    lvm_message,
    parse_report,
    validate_vg_name,
)


def devices_file(paths: HerdPaths) -> Path:
    return paths.data_dir / "lvm-devices"


def system_dir(paths: HerdPaths) -> Path:
    """LVM_SYSTEM_DIR of this node's LvmNode: Herd's own, never the host's /etc/lvm."""
    return paths.data_dir / "lvm"


def parse_devices(text: str) -> list[str]:
    """Device paths of an ``lvm-devices`` file: one a line; blank lines and # comments skipped."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def read_devices(paths: HerdPaths) -> list[str] | None:
    try:
        return parse_devices(devices_file(paths).read_text())
    except FileNotFoundError:
        return None


def write_devices(paths: HerdPaths, devices: list[str]) -> None:
    atomic_write(devices_file(paths), "".join(f"{d}\n" for d in devices), 0o644)


def pvs_of(text: str, vg_name: str) -> list[str]:
    """The PVs of ``vg_name`` in a ``pvs -o pv_name,vg_name --reportformat json`` answer."""
    return sorted(row["pv_name"] for row in parse_report(text, "pv")
                  if row.get("vg_name") == vg_name and row.get("pv_name"))


def discover_devices(vg_name: str) -> list[str]:
    """The PVs of ``vg_name`` as the host's LVM sees them (a real node: no devices file)."""
    try:
        proc = subprocess.run(["pvs", "--reportformat", "json", "-o", "pv_name,vg_name"],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=LVM_TIMEOUT, env={**os.environ, "LC_ALL": "C"})
    except FileNotFoundError:
        raise StorageError(f"volume group {vg_name}: pvs is not installed (Debian package "
                           f"lvm2)") from None
    except subprocess.TimeoutExpired:
        raise StorageError(f"volume group {vg_name}: pvs did not finish") from None
    if proc.returncode != 0:
        raise StorageError(f"volume group {vg_name}: cannot list physical volumes: "
                           f"{lvm_message(proc.stderr, proc.returncode)}")
    return pvs_of(proc.stdout, vg_name)


def lvm_node_for(paths: HerdPaths, vg_name: str) -> LvmNode:
    """This node's LvmNode of ``vg_name``; StorageError when no device of the node holds it."""
    validate_vg_name(vg_name)
    devices = read_devices(paths)
    where = f"listed in {devices_file(paths)}"
    if devices is None:
        devices = discover_devices(vg_name)
        where = "found by pvs"
    if not devices:
        raise StorageError(f"volume group {vg_name} does not exist on this node (no physical "
                           f"volume {where})")
    return LvmNode(vg_name, devices, system_dir(paths))


@dataclass(frozen=True)
class VgSummary:
    """What node_info and the storage listings report of a VG, in MiB (Ganeti's units)."""

    name: str
    size_mib: int
    free_mib: int
    pvs: tuple[tuple[str, int, int], ...]  # name, size MiB, free MiB
    activation_mode: str
    activation_reason: str

    @classmethod
    def of(cls, vg: VolumeGroup, mode: str, reason: str) -> VgSummary:
        return cls(vg.name, vg.size // MIB, vg.free // MIB,
                   tuple((p.name, p.size // MIB, p.free // MIB) for p in vg.pvs), mode, reason)

    def to_dict(self) -> dict[str, Any]:
        return {"vg_name": self.name, "vg_size": self.size_mib, "vg_free": self.free_mib,
                "pvs": [{"name": n, "size": s, "free": f} for n, s, f in self.pvs],
                "lvm_activation": {"mode": self.activation_mode,
                                   "reason": self.activation_reason}}


def summary(node: LvmNode) -> VgSummary:
    """One ``pvs`` run (plus the activation probe the first time)."""
    vg = node.vg_info()
    mode = node.activation
    return VgSummary.of(vg, mode.mode, mode.reason)
