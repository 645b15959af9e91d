"""Decisions about networks and their address pools, as pure functions of the config.

A network's pool (Ganeti's ``AddressPool``) is its subnet less three kinds of used addresses:

* external reservations stored in the network object (network, broadcast and gateway
  addresses, and what the admin reserved with ``--add-reserved-ips``);
* the ``ip`` of every instance NIC on the network (read from the instances: there is no
  second copy to keep in step, so NIC and instance removal release addresses by themselves);
* addresses claimed by running jobs and not yet saved (``ctx.reservations``, kind ``ip``).

Choosing a free address and claiming it happen in one synchronous step (:func:`take`): masterd
runs jobs as tasks of one event loop, so no other job can look at the pool between the two,
and two concurrent ``ip=pool`` adds never get the same address. The claim is released when the
job ends; by then a successful job has saved the instance, whose NIC now holds the address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from herd import errors
from herd.objects import ConfigData, Instance, Network, NodeGroup

#: Ganeti's IPV4_NETWORK_MIN_SIZE/MAX_SIZE as prefix lengths: /30 (4 addresses) to /16.
MIN_PREFIX, MAX_PREFIX = 16, 30
#: The ``ip`` value that asks for the first free address of the NIC's network.
POOL = "pool"
#: The Reservations kind of addresses claimed by running jobs: (network uuid, offset).
KIND = "ip"


def parse_subnet(text: Any) -> str:
    """The subnet of ``gnt-network add --network``, normalized; IPv4 /16 to /30 only."""
    value = str(text or "").strip()
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        reason = "host bits set" if "host bits" in str(exc) else "not an IPv4 subnet in CIDR form"
        raise errors.ParameterError(
            f"invalid network '{value}': {reason}; expected an IPv4 subnet from /16 to /30 "
            "such as 192.0.2.0/24") from None
    if net.version != 4 or not MIN_PREFIX <= net.prefixlen <= MAX_PREFIX:
        raise errors.ParameterError(
            f"invalid network '{value}': the address pool must be an IPv4 subnet from "
            f"/{MIN_PREFIX} to /{MAX_PREFIX}")
    return str(net)


def parse_subnet6(text: Any, what: str = "network6") -> str | None:
    """An informational IPv6 subnet (``--network6``), or None for none/empty."""
    value = str(text or "").strip()
    if value.lower() in ("", "none"):
        return None
    try:
        net = ipaddress.IPv6Network(value, strict=True)
    except ValueError:
        raise errors.ParameterError(f"invalid {what} '{value}': expected an IPv6 subnet "
                                    "such as 2001:db8::/64") from None
    return str(net)


def parse_address(text: Any, what: str, version: int = 4) -> str | None:
    """An address option (``--gateway``), or None for none/empty."""
    value = str(text or "").strip()
    if value.lower() in ("", "none"):
        return None
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        addr = None
    if addr is None or addr.version != version:
        raise errors.ParameterError(f"invalid {what} '{value}': expected an IPv{version} "
                                    "address")
    return str(addr)


def offset_in(net: Network, ip: str, what: str) -> int:
    """The offset of ``ip`` in ``net``; one line naming both when it lies outside."""
    offset = net.offset(ip)
    if offset is None:
        raise errors.ParameterError(f"{what} {ip} is not in network {net.name} "
                                    f"({net.network})")
    return offset


def initial_reservations(net: Network, reserved_ips: Iterable[str]) -> list[int]:
    """What ``gnt-network add`` reserves externally: the network and broadcast addresses,
    the gateway and the admin's ``--add-reserved-ips`` (each checked to lie inside)."""
    out = {0, net.size - 1}
    if net.gateway:
        out.add(offset_in(net, net.gateway, "gateway"))
    for ip in reserved_ips:
        out.add(offset_in(net, parse_address(ip, "reserved IP") or "", "reserved IP"))
    return sorted(out)


