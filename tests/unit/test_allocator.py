"""The iallocator protocol (input document, requests, answer checks) and Herd's built-in
allocator, as pure functions on small clusters built here.

The same documents go to Debian's real ``hail`` in tests/unit/test_allocator_hail.py; here
each rule a user relies on is pinned: N+1 kept, policy enforced, exclusion tags, a mirror
within one group, and an explanation naming every node and what it lacks.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from herd import errors
from herd.allocator import builtin, protocol
from herd.objects import Cluster, ConfigData, Disk, Instance, Nic, Node, NodeGroup, params

GIB = 1024


def make_cluster(mem: dict[str, int], *, tags: list[str] | None = None,
                 groups: int = 1) -> tuple[ConfigData, dict[str, protocol.NodeRuntime]]:
    """Nodes named after ``mem`` (MiB of free memory each, 16 GiB total, 400 GiB disk)."""
    group_objs = [NodeGroup(name="default" if i == 0 else f"rack{i + 1}")
                  for i in range(groups)]
    nodes = {}
    for index, name in enumerate(sorted(mem)):
        node = Node(name=name, primary_ip=f"192.0.2.{index + 1}",
                    group=group_objs[index % groups].uuid)
        nodes[node.uuid] = node
    cluster = Cluster(cluster_name="c1.example.com", master_node=next(iter(nodes)),
                      enabled_hypervisors=["kvm"], enabled_disk_templates=["drbd", "file"],
                      beparams=dict(params.BE_DEFAULTS), ndparams=dict(params.ND_DEFAULTS),
                      tags=list(tags or []))
    cfg = ConfigData(cluster=cluster, nodegroups={g.uuid: g for g in group_objs}, nodes=nodes)
    runtime = {n.uuid: protocol.NodeRuntime(
        total_memory=16 * GIB, reserved_memory=1024, free_memory=mem[n.name],
        total_disk=400 * GIB, free_disk=390 * GIB, total_cpus=8, reserved_cpus=1)
        for n in nodes.values()}
    return cfg, runtime


def add_instance(cfg: ConfigData, name: str, nodes: list[str], *, memory: int = GIB,
                 template: str = "drbd", up: bool = True, tags: list[str] | None = None,
                 size: int = 10 * GIB) -> Instance:
    uuids = [cfg.get_node(n).uuid for n in nodes]
    inst = Instance(name=name, primary_node=uuids[0], os="debootstrap+default",
                    hypervisor="kvm", disk_template=template,
                    admin_state="up" if up else "down", beparams={"maxmem": memory,
                                                                  "minmem": memory},
                    disks=[Disk(size=size, dev_type=template, nodes=uuids)],
                    nics=[Nic(mac="aa:00:00:11:22:33")], tags=list(tags or []))
    cfg.instances[inst.uuid] = inst
    return inst


def space(inst: Instance) -> int:
    return sum(d.size + (128 if inst.disk_template == "drbd" else 0) for d in inst.disks)


def alloc(name: str = "db1.example.com", *, memory: int = 2 * GIB, template: str = "drbd",
          size: int = 20 * GIB, tags: list[str] | None = None, vcpus: int = 1,
          group: str | None = None) -> dict[str, Any]:
    mirrored = template == "drbd"
    return protocol.allocate_request(
        name=name, disk_template=template, memory=memory, vcpus=vcpus,
        disks=[{"size": size, "mode": "rw"}], disk_space_total=size + (128 if mirrored else 0),
        nics=[{"mac": "auto"}], required_nodes=2 if mirrored else 1, hypervisor="kvm",
        os="debootstrap+default", tags=tags, group_name=group)


def document(cfg: ConfigData, runtime: dict[str, protocol.NodeRuntime],
             request: dict[str, Any]) -> dict[str, Any]:
    return protocol.build_input(cfg, runtime, request, disk_space=space)


# -- the input document -----------------------------------------------------------------------
def test_input_has_every_key_hail_requires() -> None:
    cfg, runtime = make_cluster({"n1.example.com": 11 * GIB, "n2.example.com": 12 * GIB})
    add_instance(cfg, "web1.example.com", ["n1.example.com", "n2.example.com"])
    data = document(cfg, runtime, alloc())
    assert {"version", "cluster_name", "cluster_tags", "enabled_hypervisors", "ipolicy",
            "nodegroups", "nodes", "instances", "request"} <= set(data)
    (group,) = data["nodegroups"].values()
    assert set(group) == {"name", "alloc_policy", "networks", "ipolicy", "tags"}
    assert set(group["ipolicy"]) == {"minmax", "std", "disk-templates", "vcpu-ratio",
                                     "spindle-ratio"}
    assert set(group["ipolicy"]["minmax"][0]["min"]) == {
        "memory-size", "cpu-count", "disk-size", "disk-count", "nic-count", "spindle-use"}
    node = data["nodes"]["n1.example.com"]
    for key in ("tags", "primary_ip", "secondary_ip", "offline", "drained",
                "master_candidate", "group", "master_capable", "vm_capable", "total_memory",
                "reserved_memory", "free_memory", "total_disk", "free_disk", "total_spindles",
                "free_spindles", "total_cpus", "reserved_cpus", "i_pri_memory",
                "i_pri_up_memory"):
        assert key in node, key
    assert node["ndparams"]["exclusive_storage"] is False
    assert node["ndparams"]["spindle_count"] == 1
    assert node["i_pri_up_memory"] == GIB
    inst = data["instances"]["web1.example.com"]
    assert inst["nodes"] == ["n1.example.com", "n2.example.com"]  # primary first
    assert inst["disk_space_total"] == 10 * GIB + 128
    for key in ("disk_space_total", "memory", "vcpus", "tags", "disk_template",
                "spindle_use", "nics", "nodes", "admin_state", "disks"):
        assert key in inst, key


def test_a_node_that_did_not_answer_is_offline_without_runtime_keys() -> None:
    cfg, runtime = make_cluster({"n1.example.com": 11 * GIB, "n2.example.com": 12 * GIB})
    lost = cfg.get_node("n2.example.com").uuid
    data = document(cfg, {k: v for k, v in runtime.items() if k != lost}, alloc())
    assert data["nodes"]["n2.example.com"]["offline"] is True
    assert "free_memory" not in data["nodes"]["n2.example.com"]


def test_node_runtime_leaves_room_for_running_guests_to_reach_maxmem() -> None:
    info = {"memory_total": 8192, "memory_free": 4096, "memory_dom0": 1024,
            "memory_instances": 3072, "cpu_total": 4, "file_storage_total": 1000,
            "file_storage_free": 600, "storage_total": 5000, "storage_free": 100}
    facts = protocol.node_runtime(info, lvm=False, up_maxmem=4096)
    assert facts.free_memory == 3072  # one guest may still grow by 1 GiB
    assert (facts.total_disk, facts.free_disk) == (1000, 600)
    assert protocol.node_runtime(info, lvm=True, up_maxmem=0).free_disk == 100


def test_names_params_and_defaults() -> None:
    assert protocol.resolve_name(None, "") == "herd"
    assert protocol.resolve_name(".", "hail") == "hail"
    assert protocol.resolve_name("hail", "") == "hail"
    with pytest.raises(errors.ParameterError, match=r"invalid instance allocator name "
                       r"'\.\./bin/sh'"):
        protocol.resolve_name("../bin/sh", "")
    assert protocol.parse_params("no-capacity-checks,static-kvm-node-memory=0") == {
        "no-capacity-checks": None, "static-kvm-node-memory": "0"}
    assert protocol.argv_params({"no-capacity-checks": None, "a": "1"}) == [
        "--a=1", "--no-capacity-checks"]
    with pytest.raises(errors.ParameterError, match="invalid allocator parameter 'x y'"):
        protocol.parse_params("x y")


# -- checking answers -------------------------------------------------------------------------
def test_answers_are_checked_per_request_type() -> None:
    cfg, runtime = make_cluster({"n1.example.com": 11 * GIB, "n2.example.com": 12 * GIB})
    add_instance(cfg, "web1.example.com", ["n1.example.com", "n2.example.com"])
    data = document(cfg, runtime, alloc())
    ok = protocol.validate_answer("x", data, {"success": True, "info": "",
                                              "result": ["n1.example.com", "n2.example.com"]})
    assert ok == (True, "", ["n1.example.com", "n2.example.com"])
    legacy = {"success": True, "info": "", "nodes": ["n1.example.com", "n2.example.com"]}
    assert protocol.validate_answer("x", data, legacy)[0]
    for bad, why in (({"success": True, "info": ""}, "missing key"),
                     ({"success": True, "info": "", "result": ["n1.example.com"]},
                      "expected 2 node"),
                     ({"success": True, "info": "", "result": ["n1.example.com", "nX"]},
                      "unknown node"),
                     ([], "expected a JSON object")):
        with pytest.raises(protocol.AllocatorError, match=why):
            protocol.validate_answer("x", data, bad)
    assert protocol.validate_answer("x", data, {"success": False, "info": "FailMem: 2",
                                                "result": []}) == (False, "FailMem: 2", [])
    evac = document(cfg, runtime, protocol.node_evacuate_request(["web1.example.com"],
                                                                 "secondary-only"))
    with pytest.raises(protocol.AllocatorError, match="opcode 'OP_INSTANCE_REMOVE'"):
        protocol.validate_answer("x", evac, {"success": True, "info": "", "result": [
            [], [], [[{"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": "web1.example.com"}]]]})
    _, _, result = protocol.validate_answer("x", evac, {"success": True, "info": "", "result": [
        [], [["web1.example.com", "Can't find any good node: "]], []]})
    assert result.failed == [("web1.example.com", "Can't find any good node: ")]
    assert "web1.example.com: Can't find any good node" in protocol.evac_failure_message(
        "hail", result.failed)


def test_a_relocation_into_another_group_is_refused() -> None:
    cfg, runtime = make_cluster({"n1.example.com": 11 * GIB, "n2.example.com": 12 * GIB,
                                 "n3.example.com": 12 * GIB}, groups=2)
    add_instance(cfg, "web1.example.com", ["n1.example.com", "n3.example.com"])
    data = document(cfg, runtime, protocol.relocate_request(
        name="web1.example.com", relocate_from=["n3.example.com"], disk_space_total=10368))
    with pytest.raises(protocol.AllocatorError, match="into other group"):
        protocol.validate_answer("x", data, {"success": True, "info": "",
                                             "result": ["n2.example.com"]})


# -- the built-in allocator -------------------------------------------------------------------
def run(cfg: ConfigData, runtime: dict[str, protocol.NodeRuntime],
        request: dict[str, Any]) -> tuple[bool, str, Any]:
    data = document(cfg, runtime, request)
    return protocol.validate_answer("herd", data, builtin.run(copy.deepcopy(data)))


def test_allocation_keeps_n_plus_one_on_the_secondary() -> None:
    # n1 runs web1 (4 GiB), mirrored to n2: n2 must keep 4 GiB for a failover of n1
    cfg, runtime = make_cluster({"n1.example.com": 8 * GIB, "n2.example.com": 5 * GIB,
                                 "n3.example.com": 5 * GIB})
    add_instance(cfg, "web1.example.com", ["n1.example.com", "n2.example.com"],
                 memory=4 * GIB)
    ok, info, nodes = run(cfg, runtime, alloc(memory=2 * GIB))
    assert ok, info
    assert nodes[0] != "n2.example.com"  # only 1 GiB left there beyond web1's reserve
    # a secondary on n2 for a primary on n1 would need 4 + 2 GiB there: never chosen
    assert nodes != ["n1.example.com", "n2.example.com"]


def test_nothing_fits_explains_per_node() -> None:
    cfg, runtime = make_cluster({"node1.example.com": 3174, "node2.example.com": 5 * GIB})
    ok, info, _ = run(cfg, runtime, alloc(memory=8 * GIB, template="file"))
    assert not ok
    assert ("no node has 8.0 GiB free memory (N+1 reserve kept): node1.example.com 3.1 GiB, "
            "node2.example.com 5.0 GiB") in info


def test_policy_and_tags_are_hard_restrictions() -> None:
    cfg, runtime = make_cluster({"n1.example.com": 11 * GIB, "n2.example.com": 12 * GIB},
                                tags=["htools:iextags:service"])
    ok, info, _ = run(cfg, runtime, alloc(size=64, template="file"))
    assert not ok and "disk 0 size 64 MiB not in 1024..1048576" in info
    ok, info, _ = run(cfg, runtime, alloc(vcpus=9, template="file"))
    assert not ok and "cpu-count 9 not in 1..8" in info
    add_instance(cfg, "db0.example.com", ["n2.example.com"], template="file",
                 tags=["service:db"])
    ok, info, nodes = run(cfg, runtime, alloc(template="file", tags=["service:db"]))
    assert ok and nodes == ["n1.example.com"], info  # n2 has more room, but a db already
    add_instance(cfg, "db2.example.com", ["n1.example.com"], template="file",
                 tags=["service:db"])
    ok, info, _ = run(cfg, runtime, alloc(template="file", tags=["service:db"]))
    assert not ok and "same exclusion tag" in info and "service:db" in info


def test_a_mirror_stays_in_one_group_and_groups_are_chosen_by_policy() -> None:
    cfg, runtime = make_cluster({"n1.example.com": 11 * GIB, "n2.example.com": 12 * GIB,
                                 "n3.example.com": 12 * GIB, "n4.example.com": 12 * GIB},
                                groups=2)
    groups = {g.name: g for g in cfg.nodegroups.values()}
    group_of = {n.name: cfg.nodegroups[n.group].name for n in cfg.nodes.values()}
    ok, info, nodes = run(cfg, runtime, alloc())
    assert ok and group_of[nodes[0]] == group_of[nodes[1]], info
    groups["default"].alloc_policy = "last_resort"
    ok, _, nodes = run(cfg, runtime, alloc())
    assert {group_of[n] for n in nodes} == {"rack2"}
    groups["rack2"].alloc_policy = "unallocable"
    ok, _, nodes = run(cfg, runtime, alloc())
    assert {group_of[n] for n in nodes} == {"default"}
    ok, info, _ = run(cfg, runtime, alloc(group="rack2"))
    assert not ok and "group rack2 is unallocable" in info


def test_placements_spread_over_equal_nodes() -> None:
    cfg, runtime = make_cluster({f"n{i}.example.com": 12 * GIB for i in range(1, 5)})
    placed: list[str] = []
    for index in range(4):
        ok, info, nodes = run(cfg, runtime, alloc(f"i{index}.example.com", template="file",
                                                  memory=GIB))
        assert ok, info
        add_instance(cfg, f"i{index}.example.com", nodes, template="file", memory=GIB)
        runtime[cfg.get_node(nodes[0]).uuid] = protocol.NodeRuntime(
            **{**runtime[cfg.get_node(nodes[0]).uuid].__dict__,
               "free_memory": runtime[cfg.get_node(nodes[0]).uuid].free_memory - GIB})
        placed.append(nodes[0])
    assert sorted(placed) == [f"n{i}.example.com" for i in range(1, 5)]


def test_multi_allocate_reports_failures_per_instance() -> None:
    cfg, runtime = make_cluster({"n1.example.com": 6 * GIB, "n2.example.com": 6 * GIB})
    ok, info, (placed, failed) = run(cfg, runtime, protocol.multi_allocate_request([
        alloc("a.example.com", template="file", memory=4 * GIB),
        alloc("b.example.com", template="file", memory=4 * GIB),
        alloc("c.example.com", template="file", memory=4 * GIB)]))
    assert ok
    assert set(placed) == {"a.example.com", "b.example.com"}
    assert placed["a.example.com"] != placed["b.example.com"]
    assert failed == ["c.example.com"] and "cannot place c.example.com" in info


def test_relocate_and_evacuate_move_to_valid_nodes_with_jobs() -> None:
    cfg, runtime = make_cluster({f"n{i}.example.com": 12 * GIB for i in range(1, 5)})
    add_instance(cfg, "a.example.com", ["n1.example.com", "n2.example.com"])
    add_instance(cfg, "b.example.com", ["n2.example.com", "n1.example.com"])
    add_instance(cfg, "p.example.com", ["n1.example.com"], template="file")
    ok, info, new = run(cfg, runtime, protocol.relocate_request(
        name="a.example.com", relocate_from=["n2.example.com"], disk_space_total=10368))
    assert ok and new[0] in ("n3.example.com", "n4.example.com"), info
    ok, _, evac = run(cfg, runtime, protocol.node_evacuate_request(
        ["a.example.com", "b.example.com"], "secondary-only"))
    assert ok and not evac.failed
    assert {m[0] for m in evac.moved} == {"a.example.com", "b.example.com"}
    for _name, group, nodes in evac.moved:
        assert group == "default" and "n1.example.com" not in nodes[1:]
    assert all(job[0]["OP_ID"] == "OP_INSTANCE_REPLACE_DISKS" for job in evac.jobs)
    ok, _, evac = run(cfg, runtime, protocol.node_evacuate_request(
        ["a.example.com", "p.example.com"], "primary-only"))
    assert ("p.example.com", "instance p.example.com has no second copy (disk template "
            "file) and cannot move") in evac.failed
    assert evac.moved == [("a.example.com", "default", ["n2.example.com", "n1.example.com"])]
    assert evac.jobs[0][0]["OP_ID"] == "OP_INSTANCE_MIGRATE"
    ok, _, evac = run(cfg, runtime, protocol.node_evacuate_request(["a.example.com"], "all"))
    (moved,) = evac.moved
    assert not {"n1.example.com"} & set(moved[2])
    assert [op["OP_ID"] for op in evac.jobs[0]] == ["OP_INSTANCE_MIGRATE",
                                                    "OP_INSTANCE_REPLACE_DISKS"]


def test_change_group_with_one_group_is_trivial_or_refused() -> None:
    cfg, runtime = make_cluster({"n1.example.com": 12 * GIB, "n2.example.com": 12 * GIB})
    add_instance(cfg, "a.example.com", ["n1.example.com", "n2.example.com"])
    group = next(iter(cfg.nodegroups))
    ok, _, result = run(cfg, runtime, protocol.change_group_request(["a.example.com"],
                                                                    [group]))
    assert ok and result.moved == [("a.example.com", "default",
                                    ["n1.example.com", "n2.example.com"])]
    assert result.jobs == []
    ok, _, result = run(cfg, runtime, protocol.change_group_request(["a.example.com"], []))
    assert result.failed == [("a.example.com", "no other node group to move to")]


def test_a_mirror_on_a_one_node_cluster_says_two_nodes_are_needed() -> None:
    cfg, runtime = make_cluster({"n1.example.com": 11 * GIB})
    ok, info, _ = run(cfg, runtime, alloc())
    assert not ok and "group default has 1 usable node(s), 2 needed" in info
