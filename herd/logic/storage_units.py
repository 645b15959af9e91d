"""The cluster's volume group and node storage units, as Ganeti names them (pure rules).

* ``--vg-name`` (``volume_group_name``): empty disables LVM. Which templates need it
  (:func:`check_enabled_templates`): Ganeti's ``plain`` and ``drbd`` both live on LVs; in Herd
  ``drbd`` also works over files (each node's file storage), so only ``plain`` needs a VG.
* Storage units (``gnt-node list-storage``, RAPI ``/2/nodes/NAME/storage``, opcode
  ``OP_NODE_QUERY_STORAGE``): Ganeti's field names and storage type names; Herd has the types
  ``lvm-vg`` (the cluster's VG on each node) and ``file`` (each node's file storage directory).
  :data:`STORAGE_FIELDS` is the one registry of these fields: the logical unit, the CLI and
  ``list-fields`` all read it.
* ``gnt-node volumes`` rows for LVs (:func:`lv_volume_rows`): Ganeti's fields node, phys, vg,
  name, size, instance.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from herd import errors
from herd.objects import ConfigData, params
from herd.storage.lvm import MIB

#: Templates whose disks are LVs of the cluster's VG (Herd's drbd works on files too).
LVM_TEMPLATES = ("plain",)
#: Ganeti's storage types that Herd has.
STORAGE_TYPES = ("lvm-vg", "file")
#: Ganeti's other storage types: named in the refusal so that a Ganeti user sees why.
GANETI_ONLY_STORAGE_TYPES = ("lvm-pv", "sharedfile", "gluster", "rados", "ext", "diskless")
#: field -> title (Ganeti's storage fields, in Ganeti's default order).
STORAGE_FIELDS: dict[str, str] = {
    "node": "Node", "type": "Type", "name": "Name", "size": "Size", "used": "Used",
    "free": "Free", "allocatable": "Allocatable",
}
STORAGE_UNIT_FIELDS = frozenset({"size", "used", "free"})
DEFAULT_STORAGE_FIELDS = tuple(STORAGE_FIELDS)


def check_enabled_templates(templates: Sequence[str], vg_name: str) -> list[str]:
    """The enabled disk templates, or ParameterError naming a bad one and what is allowed.

    ``plain`` is accepted only with a volume group (Ganeti's rule); ``drbd`` is accepted
    without one because Herd mirrors file-backed disks too (over LVs when the cluster has a
    VG)."""
    allowed = tuple(dict.fromkeys((*params.DISK_TEMPLATES, *LVM_TEMPLATES)))
    bad = [t for t in templates if t not in allowed]
    if bad or not templates:
        raise errors.ParameterError(f"invalid disk templates {', '.join(bad) or '(none)'}: "
                                    f"allowed are {', '.join(allowed)}")
    needs_vg = [t for t in templates if t in LVM_TEMPLATES]
    if needs_vg and not vg_name:
        raise errors.ParameterError(f"disk template(s) {', '.join(needs_vg)} need a volume "
                                    "group: give --vg-name VG (or leave them out)")
    return list(templates)


def check_vg_name(vg_name: str) -> str:
    """'' (disable) or a name LVM accepts; ParameterError otherwise."""
    if vg_name == "":
        return vg_name
    from herd.storage.lvm import validate_vg_name

    return validate_vg_name(vg_name)


def check_vg_disable(templates: Iterable[str]) -> None:
    """Refuse to drop the VG while a template that needs it is enabled (one in use cannot be
    disabled, so this covers instances too)."""
    enabled = [t for t in templates if t in LVM_TEMPLATES]
    if enabled:
        raise errors.OpPrereqError(f"cannot disable the volume group: disk template(s) "
                                   f"{', '.join(enabled)} are enabled and need it")


def check_reserved_lvs(patterns: Sequence[str]) -> list[str]:
    """Ganeti's reserved LVs: regular expressions matched against whole ``VG/LV`` names;
    ParameterError naming one that does not compile."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise errors.ParameterError(f"invalid reserved LV pattern '{pattern}': {exc} (use "
                                        "regular expressions of VG/LV names)") from None
    return [p for p in patterns if p]


def default_storage_type(vg_name: str) -> str:
    """Ganeti takes the storage type of the first enabled template; Herd's instances live in the
    VG when the cluster has one, else in file storage."""
    return "lvm-vg" if vg_name else "file"


def check_storage_type(value: str | None, vg_name: str) -> str:
    if value is None or value == "":
        return default_storage_type(vg_name)
    if value not in STORAGE_TYPES:
        extra = " (a Ganeti type Herd does not have)" if value in GANETI_ONLY_STORAGE_TYPES \
            else ""
        raise errors.ParameterError(f"invalid storage type '{value}'{extra}: allowed are "
                                    f"{', '.join(STORAGE_TYPES)}")
    return value


def check_storage_fields(fields: Sequence[str]) -> list[str]:
    unknown = [f for f in fields if f not in STORAGE_FIELDS]
    if unknown or not fields:
        raise errors.ParameterError(f"unknown storage field(s) {', '.join(unknown) or '(none)'}"
                                    f": allowed are {', '.join(STORAGE_FIELDS)}")
    return list(fields)


def storage_rows(units_by_node: dict[str, list[dict[str, Any]]], storage_type: str,
                 fields: Sequence[str], name: str | None = None) -> list[list[Any]]:
    """Ganeti's OP_NODE_QUERY_STORAGE result: one list per unit, values in ``fields`` order,
    sorted by node and unit name; ``name`` keeps only that unit."""
    out = []
    for node in sorted(units_by_node):
        for unit in sorted(units_by_node[node], key=lambda u: str(u.get("name"))):
            if name is not None and unit.get("name") != name:
                continue
            row = dict(unit, node=node, type=storage_type)
            out.append([row.get(f) for f in fields])
    return out


def lv_owners(cfg: ConfigData, node_uuid: str, vg_name: str) -> dict[tuple[str, str], str]:
    """(vg, lv) -> instance name for every LV the config expects on a node.

    A disk's typed id names its LV when it has one (an ``lv`` attribute, or one on the id's
    ``data`` for a mirror over LVM); otherwise the LV a template would make for it is
    ``<disk uuid>_<template>`` in the cluster's VG (doc/issue11-plan.md §2.1)."""
    out: dict[tuple[str, str], str] = {}
    for inst in cfg.instances.values():
        for disk in inst.disks:
            if node_uuid not in disk.nodes:
                continue
            for key in disk_lvs(disk, vg_name):
                out[key] = inst.name
            if vg_name:
                out[(vg_name, f"{disk.uuid}_{inst.disk_template}")] = inst.name
    return out


def disk_lvs(disk: Any, vg_name: str) -> list[tuple[str, str]]:
    """The (vg, lv) a disk's typed id names: its own ``lv`` or its mirror data's."""
    out = []
    ids = disk.logical_id
    for holder in (ids, getattr(ids, "data", None)):
        lv, vg = getattr(holder, "lv", None), getattr(holder, "vg", None)
        if lv:
            out.append((str(vg or vg_name), str(lv)))
    return out


def missing_lvs(cfg: ConfigData, node_uuid: str, lvs: Iterable[dict[str, Any]]) -> list[str]:
    """LVs the config's disks name on a node that its listing lacks (verify: an error, as
    Ganeti's "volume is missing"; recreate-disks makes them again)."""
    present = {(lv["vg"], lv["lv"]) for lv in lvs}
    out = []
    for inst in sorted(cfg.instances.values(), key=lambda i: i.name):
        for index, disk in enumerate(inst.disks):
            if node_uuid not in disk.nodes:
                continue
            for vg, lv in disk_lvs(disk, cfg.cluster.volume_group_name):
                if (vg, lv) not in present:
                    out.append(f"instance {inst.name}: disk/{index}: volume {vg}/{lv} is "
                               f"missing on node {cfg.node_name(node_uuid)}")
    return out


def vg_n_plus_one(cfg: ConfigData, vg_free: dict[str, int]) -> list[str]:
    """N+1 for the VG: should any one node fail, the mirrored instances with LVs on it need a
    new copy of those disks on another node (evacuate, replace-disks -n); say which failures
    the others' free VG space (MiB, by node uuid; nodes not in it are not counted) cannot
    absorb. Each instance needs one node with room for all of its LV disks besides the nodes
    it already uses, and the total must fit the free space of all other nodes together (a
    rough check, as Ganeti's memory N+1 is; the allocator decides the real placement)."""
    out = []
    vg_name = cfg.cluster.volume_group_name
    for failed in sorted(cfg.nodes, key=cfg.node_name):
        needs: list[tuple[str, int, set[str]]] = []
        for inst in sorted(cfg.instances.values(), key=lambda i: i.name):
            size = sum(d.size for d in inst.disks
                       if failed in d.nodes and len(d.nodes) > 1 and disk_lvs(d, vg_name))
            if size:
                needs.append((inst.name, size, {n for d in inst.disks for n in d.nodes}))
        if not needs:
            continue
        others = {n: free for n, free in vg_free.items() if n != failed}
        total = sum(size for _, size, _ in needs)
        stuck = [name for name, size, used in needs
                 if not any(free >= size for n, free in others.items() if n not in used)]
        if stuck or total > sum(others.values()):
            names = ", ".join(stuck or [name for name, _, _ in needs])
            out.append(f"node {cfg.node_name(failed)}: not enough free space in volume group "
                       f"{vg_name} on the other nodes to mirror again the disks of {names} "
                       f"should it fail ({total} MiB needed, {sum(others.values())} MiB free)")
    return out


def lv_volume_rows(node_name: str, lvs: Iterable[dict[str, Any]],
                   owners: dict[tuple[str, str], str]) -> list[dict[str, Any]]:
    """``gnt-node volumes`` rows for a node's LVs (a ``blockdev_list`` answer's ``lvs``):
    Ganeti's fields; an LV no disk owns shows instance ``-``, as in Ganeti."""
    rows = []
    for lv in sorted(lvs, key=lambda v: (v["vg"], v["lv"])):
        rows.append({"node": node_name, "phys": ",".join(lv.get("pvs") or []) or "-",
                     "vg": lv["vg"], "name": lv["lv"], "size": int(lv["size"]) // MIB,
                     "instance": owners.get((lv["vg"], lv["lv"]), "-")})
    return rows


def orphan_lvs(lvs: Iterable[dict[str, Any]], owners: dict[tuple[str, str], str],
               reserved: Iterable[str] = ()) -> list[str]:
    """LVs of a node's VG that no disk of the config owns, one description each (verify; an
    error, so that the admin looks: it takes VG space that allocation counts as free).
    ``reserved``: the cluster's reserved LVs (regular expressions of whole VG/LV names)."""
    keep = [re.compile(p) for p in reserved]
    out = []
    for lv in lvs:
        key = (lv["vg"], lv["lv"])
        if key in owners or any(k.fullmatch(f"{lv['vg']}/{lv['lv']}") for k in keep):
            continue
        out.append(f"volume {lv['vg']}/{lv['lv']} is unknown (an LV of "
                   f"{int(lv['size']) // MIB} MiB no instance owns)")
    return sorted(out)
