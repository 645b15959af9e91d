"""The one registry of query fields: instances, nodes, node groups, networks and jobs.

Every field has Ganeti's name, title and kind (``text``, ``bool``, ``number``, ``unit``,
``timestamp``, ``other``), a doc line, whether its values are sizes in MiB (``unit``: the CLI
formats them with ``--units``), how to compute it from one object's *view*, and which live
source it needs (``None``: the config alone answers it). Readers:

- masterd's queries (:mod:`herd.logic.query`) compute only the fields asked for and ask the
  nodes only for the live sources those fields need;
- ``gnt-instance``/``gnt-node``/``gnt-group``/``gnt-network``/``gnt-job list -o`` and
  ``list-fields`` take titles, units and alignment from here;
- RAPI ``/2/query/RESOURCE`` and ``/fields`` take kinds, titles and docs from here, and the
  bulk lists ask masterd for the fields their answer holds;
- the web manager's instance table takes its column titles from here.

This module imports only the standard library, so that the CLI can read titles without
loading the config objects or the logic (tests/unit/test_packaging.py); the views get what
they compute with from the query that makes them (herd.logic.query).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing costs each gnt-* command ~2 ms at start
    from typing import Any

    Getter = Callable[[Any], Any]

TEXT, BOOL, NUMBER, UNIT, TIMESTAMP, OTHER, UNKNOWN = (
    "text", "bool", "number", "unit", "timestamp", "other", "unknown")
#: Ganeti's words for the kinds, as ``list-fields`` prints them.
KIND_NAMES = {TEXT: "Text", BOOL: "Boolean", NUMBER: "Number", UNIT: "Storage size",
              TIMESTAMP: "Timestamp", OTHER: "Custom", UNKNOWN: "Unknown"}

#: Live sources: what a field needs beyond the config.
LIVE_INSTANCES = "instance_list"  # the primary node's list of running guests (one RPC a node)
LIVE_MIRROR = "mirror"  # the mirror state of a mirrored template's disks
LIVE_NODE = "node_info"  # the node's memory, storage and CPU figures (one RPC a node)

#: CPUs a node keeps for itself (Ganeti's ``cnos``; htools count them as used, and the
#: balancer's document says the same: herd.logic.rebalance).
NODE_OS_CPUS = 1


def disk_usage(inst: Any) -> int:
    """MiB the instance's disks take on each of its nodes: their sizes (a mirror's metadata
    is a small file beside the node's data, not in the volume group). RAPI's ``disk_usage``,
    which htools read, and what the balancer counts (herd.logic.rebalance)."""
    return sum(d.size for d in inst.disks)


def network_name(cfg: Any, uuid: str | None) -> str | None:
    """A NIC's network by name (Ganeti's nic.networks.names), None when on none."""
    net = cfg.networks.get(uuid) if uuid else None
    return net.name if net is not None else uuid


class Field:
    """One field: Ganeti's name, title, kind and doc; how to compute it from a view; the
    live source it needs (None: the config answers it); whether its values (or the items of
    its list) are sizes in MiB. A plain slotted class: the CLI builds the registry at start,
    and a dataclass would cost it the import of dataclasses and inspect."""

    __slots__ = ("doc", "get", "kind", "live", "name", "title", "unit")

    def __init__(self, name: str, title: str, kind: str, doc: str, get: Getter,
                 live: str | None = None, unit: bool = False) -> None:
        self.name, self.title, self.kind, self.doc = name, title, kind, doc
        self.get, self.live = get, live
        self.unit = unit or kind == UNIT

    def __repr__(self) -> str:
        return f"Field({self.name!r}, {self.title!r}, {self.kind!r})"

    @property
    def numeric(self) -> bool:
        """Right-aligned in the CLI's tables (Ganeti aligns numbers and sizes)."""
        return self.kind in (NUMBER, UNIT) or self.unit

    def definition(self) -> dict[str, str]:
        """Ganeti's field definition (``/2/query/RESOURCE/fields``)."""
        return {"name": self.name, "title": self.title, "kind": self.kind, "doc": self.doc}


#: A dynamic field family: a name pattern, and what builds the field from the match.
Dynamic = tuple[re.Pattern[str], Callable[[re.Match[str]], Field]]


