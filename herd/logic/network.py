"""Networks: ``gnt-network add/remove/modify/rename/connect/disconnect`` and their query.

Every operation here holds the cluster lock exclusively (the default), and every instance
creation or modify holds it shared: so a network's subnet, reservations and connections do
not change while a job assigns addresses from it, and the pool decisions
(:mod:`herd.logic.network_pool`) see a stable network. Changes are saved as every config
change is (one etcd transaction per save).
"""

from __future__ import annotations

from typing import Any

from herd import errors
from herd.logic import network_pool as pool
from herd.logic.base import LogicalUnit
from herd.logic.hooks import HookTargets, network_env
from herd.logic.network_pool import missing_networks
from herd.network import mac as macs
from herd.objects import ConfigData, Network, NodeGroup, params
from herd.opcodes.network import (
    OpNetworkAdd,
    OpNetworkConnect,
    OpNetworkDisconnect,
    OpNetworkRemove,
    OpNetworkRename,
    OpNetworkSetParams,
)

__all__ = ["missing_networks", "query_networks"]


def _group(cfg: ConfigData, name: str) -> NodeGroup:
    for group in cfg.nodegroups.values():
        if name in (group.name, group.uuid):
            return group
    known = ", ".join(sorted(g.name for g in cfg.nodegroups.values()))
    raise errors.NotFoundError(f"node group '{name}' does not exist; groups: {known}")


def _reserved_list(ips: list[str] | None, what: str) -> list[str]:
    out = []
    for ip in ips or []:
        addr = pool.parse_address(ip, what)
        if addr is not None:
            out.append(addr)
    return out


class LUNetworkAdd(LogicalUnit[OpNetworkAdd]):
    OPCODE = OpNetworkAdd

    async def check(self) -> None:
        op, cfg = self.op, self.cfg
        if cfg.find_network(op.network_name) is not None:
            raise errors.AlreadyExistsError(f"network '{op.network_name}' already exists")
        net = Network(name=op.network_name, network=pool.parse_subnet(op.network),
                      gateway=pool.parse_address(op.gateway, "gateway"),
                      network6=pool.parse_subnet6(op.network6),
                      gateway6=pool.parse_address(op.gateway6, "gateway6", version=6),
                      mac_prefix=macs.check_prefix(op.mac_prefix) if op.mac_prefix else None,
                      tags=list(dict.fromkeys(op.tags or [])))
        from herd.logic.tags import check_tag

        for tag in net.tags:
            check_tag(tag)
        net.ext_reservations = pool.initial_reservations(
            net, _reserved_list(op.add_reserved_ips, "reserved IP"))
        self.net = net

    def hooks_env(self) -> dict[str, Any]:
        return network_env(self.net)

    async def execute(self) -> None:
        net, cfg = self.net, self.cfg
        if self.op.conflicts_check:
            # Ganeti reserves the nodes' and the master's addresses inside the subnet
            known = {n.primary_ip for n in cfg.nodes.values()}
            known |= {n.secondary_ip for n in cfg.nodes.values() if n.secondary_ip}
            known.add(cfg.cluster.master_ip)
            found = sorted({off for ip in known if ip and (off := net.offset(ip)) is not None})
            if found:
                net.ext_reservations = sorted(set(net.ext_reservations) | set(found))
                self.feedback(f"Reserved node/master addresses inside {net.network}: "
                              f"{', '.join(net.address(o) for o in found)}")
        cfg.networks[net.uuid] = net
        try:
            await self.ctx.config.save()
        except BaseException:
            cfg.networks.pop(net.uuid, None)
            raise


class LUNetworkRemove(LogicalUnit[OpNetworkRemove]):
    OPCODE = OpNetworkRemove

    async def check(self) -> None:
        cfg = self.cfg
        self.net = cfg.get_network(self.op.network_name)
        groups = sorted(g.name for g in cfg.nodegroups.values() if self.net.uuid in g.networks)
        if groups:
            raise errors.OpPrereqError(
                f"network {self.net.name} is connected to node group(s) {', '.join(groups)}; "
                "disconnect it first (gnt-network disconnect)")
        users = sorted(i.name for i in cfg.instances.values()
                       if any(n.network == self.net.uuid for n in i.nics))
        if users:
            raise errors.OpPrereqError(f"network {self.net.name} is used by instance(s) "
                                       f"{', '.join(users)}")

    def hooks_env(self) -> dict[str, Any]:
        return {"NETWORK_NAME": self.net.name}

    async def execute(self) -> None:
        self.cfg.networks.pop(self.net.uuid, None)
        await self.ctx.config.save()


