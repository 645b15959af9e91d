"""Routed NIC mode, as Ganeti does it: no bridge, the node routes the instance's IP to its tap.

The tap gets proxy ARP (so the guest reaches its gateway through the node) and a host route
``<ip>/32 dev <tap>``, in the routing table named by the NIC's ``link`` when set (so that
policy routing can keep instance traffic apart), otherwise in the main table.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from herd.errors import HypervisorError, ParameterError
from herd.network.tap import create_tap, remove_tap

RT_TABLES = (Path("/etc/iproute2/rt_tables"), Path("/usr/share/iproute2/rt_tables"))
MAIN_TABLE = 254


def resolve_table(link: str, files: tuple[Path, ...] = RT_TABLES) -> int:
    """The routing table number for ``link`` (a number or a name from rt_tables); '' = main."""
    if not link:
        return MAIN_TABLE
    if link.isdigit():
        return int(link)
    candidates = list(files)
    for f in files:
        d = f.with_name("rt_tables.d")
        if d.is_dir():
            candidates += sorted(d.glob("*.conf"))
    for f in candidates:
        try:
            lines = f.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            words = line.split("#", 1)[0].split()
            if len(words) == 2 and words[1] == link and words[0].isdigit():
                return int(words[0])
    raise HypervisorError(
        f"routing table '{link}' is not defined in {files[0]} (routed NIC link)")


def _check_ip(ip: str | None) -> str:
    if not ip:
        raise ParameterError("a NIC in routed mode needs an IP address (ip=...)")
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        raise ParameterError(f"invalid IP address '{ip}' for a routed NIC") from None


def _set_sysctl(path: str, value: str) -> None:
    try:
        Path(path).write_text(value)
    except OSError as exc:
        raise HypervisorError(f"cannot set {path}: {exc.strerror}") from None


def setup_routed(ifname: str, ip: str | None, link: str) -> None:
    """Create and configure tap ``ifname`` for a routed NIC with address ``ip``."""
    addr = _check_ip(ip)
    table = resolve_table(link)
    idx = create_tap(ifname)
    try:
        if ":" in addr:
            _set_sysctl(f"/proc/sys/net/ipv6/conf/{ifname}/proxy_ndp", "1")
            dst = f"{addr}/128"
        else:
            _set_sysctl(f"/proc/sys/net/ipv4/conf/{ifname}/proxy_arp", "1")
            dst = f"{addr}/32"
        with IPRoute() as ipr:
            ipr.route("replace", dst=dst, oif=idx, table=table, proto="static")
    except (HypervisorError, NetlinkError) as exc:
        remove_tap(ifname)
        if isinstance(exc, NetlinkError):
            raise HypervisorError(f"cannot add route {addr} via {ifname}: {exc}") from None
        raise


def teardown_routed(ifname: str) -> None:
    """Remove the tap; the kernel drops its routes with it."""
    remove_tap(ifname)
