"""The pure decisions of networks: subnet and address parsing, pool accounting, taking an
address under claims of running jobs, and which networks a node group lacks."""

from __future__ import annotations

import pytest

from herd import errors
from herd.config.reservations import Reservations
from herd.logic import instance_mods as mods
from herd.logic import network_pool as pool
from herd.logic.instance_addresses import nic_ip, nic_network
from herd.objects import Cluster, ConfigData, Instance, Network, Nic, Node, NodeGroup


@pytest.mark.parametrize(("text", "expected"), [
    ("192.0.2.0/24", "192.0.2.0/24"), (" 10.0.0.0/16", "10.0.0.0/16"),
    ("10.0.0.4/30", "10.0.0.4/30")])
def test_subnets_from_16_to_30(text: str, expected: str) -> None:
    assert pool.parse_subnet(text) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("10.0.0.0/15", "from /16 to /30"), ("10.0.0.0/31", "from /16 to /30"),
    ("10.0.0.1/32", "from /16 to /30"), ("2001:db8::/64", "from /16 to /30"),
    ("10.0.0.1/24", "host bits set"), ("lan", "not an IPv4 subnet"), ("", "not an IPv4")])
def test_other_subnets_are_refused_naming_the_value(text: str, reason: str) -> None:
    with pytest.raises(errors.ParameterError) as exc:
        pool.parse_subnet(text)
    assert f"'{text}'" in exc.value.message and reason in exc.value.message
    assert "\n" not in exc.value.message


def test_addresses() -> None:
    assert pool.parse_address("none", "gateway") is None
    assert pool.parse_address("192.0.2.1", "gateway") == "192.0.2.1"
    with pytest.raises(errors.ParameterError, match="invalid gateway '2001:db8::1'"):
        pool.parse_address("2001:db8::1", "gateway")
    assert pool.parse_address("2001:db8::1", "gateway6", version=6) == "2001:db8::1"
    assert pool.parse_subnet6("2001:db8::/64") == "2001:db8::/64"
    with pytest.raises(errors.ParameterError, match="network6"):
        pool.parse_subnet6("10.0.0.0/8")


def _net(subnet: str = "10.0.0.0/29", gateway: str | None = "10.0.0.1") -> Network:
    net = Network(name="lan", network=subnet, gateway=gateway)
    net.ext_reservations = pool.initial_reservations(net, [])
    return net


def test_initial_reservations_and_map() -> None:
    net = _net()
    assert net.ext_reservations == [0, 1, 7]
    state = pool.PoolState(net.size, frozenset(net.ext_reservations), frozenset({3}))
    assert (state.free_count, state.reserved_count, state.map()) == (4, 4, "XX.X...X")
    with pytest.raises(errors.ParameterError, match=r"reserved IP 10\.0\.1\.1 is not in network"):
        pool.initial_reservations(net, ["10.0.1.1"])
    assert pool.fixed_offsets(net) == {0, 1, 7}


def test_first_free() -> None:
    assert pool.first_free(4, {0, 3}) == 1
    assert pool.first_free(4, {0, 1, 2, 3}) is None


def _cfg(net: Network) -> tuple[ConfigData, NodeGroup, NodeGroup, Node]:
    g1, g2 = NodeGroup(name="g1"), NodeGroup(name="g2")
    g1.networks[net.uuid] = {"mode": "bridged", "link": "br9", "vlan": ""}
    node = Node(name="n1", group=g1.uuid)
    cfg = ConfigData(cluster=Cluster(master_node=node.uuid), nodegroups={
        g1.uuid: g1, g2.uuid: g2}, nodes={node.uuid: node}, networks={net.uuid: net})
    return cfg, g1, g2, node


def test_take_counts_saved_nics_and_running_jobs() -> None:
    net = _net()
    cfg, _g1, _g2, node = _cfg(net)
    inst = Instance(name="a", primary_node=node.uuid,
                    nics=[Nic(mac="aa:00:00:00:00:01", ip="10.0.0.2", network=net.uuid)])
    cfg.instances[inst.uuid] = inst
    res = Reservations()
    job1, job2 = object(), object()
    assert pool.take(cfg, res, job1, net, pool.POOL, "NIC 0") == "10.0.0.3"
    # the second job sees the first one's unsaved claim
    assert pool.take(cfg, res, job2, net, pool.POOL, "NIC 0") == "10.0.0.4"
    with pytest.raises(errors.OpPrereqError, match="already being assigned"):
        pool.take(cfg, res, job2, net, "10.0.0.3", "NIC 1")
    with pytest.raises(errors.OpPrereqError, match="in use by instance a"):
        pool.take(cfg, res, job2, net, "10.0.0.2", "NIC 1")
    with pytest.raises(errors.OpPrereqError, match="is reserved"):
        pool.take(cfg, res, job2, net, "10.0.0.1", "NIC 1")
    with pytest.raises(errors.ParameterError, match=r"10\.0\.1\.5 is not in network lan"):
        pool.take(cfg, res, job2, net, "10.0.1.5", "NIC 1")
    res.release(job1)  # job 1 failed: its address is free again
    assert pool.take(cfg, res, job2, net, pool.POOL, "NIC 1") == "10.0.0.3"
    assert pool.take(cfg, res, job2, net, pool.POOL, "NIC 2") == "10.0.0.5"
    assert pool.take(cfg, res, job2, net, pool.POOL, "NIC 3") == "10.0.0.6"
    with pytest.raises(errors.OpPrereqError, match=r"no free address left \(4 of 8"):
        pool.take(cfg, res, job2, net, pool.POOL, "NIC 4")
    assert pool.pool_state(cfg, net).free_count == 4  # claims are not saved reservations