class LUNetworkRename(LogicalUnit[OpNetworkRename]):
    OPCODE = OpNetworkRename

    async def check(self) -> None:
        self.net = self.cfg.get_network(self.op.network_name)
        if self.cfg.find_network(self.op.new_name) is not None:
            raise errors.AlreadyExistsError(f"network '{self.op.new_name}' already exists")

    async def execute(self) -> str:
        self.net.name = self.op.new_name
        self.net.touch()
        await self.ctx.config.save()
        return self.net.name


class LUNetworkSetParams(LogicalUnit[OpNetworkSetParams]):
    OPCODE = OpNetworkSetParams

    async def check(self) -> None:
        op, cfg = self.op, self.cfg
        net = self.net = cfg.get_network(op.network_name)
        if op.gateway is not None and (op.add_reserved_ips or op.remove_reserved_ips):
            raise errors.ParameterError("the gateway and the reserved IPs cannot be changed "
                                        "in one operation (Ganeti's rule): run two modifies")
        if all(v is None for v in (op.gateway, op.network6, op.gateway6, op.mac_prefix,
                                   op.add_reserved_ips, op.remove_reserved_ips)):
            raise errors.ParameterError("please give at least one of the parameters to modify")
        ext = set(net.ext_reservations)
        users = pool.instance_addresses(cfg, net)
        self.gateway = net.gateway
        if op.gateway is not None:
            new = pool.parse_address(op.gateway, "gateway")
            if new is not None:
                off = pool.offset_in(net, new, "gateway")
                if off in users:
                    raise errors.OpPrereqError(f"gateway {new} is the address of instance "
                                               f"{users[off][0]} (nic/{users[off][1]})")
                ext.add(off)
            if net.gateway and net.offset(net.gateway) not in (None, 0, net.size - 1):
                ext.discard(net.offset(net.gateway))  # type: ignore[arg-type]
            self.gateway = new
        fixed = pool.fixed_offsets(net)
        for ip in _reserved_list(op.add_reserved_ips, "reserved IP"):
            off = pool.offset_in(net, ip, "reserved IP")
            if off in users:
                raise errors.OpPrereqError(f"cannot reserve {ip}: it is the address of "
                                           f"instance {users[off][0]} (nic/{users[off][1]})")
            if off in ext:
                self.feedback(f"  - WARNING: {ip} is already reserved")
            ext.add(off)
        for ip in _reserved_list(op.remove_reserved_ips, "reserved IP"):
            off = pool.offset_in(net, ip, "reserved IP")
            if off in fixed:
                raise errors.OpPrereqError(f"cannot release {ip}: it is the network, broadcast "
                                           "or gateway address of network "
                                           f"{net.name}")
            if off in users:
                raise errors.OpPrereqError(f"cannot release {ip}: it is the address of instance "
                                           f"{users[off][0]} (an instance address is released "
                                           "by removing its NIC)")
            if off not in ext:
                self.feedback(f"  - WARNING: {ip} is not reserved")
            ext.discard(off)
        self.ext = sorted(ext)
        self.network6 = net.network6 if op.network6 is None else pool.parse_subnet6(op.network6)
        self.gateway6 = net.gateway6 if op.gateway6 is None else \
            pool.parse_address(op.gateway6, "gateway6", version=6)
        self.mac_prefix = net.mac_prefix
        if op.mac_prefix is not None:
            self.mac_prefix = None if op.mac_prefix.lower() in ("", "none") else \
                macs.check_prefix(op.mac_prefix)

    def hooks_env(self) -> dict[str, Any]:
        return network_env(self.net)

    async def execute(self) -> None:
        net = self.net
        old = net.to_dict()
        net.gateway, net.ext_reservations = self.gateway, self.ext
        net.network6, net.gateway6, net.mac_prefix = self.network6, self.gateway6, \
            self.mac_prefix
        net.touch()
        try:
            await self.ctx.config.save()
        except BaseException:
            self.cfg.networks[net.uuid] = Network.from_dict(old)
            raise


