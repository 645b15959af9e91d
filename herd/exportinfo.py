"""An instance export's description: Ganeti's ``config.ini`` (written, parsed, checked).

Why: an export is how an instance moves between clusters (``gnt-backup export`` on one,
``gnt-backup import`` on the other, Herd or Ganeti), so the file must be Ganeti's: an
``[export]`` section (version 0, timestamp, source node, OS, compression) and an
``[instance]`` section (name, memory, vcpus, template, hypervisor, tags, ``nicN_*`` and
``diskN_*`` keys, ``diskN_dump`` naming the dump file of disk N in the export directory),
then ``[hypervisor]``, ``[backend]`` and ``[os]`` with the parameters. Everything here is pure
(text in, text out) so the master (which writes and reads it) and the nodes (which only store
it) share one definition, and the unit tests cover the format without a cluster.

What travels: backend parameters filled with the source cluster's defaults (the guest keeps its
memory and CPUs), but only the instance's own hypervisor and OS parameters (a node path such as
``kernel_path`` belongs to the cluster, not to the instance; the target cluster's defaults
apply). OS parameters marked private never leave the cluster (no ``[os_private]`` values).
"""

from __future__ import annotations

import configparser
import io
import re
from dataclasses import dataclass, field
from typing import Any

from herd import errors

#: The file describing an export, in its directory (Ganeti's EXPORT_CONF_FILE).
CONFIG_FILE = "config.ini"
#: Ganeti's EXPORT_VERSION: the only version there is.
EXPORT_VERSION = 0
#: Ganeti's limits: no disk or NIC index at or above these is looked for.
MAX_DISKS = 16
MAX_NICS = 8
#: The NIC parameters written per NIC besides mac/ip/network/name (Ganeti's NICS_PARAMETERS).
NIC_PARAMETERS = ("link", "mode", "vlan")
#: A node's export directory, relative to its root (Ganeti's is /srv/ganeti/export).
EXPORT_DIR = "srv/herd/export"
#: An export's name is its instance's name; a staging copy gets this suffix (Ganeti: ".new").
STAGING_SUFFIX = ".new"
#: What an export name may be: a DNS-like name (it becomes a directory name on a node).
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


@dataclass
class ExportDisk:
    """One disk of an export: its size (MiB), its dump file and its optional name."""

    size: int
    dump: str
    name: str | None = None
    mode: str = "rw"


@dataclass
class ExportNic:
    mac: str
    ip: str | None = None
    name: str | None = None
    network: str | None = None
    nicparams: dict[str, str] = field(default_factory=dict)


@dataclass
class ExportInfo:
    """What ``config.ini`` says; ``None``-valued Ganeti keys are read as absent."""

    name: str
    os: str
    source: str
    disk_template: str
    hypervisor: str
    timestamp: int = 0
    compression: str = "none"
    disks: list[ExportDisk] = field(default_factory=list)
    nics: list[ExportNic] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    hvparams: dict[str, str] = field(default_factory=dict)
    beparams: dict[str, str] = field(default_factory=dict)
    osparams: dict[str, str] = field(default_factory=dict)


