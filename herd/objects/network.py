"""Networks (Ganeti's ``gnt-network``): an IPv4 subnet with an address pool, connected to node
groups with per-group NIC parameters.

What the object stores and what it does not: the subnet, gateway, optional IPv6 data, MAC
prefix, tags and the **external** reservations (addresses the admin keeps out of the pool,
plus the network, broadcast and gateway addresses, as Ganeti reserves them at creation), as
offsets from the network address. The addresses of instance NICs are *not* stored here: they
are the ``ip`` of every NIC whose ``network`` is this network's uuid, so removing a NIC or an
instance frees its address by construction and the pool can never disagree with the
instances (Ganeti keeps a second bitarray that every NIC change must keep in step).
"""

from __future__ import annotations

import dataclasses
import ipaddress

from herd.objects.base import ConfigObject


@dataclasses.dataclass(slots=True)
class Network(ConfigObject):
    name: str = ""
    #: The IPv4 subnet in CIDR form ("192.0.2.0/24"); its pool is /30 to /16 (Ganeti's).
    network: str = ""
    gateway: str | None = None
    network6: str | None = None
    gateway6: str | None = None
    #: Three octets; NICs on this network get MACs under it (empty: the cluster's prefix).
    mac_prefix: str | None = None
    #: Externally reserved host offsets (0 = the network address), sorted.
    ext_reservations: list[int] = dataclasses.field(default_factory=list)
    tags: list[str] = dataclasses.field(default_factory=list)

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.network)

    @property
    def size(self) -> int:
        return self.subnet.num_addresses

    def offset(self, ip: str) -> int | None:
        """The offset of ``ip`` in the subnet, or None when it is not inside."""
        try:
            addr = ipaddress.IPv4Address(ip)
        except ValueError:
            return None
        base = int(self.subnet.network_address)
        value = int(addr) - base
        return value if 0 <= value < self.size else None

    def address(self, offset: int) -> str:
        return str(ipaddress.IPv4Address(int(self.subnet.network_address) + offset))
