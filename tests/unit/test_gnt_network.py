"""gnt-network and ``gnt-instance add --net N:network=NAME,ip=pool`` as an admin types them,
run against an in-process cluster: the commands' jobs go through the real job executor and
their queries read the master's config (the bridge below stands for masterd's socket)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd.cli import common, gnt_group, gnt_instance, gnt_job, gnt_network, tags
from herd.logic import query, querydata
from herd.logic.network import query_networks
from tests.harness import InProcessCluster, node_name, scratch_root


class Bridge:
    """masterd's calls that the commands make, answered from the harness cluster."""

    def __init__(self, cluster: InProcessCluster) -> None:
        self.cluster = cluster

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def close(self) -> None:
        pass

    def call(self, method: str, **args: Any) -> Any:
        c = self.cluster
        if method == "submit_job":
            async def submit() -> int:
                return c.submit(*args["ops"])

            return c.wait(submit())
        if method == "wait_for_job_change":
            return c.wait(c.executor.wait_for_change(args["job_id"], args["prev_status"],
                                                     args["prev_serial"], 10))
        if method == "query_jobs":
            return [c.queue.get(i).to_dict() for i in args["ids"]]
        if method == "query_networks":  # as masterd: only the fields asked for
            return query_networks(c.config, args.get("names"), args.get("fields"))
        if method == "query_groups":
            return querydata.query_groups(c.ctx, args.get("names"), args.get("fields"))
        if method == "query_instances":
            return c.wait(query.query_instances(c.ctx, args.get("names"), False))
        if method == "query_tags":
            return querydata.query_tags(c.ctx, args["kind"], args.get("name"))
        raise AssertionError(f"unexpected masterd call {method}")


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InProcessCluster]:
    with scratch_root(tmp_path) as root, InProcessCluster(root, nodes=2) as cluster:
        for module in (common, gnt_network, gnt_instance, gnt_group, tags):
            monkeypatch.setattr(module, "MasterClient", lambda: Bridge(cluster))
        yield cluster


def run(module: Any, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str,
                                                                                   str]:
    code = module.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_admin_flow(cli: InProcessCluster, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(gnt_network, ["add", "--network=10.0.0.0/8", "big"], capsys)
    assert code == 1
    assert err.strip().splitlines() == [
        "gnt-network: error: invalid network '10.0.0.0/8': the address pool must be an IPv4 "
        "subnet from /16 to /30"]
    assert run(gnt_network, ["add", "--network=192.0.2.0/24", "--gateway=192.0.2.1",
                             "--add-reserved-ips=192.0.2.10,192.0.2.11", "--mac-prefix",
                             "aa:bb:cc", "--tags", "a,b", "lan"], capsys)[0] == 0
    assert run(gnt_network, ["connect", "-N", "mode=bridged,link=br7,vlan=100", "lan"],
               capsys)[0] == 0
    # Ganeti 2.x's positional form is accepted too (here: already connected the same way)
    assert run(gnt_network, ["connect", "lan", "default", "bridged", "br7"], capsys)[0] == 1
    code, out, err = run(gnt_instance, [
        "add", "-t", "diskless", "--no-install", "--no-name-check", "--no-ip-check",
        "--no-start", "-n", node_name(1), "--net", "0:network=lan,ip=pool",
        "web.example.com"], capsys)
    assert code == 0, err
    nic = cli.instance("web.example.com").nics[0]
    # the nodes' and master's addresses inside were reserved at add (conflicts check):
    # 192.0.2.1 (node1, also the gateway), .2, .101, .102 and .254
    assert nic.ip == "192.0.2.3" and nic.mac.startswith("aa:bb:cc:")
    code, out, _ = run(gnt_network, ["list", "--no-headers", "--separator=|"], capsys)
    assert out.strip() == "lan|192.0.2.0/24|192.0.2.1|aa:bb:cc|default (bridged, br7, 100)|a,b"
    code, out, _ = run(gnt_network, ["list", "-o", "name,free_count,reserved_count,inst_list",
                                     "--no-headers"], capsys)
    assert out.split() == ["lan", "246", "10", "web.example.com"]
    code, out, _ = run(gnt_network, ["info", "lan"], capsys)
    assert "  Free: 246 (96.09%)" in out and "    web.example.com: 0:192.0.2.3" in out
    assert "    default (mode:bridged link:br7 vlan:100)" in out
    assert run(gnt_network, ["modify", "--remove-reserved-ips=192.0.2.10", "lan"],
               capsys)[0] == 0
    assert run(gnt_network, ["add-tags", "lan", "c"], capsys)[0] == 0
    assert run(gnt_network, ["list-tags", "lan"], capsys)[1].split() == ["a", "b", "c"]
    assert query_networks(cli.config, ["lan"])[0]["free_count"] == 247
    code, _, err = run(gnt_network, ["disconnect", "lan"], capsys)
    assert code == 1 and "used by instance(s) web.example.com" in err
    code, _, err = run(gnt_network, ["list-fields"], capsys)
    assert code == 0


def test_group_network_and_job_lists_take_the_field_registry(
        cli: InProcessCluster, capsys: pytest.CaptureFixture[str]) -> None:
    """``list-fields`` is Ganeti's table with its field arguments and options for every
    command (gnt-group's and gnt-network's printed a table of their own without them, and
    gnt-job had none), and ``list -o`` knows the fields the registry knows."""
    for module, argv, lines in (
            (gnt_network, ["free_count", "map"], ["free_count|Number|FreeCount|Number of "
                                                  "available addresses",
                                                  "map|Text|Map|Actual mapping"]),
            (gnt_group, ["pinst_cnt"], ["pinst_cnt|Number|Instances|Number of primary "
                                        "instances"]),
            (gnt_job, ["id"], ["id|Number|ID|Job ID"])):
        code, out, _ = run(module, ["list-fields", "--no-headers", "--separator=|", *argv],
                           capsys)
        assert (code, out.splitlines()) == (0, lines), module
    code, out, _ = run(gnt_group, ["list-fields"], capsys)
    assert out.splitlines()[0].split() == ["Name", "Type", "Title", "Description"]
    code, out, _ = run(gnt_group, ["list", "-o", "name,node_cnt,pinst_cnt,serial_no",
                                   "--no-headers", "--separator=|"], capsys)
    assert (code, out.strip()) == (0, "default|2|0|1")
    code, out, _ = run(gnt_group, ["list"], capsys)
    assert out.splitlines()[0].split() == ["Group", "Nodes", "Instances", "AllocPolicy",
                                           "NDParams"]
    code, _, err = run(gnt_group, ["list", "-o", "name,bogus"], capsys)
    assert code != 0 and "unknown field(s) bogus" in err
    code, _, err = run(gnt_network, ["list", "-o", "name,bogus"], capsys)
    assert code != 0 and "unknown field(s) bogus" in err


def test_connect_args() -> None:
    assert gnt_network.connect_args(["n", "g", "routed", "eth1"], None) == (
        ["g"], {"mode": "routed", "link": "eth1", "vlan": ""})
    assert gnt_network.connect_args(["n"], {"link": "br0"}) == (
        [], {"mode": "bridged", "link": "br0", "vlan": ""})
    with pytest.raises(Exception, match="needs the link"):
        gnt_network.connect_args(["n", "g"], {"mode": "bridged"})
    with pytest.raises(Exception, match="unknown network parameter"):
        gnt_network.connect_args(["n"], {"link": "br0", "bogus": "1"})