class Registry:
    """The fields of one resource: the fixed ones, and families such as ``hv/NAME`` or
    ``disk.size/N`` whose members are built when a name is looked up."""

    def __init__(self, resource: str, fields: Iterable[Field],
                 dynamic: Sequence[Dynamic] = ()) -> None:
        self.resource = resource
        self.fields: dict[str, Field] = {}
        for f in fields:
            if f.name in self.fields:
                raise ValueError(f"{resource} field {f.name} defined twice")
            self.fields[f.name] = f
        self.dynamic = tuple(dynamic)
        self._built: dict[str, Field | None] = {}

    def lookup(self, name: str) -> Field | None:
        found = self.fields.get(name)
        if found is not None:
            return found
        if name in self._built:
            return self._built[name]
        built = None
        for pattern, make in self.dynamic:
            match = pattern.fullmatch(name)
            if match:
                built = make(match)
                break
        if len(self._built) < 10_000:  # names come from clients: bound the cache
            self._built[name] = built
        return built

    def known(self, name: str) -> bool:
        return self.lookup(name) is not None

    def resolve(self, names: Iterable[str]) -> list[Field]:
        """The known fields among ``names``, in order, without repeats."""
        out: dict[str, Field] = {}
        for name in names:
            f = self.lookup(name)
            if f is not None:
                out.setdefault(name, f)
        return list(out.values())

    def definition(self, name: str) -> dict[str, str]:
        f = self.lookup(name)
        if f is None:
            return {"name": name, "title": name, "kind": UNKNOWN,
                    "doc": f"Unknown field '{name}'"}
        return f.definition()

    def title(self, name: str) -> str:
        f = self.lookup(name)
        return f.title if f is not None else name

    def titles(self, names: Iterable[str] | None = None) -> dict[str, str]:
        """Titles of the fixed fields (or of ``names``) for the CLI's tables."""
        return {n: self.title(n) for n in (self.fields if names is None else names)}

    def unit_fields(self, names: Iterable[str] | None = None) -> set[str]:
        found = (self.lookup(n) for n in (self.fields if names is None else names))
        return {f.name for f in found if f is not None and f.unit}

    def numeric_fields(self, names: Iterable[str] | None = None) -> set[str]:
        found = (self.lookup(n) for n in (self.fields if names is None else names))
        return {f.name for f in found if f is not None and f.numeric}

    def live_sources(self, fields: Iterable[Field]) -> set[str]:
        return {f.live for f in fields if f.live is not None}


def compute(fields: Sequence[Field], view: Any) -> dict[str, Any]:
    """One row: each field's value for one object's view (nothing else is computed)."""
    return {f.name: f.get(view) for f in fields}


def _common(what: str) -> list[Field]:
    return [
        Field("uuid", "UUID", TEXT, f"{what} UUID", lambda v: v.obj.uuid),
        Field("tags", "Tags", OTHER, "Tags", lambda v: list(v.obj.tags)),
        Field("ctime", "CTime", TIMESTAMP, "Creation timestamp", lambda v: v.obj.ctime),
        Field("mtime", "MTime", TIMESTAMP, "Modification timestamp", lambda v: v.obj.mtime),
        Field("serial_no", "SerialNo", NUMBER,
              f"{what} object serial number, incremented on each modification",
              lambda v: v.obj.serial_no),
    ]


# -- instances ---------------------------------------------------------------------------------
class InstanceLive:
    """What the nodes said during one query: each primary node's running guests indexed by
    name (None: the node is offline or did not answer), and mirrored disks' states."""

    __slots__ = ("by_node", "fetched", "mirror")

    def __init__(self) -> None:
        self.fetched: set[str] = set()
        self.by_node: dict[str, dict[str, dict[str, Any]] | None] = {}
        self.mirror: dict[str, Any] = {}


class InstanceView:
    """One instance as its fields see it; what several fields share (filled parameters, the
    primary node, the live entry) is computed once, on first use."""

    __slots__ = ("_be", "_hv", "_nics", "_node", "cfg", "fill_hv", "live", "obj")

    def __init__(self, cfg: Any, inst: Any, live: InstanceLive,
                 fill_hv: Callable[[Any], dict[str, Any]]) -> None:
        self.cfg, self.obj, self.live, self.fill_hv = cfg, inst, live, fill_hv
        self._node: Any = None
        self._be: dict[str, Any] | None = None
        self._hv: dict[str, Any] | None = None
        self._nics: list[tuple[Any, dict[str, Any]]] | None = None

    @property
    def node(self) -> Any:
        if self._node is None:
            self._node = self.cfg.nodes[self.obj.primary_node]
        return self._node

    @property
    def be(self) -> dict[str, Any]:
        if self._be is None:
            self._be = self.cfg.filled_beparams(self.obj)
        return self._be

    @property
    def hv(self) -> dict[str, Any]:
        if self._hv is None:  # the hypervisor's defaults: the query's fill_hv knows them
            self._hv = self.fill_hv(self.obj)
        return self._hv

    @property
    def nics(self) -> list[tuple[Any, dict[str, Any]]]:
        if self._nics is None:
            self._nics = [(nic, self.cfg.filled_nicparams(self.obj, nic.nicparams))
                          for nic in self.obj.nics]
        return self._nics

    def group(self, node_uuid: str) -> Any:
        node = self.cfg.nodes.get(node_uuid)
        return self.cfg.nodegroups.get(node.group) if node is not None else None

    @property
    def node_live(self) -> dict[str, dict[str, Any]] | None:
        """The primary node's running guests by name; None if it did not answer."""
        return self.live.by_node.get(self.obj.primary_node)

    @property
    def running(self) -> dict[str, Any] | None:
        listing = self.node_live
        return listing.get(self.obj.name) if listing is not None else None