def fixed_offsets(net: Network) -> set[int]:
    """Reservations that cannot be removed: network, broadcast and gateway addresses."""
    out = {0, net.size - 1}
    if net.gateway and net.offset(net.gateway) is not None:
        out.add(net.offset(net.gateway))  # type: ignore[arg-type]
    return out


def instance_addresses(cfg: ConfigData, net: Network) -> dict[int, tuple[str, int]]:
    """Offset -> (instance name, NIC index) of the NICs on ``net`` with an address."""
    out: dict[int, tuple[str, int]] = {}
    for inst in cfg.instances.values():
        for index, nic in enumerate(inst.nics):
            if nic.network == net.uuid and nic.ip:
                offset = net.offset(nic.ip)
                if offset is not None:
                    out[offset] = (inst.name, index)
    return out


def claimed_offsets(claimed: Iterable[object], net: Network) -> set[int]:
    """The offsets of ``net`` among the values claimed by running jobs (kind ``ip``)."""
    return {value[1] for value in claimed  # type: ignore[index]
            if isinstance(value, tuple) and value[0] == net.uuid}


@dataclass(frozen=True)
class PoolState:
    """A network's pool accounting (Ganeti's free_count, reserved_count and map)."""

    size: int
    external: frozenset[int]
    instances: frozenset[int]

    @property
    def reserved(self) -> frozenset[int]:
        return self.external | self.instances

    @property
    def free_count(self) -> int:
        return self.size - len(self.reserved)

    @property
    def reserved_count(self) -> int:
        return len(self.reserved)

    def map(self) -> str:
        """Ganeti's map: X for a reserved address, '.' for a free one."""
        used = self.reserved
        return "".join("X" if i in used else "." for i in range(self.size))


def pool_state(cfg: ConfigData, net: Network) -> PoolState:
    return PoolState(net.size, frozenset(net.ext_reservations),
                     frozenset(instance_addresses(cfg, net)))


def first_free(size: int, used: set[int] | frozenset[int]) -> int | None:
    """The lowest free offset (Ganeti's GenerateFree hands out the first free address)."""
    for offset in range(size):
        if offset not in used:
            return offset
    return None


def take(cfg: ConfigData, reservations: Any, owner: object, net: Network, wanted: str,
         where: str) -> str:
    """Claim an address of ``net`` for ``owner`` (a running job's unit): the first free one
    for ``wanted`` = ``pool``, else ``wanted`` itself if it lies in the subnet and nobody
    holds it. Synchronous on purpose: see the module doc."""
    state = pool_state(cfg, net)
    claimed = claimed_offsets(reservations.claimed(KIND), net)
    if wanted == POOL:
        offset = first_free(net.size, state.reserved | claimed)
        if offset is None:
            raise errors.OpPrereqError(
                f"{where}: network {net.name} ({net.network}) has no free address left "
                f"({state.reserved_count} of {net.size} reserved, {len(claimed)} being "
                "assigned by running jobs)")
    else:
        offset = offset_in(net, wanted, f"{where}: ip")
        if offset in net.ext_reservations:
            raise errors.OpPrereqError(f"{where}: ip {wanted} is reserved in network "
                                       f"{net.name}")
        holder = instance_addresses(cfg, net).get(offset)
        if holder is not None:
            raise errors.OpPrereqError(f"{where}: ip {wanted} of network {net.name} is "
                                       f"already in use by instance {holder[0]} "
                                       f"(nic/{holder[1]})")
        if offset in claimed:
            raise errors.OpPrereqError(f"{where}: ip {wanted} of network {net.name} is "
                                       "already being assigned (by this or another running "
                                       "job)")
    reservations.claim(KIND, (net.uuid, offset), owner)
    return net.address(offset)


