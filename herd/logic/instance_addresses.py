"""The network half of an instance's NICs, shared by ``gnt-instance add`` and ``modify``:
``--net N:network=NAME,ip=pool|A.B.C.D|none``.

A NIC on a network takes its mode, link and vlan from the network's connection to the
primary node's group, so the address is assigned only once the primary is known (after the
allocator ran, as in Ganeti); ``ip=pool`` takes the first free address. Addresses are claimed
for the job (:func:`herd.logic.network_pool.take`) and become the NIC's when the instance is
saved; a job that fails releases its claims, so a failed creation leaves the pool as it was.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from herd import errors
from herd.logic import network_pool as pool
from herd.objects import ConfigData, Network, Nic, Node


def nic_network(cfg: ConfigData, index: int | str, given: Any,
                nicparams: dict[str, Any]) -> Network | None:
    """The network a NIC names (``network=NAME``; ``none`` or empty: no network). Ganeti
    refuses mode/link beside it: the group's connection decides them."""
    name = "" if given is None else str(given).strip()
    if name.lower() in ("", "none"):
        return None
    net = cfg.get_network(name)
    clash = sorted(k for k, v in nicparams.items() if v not in (None, ""))
    if clash:
        raise errors.ParameterError(
            f"NIC {index}: network={net.name} cannot be combined with "
            f"{', '.join(k + '=' for k in clash)} (the network's connection to the node "
            "group gives them)")
    return net


def nic_ip(index: int | str, given: Any, net: Network | None) -> str | None:
    """A NIC's ``ip``: None (none/empty), ``pool`` (needs a network) or an IPv4 address."""
    text = "" if given is None else str(given).strip()
    if text.lower() in ("", "none"):
        return None
    if text.lower() == pool.POOL:
        if net is None:
            raise errors.ParameterError(f"NIC {index}: ip=pool needs network=NAME (the pool "
                                        "is the network's)")
        return pool.POOL
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise errors.ParameterError(f"NIC {index}: invalid ip '{text}': expected an address, "
                                    "pool or none") from None


def assign_address(cfg: ConfigData, reservations: Any, owner: object, nic: Nic, pnode: Node,
                   where: str) -> None:
    """Settle one NIC for primary ``pnode``: a NIC on a network gets the group's NIC
    parameters and its address claimed; a NIC off any network may not hold an address of a
    network connected to the group (Ganeti's CheckForConflictingIp)."""
    group = cfg.nodegroups.get(pnode.group)
    if nic.network:
        net = cfg.networks[nic.network]
        nic.nicparams = pool.netparams(cfg, net, pnode.group, where)
        if nic.ip:
            nic.ip = pool.take(cfg, reservations, owner, net, nic.ip, where)
        elif nic.nicparams.get("mode") == "routed":
            raise errors.ParameterError(f"{where} is routed (network {net.name}) and needs "
                                        "an IP address (ip=pool or ip=ADDRESS)")
        return
    if nic.ip and group is not None:
        net = pool.network_of_ip(cfg, group, nic.ip)
        if net is not None:
            raise errors.OpPrereqError(
                f"{where}: ip {nic.ip} belongs to network {net.name} ({net.network}), but the "
                f"NIC is not on it; give network={net.name}")


def assign_addresses(cfg: ConfigData, reservations: Any, owner: object, nics: list[Nic],
                     pnode: Node) -> None:
    for index, nic in enumerate(nics):
        assign_address(cfg, reservations, owner, nic, pnode, f"NIC {index}")