def instance_status(admin_state: str, admin_state_source: str, node_offline: bool,
                    node_live: Any, running: dict[str, Any] | None) -> str:
    """Ganeti's instance status values."""
    if node_offline:
        return "ERROR_nodeoffline"
    if node_live is None:
        return "ERROR_nodedown"
    if running is not None:
        return "running" if admin_state == "up" else "ERROR_up"
    if admin_state == "up":
        return "ERROR_down"
    if admin_state == "offline":
        return "ADMIN_offline"
    return "USER_down" if admin_state_source == "user" else "ADMIN_down"


def _status(v: InstanceView) -> str:
    inst = v.obj
    return instance_status(inst.admin_state, inst.admin_state_source, v.node.offline,
                           v.node_live, v.running)


def _oper_state(v: InstanceView) -> bool | None:
    return None if v.node_live is None else v.running is not None


def _running_value(key: str) -> Getter:
    def get(v: InstanceView) -> Any:
        running = v.running
        return running[key] if running else None
    return get


def _nic_param(key: str) -> Getter:
    return lambda v: [p[key] for _, p in v.nics]


def _group_name(cfg: Any, group_uuid: str) -> str:
    group = cfg.nodegroups.get(group_uuid)
    return group.name if group is not None else ""


def _instance_fields() -> list[Field]:
    LI, LM = LIVE_INSTANCES, LIVE_MIRROR
    return [
        Field("name", "Instance", TEXT, "Instance name", lambda v: v.obj.name),
        *_common("Instance"),
        Field("os", "OS", TEXT, "Operating system", lambda v: v.obj.os),
        Field("pnode", "Primary_node", TEXT, "Primary node", lambda v: v.node.name),
        Field("pnode.group", "PrimaryNodeGroup", TEXT, "Primary node's group",
              lambda v: _group_name(v.cfg, v.node.group)),
        Field("pnode.group.uuid", "PrimaryNodeGroupUUID", TEXT, "Primary node's group UUID",
              lambda v: v.node.group),
        Field("snodes", "Secondary_Nodes", OTHER, "Secondary nodes; usually this will just be "
              "one node", lambda v: [v.cfg.node_name(u) for u in v.obj.secondary_nodes]),
        Field("snodes.group", "SecondaryNodesGroups", OTHER, "Node groups of secondary nodes",
              lambda v: [g.name if g else None for g in map(v.group, v.obj.secondary_nodes)]),
        Field("snodes.group.uuid", "SecondaryNodesGroupsUUID", OTHER,
              "Node group UUIDs of secondary nodes",
              lambda v: [g.uuid if g else None for g in map(v.group, v.obj.secondary_nodes)]),
        Field("admin_state", "InstanceState", TEXT, "Desired state of the instance",
              lambda v: v.obj.admin_state),
        Field("admin_state_source", "InstanceStateSource", TEXT,
              "Who last changed the desired state of the instance",
              lambda v: v.obj.admin_state_source),
        Field("admin_up", "Autostart", BOOL, "Desired state of the instance",
              lambda v: v.obj.admin_state == "up"),
        Field("disk_template", "Disk_template", TEXT, "Instance disk template",
              lambda v: v.obj.disk_template),
        Field("disks_active", "DisksActive", BOOL, "Desired state of the instance disks",
              lambda v: v.obj.disks_active),
        Field("hypervisor", "Hypervisor", TEXT, "Hypervisor name", lambda v: v.obj.hypervisor),
        Field("network_port", "Network_port", OTHER,
              "Instance network port if available (e.g. for VNC console)",
              lambda v: v.obj.network_port),
        # Herd keeps the instance's own beparams here, as it always answered
        Field("beparams", "BackendParameters", OTHER, "Backend parameters",
              lambda v: dict(v.obj.beparams)),
        Field("custom_beparams", "CustomBackendParameters", OTHER,
              "Custom backend parameters", lambda v: dict(v.obj.beparams)),
        Field("hvparams", "HypervisorParameters", OTHER, "Hypervisor parameters (merged)",
              lambda v: v.hv),
        Field("custom_hvparams", "CustomHypervisorParameters", OTHER,
              "Custom hypervisor parameters", lambda v: dict(v.obj.hvparams)),
        Field("osparams", "OpSysParameters", OTHER, "Operating system parameters (merged)",
              lambda v: v.cfg.filled_osparams(v.obj)),
        Field("custom_osparams", "CustomOpSysParameters", OTHER,
              "Custom operating system parameters", lambda v: dict(v.obj.osparams)),
        Field("custom_nicparams", "CustomNicParameters", OTHER, "Custom network interface "
              "parameters", lambda v: [dict(n.nicparams) for n in v.obj.nics]),
        Field("be/maxmem", "ConfigMaxMem", UNIT, 'The "maxmem" backend parameter',
              lambda v: v.be["maxmem"]),
        Field("be/minmem", "ConfigMinMem", UNIT, 'The "minmem" backend parameter',
              lambda v: v.be["minmem"]),
        Field("be/memory", "ConfigMaxMem", UNIT, 'The "maxmem" backend parameter (its old '
              'name "memory")', lambda v: v.be["maxmem"]),
        Field("be/vcpus", "ConfigVCPUs", NUMBER, 'The "vcpus" backend parameter',
              lambda v: v.be["vcpus"]),
        Field("be/auto_balance", "Auto_balance", BOOL, 'The "auto_balance" backend parameter',
              lambda v: v.be["auto_balance"]),
        Field("be/always_failover", "be/always_failover", BOOL,
              'The "always_failover" backend parameter', lambda v: v.be["always_failover"]),
        Field("disk_usage", "DiskUsage", UNIT, "Total disk space used by instance on each of "
              "its nodes", lambda v: disk_usage(v.obj)),
        Field("disk.count", "Disks", NUMBER, "Number of disks", lambda v: len(v.obj.disks)),
        Field("disk.sizes", "Disk_sizes", OTHER, "List of disk sizes",
              lambda v: [d.size for d in v.obj.disks], unit=True),
        Field("disk.spindles", "Disk_spindles", OTHER, "List of disk spindles",
              lambda v: [None for _ in v.obj.disks]),
        Field("disk.names", "Disk_names", OTHER, "List of disk names",
              lambda v: [d.name for d in v.obj.disks]),
        Field("disk.uuids", "Disk_UUIDs", OTHER, "List of disk UUIDs",
              lambda v: [d.uuid for d in v.obj.disks]),
        Field("nic.count", "NICs", NUMBER, "Number of network interfaces",
              lambda v: len(v.obj.nics)),
        Field("nic.macs", "NIC_MACs", OTHER, "List containing each network interface's MAC "
              "address", lambda v: [n.mac for n in v.obj.nics]),
        Field("nic.ips", "NIC_IPs", OTHER, "List containing each network interface's IP "
              "address", lambda v: [n.ip for n in v.obj.nics]),
        Field("nic.names", "NIC_Names", OTHER, "List containing each network interface's "
              "name", lambda v: [n.name for n in v.obj.nics]),
        Field("nic.uuids", "NIC_UUIDs", OTHER, "List containing each network interface's "
              "UUID", lambda v: [n.uuid for n in v.obj.nics]),
        Field("nic.modes", "NIC_modes", OTHER, "List containing each network interface's "
              "mode", _nic_param("mode")),
        Field("nic.links", "NIC_links", OTHER, "List containing each network interface's "
              "link", _nic_param("link")),
        Field("nic.vlans", "NIC_VLANs", OTHER, "List containing each network interface's "
              "VLAN", lambda v: [p.get("vlan", "") for _, p in v.nics]),
        Field("nic.bridges", "NIC_bridges", OTHER, "List containing each network interface's "
              "bridge", lambda v: [p["link"] if p["mode"] == "bridged" else None
                                   for _, p in v.nics]),
        Field("nic.networks", "NIC_networks", OTHER, "List containing each interface's "
              "network", lambda v: [n.network for n in v.obj.nics]),
        Field("nic.networks.names", "NIC_networks_names", OTHER, "List containing each "
              "interface's network name",
              lambda v: [network_name(v.cfg, n.network) for n in v.obj.nics]),
        # Herd's: the disks and NICs as dicts (gnt-instance info, the web manager)
        Field("disks", "DiskDetails", OTHER, "Each disk's description (Herd)",
              lambda v: v.obj.disk_dicts()),
        Field("nics", "NicDetails", OTHER, "Each network interface's description, with its "
              "effective mode and link (Herd)",
              lambda v: [dict(n.to_dict(), mode=p["mode"], link=p["link"]) for n, p in v.nics]),
        # live: the primary node's list of running guests
        Field("oper_state", "Running", BOOL, "Actual state of instance", _oper_state, LI),
        Field("status", "Status", TEXT, 'Instance status; "running" if instance is set to be '
              'running and actually is, "ADMIN_down" if instance is stopped and is not '
              'running, "ERROR_up" if instance should be stopped but is running, '
              '"ERROR_down" if instance should run but does not, "ERROR_nodedown" if its '
              'primary node is down, "ERROR_nodeoffline" if its primary node is marked '
              'offline, "ADMIN_offline" if instance is offline, "USER_down" if the user shut '
              'it down', _status, LI),
        Field("oper_ram", "Memory", UNIT, "Actual memory usage as seen by hypervisor",
              _running_value("memory"), LI),
        Field("oper_vcpus", "VCPUs", NUMBER, "Actual number of VCPUs as seen by hypervisor",
              _running_value("vcpus"), LI),
        Field("runtime", "Runtime", OTHER, "The hypervisor's view of the running guest "
              "(Herd)", lambda v: v.running, LI),
        Field("console", "Console", OTHER, "Instance console information",
              lambda v: {"node": v.node.name, "kind": "serial"} if v.running else None, LI),
        Field("disk.mirror", "DiskMirror", OTHER, "The mirror state of a mirrored template's "
              "disks (Herd)", lambda v: v.live.mirror.get(v.obj.name), LM),
    ]