def test_missing_networks_and_netparams() -> None:
    net = _net()
    cfg, g1, g2, node = _cfg(net)
    other = Network(name="dmz", network="10.9.0.0/24")
    cfg.networks[other.uuid] = other
    inst = Instance(name="a", primary_node=node.uuid,
                    nics=[Nic(network=net.uuid), Nic(), Nic(network=other.uuid)])
    assert pool.missing_networks(cfg, inst, g1.uuid) == ["dmz"]
    assert pool.missing_networks(cfg, inst, g2.uuid) == ["dmz", "lan"]
    assert pool.missing_networks(cfg, Instance(nics=[Nic()]), g2.uuid) == []
    assert pool.netparams(cfg, net, g1.uuid, "NIC 0")["link"] == "br9"
    with pytest.raises(errors.OpPrereqError, match="network lan is not connected to node "
                                                   "group g2"):
        pool.netparams(cfg, net, g2.uuid, "NIC 0")


def test_connect_conflicts_and_users() -> None:
    net = _net("10.0.0.0/24")
    cfg, g1, g2, node = _cfg(net)
    inst = Instance(name="a", primary_node=node.uuid,
                    nics=[Nic(ip="10.0.0.7"), Nic(ip="10.0.0.8", network=net.uuid)])
    cfg.instances[inst.uuid] = inst
    assert pool.connect_conflicts(cfg, net, g1.uuid) == ["a/nic.0 (10.0.0.7)"]
    assert pool.connect_conflicts(cfg, net, g2.uuid) == []
    assert pool.users_in_group(cfg, net, g1.uuid) == ["a"]
    assert pool.network_of_ip(cfg, g1, "10.0.0.9") is net
    assert pool.network_of_ip(cfg, g2, "10.0.0.9") is None


def test_nic_options() -> None:
    net = _net()
    cfg, *_ = _cfg(net)
    assert nic_network(cfg, 0, "lan", {}) is net
    assert nic_network(cfg, 0, "none", {"mode": "routed"}) is None
    with pytest.raises(errors.ParameterError, match="cannot be combined with link="):
        nic_network(cfg, 0, "lan", {"link": "br0"})
    with pytest.raises(errors.NotFoundError, match="network 'wan' does not exist"):
        nic_network(cfg, 0, "wan", {})
    assert nic_ip(0, "pool", net) == "pool"
    assert nic_ip(0, "None", None) is None
    with pytest.raises(errors.ParameterError, match="ip=pool needs network"):
        nic_ip(0, "pool", None)
    with pytest.raises(errors.ParameterError, match=r"invalid ip '10\.0\.0'"):
        nic_ip(0, "10.0.0", net)
    assert mods.check_nic_params("add", "nic -1:add", {"network": "lan", "ip": "pool"}) == {
        "network": "lan", "ip": "pool"}
    assert mods.check_nic_params("modify", "nic 0", {"network": "none"}) == {"network": None}


def test_verify_finds_what_operations_never_make() -> None:
    net = _net("10.0.0.0/24")
    cfg, _g1, g2, node = _cfg(net)
    other = Node(name="n2", group=g2.uuid)
    cfg.nodes[other.uuid] = other
    good = Instance(name="a", primary_node=node.uuid,
                    nics=[Nic(ip="10.0.0.9", network=net.uuid), Nic(ip="172.16.0.1")])
    cfg.instances[good.uuid] = good
    assert pool.address_problems(cfg) == []
    bad = Instance(name="b", primary_node=other.uuid, nics=[
        Nic(ip="10.0.0.9", network=net.uuid), Nic(ip="10.1.0.1", network=net.uuid),
        Nic(ip="10.0.0.1", network=net.uuid), Nic(network="gone")])
    cfg.instances[bad.uuid] = bad
    problems = pool.address_problems(cfg)
    assert problems == [
        "instance b nic/0: network lan is not connected to the node group of its primary node",
        "instance b nic/0: address 10.0.0.9 of network lan is also held by instance a nic/0",
        "instance b nic/1: network lan is not connected to the node group of its primary node",
        "instance b nic/1: address 10.1.0.1 is outside network lan (10.0.0.0/24)",
        "instance b nic/2: network lan is not connected to the node group of its primary node",
        "instance b nic/2: address 10.0.0.1 is reserved in network lan",
        "instance b nic/3: unknown network gone"]


def test_instance_hook_variables_name_the_network() -> None:
    from herd.logic import hooks

    net = _net("10.0.0.0/24")
    net.tags = ["a", "b"]
    cfg, _g1, _g2, node = _cfg(net)
    inst = Instance(name="a", primary_node=node.uuid, nics=[
        Nic(mac="aa:00:00:00:00:01", ip="10.0.0.9", network=net.uuid,
            nicparams={"mode": "bridged", "link": "br9"})])
    env = hooks.instance_env(cfg, inst, {})
    assert {k: v for k, v in env.items() if k.startswith("INSTANCE_NIC0_NETWORK")} == {
        "INSTANCE_NIC0_NETWORK_NAME": "lan", "INSTANCE_NIC0_NETWORK_UUID": net.uuid,
        "INSTANCE_NIC0_NETWORK_TAGS": "a b", "INSTANCE_NIC0_NETWORK_SUBNET": "10.0.0.0/24",
        "INSTANCE_NIC0_NETWORK_GATEWAY": "10.0.0.1", "INSTANCE_NIC0_NETWORK_SUBNET6": "",
        "INSTANCE_NIC0_NETWORK_GATEWAY6": "", "INSTANCE_NIC0_NETWORK_MAC_PREFIX": ""}
