"""Choosing VNC/SPICE listen addresses and free ports for one instance.

The VNC port is allocated cluster-wide by the master, as Ganeti's ``network_port`` (from the
pool shared with the mirror ports, herd.logic.network_port), and stays with the instance on
every node it runs on; the node only checks that the port is free and says so clearly when it
is not. An instance without one (a config from before ports were allocated) gets a free port of
the node at start (5900+N, the number QEMU's -vnc display is derived from). SPICE ports are
always picked per node. Either way the port is recorded in the runtime file, so a port used by
another running instance or by anything else on the node is never handed out twice.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket

from herd.errors import HypervisorError

VNC_BASE = 5900
VNC_LAST = 6899
SPICE_BASE = 6900
SPICE_LAST = 7899


def resolve_address(value: str, ip_version: int = 0) -> str:
    """An IP as is; an interface name -> its first address (IPv4 unless ip_version is 6)."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    family = socket.AF_INET6 if ip_version == 6 else socket.AF_INET
    from pyroute2 import IPRoute  # only for an interface name: 10 MiB that noded need not keep

    with IPRoute() as ip:
        found = ip.link_lookup(ifname=value)
        if not found:
            raise HypervisorError(f"display bind interface '{value}' does not exist")
        for addr in ip.get_addr(index=found[0], family=family):
            a = addr.get("IFA_ADDRESS")
            if a:
                return str(a)
    raise HypervisorError(f"display bind interface '{value}' has no IPv{ip_version or 4} address")


def _port_free(address: str, port: int) -> bool:
    """Whether QEMU could listen on ``address:port`` now. SO_REUSEADDR as QEMU sets it: a
    connection of the guest's previous run in TIME_WAIT (a VNC viewer that was connected
    when it stopped) does not make the port busy, a listener does."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def free_port(address: str, first: int, last: int, taken: set[int]) -> int:
    """The lowest port in [first, last] not in ``taken`` that ``address`` can bind now."""
    for port in range(first, last + 1):
        if port not in taken:
            with contextlib.suppress(OSError):
                if _port_free(address, port):
                    return port
    raise HypervisorError(f"no free port in {first}-{last} on {address}")


def check_assigned(address: str, port: int, taken: set[int], name: str) -> int:
    """``port`` (the instance's allocated network port) if ``address`` can listen on it now;
    else a HypervisorError naming the port and who holds it, so the admin sees why the
    console cannot come up instead of a silently different port."""
    if port in taken:
        raise HypervisorError(f"VNC port {port} of instance {name} is used by another "
                              "instance on this node")
    if not _port_free(address, port):
        raise HypervisorError(f"VNC port {port} of instance {name} is busy on {address} on "
                              "this node (another program listens there)")
    return port


def connect_address(bound: str) -> str:
    """The address to connect to a listener bound to ``bound`` from this node: loopback for
    the wildcard addresses (0.0.0.0, ::), the address itself otherwise."""
    if bound == "0.0.0.0":
        return "127.0.0.1"
    if bound == "::":
        return "::1"
    return bound