#: Ganeti's titles of the hv/ and be/ parameter fields (others are titled by their name).
_HV_TITLES = {"acpi": "ACPI", "boot_order": "Boot_order", "cdrom_image_path":
              "CDROM_image_path", "cpu_type": "cpu_type", "disk_type": "Disk_type",
              "initrd_path": "Initrd_path", "kernel_path": "Kernel_path",
              "nic_type": "NIC_type", "pae": "PAE", "pci_pass": "pci_pass",
              "vnc_bind_address": "VNC_bind_address"}
_BE_TITLES = {"auto_balance": "Auto_balance", "minmem": "ConfigMinMem",
              "vcpus": "ConfigVCPUs", "maxmem": "ConfigMaxMem"}


def _hv_field(m: re.Match[str]) -> Field:
    key = m[1]
    return Field(f"hv/{key}", _HV_TITLES.get(key, f"hv/{key}"), OTHER,
                 f'The "{key}" hypervisor parameter', lambda v: v.hv.get(key))


def _be_field(m: re.Match[str]) -> Field:
    key = m[1]
    return Field(f"be/{key}", _BE_TITLES.get(key, f"be/{key}"), OTHER,
                 f'The "{key}" backend parameter', lambda v: v.be.get(key))


def _item(items: Callable[[InstanceView], Sequence[Any]], index: int,
          value: Callable[[Any], Any]) -> Getter:
    def get(v: InstanceView) -> Any:
        found = items(v)
        return value(found[index]) if index < len(found) else None
    return get


