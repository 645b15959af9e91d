"""Old storage RPC arguments -> DeviceSpecs, so that ``disks_*``/``mirror_*`` run the device code.

A masterd from before block devices (and today's, until it switches to ``blockdev_*``) sends
two shapes (doc/issue11-plan.md 1.2 and 1.5):

* the node RPC disk dict of :func:`herd.logic.specs.disk_dict`: ``template`` (or ``dev_type``
  in older records), ``logical_id``, ``size`` (MiB), ``uuid``, ``index``, and for drbd
  optionally ``mirror`` (a MirrorDisk dict, as the node the dict is meant for sees it). File ids
  are ``["loop", relpath]``, drbd ids ``[pnode, snode, port, relpath]``;
* the MirrorDisk dict of :mod:`herd.storage.mirror.model` (``relpath``, ``port``, addresses).

noded keeps the old names for one release (a rolling upgrade, or a failover to a master
candidate that still runs the old masterd); they go with the v1 config layout.
"""

from __future__ import annotations

from typing import Any

from herd.errors import ParameterError, StorageError
from herd.storage.blockdev.spec import FILE, LVM, MIRROR, NONE, DeviceSpec


def template_of(disk: dict[str, Any]) -> str:
    return str(disk.get("template") or disk.get("dev_type") or "")


def _file(uuid: str, size: int, relpath: str, index: int | None) -> DeviceSpec:
    return DeviceSpec(uuid=uuid, kind=FILE, size_mib=size, name=relpath, index=index,
                      path=relpath)


def _file_spec(disk: dict[str, Any]) -> DeviceSpec:
    lid = disk["logical_id"]
    return _file(str(disk["uuid"]), int(disk.get("size", 0)), str(lid[1]), disk.get("index"))


def _lv(uuid: str, size: int, vg: str, lv: str, index: int | None) -> DeviceSpec:
    return DeviceSpec(uuid=uuid, kind=LVM, size_mib=size, name=f"{vg}/{lv}", index=index,
                      vg=vg, lv=lv)


def _plain_spec(disk: dict[str, Any]) -> DeviceSpec:
    vg, lv = disk["logical_id"]
    return _lv(str(disk["uuid"]), int(disk.get("size", 0)), str(vg), str(lv), disk.get("index"))


def _drbd_spec(disk: dict[str, Any]) -> DeviceSpec:
    lid = disk["logical_id"]
    mirror = disk.get("mirror")
    if isinstance(mirror, dict):  # a DeviceSpec (protocol 3) or a MirrorDisk dict (before)
        return DeviceSpec.from_dict(mirror) if "kind" in mirror else from_mirror_disk(mirror)
    uuid, size, index = str(disk["uuid"]), int(disk.get("size", 0)), disk.get("index")
    if isinstance(lid[3], list):  # [pnode, snode, port, [vg, lv], meta]: data in an LV
        vg, lv = lid[3]
        return DeviceSpec(uuid=uuid, kind=MIRROR, size_mib=size, name=f"{vg}/{lv}",
                          index=index, port=int(lid[2]), meta=str(lid[4]),
                          data=_lv(uuid, size, str(vg), str(lv), index))
    rel = str(lid[3])
    return DeviceSpec(uuid=uuid, kind=MIRROR, size_mib=size, name=rel, index=index,
                      port=int(lid[2]), data=_file(uuid, size, rel, index))


def _diskless_spec(disk: dict[str, Any]) -> DeviceSpec:
    return DeviceSpec(uuid=str(disk.get("uuid", "")), kind=NONE,
                      size_mib=int(disk.get("size", 0)), index=disk.get("index"))


#: template -> translator of the disk dict (the only template names noded still reads).
_BY_TEMPLATE = {"file": _file_spec, "plain": _plain_spec, "drbd": _drbd_spec,
                "diskless": _diskless_spec}


def from_disk_dict(disk: dict[str, Any]) -> DeviceSpec:
    """The DeviceSpec of a node RPC disk dict; ParameterError for a template this node cannot
    hold or a malformed id."""
    template = template_of(disk)
    translate = _BY_TEMPLATE.get(template)
    if translate is None:
        raise ParameterError(f"disk template '{template}' has no volume on this node")
    try:
        return translate(disk)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ParameterError(f"malformed {template} disk {disk!r}: {exc!r}") from None


def from_mirror_disk(disk: dict[str, Any]) -> DeviceSpec:
    """The DeviceSpec of a MirrorDisk dict (its data is the file at ``relpath`` unless the
    dict names a data volume)."""
    try:
        uuid, size, rel = str(disk["uuid"]), int(disk["size"]), str(disk["relpath"])
        index = disk.get("index")
        data = (DeviceSpec.from_dict(disk["data"]) if disk.get("data")
                else _file(uuid, size, rel, index))
        return DeviceSpec(uuid=uuid, kind=MIRROR, size_mib=size, name=rel, index=index,
                          data=data, port=int(disk["port"]), local_ip=disk.get("local_ip"),
                          peer_ip=disk.get("peer_ip"), meta=disk.get("meta"))
    except (KeyError, TypeError, ValueError) as exc:
        raise ParameterError(f"malformed mirrored disk {disk!r}: {exc!r}") from None


# -- what each old method accepted ----------------------------------------------------------------
def for_disks_create(disks: list[dict[str, Any]]) -> list[DeviceSpec]:
    """``disks_create`` made file disks only (mirrors came through ``mirror_create``, with the
    addresses a drbd disk dict lacks): anything else is refused before anything is made."""
    for disk in disks:
        if template_of(disk) != "file":
            raise StorageError(f"cannot create disks of template '{template_of(disk)}' on "
                               f"this node")
    return [from_disk_dict(d) for d in disks]


def for_disks_remove(disks: list[dict[str, Any]]) -> list[DeviceSpec]:
    """``disks_remove`` removed file disks and passed over the others (mirrors go with
    ``mirror_remove``, which also ends their storage daemons)."""
    return [from_disk_dict(d) for d in disks if template_of(d) == "file"]


def for_disks_check(disks: list[dict[str, Any]]) -> list[DeviceSpec | None]:
    """``disks_check`` answered "missing" for a template without a volume here (None)."""
    out: list[DeviceSpec | None] = []
    for disk in disks:
        try:
            spec: DeviceSpec | None = from_disk_dict(disk)
        except ParameterError:
            spec = None
        out.append(None if spec is None or spec.kind == NONE else spec)
    return out