def check_name(name: str) -> str:
    """An export (instance) name usable as a directory name, or a ParameterError."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in (".", "..") or \
            name.endswith(STAGING_SUFFIX):
        raise errors.ParameterError(
            f"invalid export name {name!r}: an instance name (letters, digits, '.', '-', '_', "
            f"not ending in {STAGING_SUFFIX})")
    return name


def source_name(src_path: str) -> str:
    """The export an import names (Ganeti's ``src_path``): its name, or its directory given
    as a path in the node's export directory (``/srv/herd/export/NAME``); ParameterError for
    a path elsewhere (a node reads exports from its export directory only)."""
    path = src_path.rstrip("/") if isinstance(src_path, str) else src_path
    if isinstance(path, str) and "/" in path:
        parent, _, base = path.rpartition("/")
        if parent != "/" + EXPORT_DIR:
            raise errors.ParameterError(
                f"invalid export directory {src_path!r}: exports are read from the node's "
                f"export directory /{EXPORT_DIR} (give the export's name or "
                f"/{EXPORT_DIR}/NAME)")
        path = base
    return check_name(path)


def dump_name(disk_uuid: str) -> str:
    """The dump file of one disk in its export directory (Ganeti names it by the disk)."""
    check_name(disk_uuid)
    return f"{disk_uuid}.dump"


def _parser() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    return parser


def _text(value: Any) -> str:
    """Ganeti writes Python's str(): None becomes "None" (read back as absent)."""
    return "None" if value is None else str(value)


def _read(value: str | None) -> str | None:
    return None if value in (None, "", "None") else value


def dumps(info: ExportInfo) -> str:
    """``config.ini`` for ``info``, in Ganeti's sections and keys."""
    parser = _parser()
    parser.add_section("export")
    for key, value in (("version", EXPORT_VERSION), ("timestamp", int(info.timestamp)),
                       ("source", info.source), ("os", info.os),
                       ("compression", info.compression)):
        parser.set("export", key, _text(value))
    parser.add_section("instance")
    ins: dict[str, Any] = {"name": info.name}
    be = info.beparams
    for key in ("maxmem", "minmem", "vcpus"):
        if key in be:
            ins[key] = be[key]
    if "maxmem" in be:
        ins["memory"] = be["maxmem"]  # Ganeti keeps the old key for older readers
    ins.update(disk_template=info.disk_template, hypervisor=info.hypervisor,
               tags=" ".join(info.tags))
    for idx, nic in enumerate(info.nics):
        ins.update({f"nic{idx}_mac": nic.mac, f"nic{idx}_ip": nic.ip,
                    f"nic{idx}_network": nic.network, f"nic{idx}_name": nic.name})
        for param in NIC_PARAMETERS:
            ins[f"nic{idx}_{param}"] = nic.nicparams.get(param)
    ins["nic_count"] = len(info.nics)
    for idx, disk in enumerate(info.disks):
        ins.update({f"disk{idx}_ivname": f"disk/{idx}", f"disk{idx}_dump": disk.dump,
                    f"disk{idx}_size": int(disk.size), f"disk{idx}_name": disk.name,
                    f"disk{idx}_mode": disk.mode})
    ins["disk_count"] = len(info.disks)
    for key, value in ins.items():
        parser.set("instance", key, _text(value))
    for section, values in (("hypervisor", info.hvparams), ("backend", info.beparams),
                            ("os", info.osparams)):
        parser.add_section(section)
        for key, value in sorted(values.items()):
            parser.set(section, key, _text(value))
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def loads(text: str, where: str = "config.ini") -> ExportInfo:
    """Parse ``config.ini`` (Herd's or Ganeti's); one-line ParameterError naming what is bad."""
    parser = _parser()
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise errors.ParameterError(f"{where} is not a valid export description: "
                                    f"{first}") from None
    for section in ("export", "instance"):
        if not parser.has_section(section):
            raise errors.ParameterError(f"{where} has no [{section}] section: not an export")
    version = parser.get("export", "version", fallback=None)
    if version != str(EXPORT_VERSION):
        raise errors.ParameterError(f"{where} has export version {version!r}; supported: "
                                    f"{EXPORT_VERSION}")
    compression = parser.get("export", "compression", fallback="none")
    if compression != "none":
        raise errors.ParameterError(f"{where} uses compression {compression!r}; supported: "
                                    "none")
    ins = dict(parser.items("instance"))

    def required(key: str) -> str:
        value = _read(ins.get(key))
        if value is None:
            raise errors.ParameterError(f"{where} lacks [instance] {key}")
        return value

    def number(key: str, value: str) -> int:
        try:
            return int(value)
        except ValueError:
            raise errors.ParameterError(f"{where}: [instance] {key} = {value!r} is not a "
                                        "number") from None

    disks = []
    for idx in range(MAX_DISKS):
        size = _read(ins.get(f"disk{idx}_size"))
        if size is None:
            continue  # Ganeti looks at every index: a missing one is skipped, not the end
        dump = _read(ins.get(f"disk{idx}_dump"))
        if dump is None:
            raise errors.ParameterError(f"{where}: disk {idx} has a size but no dump file "
                                        f"(disk{idx}_dump)")
        if "/" in dump or dump in (".", ".."):
            raise errors.ParameterError(f"{where}: disk{idx}_dump = {dump!r} is not a file "
                                        "name in the export directory")
        disks.append(ExportDisk(size=number(f"disk{idx}_size", size), dump=dump,
                                name=_read(ins.get(f"disk{idx}_name")),
                                mode=_read(ins.get(f"disk{idx}_mode")) or "rw"))
    nics = []
    for idx in range(MAX_NICS):
        mac = _read(ins.get(f"nic{idx}_mac"))
        if mac is None:
            break  # as Ganeti: NICs end at the first index without a MAC
        nicparams = {p: v for p in NIC_PARAMETERS
                     if (v := _read(ins.get(f"nic{idx}_{p}"))) is not None}
        nics.append(ExportNic(mac=mac, ip=_read(ins.get(f"nic{idx}_ip")),
                              name=_read(ins.get(f"nic{idx}_name")),
                              network=_read(ins.get(f"nic{idx}_network")),
                              nicparams=nicparams))

    def section(name: str) -> dict[str, str]:
        return dict(parser.items(name)) if parser.has_section(name) else {}

    beparams = section("backend")
    if not parser.has_section("backend"):
        # an old export keeps its backend parameters in [instance]
        beparams = {k: ins[k] for k in ("maxmem", "minmem", "vcpus") if _read(ins.get(k))}
    if "memory" in beparams:  # Ganeti's old name for maxmem = minmem
        memory = beparams.pop("memory")
        beparams.setdefault("maxmem", memory)
        beparams.setdefault("minmem", memory)
    if not beparams.get("maxmem") and _read(ins.get("memory")):
        beparams.setdefault("maxmem", ins["memory"])
        beparams.setdefault("minmem", ins["memory"])
    timestamp = _read(parser.get("export", "timestamp", fallback=None)) or "0"
    return ExportInfo(
        name=required("name"), os=_read(parser.get("export", "os", fallback=None)) or "",
        source=_read(parser.get("export", "source", fallback=None)) or "",
        disk_template=required("disk_template"),
        hypervisor=_read(ins.get("hypervisor")) or "kvm",
        timestamp=number("timestamp", timestamp), compression=compression, disks=disks,
        nics=nics, tags=(_read(ins.get("tags")) or "").split(),
        hvparams={k: v for k, v in section("hypervisor").items() if _read(v) is not None},
        beparams={k: v for k, v in beparams.items() if _read(v) is not None},
        osparams={k: v for k, v in section("os").items() if _read(v) is not None})


def from_instance(inst: Any, *, source: str, filled_beparams: dict[str, Any],
                  nicparams: list[dict[str, Any]], timestamp: int) -> ExportInfo:
    """The description of ``inst`` (a :class:`herd.objects.Instance`) as exported now from
    node ``source``; ``nicparams`` are each NIC's filled parameters (mode and link)."""
    return ExportInfo(
        name=inst.name, os=inst.os, source=source, disk_template=inst.disk_template,
        hypervisor=inst.hypervisor, timestamp=timestamp,
        disks=[ExportDisk(size=d.size, dump=dump_name(d.uuid), name=d.name, mode=d.mode)
               for d in inst.disks],
        nics=[ExportNic(mac=n.mac, ip=n.ip, name=n.name, network=n.network,
                        nicparams={k: _text(v) for k, v in p.items()
                                   if k in NIC_PARAMETERS and v not in (None, "")})
              for n, p in zip(inst.nics, nicparams, strict=True)],
        tags=list(inst.tags),
        hvparams={k: _text(v) for k, v in inst.hvparams.items()},
        beparams={k: _text(v) for k, v in filled_beparams.items()},
        osparams={k: _text(v) for k, v in inst.osparams.items()})


def import_disks(info: ExportInfo) -> list[dict[str, Any]]:
    """The opcode's ``disks`` for an import that names none: the export's sizes, names and
    access modes (Ganeti takes size and name)."""
    out: list[dict[str, Any]] = []
    for disk in info.disks:
        spec: dict[str, Any] = {"size": disk.size, "mode": disk.mode}
        if disk.name:
            spec["name"] = disk.name
        out.append(spec)
    return out


def import_nics(info: ExportInfo, *, same_name: bool) -> list[dict[str, Any]]:
    """The opcode's ``nics`` for an import that names none: the export's NICs; their MACs
    only when the instance keeps its name (Ganeti's rule: a copy under another name is a new
    machine and gets new MACs)."""
    out: list[dict[str, Any]] = []
    for nic in info.nics:
        spec: dict[str, Any] = {"mac": nic.mac if same_name else "auto"}
        if nic.ip:
            spec["ip"] = nic.ip
        if nic.name:
            spec["name"] = nic.name
        if nic.network:
            spec["network"] = nic.network
        else:
            spec.update({k: v for k, v in nic.nicparams.items() if k in ("mode", "link")})
        out.append(spec)
    return out


def merged(given: dict[str, Any], exported: dict[str, str]) -> dict[str, Any]:
    """Parameters for the import: the export's, overridden by those given (-B, -H, -O)."""
    return {**exported, **given}
