"""Taps, bridged and routed mode -- inside a private network namespace, never the host's."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from herd.errors import ParameterError
from herd.network.routed import MAIN_TABLE, resolve_table
from herd.network.tap import tap_name

needs_netns = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                 reason="needs root and iproute2 for a network namespace")


def test_tap_name() -> None:
    assert tap_name("1A2B3C4D-0000-1111-2222-333344445555", 3) == "hd1a2b3c4dn3"
    assert len(tap_name("1a2b3c4d-0000", 99)) <= 15
    with pytest.raises(ParameterError):
        tap_name("xyz", 0)


def test_resolve_table(tmp_path) -> None:
    rt = tmp_path / "rt_tables"
    rt.write_text("255 local\n254 main\n# comment\n100 herd_inst  # x\n")
    assert resolve_table("", (rt,)) == MAIN_TABLE
    assert resolve_table("42", (rt,)) == 42
    assert resolve_table("herd_inst", (rt,)) == 100
    with pytest.raises(Exception, match="routing table 'nope'"):
        resolve_table("nope", (rt,))


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"herdtest-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _in_ns(ns: str, code: str) -> str:
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", textwrap.dedent(code)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


@needs_netns
def test_bridged_tap_in_netns(netns: str) -> None:
    out = _in_ns(netns, """
        from pyroute2 import IPRoute
        from herd.errors import HypervisorError
        from herd.network import tap
        with IPRoute() as ip:
            ip.link("add", ifname="br-test", kind="bridge")
            br = ip.link_lookup(ifname="br-test")[0]
        try:
            tap.setup_bridged("hdaaaaaaaan0", "missing-br")
        except HypervisorError as exc:
            print("ERR", exc)
        print("LEFT", tap.tap_exists("hdaaaaaaaan0"))
        tap.setup_bridged("hdaaaaaaaan0", "br-test")
        with IPRoute() as ip:
            link = ip.get_links(ip.link_lookup(ifname="hdaaaaaaaan0")[0])[0]
            print("MASTER", link.get("IFLA_MASTER") == br, link.get("IFLA_OPERSTATE"))
        tap.remove_tap("hdaaaaaaaan0")
        tap.remove_tap("hdaaaaaaaan0")
        print("GONE", not tap.tap_exists("hdaaaaaaaan0"))
    """)
    assert "ERR bridge 'missing-br' does not exist" in out
    assert "LEFT False" in out and "MASTER True" in out and "GONE True" in out


@needs_netns
def test_routed_tap_in_netns(netns: str) -> None:
    out = _in_ns(netns, """
        from pathlib import Path
        from pyroute2 import IPRoute
        from herd.errors import ParameterError
        from herd.network import routed
        try:
            routed.setup_routed("hdbbbbbbbbn0", None, "")
        except ParameterError as exc:
            print("ERR", exc)
        routed.setup_routed("hdbbbbbbbbn0", "198.51.100.7", "100")
        print("PARP", Path("/proc/sys/net/ipv4/conf/hdbbbbbbbbn0/proxy_arp").read_text().strip())
        with IPRoute() as ip:
            print("ROUTES", [r.get("RTA_DST") for r in ip.route("dump", table=100)])
        routed.teardown_routed("hdbbbbbbbbn0")
        with IPRoute() as ip:
            print("AFTER", [r.get("RTA_DST") for r in ip.route("dump", table=100)])
    """)
    assert "ERR a NIC in routed mode needs an IP address" in out
    assert "PARP 1" in out and "ROUTES ['198.51.100.7']" in out and "AFTER []" in out