def _disk_field(m: re.Match[str]) -> Field:
    what, index = m[1], int(m[2])
    name = f"disk.{what}/{index}"
    disks: Callable[[InstanceView], Sequence[Any]] = lambda v: v.obj.disks  # noqa: E731
    if what == "size":
        return Field(name, f"Disk/{index}", UNIT, f"Disk size of {index} disk",
                     _item(disks, index, lambda d: d.size))
    if what == "spindles":
        return Field(name, f"DiskSpindles/{index}", NUMBER, f"Spindles of {index} disk",
                     _item(disks, index, lambda d: None))
    title = {"name": "DiskName", "uuid": "DiskUUID"}[what]
    return Field(name, f"{title}/{index}", TEXT, f"{title[4:]} of {index} disk",
                 _item(disks, index, lambda d: getattr(d, what)))


_NIC_ITEM: dict[str, tuple[str, Callable[[tuple[Any, dict[str, Any]]], Any]]] = {
    "mac": ("NicMAC", lambda n: n[0].mac),
    "ip": ("NicIP", lambda n: n[0].ip),
    "name": ("NicName", lambda n: n[0].name),
    "uuid": ("NicUUID", lambda n: n[0].uuid),
    "mode": ("NicMode", lambda n: n[1]["mode"]),
    "link": ("NicLink", lambda n: n[1]["link"]),
    "vlan": ("NicVLAN", lambda n: n[1].get("vlan", "")),
    "bridge": ("NicBridge", lambda n: n[1]["link"] if n[1]["mode"] == "bridged" else None),
    "network": ("NicNetwork", lambda n: n[0].network),
}
#: set per query by the view (the network's name needs the config): see _nic_field
_NIC_NETWORK_NAME = "network.name"


def _nic_field(m: re.Match[str]) -> Field:
    what, index = m[1], int(m[2])
    if what == _NIC_NETWORK_NAME:
        return Field(f"nic.{what}/{index}", f"NicNetworkName/{index}", TEXT,
                     f"network name of network interface {index}",
                     lambda v: (network_name(v.cfg, v.obj.nics[index].network)
                                if index < len(v.obj.nics) else None))
    title, value = _NIC_ITEM[what]
    return Field(f"nic.{what}/{index}", f"{title}/{index}", TEXT,
                 f"{what} of network interface {index}", _item(lambda v: v.nics, index, value))


INSTANCE = Registry("instance", _instance_fields(), (
    (re.compile(r"hv/([a-z0-9_]+)"), _hv_field),
    (re.compile(r"be/([a-z0-9_]+)"), _be_field),
    (re.compile(r"disk\.(size|spindles|name|uuid)/([0-9]{1,3})"), _disk_field),
    (re.compile(rf"nic\.(network\.name|{'|'.join(_NIC_ITEM)})/([0-9]{{1,3}})"),
     _nic_field),
))
#: The per-object families a full instance row holds (as Herd's rows always did).
INSTANCE_ROW_FAMILIES = ("hv", "disk.size", "nic.mac", "nic.ip", "nic.mode", "nic.link")


# -- nodes -------------------------------------------------------------------------------------
class _Lists:
    """Two name lists per key, built on the first ask (one pass over the config) and sorted:
    what a query of many rows needs instead of one scan per row."""

    __slots__ = ("_built", "cfg")

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self._built: tuple[dict[str, list[str]], dict[str, list[str]]] | None = None

    def _build(self, first: dict[str, list[str]], second: dict[str, list[str]]) -> None:
        raise NotImplementedError

    def lists(self) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        if self._built is None:
            first: dict[str, list[str]] = {}
            second: dict[str, list[str]] = {}
            self._build(first, second)
            for table in (first, second):
                for names in table.values():
                    names.sort()
            self._built = (first, second)
        return self._built


