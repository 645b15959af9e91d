"""Tap devices of instance NICs: created by Herd, handed to QEMU by name.

Herd creates each tap persistently with netlink (pyroute2) before QEMU starts and deletes it
after QEMU exits, instead of passing file descriptors: the tap then survives a noded restart
with its QEMU, and a restarted noded can still find and remove it (names derive from the
instance uuid). Names must fit IFNAMSIZ (15 chars) and be unique per node.
"""

from __future__ import annotations

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from herd.errors import HypervisorError, ParameterError

#: Tap names look like hd1a2b3c4dn0: 'hd' + first 8 hex digits of the uuid + 'n' + NIC index.
TAP_PREFIX = "hd"
MAX_IFNAME = 15


def tap_name(instance_uuid: str, nic_index: int) -> str:
    """The node-unique tap name of NIC ``nic_index`` of the instance with this uuid."""
    short = instance_uuid.replace("-", "").lower()[:8]
    if len(short) < 8 or not all(c in "0123456789abcdef" for c in short):
        raise ParameterError(f"invalid instance uuid '{instance_uuid}' for a tap name")
    name = f"{TAP_PREFIX}{short}n{nic_index}"
    if len(name) > MAX_IFNAME:
        raise ParameterError(f"NIC index {nic_index} too large for a tap name")
    return name


def _lookup(ip: IPRoute, ifname: str) -> int | None:
    found = ip.link_lookup(ifname=ifname)
    return found[0] if found else None


def create_tap(ifname: str) -> int:
    """Create (or reuse) the persistent tap ``ifname`` and bring it up; its ifindex."""
    with IPRoute() as ip:
        idx = _lookup(ip, ifname)
        if idx is None:
            try:
                ip.link("add", ifname=ifname, kind="tuntap", mode="tap")
            except NetlinkError as exc:
                raise HypervisorError(f"cannot create tap {ifname}: {exc}") from None
            idx = _lookup(ip, ifname)
            if idx is None:
                raise HypervisorError(f"tap {ifname} vanished right after creation")
        ip.link("set", index=idx, state="up")
        return idx


def attach_to_bridge(ifname: str, bridge: str) -> None:
    """Enslave tap ``ifname`` to ``bridge``; HypervisorError naming the bridge if it is missing."""
    with IPRoute() as ip:
        br = _lookup(ip, bridge) if bridge else None
        if br is None:
            raise HypervisorError(
                f"bridge '{bridge}' does not exist on this node (NIC link for tap {ifname})")
        idx = _lookup(ip, ifname)
        if idx is None:
            raise HypervisorError(f"tap {ifname} does not exist")
        try:
            ip.link("set", index=idx, master=br, state="up")
        except NetlinkError as exc:
            raise HypervisorError(f"cannot attach tap {ifname} to bridge {bridge}: {exc}") \
                from None


def setup_bridged(ifname: str, bridge: str) -> None:
    """Bridged mode: the tap on the bridge named by the NIC's link, up."""
    with IPRoute() as ip:
        if not bridge or _lookup(ip, bridge) is None:
            raise HypervisorError(f"bridge '{bridge}' does not exist on this node")
    create_tap(ifname)
    try:
        attach_to_bridge(ifname, bridge)
    except HypervisorError:
        remove_tap(ifname)
        raise


def remove_tap(ifname: str) -> None:
    """Delete the tap (its routes go with it); nothing to do if it is already gone."""
    with IPRoute() as ip:
        idx = _lookup(ip, ifname)
        if idx is None:
            return
        try:
            ip.link("del", index=idx)
        except NetlinkError as exc:
            if exc.code != 19:  # ENODEV: removed concurrently
                raise HypervisorError(f"cannot remove tap {ifname}: {exc}") from None


def tap_exists(ifname: str) -> bool:
    with IPRoute() as ip:
        return _lookup(ip, ifname) is not None
