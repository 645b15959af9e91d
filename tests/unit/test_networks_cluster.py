"""Networks on an in-process cluster (fake hypervisor, real job executor and locks): what an
admin sees with gnt-network and ``--net N:network=NAME,ip=pool``, and the address pool under
concurrent adds through the job queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd.logic import network_pool
from herd.logic.network import query_networks
from herd.objects import NodeGroup
from tests.harness import InProcessCluster, create_op, node_name, scratch_root


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[InProcessCluster]:
    with scratch_root(tmp_path) as root, InProcessCluster(root, nodes=2) as c:
        yield c


def ok(cluster: InProcessCluster, *ops: dict[str, Any]) -> list[Any]:
    outcome = cluster.run(*ops, timeout=30)
    assert outcome.status == "success", (outcome.error, outcome.log)
    return outcome.results


def refused(cluster: InProcessCluster, op: dict[str, Any]) -> str:
    outcome = cluster.run(op, timeout=30)
    assert outcome.status == "error", outcome.log
    return outcome.error[1]


def add_net(name: str = "lan", subnet: str = "10.1.0.0/24", **extra: Any) -> dict[str, Any]:
    return {"OP_ID": "OP_NETWORK_ADD", "network_name": name, "network": subnet, **extra}


def connect(name: str = "lan", group: str = "default", link: str = "br0",
            **extra: Any) -> dict[str, Any]:
    return {"OP_ID": "OP_NETWORK_CONNECT", "network_name": name, "group_name": group,
            "network_mode": "bridged", "network_link": link, **extra}


def with_nic(name: str, nic: dict[str, Any], node: str | None = None) -> dict[str, Any]:
    return create_op(name, template="diskless", node=node or node_name(1), nics=[nic])


def row(cluster: InProcessCluster, name: str = "lan") -> dict[str, Any]:
    return query_networks(cluster.config, [name])[0]


def test_network_lifecycle_and_pool_assignment(cluster: InProcessCluster) -> None:
    ok(cluster, add_net(gateway="10.1.0.1", add_reserved_ips=["10.1.0.2", "10.1.0.3"],
                        mac_prefix="aa:11:22", tags=["prod"]))
    assert "not connected" in refused(cluster, with_nic("a.example.com",
                                                        {"network": "lan", "ip": "pool"}))
    ok(cluster, connect(link="br-lan", network_vlan="7"))
    ok(cluster, with_nic("a.example.com", {"network": "lan", "ip": "pool"}))
    nic = cluster.instance("a.example.com").nics[0]
    # network/broadcast, gateway and two reserved: the first free one is .4
    assert (nic.ip, nic.nicparams["link"], nic.nicparams["vlan"]) == ("10.1.0.4", "br-lan", "7")
    assert nic.mac.startswith("aa:11:22:") and nic.network == cluster.config.get_network(
        "lan").uuid
    info = row(cluster)
    assert (info["free_count"], info["reserved_count"]) == (256 - 6, 6)
    assert info["map"].startswith("XXXXX.") and info["inst_list"] == ["a.example.com"]
    assert info["group_list"] == [["default", "bridged", "br-lan", "7"]]
    # conflicts: the same address, one outside, two NICs with one address, mode beside network
    assert "already in use by instance a.example.com" in refused(
        cluster, with_nic("b.example.com", {"network": "lan", "ip": "10.1.0.4"}))
    assert "not in network lan" in refused(
        cluster, with_nic("b.example.com", {"network": "lan", "ip": "10.2.0.9"}))
    two = create_op("b.example.com", template="diskless", node=node_name(1),
                    nics=[{"network": "lan", "ip": "10.1.0.9"},
                          {"network": "lan", "ip": "10.1.0.9"}])
    assert "already being assigned" in refused(cluster, two)
    assert "cannot be combined with mode=" in refused(
        cluster, with_nic("b.example.com", {"network": "lan", "mode": "routed"}))
    assert "belongs to network lan" in refused(
        cluster, with_nic("b.example.com", {"ip": "10.1.0.50"}))
    assert "reserved" in refused(cluster, with_nic("b.example.com",
                                                   {"network": "lan", "ip": "10.1.0.2"}))
    assert row(cluster)["reserved_count"] == 6  # none of the refused adds kept an address
    # modify: release the reserved .2, add a NIC from the pool, then remove the first one
    ok(cluster, {"OP_ID": "OP_NETWORK_SET_PARAMS", "network_name": "lan",
                 "remove_reserved_ips": ["10.1.0.2"]})
    ok(cluster, {"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "a.example.com",
                 "nics": [["add", -1, {"network": "lan", "ip": "pool"}]]})
    assert [n.ip for n in cluster.instance("a.example.com").nics] == ["10.1.0.4", "10.1.0.2"]
    ok(cluster, {"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "a.example.com",
                 "nics": [["remove", 0, {}]]})
    assert row(cluster)["reserved_count"] == 5
    assert "gateway" in refused(cluster, {"OP_ID": "OP_NETWORK_SET_PARAMS",
                                          "network_name": "lan",
                                          "remove_reserved_ips": ["10.1.0.1"]})
    # disconnect/remove refused while used; instance removal releases the address
    assert "used by instance(s) a.example.com" in refused(
        cluster, {"OP_ID": "OP_NETWORK_DISCONNECT", "network_name": "lan",
                  "group_name": "default"})
    ok(cluster, {"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": "a.example.com"})
    assert row(cluster)["reserved_count"] == 4
    assert "connected to node group(s) default" in refused(
        cluster, {"OP_ID": "OP_NETWORK_REMOVE", "network_name": "lan"})
    ok(cluster, {"OP_ID": "OP_NETWORK_DISCONNECT", "network_name": "lan",
                 "group_name": "default"},
       {"OP_ID": "OP_NETWORK_REMOVE", "network_name": "lan"})
    assert cluster.config.networks == {}
    assert cluster.saved_config().networks == {}


def test_gateway_change_moves_its_reservation(cluster: InProcessCluster) -> None:
    ok(cluster, add_net(subnet="10.1.0.0/29", gateway="10.1.0.1"))
    ok(cluster, {"OP_ID": "OP_NETWORK_SET_PARAMS", "network_name": "lan",
                 "gateway": "10.1.0.6"})
    assert row(cluster)["external_reservations"] == "10.1.0.0, 10.1.0.6, 10.1.0.7"
    assert "cannot be changed in one operation" in refused(
        cluster, {"OP_ID": "OP_NETWORK_SET_PARAMS", "network_name": "lan",
                  "gateway": "none", "add_reserved_ips": ["10.1.0.2"]})
    ok(cluster, {"OP_ID": "OP_NETWORK_SET_PARAMS", "network_name": "lan", "gateway": "none"})
    assert row(cluster)["gateway"] is None and row(cluster)["free_count"] == 6


def test_bad_subnet_is_refused_naming_value_and_range(cluster: InProcessCluster) -> None:
    for subnet in ("10.0.0.0/8", "10.0.0.0/31", "2001:db8::/64"):
        message = refused(cluster, add_net(subnet=subnet))
        assert f"'{subnet}'" in message and "/16 to /30" in message, message
    assert "host bits" in refused(cluster, add_net(subnet="10.0.0.1/24"))
    assert "not in network" in refused(cluster, add_net(gateway="10.9.9.9"))
    assert cluster.config.networks == {}


def test_network_in_one_group_only(cluster: InProcessCluster) -> None:
    cfg = cluster.config
    other = NodeGroup(name="other")
    cfg.nodegroups[other.uuid] = other
    cfg.get_node(node_name(2)).group = other.uuid
    cluster.wait(cluster.store.save())
    ok(cluster, add_net(), connect())
    inst = with_nic("a.example.com", {"network": "lan", "ip": "pool"}, node=node_name(2))
    message = refused(cluster, inst)
    assert "network lan is not connected to node group other" in message
    ok(cluster, with_nic("a.example.com", {"network": "lan", "ip": "pool"}))
    made = cluster.instance("a.example.com")
    assert network_pool.missing_networks(cfg, made, other.uuid) == ["lan"]
    assert network_pool.missing_networks(cfg, made, cfg.get_node(node_name(1)).group) == []
    # without -n the allocator keeps to groups that have the network
    for index in range(3):
        ok(cluster, create_op(f"p{index}.example.com", template="diskless",
                              nics=[{"network": "lan", "ip": "pool"}]))
        placed = cluster.instance(f"p{index}.example.com")
        assert cfg.nodes[placed.primary_node].group != other.uuid


def test_failed_creation_releases_its_address(cluster: InProcessCluster) -> None:
    ok(cluster, add_net(subnet="10.1.0.0/30"), connect())
    cluster.fail_once(node_name(1), "instance_start")
    outcome = cluster.run(create_op("a.example.com", template="diskless", node=node_name(1),
                                    start=True, nics=[{"network": "lan", "ip": "pool"}]))
    assert outcome.status == "error"
    assert row(cluster)["free_count"] == 2
    ok(cluster, with_nic("a.example.com", {"network": "lan", "ip": "pool"}))
    ok(cluster, with_nic("b.example.com", {"network": "lan", "ip": "pool"}))
    message = refused(cluster, with_nic("c.example.com", {"network": "lan", "ip": "pool"}))
    assert "has no free address left (4 of 4 reserved" in message


@pytest.fixture
def five(tmp_path: Path) -> Iterator[InProcessCluster]:
    with scratch_root(tmp_path) as root, InProcessCluster(root, nodes=5) as c:
        yield c


def test_fifty_concurrent_pool_adds_get_distinct_addresses(
        five: InProcessCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """50 adds submitted at once, spread over five nodes: jobs on different nodes hold no
    common lock but the cluster's (shared), so they run interleaved through the job queue;
    each takes its address while others hold unsaved claims (recorded), and none collide."""
    cluster = five
    ok(cluster, add_net(subnet="10.5.0.0/26", gateway="10.5.0.1"), connect())
    names = [f"c{i:02d}.example.com" for i in range(50)]
    others_in_flight: list[int] = []
    take = network_pool.take

    def observed(cfg: Any, reservations: Any, owner: object, net: Any, wanted: str,
                 where: str) -> str:
        held = network_pool.claimed_offsets(reservations.claimed(network_pool.KIND), net)
        others_in_flight.append(len(held))
        return take(cfg, reservations, owner, net, wanted, where)

    monkeypatch.setattr(network_pool, "take", observed)
    started = time.monotonic()

    async def all_at_once() -> list[str]:
        ids = [cluster.submit(with_nic(n, {"network": "lan", "ip": "pool"},
                                       node=node_name(1 + i % 5)))
               for i, n in enumerate(names)]
        outcomes = await asyncio.gather(*(cluster.finish(i, timeout=120) for i in ids))
        return [o.status for o in outcomes]

    assert cluster.wait(all_at_once()) == ["success"] * 50
    assert len(others_in_flight) == 50 and max(others_in_flight) >= 2, others_in_flight
    cfg = cluster.config
    ips = [cfg.find_instance(n).nics[0].ip for n in names]
    assert len(set(ips)) == 50, sorted(ips)
    # a /26 has 64 addresses; network, broadcast and gateway are reserved
    assert row(cluster)["free_count"] == 64 - 3 - 50
    jobs = [{"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": n} for n in names[::2]]

    async def remove_half() -> None:
        ids = [cluster.submit(op) for op in jobs]
        outcomes = await asyncio.gather(*(cluster.finish(i, timeout=120) for i in ids))
        assert {o.status for o in outcomes} == {"success"}

    cluster.wait(remove_half())
    info = row(cluster)
    assert (info["free_count"], info["reserved_count"]) == (64 - 3 - 25, 3 + 25)
    kept = {cfg.find_instance(n).nics[0].ip for n in names[1::2]}
    assert sum(1 for ch in info["map"] if ch == "X") == 28
    stored = cluster.saved_config()
    assert {n.ip for i in stored.instances.values() for n in i.nics} == kept
    verify = cluster.run({"OP_ID": "OP_CLUSTER_VERIFY"}, timeout=60)
    assert verify.log and not [line for line in verify.log if "nic/" in line], verify.log
    assert time.monotonic() - started < 120


def test_modify_changes_and_releases_nic_addresses(cluster: InProcessCluster) -> None:
    ok(cluster, add_net(), connect(), add_net("dmz", "10.2.0.0/29"), connect("dmz"))
    ok(cluster, with_nic("a.example.com", {"network": "lan", "ip": "pool"}))

    def modify(*nics: list[Any]) -> dict[str, Any]:
        return {"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "a.example.com",
                "nics": list(nics)}

    def ips() -> list[tuple[str | None, str | None]]:
        cfg = cluster.config
        return [(cfg.networks[n.network].name if n.network else None, n.ip)
                for n in cluster.instance("a.example.com").nics]

    assert ips() == [("lan", "10.1.0.1")]
    ok(cluster, modify(["modify", 0, {"ip": "10.1.0.77"}]))
    assert ips() == [("lan", "10.1.0.77")] and row(cluster)["reserved_count"] == 3
    # to another network: its pool, its connection's link
    ok(cluster, modify(["modify", 0, {"network": "dmz", "ip": "pool"}]))
    assert ips() == [("dmz", "10.2.0.1")]
    assert (row(cluster)["reserved_count"], row(cluster, "dmz")["reserved_count"]) == (2, 3)
    assert "cannot be combined with link=" in refused(
        cluster, modify(["modify", 0, {"link": "br9"}]))
    assert "already being assigned" in refused(cluster, modify(
        ["add", -1, {"network": "lan", "ip": "10.1.0.9"}],
        ["add", -1, {"network": "lan", "ip": "10.1.0.9"}]))
    assert "ip=pool needs network" in refused(cluster, modify(["add", -1, {"ip": "pool"}]))
    # off any network, without an address: dmz's address is free again
    ok(cluster, modify(["modify", 0, {"network": "none", "ip": "none"}]))
    assert ips() == [(None, None)] and row(cluster, "dmz")["reserved_count"] == 2


def test_connect_runs_ganetis_hooks_on_the_groups_nodes(cluster: InProcessCluster) -> None:
    """network-connect hooks run on the group's nodes with the network's and the group's
    variables (Ganeti's hooks document); a failing pre hook leaves the network unconnected."""
    ok(cluster, add_net(gateway="10.1.0.1", tags=["t1"]))
    for name, hnode in cluster.nodes.items():
        pre = hnode.paths.hooks_dir / "network-connect-pre.d"
        pre.mkdir(parents=True)
        script = pre / "10-record"
        script.write_text(f"#!/bin/sh\nenv | grep ^GANETI_ | sort > {pre}/../seen-{name}\n")
        script.chmod(0o755)
    ok(cluster, connect(link="br5", network_vlan="42"))
    seen = (cluster.nodes[node_name(2)].paths.hooks_dir / f"seen-{node_name(2)}").read_text()
    env = dict(line.split("=", 1) for line in seen.splitlines())
    assert {k: env[k] for k in ("GANETI_HOOKS_PATH", "GANETI_OBJECT_TYPE", "GANETI_OP_TARGET",
                                "GANETI_GROUP_NAME", "GANETI_GROUP_NETWORK_LINK",
                                "GANETI_GROUP_NETWORK_VLAN", "GANETI_NETWORK_SUBNET",
                                "GANETI_NETWORK_GATEWAY", "GANETI_NETWORK_TAGS")} == {
        "GANETI_HOOKS_PATH": "network-connect", "GANETI_OBJECT_TYPE": "NETWORK",
        "GANETI_OP_TARGET": "lan", "GANETI_GROUP_NAME": "default",
        "GANETI_GROUP_NETWORK_LINK": "br5", "GANETI_GROUP_NETWORK_VLAN": "42",
        "GANETI_NETWORK_SUBNET": "10.1.0.0/24", "GANETI_NETWORK_GATEWAY": "10.1.0.1",
        "GANETI_NETWORK_TAGS": "t1"}
    ok(cluster, {"OP_ID": "OP_NETWORK_DISCONNECT", "network_name": "lan",
                 "group_name": "default"})
    refuse = cluster.nodes[node_name(1)].paths.hooks_dir / "network-connect-pre.d" / "20-no"
    refuse.write_text("#!/bin/sh\necho not this bridge\nexit 1\n")
    refuse.chmod(0o755)
    assert "not this bridge" in refused(cluster, connect(link="br5"))
    assert row(cluster)["group_list"] == []