class NodeIndex(_Lists):
    """Per query: each node's primary and secondary instances, built once and only when a
    field asks (one pass over the instances, not one per node)."""

    __slots__ = ()

    def _build(self, primaries: dict[str, list[str]],
               secondaries: dict[str, list[str]]) -> None:
        for inst in self.cfg.instances.values():
            primaries.setdefault(inst.primary_node, []).append(inst.name)
            for uuid in inst.secondary_nodes:
                secondaries.setdefault(uuid, []).append(inst.name)


class NodeView:
    __slots__ = ("cfg", "index", "info", "obj")

    def __init__(self, cfg: Any, node: Any, info: dict[str, Any] | None,
                 index: NodeIndex) -> None:
        self.cfg, self.obj, self.info, self.index = cfg, node, info, index

    @property
    def primaries(self) -> list[str]:
        return self.index.lists()[0].get(self.obj.uuid, [])

    @property
    def secondaries(self) -> list[str]:
        return self.index.lists()[1].get(self.obj.uuid, [])

    @property
    def hv(self) -> dict[str, Any]:
        return (self.info or {}).get("hypervisor") or {}

    @property
    def lvm(self) -> dict[str, Any]:
        return (self.info or {}).get("lvm_activation") or {}


def node_role(cfg: Any, node: Any) -> str:
    """Ganeti's one-letter node role."""
    return ("M" if node.uuid == cfg.cluster.master_node else "O" if node.offline else
            "D" if node.drained else "C" if node.master_candidate else "R")


def _info(key: str) -> Getter:
    return lambda v: v.info[key] if v.info else None


def _info_get(key: str) -> Getter:
    return lambda v: (v.info or {}).get(key)


def _node_fields() -> list[Field]:
    N = LIVE_NODE
    return [
        Field("name", "Node", TEXT, "Node name", lambda v: v.obj.name),
        *_common("Node"),
        Field("pip", "PrimaryIP", TEXT, "Primary IP address", lambda v: v.obj.primary_ip),
        Field("sip", "SecondaryIP", TEXT, "Secondary IP address",
              lambda v: v.obj.secondary_ip or v.obj.primary_ip),
        Field("group", "Group", TEXT, "Node group",
              lambda v: _group_name(v.cfg, v.obj.group)),
        Field("group.uuid", "GroupUUID", TEXT, "UUID of node group", lambda v: v.obj.group),
        Field("master", "IsMaster", BOOL, "Whether node is master",
              lambda v: v.obj.uuid == v.cfg.cluster.master_node),
        Field("role", "Role", TEXT, 'Node role; "M" for master, "C" for master candidate, '
              '"R" for regular, "D" for drained, "O" for offline',
              lambda v: node_role(v.cfg, v.obj)),
        Field("master_candidate", "MasterC", BOOL, "Whether node is a master candidate",
              lambda v: v.obj.master_candidate),
        Field("offline", "Offline", BOOL, "Whether node is marked offline",
              lambda v: v.obj.offline),
        Field("drained", "Drained", BOOL, "Whether node is drained", lambda v: v.obj.drained),
        Field("master_capable", "MasterCapable", BOOL,
              "Whether node can become a master candidate", lambda v: v.obj.master_capable),
        Field("vm_capable", "VMCapable", BOOL, "Whether node can host instances",
              lambda v: v.obj.vm_capable),
        Field("ndparams", "NodeParameters", OTHER, "Node parameters",
              lambda v: v.cfg.filled_ndparams(v.obj)),
        Field("custom_ndparams", "CustomNodeParameters", OTHER, "Custom node parameters",
              lambda v: dict(v.obj.ndparams)),
        Field("pinst_cnt", "Pinst", NUMBER, "Number of instances with this node as primary",
              lambda v: len(v.primaries)),
        Field("sinst_cnt", "Sinst", NUMBER, "Number of instances with this node as secondary",
              lambda v: len(v.secondaries)),
        Field("pinst_list", "PriInstances", OTHER,
              "List of instances with this node as primary", lambda v: list(v.primaries)),
        Field("sinst_list", "SecInstances", OTHER,
              "List of instances with this node as secondary", lambda v: list(v.secondaries)),
        Field("powered", "Powered", BOOL, "Whether node is thought to be powered on",
              lambda v: True),
        # live: the node's own figures
        Field("mtotal", "MTotal", UNIT, "Total amount of memory of physical machine",
              _info("memory_total"), N),
        Field("mnode", "MNode", UNIT, "Amount of memory used by node (dom0 for Xen)",
              _info("memory_dom0"), N),
        Field("mfree", "MFree", UNIT, "Memory available for instance allocations",
              _info("memory_free"), N),
        Field("dtotal", "DTotal", UNIT, "Total storage space in storage unit used for "
              "instance disk allocation", _info("storage_total"), N),
        Field("dfree", "DFree", UNIT, "Available storage space in storage unit",
              _info("storage_free"), N),
        Field("ctotal", "CTotal", NUMBER, "Number of logical processors",
              _info("cpu_total"), N),
        Field("cnodes", "CNodes", NUMBER, "Number of NUMA domains on node (if exported by "
              "hypervisor)", lambda v: 1 if v.info else None, N),
        Field("csockets", "CSockets", NUMBER, "Number of physical CPU sockets (if exported "
              "by hypervisor)", _info("cpu_sockets"), N),
        Field("cnos", "CNOs", NUMBER, "Number of logical processors used by the node OS "
              "(dom0 for Xen)", lambda v: NODE_OS_CPUS if v.info else None, N),
        Field("spfree", "SpFree", NUMBER, "Available spindles in volume group (exclusive "
              "storage only)", lambda v: None, N),
        Field("sptotal", "SpTotal", NUMBER, "Total spindles in volume group (exclusive "
              "storage only)", lambda v: None, N),
        Field("bootid", "BootID", TEXT, "Random UUID renewed for each system reboot",
              lambda v: None, N),
        Field("reachable", "Reachable", BOOL, "Whether the node answered (Herd)",
              lambda v: v.info is not None and not v.obj.offline, N),
        Field("hv_accel", "Accel", TEXT, "The accelerator guests get: kvm or tcg (Herd)",
              lambda v: v.hv.get("accel"), N),
        Field("kvm_usable", "KVMUsable", BOOL, "Whether /dev/kvm is usable (Herd)",
              lambda v: v.hv.get("kvm_usable"), N),
        Field("kvm_reason", "KVMReason", TEXT, "Why KVM is not usable (Herd)",
              lambda v: v.hv.get("kvm_reason"), N),
        Field("qemu_version", "QEMUVersion", TEXT, "The node's QEMU version (Herd)",
              lambda v: v.hv.get("qemu_version"), N),
        Field("file_storage_total", "FileStorageTotal", UNIT, "Size of the file storage "
              "directory's file system (Herd)", _info_get("file_storage_total"), N),
        Field("file_storage_free", "FileStorageFree", UNIT, "Free space of the file storage "
              "directory's file system (Herd)", _info_get("file_storage_free"), N),
        Field("vg_name", "VGName", TEXT, "The cluster's volume group on this node (Herd)",
              _info_get("vg_name"), N),
        Field("vg_error", "VGError", TEXT, "Why the volume group is not usable (Herd)",
              _info_get("vg_error"), N),
        Field("lvm_activation", "LVMActivation", TEXT, "How the node activates LVs (Herd)",
              lambda v: v.lvm.get("mode"), N),
        Field("lvm_reason", "LVMReason", TEXT, "Why the node activates LVs so (Herd)",
              lambda v: v.lvm.get("reason"), N),
    ]


