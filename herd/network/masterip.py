"""The master IP: an extra address on the master's network device, moved on master failover.

Clients (RAPI, admins) use the cluster name, which resolves to this address, so it must be on
exactly one node: the master. pyroute2 is synchronous here; callers in an event loop run these
functions in a worker thread.
"""

from __future__ import annotations

import logging

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from herd import errors

log = logging.getLogger(__name__)


def _index(ip: IPRoute, netdev: str) -> int:
    found = ip.link_lookup(ifname=netdev)
    if not found:
        raise errors.OpExecError(f"master network device '{netdev}' does not exist on this node")
    return int(found[0])


def has_master_ip(netdev: str, address: str) -> bool:
    with IPRoute() as ip:
        try:
            index = _index(ip, netdev)
        except errors.OpExecError:
            return False
        return any(a.get_attr("IFA_ADDRESS") == address for a in ip.get_addr(index=index))


def activate(netdev: str, address: str, prefix: int = 32) -> None:
    if not netdev or not address:
        return
    with IPRoute() as ip:
        index = _index(ip, netdev)
        try:
            ip.addr("add", index=index, address=address, prefixlen=prefix)
            log.info("master IP %s/%s added on %s", address, prefix, netdev)
        except NetlinkError as exc:
            if exc.code != 17:  # EEXIST: already there
                raise errors.OpExecError(f"cannot add master IP {address} on {netdev}: "
                                         f"{exc}") from None


def deactivate(netdev: str, address: str, prefix: int = 32) -> None:
    if not netdev or not address:
        return
    with IPRoute() as ip:
        try:
            index = _index(ip, netdev)
        except errors.OpExecError:
            return
        try:
            ip.addr("del", index=index, address=address, prefixlen=prefix)
            log.info("master IP %s removed from %s", address, netdev)
        except NetlinkError as exc:
            if exc.code not in (99, 19):  # EADDRNOTAVAIL, ENODEV: not there
                raise errors.OpExecError(f"cannot remove master IP {address} from {netdev}: "
                                         f"{exc}") from None