class _GroupHooks:
    """Hooks of connect and disconnect: on the group's nodes, with the group's netparams."""

    net: Network
    group: NodeGroup
    netparams: dict[str, Any]

    def hooks_targets(self) -> HookTargets:
        return HookTargets(group=self.group.uuid)

    def hooks_env(self) -> dict[str, Any]:
        return {"GROUP_NAME": self.group.name,
                "GROUP_NETWORK_MODE": self.netparams.get("mode"),
                "GROUP_NETWORK_LINK": self.netparams.get("link"),
                "GROUP_NETWORK_VLAN": self.netparams.get("vlan") or "",
                **network_env(self.net)}


class LUNetworkConnect(_GroupHooks, LogicalUnit[OpNetworkConnect]):
    OPCODE = OpNetworkConnect

    async def check(self) -> None:
        op, cfg = self.op, self.cfg
        self.net = cfg.get_network(op.network_name)
        self.group = _group(cfg, op.group_name)
        self.netparams = params.check_nicparams(
            {"mode": op.network_mode, "link": op.network_link, "vlan": op.network_vlan or ""})
        if not self.netparams.get("link"):
            raise errors.ParameterError(f"connecting network {self.net.name} needs a link "
                                        "(-N link=BRIDGE)")
        current = self.group.networks.get(self.net.uuid)
        self.noop = current == self.netparams
        if current is not None and not self.noop:
            raise errors.OpPrereqError(
                f"network {self.net.name} is already connected to node group "
                f"{self.group.name} with {current}; disconnect it first")
        if op.conflicts_check:
            conflicts = pool.connect_conflicts(cfg, self.net, self.group.uuid)
            if conflicts:
                raise errors.OpPrereqError(
                    f"conflicting IP addresses found: NICs in node group {self.group.name} "
                    f"have addresses inside {self.net.network} but are not on network "
                    f"{self.net.name}: {', '.join(conflicts)} (--no-conflicts-check to "
                    "connect anyway)")

    async def execute(self) -> None:
        if self.noop:
            self.feedback(f"Network {self.net.name} is already connected to node group "
                          f"{self.group.name}")
            return
        self.group.networks[self.net.uuid] = self.netparams
        self.group.touch()
        try:
            await self.ctx.config.save()
        except BaseException:
            self.group.networks.pop(self.net.uuid, None)
            raise


class LUNetworkDisconnect(_GroupHooks, LogicalUnit[OpNetworkDisconnect]):
    OPCODE = OpNetworkDisconnect

    async def check(self) -> None:
        cfg = self.cfg
        self.net = cfg.get_network(self.op.network_name)
        self.group = _group(cfg, self.op.group_name)
        if self.net.uuid not in self.group.networks:
            raise errors.OpPrereqError(f"network {self.net.name} is not connected to node "
                                       f"group {self.group.name}")
        self.netparams = dict(self.group.networks[self.net.uuid])
        users = pool.users_in_group(cfg, self.net, self.group.uuid)
        if users:
            raise errors.OpPrereqError(
                f"network {self.net.name} is used by instance(s) {', '.join(users)} in node "
                f"group {self.group.name}: remove or change their NICs first")

    async def execute(self) -> None:
        old = self.group.networks.pop(self.net.uuid)
        self.group.touch()
        try:
            await self.ctx.config.save()
        except BaseException:
            self.group.networks[self.net.uuid] = old
            raise


# -- query --------------------------------------------------------------------------------------
def query_networks(cfg: ConfigData, names: list[str] | None = None,
                   fields: list[str] | None = None) -> list[dict[str, Any]]:
    """Networks keyed by Ganeti's network fields (gnt-network list, RAPI): the ``fields``
    asked for, or every field of the registry (herd.fields.NETWORK); a network's address
    pool is worked out only for the fields that show it."""
    from herd import fields as registry

    nets = [cfg.get_network(n) for n in names] if names else \
        sorted(cfg.networks.values(), key=lambda n: n.name)
    columns = list(registry.NETWORK.fields.values()) if fields is None else \
        registry.NETWORK.resolve(fields)
    return [registry.compute(columns, registry.NetworkView(cfg, net, pool.pool_state))
            for net in nets]
