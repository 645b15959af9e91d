"""The cluster object and the whole configuration document."""

from __future__ import annotations

import dataclasses
from typing import Any

from herd.errors import NotFoundError
from herd.objects import params
from herd.objects.base import ConfigObject, gc_paused
from herd.objects.instance import Instance
from herd.objects.network import Network
from herd.objects.node import Node, NodeGroup

NODED_PORT = 1811


@dataclasses.dataclass(slots=True)
class Cluster(ConfigObject):
    cluster_name: str = ""
    master_node: str = ""  # node uuid
    master_ip: str = ""
    master_netdev: str = ""
    master_netmask: int = 32
    mac_prefix: str = "aa:00:00"
    file_storage_dir: str = ""
    #: The LVM volume group of every node (Ganeti's name; empty: the cluster has none). Each
    #: node gets it through its cluster facts file and registers it with its device factory.
    volume_group_name: str = ""
    #: Ganeti's: regular expressions of ``VG/LV`` names verify leaves alone (LVs of the admin's
    #: own in the cluster's VG, which it would otherwise report as unknown).
    reserved_lvs: list[str] = dataclasses.field(default_factory=list)
    noded_port: int = NODED_PORT
    enabled_hypervisors: list[str] = dataclasses.field(default_factory=lambda: ["kvm"])
    enabled_disk_templates: list[str] = dataclasses.field(
        default_factory=lambda: ["drbd", "file", "diskless"])
    #: The allocator used when an operation names none (Ganeti's ``--default-iallocator``);
    #: empty: Herd's built-in one (herd.allocator.builtin).
    default_iallocator: str = ""
    #: Extra arguments of every allocator run: ``{key: value}`` becomes ``--key=value``, a
    #: key with None ``--key`` (Ganeti's ``--default-iallocator-params``).
    default_iallocator_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Master candidates run etcd's voting members: 3 tolerate one failure and keep the
    #: quorum's writes cheap; an odd number, as an even one tolerates no more failures than
    #: one fewer (gnt-cluster verify warns). Ganeti's default was 10.
    candidate_pool_size: int = 3
    #: Ports handed to mirrored disks (Ganeti's DRBD port range); each disk owns one.
    drbd_port_first: int = 11000
    drbd_port_last: int = 14999
    hvparams: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    beparams: dict[str, Any] = dataclasses.field(
        default_factory=lambda: dict(params.BE_DEFAULTS))
    nicparams: dict[str, Any] = dataclasses.field(
        default_factory=lambda: dict(params.NIC_DEFAULTS))
    ndparams: dict[str, Any] = dataclasses.field(
        default_factory=lambda: dict(params.ND_DEFAULTS))
    diskparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    osparams: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    maintain_node_health: bool = False
    #: Whether RAPI answers GETs without credentials. Ganeti's RAPI does (htools' ``-m`` and
    #: some exporters rely on it); Herd asks for a user unless the admin opts in, because the
    #: answers name every instance, address and MAC of the cluster.
    rapi_anonymous_reads: bool = False
    #: Where nodes look for OS definitions (absolute paths, searched in order; empty: Herd's
    #: own directory, then Ganeti's default path, then the bundled ones; herd.paths).
    os_search_path: list[str] = dataclasses.field(default_factory=list)
    uid_pool: list[Any] = dataclasses.field(default_factory=list)
    tags: list[str] = dataclasses.field(default_factory=list)
    #: Roles granted to users and @groups on paths (herd.objects.access; gnt-cluster grant):
    #: [{role, subject, path}], changed in transactions like any other config.
    access_grants: list[dict[str, str]] = dataclasses.field(default_factory=list)
    #: Users' groups for grants and owner tags: group name -> user names (gnt-cluster
    #: set-group). The users file knows no groups, so they live with the grants.
    access_groups: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    #: Quotas of owners (herd.logic.quota; gnt-cluster set-quota): subject (user or @group)
    #: -> {vcpus, memory, disk, instances}, sizes in MiB; a missing key is no limit.
    access_quotas: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    #: Directories below which users who are not admins may name image files in hypervisor
    #: parameters (cdrom, floppy, kernel, initrd; herd.logic.host_paths): gnt-cluster modify
    #: --user-image-dirs. Empty: only admins set host paths.
    user_image_dirs: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The stored form; the access fields only once set, so that a cluster without grants
        stores byte for byte what it stored before they existed (and older Herds read it)."""
        out = ConfigObject.to_dict(self)  # (slots=True: no zero-argument super())
        for name in ("access_grants", "access_groups", "access_quotas", "user_image_dirs"):
            if not out.get(name):
                out.pop(name, None)
        return out


@dataclasses.dataclass
class ConfigData:
    """The whole configuration document. ``serial_no`` counts every saved change."""

    cluster: Cluster
    nodegroups: dict[str, NodeGroup] = dataclasses.field(default_factory=dict)
    nodes: dict[str, Node] = dataclasses.field(default_factory=dict)
    instances: dict[str, Instance] = dataclasses.field(default_factory=dict)
    networks: dict[str, Network] = dataclasses.field(default_factory=dict)
    serial_no: int = 1
    version: int = 1
    mtime: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = {
            "version": self.version,
            "serial_no": self.serial_no,
            "mtime": self.mtime,
            "cluster": self.cluster.to_dict(),
            "nodegroups": {k: v.to_dict() for k, v in self.nodegroups.items()},
            "nodes": {k: v.to_dict() for k, v in self.nodes.items()},
            "instances": {k: v.to_dict() for k, v in self.instances.items()},
        }
        if self.networks:  # only once there are: older Herds read the document unchanged
            out["networks"] = {k: v.to_dict() for k, v in self.networks.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConfigData:
        with gc_paused():
            return cls._from_dict(data)

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> ConfigData:
        return cls(
            cluster=Cluster.from_dict(data["cluster"]),
            nodegroups={k: NodeGroup.from_dict(v) for k, v in data.get("nodegroups", {}).items()},
            nodes={k: Node.from_dict(v) for k, v in data.get("nodes", {}).items()},
            instances={k: Instance.from_dict(v) for k, v in data.get("instances", {}).items()},
            networks={k: Network.from_dict(v) for k, v in data.get("networks", {}).items()},
            serial_no=int(data.get("serial_no", 1)),
            version=int(data.get("version", 1)),
            mtime=float(data.get("mtime", 0.0)),
        )

    # -- lookups by name (names are unique; uuids are the keys) ------------------------------
    def find_node(self, name: str) -> Node | None:
        for node in self.nodes.values():
            if node.name == name or node.uuid == name or node.name.split(".")[0] == name:
                return node
        return None

    def get_node(self, name: str) -> Node:
        node = self.find_node(name)
        if node is None:
            known = ", ".join(sorted(n.name for n in self.nodes.values())) or "none"
            raise NotFoundError(f"node '{name}' is not in the cluster; nodes: {known}")
        return node

    def find_instance(self, name: str) -> Instance | None:
        for inst in self.instances.values():
            if inst.name == name or inst.uuid == name:
                return inst
        # Ganeti accepts a unique short name prefix of an FQDN
        matches = [i for i in self.instances.values() if i.name.split(".")[0] == name]
        return matches[0] if len(matches) == 1 else None

    def get_instance(self, name: str) -> Instance:
        inst = self.find_instance(name)
        if inst is None:
            raise NotFoundError(f"instance '{name}' does not exist")
        return inst

    def find_network(self, name: str) -> Network | None:
        for net in self.networks.values():
            if name in (net.name, net.uuid):
                return net
        return None

    def get_network(self, name: str) -> Network:
        net = self.find_network(name)
        if net is None:
            known = ", ".join(sorted(n.name for n in self.networks.values())) or "none"
            raise NotFoundError(f"network '{name}' does not exist; networks: {known}")
        return net

    def node_name(self, uuid: str) -> str:
        node = self.nodes.get(uuid)
        return node.name if node else uuid

    @property
    def master(self) -> Node:
        return self.nodes[self.cluster.master_node]

    def default_group(self) -> NodeGroup:
        return next(iter(self.nodegroups.values()))

    def find_group(self, name: str) -> NodeGroup | None:
        for group in self.nodegroups.values():
            if name in (group.name, group.uuid):
                return group
        return None

    def get_group(self, name: str) -> NodeGroup:
        group = self.find_group(name)
        if group is None:
            known = ", ".join(sorted(g.name for g in self.nodegroups.values())) or "none"
            raise NotFoundError(f"node group '{name}' does not exist; groups: {known}")
        return group

    def group_of_node(self, node_uuid: str) -> NodeGroup | None:
        node = self.nodes.get(node_uuid)
        return self.nodegroups.get(node.group) if node else None

    def filled_ndparams(self, node: Node) -> dict[str, Any]:
        """A node's effective node parameters: cluster <- its group <- the node."""
        group = self.nodegroups.get(node.group)
        return params.fill(params.ND_DEFAULTS, self.cluster.ndparams,
                           group.ndparams if group else None, node.ndparams)

    def filled_ipolicy(self, group: NodeGroup | None) -> dict[str, Any]:
        """A group's effective instance policy: the cluster's, overridden by the group's."""
        base = params.default_ipolicy(list(self.cluster.enabled_disk_templates))
        return params.fill_ipolicy(base, group.ipolicy if group else None)

    def filled_diskparams(self, group: NodeGroup | None) -> dict[str, Any]:
        """Per-template disk parameters, cluster <- group (Ganeti's GetGroupDiskParams)."""
        out: dict[str, Any] = {}
        for template in params.DISK_TEMPLATES:
            out[template] = params.fill(self.cluster.diskparams.get(template),
                                        (group.diskparams if group else {}).get(template))
        return out

    # -- effective parameters (the one place where inheritance is computed) ------------------
    def filled_beparams(self, inst: Instance) -> dict[str, Any]:
        group = self._group_of(inst)
        return params.fill(params.BE_DEFAULTS, self.cluster.beparams,
                           group.beparams if group else None, inst.beparams)

    def filled_hvparams(self, inst: Instance, hv_defaults: dict[str, Any]) -> dict[str, Any]:
        group = self._group_of(inst)
        return params.fill(hv_defaults, self.cluster.hvparams.get(inst.hypervisor),
                           group.hvparams.get(inst.hypervisor) if group else None,
                           inst.hvparams)

    def filled_nicparams(self, inst: Instance, nic_overrides: dict[str, Any]) -> dict[str, Any]:
        group = self._group_of(inst)
        return params.fill(params.NIC_DEFAULTS, self.cluster.nicparams,
                           group.nicparams if group else None, nic_overrides)

    def filled_osparams(self, inst: Instance) -> dict[str, Any]:
        base_os = inst.os.split("+", 1)[0]
        return params.fill(self.cluster.osparams.get(base_os), inst.osparams)

    def _group_of(self, inst: Instance) -> NodeGroup | None:
        node = self.nodes.get(inst.primary_node)
        return self.nodegroups.get(node.group) if node else None