# -- groups -----------------------------------------------------------------------------------
def netparams(cfg: ConfigData, net: Network, group_uuid: str, where: str) -> dict[str, Any]:
    """The NIC parameters (mode, link, vlan) of ``net`` in the node group; one line naming
    the network and the group when it is not connected there."""
    group = cfg.nodegroups.get(group_uuid)
    found = group.networks.get(net.uuid) if group is not None else None
    if found is None:
        gname = group.name if group is not None else group_uuid
        raise errors.OpPrereqError(
            f"{where}: network {net.name} is not connected to node group {gname} "
            f"(gnt-network connect -N mode=bridged,link=BRIDGE {net.name} {gname})")
    return dict(found)


def missing_networks(cfg: ConfigData, inst: Instance, group_uuid: str) -> list[str]:
    """The names of the networks of ``inst``'s NICs not connected to node group
    ``group_uuid`` (what change-group must refuse: Ganeti issue #1016), sorted."""
    group = cfg.nodegroups.get(group_uuid)
    connected = set(group.networks) if group is not None else set()
    out = set()
    for nic in inst.nics:
        if nic.network and nic.network not in connected:
            net = cfg.networks.get(nic.network)
            out.add(net.name if net is not None else nic.network)
    return sorted(out)


def network_of_ip(cfg: ConfigData, group: NodeGroup, ip: str) -> Network | None:
    """The network connected to ``group`` whose subnet holds ``ip`` (Ganeti's
    CheckForConflictingIp: a NIC with that address must be on that network)."""
    for uuid in group.networks:
        net = cfg.networks.get(uuid)
        if net is not None and net.offset(ip) is not None:
            return net
    return None


def connect_conflicts(cfg: ConfigData, net: Network, group_uuid: str) -> list[str]:
    """NICs of instances in the group with an address inside ``net`` but not on it (what
    ``connect`` with conflicts check refuses): "instance/nic.N (ip)"."""
    members = {n.uuid for n in cfg.nodes.values() if n.group == group_uuid}
    out = []
    for inst in sorted(cfg.instances.values(), key=lambda i: i.name):
        if inst.primary_node not in members:
            continue
        for index, nic in enumerate(inst.nics):
            if nic.ip and nic.network != net.uuid and net.offset(nic.ip) is not None:
                out.append(f"{inst.name}/nic.{index} ({nic.ip})")
    return out


def users_in_group(cfg: ConfigData, net: Network, group_uuid: str) -> list[str]:
    """Instances in the group with a NIC on ``net`` (what disconnect refuses)."""
    members = {n.uuid for n in cfg.nodes.values() if n.group == group_uuid}
    return sorted(i.name for i in cfg.instances.values() if i.primary_node in members
                  and any(nic.network == net.uuid for nic in i.nics))


def address_problems(cfg: ConfigData) -> list[str]:
    """What ``gnt-cluster verify`` reports about instance NICs on networks: an unknown
    network, an address outside the subnet, reserved or held twice, a network not connected
    to the primary node's group. None of these can be made through Herd's operations; a
    hand-edited config or a node moved between groups can."""
    out = []
    held: dict[tuple[str, str], str] = {}
    for inst in sorted(cfg.instances.values(), key=lambda i: i.name):
        node = cfg.nodes.get(inst.primary_node)
        for index, nic in enumerate(inst.nics):
            if not nic.network:
                continue
            where = f"instance {inst.name} nic/{index}"
            net = cfg.networks.get(nic.network)
            if net is None:
                out.append(f"{where}: unknown network {nic.network}")
                continue
            if node is not None and nic.network not in getattr(
                    cfg.nodegroups.get(node.group), "networks", {}):
                out.append(f"{where}: network {net.name} is not connected to the node group "
                           "of its primary node")
            if not nic.ip:
                continue
            offset = net.offset(nic.ip)
            if offset is None:
                out.append(f"{where}: address {nic.ip} is outside network {net.name} "
                           f"({net.network})")
            elif offset in net.ext_reservations:
                out.append(f"{where}: address {nic.ip} is reserved in network {net.name}")
            other = held.setdefault((net.uuid, nic.ip), where)
            if other != where:
                out.append(f"{where}: address {nic.ip} of network {net.name} is also held by "
                           f"{other}")
    return out