NODE = Registry("node", _node_fields())


# -- node groups -------------------------------------------------------------------------------
class GroupIndex(_Lists):
    """Per query: each group's nodes and primary instances, built once."""

    __slots__ = ()

    def _build(self, nodes: dict[str, list[str]], instances: dict[str, list[str]]) -> None:
        for node in self.cfg.nodes.values():
            nodes.setdefault(node.group, []).append(node.name)
        for inst in self.cfg.instances.values():
            node = self.cfg.nodes.get(inst.primary_node)
            if node is not None:
                instances.setdefault(node.group, []).append(inst.name)


class GroupView:
    __slots__ = ("cfg", "index", "obj")

    def __init__(self, cfg: Any, group: Any, index: GroupIndex) -> None:
        self.cfg, self.obj, self.index = cfg, group, index

    @property
    def nodes(self) -> list[str]:
        return self.index.lists()[0].get(self.obj.uuid, [])

    @property
    def instances(self) -> list[str]:
        return self.index.lists()[1].get(self.obj.uuid, [])


def _group_ndparams(v: GroupView) -> dict[str, Any]:
    from herd.objects import params

    return params.fill(params.ND_DEFAULTS, v.cfg.cluster.ndparams, v.obj.ndparams)


GROUP = Registry("group", [
    Field("name", "Group", TEXT, "Group name", lambda v: v.obj.name),
    *_common("Group"),
    Field("alloc_policy", "AllocPolicy", TEXT, "Allocation policy for group",
          lambda v: v.obj.alloc_policy),
    Field("node_cnt", "Nodes", NUMBER, "Number of nodes", lambda v: len(v.nodes)),
    Field("node_list", "NodeList", OTHER, "List of nodes", lambda v: list(v.nodes)),
    Field("pinst_cnt", "Instances", NUMBER, "Number of primary instances",
          lambda v: len(v.instances)),
    Field("pinst_list", "InstanceList", OTHER, "List of primary instances",
          lambda v: list(v.instances)),
    Field("ndparams", "NDParams", OTHER, "Node parameters", _group_ndparams),
    Field("custom_ndparams", "CustomNDParams", OTHER, "Custom node parameters",
          lambda v: dict(v.obj.ndparams)),
    Field("diskparams", "DiskParameters", OTHER, "Disk parameters (merged)",
          lambda v: v.cfg.filled_diskparams(v.obj)),
    Field("custom_diskparams", "CustomDiskParameters", OTHER, "Custom disk parameters",
          lambda v: dict(v.obj.diskparams)),
    Field("ipolicy", "InstancePolicy", OTHER, "Instance policy limitations (merged)",
          lambda v: v.cfg.filled_ipolicy(v.obj)),
    Field("custom_ipolicy", "CustomInstancePolicy", OTHER,
          "Custom instance policy limitations", lambda v: dict(v.obj.ipolicy)),
])


