"""What the master sends a node about an instance: effective parameters, disks and NICs.

Computed here once from the config, so that start, reboot, OS installation and (later)
migration all describe an instance the same way.
"""

from __future__ import annotations

from typing import Any

from herd.hypervisor import base as hvbase
from herd.objects import ConfigData, Instance
from herd.objects.disk_ids import DrbdId
from herd.paths import HerdPaths


def hypervisor_class(name: str, paths: HerdPaths) -> type[hvbase.Hypervisor]:
    return type(hvbase.get_hypervisor(name, paths))


def filled_hvparams(cfg: ConfigData, inst: Instance, paths: HerdPaths) -> dict[str, Any]:
    cls = hypervisor_class(inst.hypervisor, paths)
    return cfg.filled_hvparams(inst, cls.parameter_defaults())


def disk_dict(inst: Instance, index: int) -> dict[str, Any]:
    disk = inst.disks[index]
    return {"index": index, "template": disk.dev_type,
            "logical_id": disk.v1_logical_id(inst.primary_node),
            "size": disk.size, "mode": disk.mode, "uuid": disk.uuid, "name": disk.name}


def _with_mirror(cfg: ConfigData, inst: Instance, index: int, node: str) -> dict[str, Any]:
    """A disk as ``node`` sees it; mirrored disks carry their mirror description."""
    out = disk_dict(inst, index)
    if isinstance(inst.disks[index].logical_id, DrbdId):
        from herd.logic.drbd import mirror_disk

        out["mirror"] = mirror_disk(cfg, inst, index, node)
    return out


def vm_disk_dict(cfg: ConfigData, inst: Instance, index: int, node: str) -> dict[str, Any]:
    """Disk ``index`` as a VM on ``node`` opens it (what an instance spec lists; a hotplug
    sends one)."""
    return _with_mirror(cfg, inst, index, node)


def nic_dicts(cfg: ConfigData, inst: Instance) -> list[dict[str, Any]]:
    out = []
    for index, nic in enumerate(inst.nics):
        nicparams = cfg.filled_nicparams(inst, nic.nicparams)
        out.append({"index": index, "mac": nic.mac, "ip": nic.ip, "mode": nicparams["mode"],
                    "link": nicparams["link"], "vlan": nicparams.get("vlan", ""),
                    "uuid": nic.uuid, "name": nic.name, "network": nic.network})
    return out


def instance_spec(cfg: ConfigData, inst: Instance, paths: HerdPaths,
                  hvparams_override: dict[str, Any] | None = None,
                  beparams_override: dict[str, Any] | None = None,
                  mirror_node: str | None = None) -> dict[str, Any]:
    """What a node needs to run ``inst``; mirrored disks are described as seen from
    ``mirror_node`` (default: the primary; the secondary when it receives a migration)."""
    beparams = dict(cfg.filled_beparams(inst), **(beparams_override or {}))
    hvparams = dict(filled_hvparams(cfg, inst, paths), **(hvparams_override or {}))
    return {
        "name": inst.name,
        "uuid": inst.uuid,
        "hypervisor": inst.hypervisor,
        "os": inst.os,
        "memory": int(beparams["maxmem"]),
        "vcpus": int(beparams["vcpus"]),
        "beparams": beparams,
        "hvparams": hvparams,
        "osparams": cfg.filled_osparams(inst),
        "disks": [_with_mirror(cfg, inst, i, mirror_node or inst.primary_node)
                  for i in range(len(inst.disks))],
        "nics": nic_dicts(cfg, inst),
        "network_port": inst.network_port,
    }