# -- networks ----------------------------------------------------------------------------------
class NetworkView:
    """One network in one query. Its address pool's state comes from ``pool_state`` (the
    logic layer's, given by the query: this module does not import it), worked out once and
    only when a field needs it, as are the groups it is connected to and its users."""

    __slots__ = ("_groups", "_pool_state", "_state", "_users", "cfg", "obj")

    def __init__(self, cfg: Any, net: Any, pool_state: Callable[[Any, Any], Any]) -> None:
        self.cfg, self.obj, self._pool_state = cfg, net, pool_state
        self._state: Any = None
        self._groups: list[list[str]] | None = None
        self._users: list[str] | None = None

    @property
    def state(self) -> Any:
        if self._state is None:
            self._state = self._pool_state(self.cfg, self.obj)
        return self._state

    @property
    def groups(self) -> list[list[str]]:
        """[group name, NIC mode, NIC link, VLAN] of each group it is connected to."""
        if self._groups is None:
            self._groups = []
            for group in sorted(self.cfg.nodegroups.values(), key=lambda g: g.name):
                found = group.networks.get(self.obj.uuid)
                if found is not None:
                    self._groups.append([group.name, found.get("mode"), found.get("link"),
                                         found.get("vlan") or ""])
        return self._groups

    @property
    def users(self) -> list[str]:
        """The instances with a NIC on it."""
        if self._users is None:
            uuid = self.obj.uuid
            self._users = sorted({i.name for i in self.cfg.instances.values()
                                  if any(n.network == uuid for n in i.nics)})
        return self._users


def _external_reservations(v: NetworkView) -> str:
    return ", ".join(v.obj.address(o) for o in sorted(v.state.external))


NETWORK = Registry("network", [
    Field("name", "Network", TEXT, "Name", lambda v: v.obj.name),
    Field("network", "Subnet", TEXT, "IPv4 subnet", lambda v: v.obj.network),
    Field("gateway", "Gateway", OTHER, "IPv4 gateway", lambda v: v.obj.gateway),
    Field("network6", "IPv6Subnet", OTHER, "IPv6 subnet", lambda v: v.obj.network6),
    Field("gateway6", "IPv6Gateway", OTHER, "IPv6 gateway", lambda v: v.obj.gateway6),
    Field("mac_prefix", "MacPrefix", OTHER, "MAC address prefix", lambda v: v.obj.mac_prefix),
    Field("free_count", "FreeCount", NUMBER, "Number of available addresses",
          lambda v: v.state.free_count),
    Field("reserved_count", "ReservedCount", NUMBER, "Number of reserved addresses",
          lambda v: v.state.reserved_count),
    Field("map", "Map", TEXT, "Actual mapping", lambda v: v.state.map()),
    Field("external_reservations", "ExternalReservations", TEXT, "External reservations",
          _external_reservations),
    Field("group_list", "GroupList", OTHER,
          "List of nodegroups (group name, NIC mode, NIC link)", lambda v: v.groups),
    Field("group_cnt", "NodeGroups", NUMBER, "Number of nodegroups", lambda v: len(v.groups)),
    Field("inst_list", "InstanceList", OTHER, "List of instances", lambda v: v.users),
    Field("inst_cnt", "Instances", NUMBER, "Number of instances", lambda v: len(v.users)),
    *_common("Network"),
])


# -- jobs --------------------------------------------------------------------------------------
def _key(name: str) -> Getter:
    return lambda job: job.get(name)


JOB = Registry("job", [
    Field(name, title, kind, doc, _key(name)) for name, title, kind, doc in (
        ("id", "ID", NUMBER, "Job ID"),
        ("status", "Status", TEXT, "Job status"),
        ("priority", "Priority", NUMBER, "Current job priority"),
        ("archived", "Archived", BOOL, "Whether job is archived"),
        ("ops", "OpCodes", OTHER, "List of all opcodes"),
        ("opresult", "OpCode_result", OTHER, "List of opcodes results"),
        ("opstatus", "OpCode_status", OTHER, "List of opcodes status"),
        ("oplog", "OpCode_log", OTHER, "List of opcode output logs"),
        ("opstart", "OpCode_start", OTHER, "List of opcode start timestamps (before "
         "acquiring locks)"),
        ("opexec", "OpCode_exec", OTHER, "List of opcode execution start timestamps (after "
         "acquiring locks)"),
        ("opend", "OpCode_end", OTHER, "List of opcode end timestamps"),
        ("summary", "Summary", OTHER, "List of per-opcode summaries"),
        ("received_ts", "Received", OTHER, "Timestamp of when job was received"),
        ("start_ts", "Start", OTHER, "Timestamp of job start"),
        ("end_ts", "End", OTHER, "Timestamp of job end"),
        ("origin", "Origin", OTHER, "Who submitted the job, and how (Herd)"),
    )])

REGISTRIES: dict[str, Registry] = {r.resource: r for r in (INSTANCE, NODE, GROUP, NETWORK,
                                                                  JOB)}
