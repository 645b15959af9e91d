"""Placement on a five-node cluster (in-process harness, fake hypervisor, nodes of different
sizes): what an admin sees when adding instances without -n, with -I hail, evacuating a
node through an allocator, and asking for more than any node has.

Node sizes are simulated by each harness node's service (NodeService.simulated_size); the
guests' memory counts as used there, so placements change what the next allocation sees, as
on real nodes. hail runs for real where it is installed (tools/bootstrap-system).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd.logic import query
from herd.paths import GANETI_IALLOCATOR_SEARCH_PATH
from herd.rapi import convert
from tests.harness import InProcessCluster, create_op, node_name, scratch_root

HAIL = any((Path(d) / "hail").is_file() for d in GANETI_IALLOCATOR_SEARCH_PATH)
needs_hail = pytest.mark.skipif(not HAIL, reason="hail (ganeti-htools-3.0) is not installed")
#: MiB of memory of node1..node5 (node1 is the master)
SIZES = {1: 4096, 2: 6144, 3: 8192, 4: 8192, 5: 6144}
GIB = 1024


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[InProcessCluster]:
    with scratch_root(tmp_path) as root, \
            InProcessCluster(root, nodes=5, disk_templates=("drbd", "file", "diskless")) as c:
        for index, memory in SIZES.items():
            node = c.nodes[node_name(index)]
            node.service.simulated_size = {"memory_total": memory, "memory_node": 512,
                                           "cpu_total": 4}
        yield c


def add(cluster: InProcessCluster, name: str, *, memory: int = GIB, template: str = "drbd",
        **extra: Any) -> list[str]:
    """Add a running instance without -n; returns its nodes (primary first)."""
    outcome = cluster.run(create_op(name, template=template, start=True,
                                    disks=[{"size": GIB}], beparams={"memory": memory},
                                    **extra))
    assert outcome.status == "success", outcome.log
    inst = cluster.instance(name)
    assert inst is not None
    return [cluster.config.node_name(u) for u in inst.all_nodes]


def n1_errors(cluster: InProcessCluster) -> list[str]:
    outcome = cluster.run({"OP_ID": "OP_CLUSTER_VERIFY"})
    return [line for line in outcome.log if "accommodate instance failovers" in line]


def test_adds_without_nodes_spread_and_keep_n_plus_one(cluster: InProcessCluster) -> None:
    placed = {}
    for index in range(6):
        placed[f"m{index}.example.com"] = add(cluster, f"m{index}.example.com")
        assert n1_errors(cluster) == [], placed
    placed["f0.example.com"] = add(cluster, "f0.example.com", template="file")
    # every node got some of the work, and no mirror was doubled on one node
    assert {n for nodes in placed.values() for n in nodes} == set(cluster.nodes)
    assert all(len(set(nodes)) == len(nodes) for nodes in placed.values())
    assert n1_errors(cluster) == []
    log = cluster.run(create_op("m9.example.com", template="drbd", disks=[{"size": GIB}],
                                beparams={"memory": GIB})).log
    assert any("via iallocator herd" in line for line in log), log


def test_more_than_any_node_has_is_refused_with_each_nodes_room(
        cluster: InProcessCluster) -> None:
    add(cluster, "m0.example.com", memory=2 * GIB)
    outcome = cluster.run(create_op("big.example.com", template="file", start=True,
                                    disks=[{"size": GIB}], beparams={"memory": 8 * GIB}))
    assert outcome.status == "error"
    kind, message = outcome.error
    assert kind == "OpPrereqError"
    assert "instance allocator 'herd' cannot place instance big.example.com" in message
    assert "no node has 8.0 GiB free memory (N+1 reserve kept): " in message
    # each node with what it can give: its free memory less its N+1 reserve (m0's 2 GiB
    # on its primary, and kept on its secondary for a failover)
    room = {int(m[1]): float(m[2]) for m in
            re.finditer(r"node(\d)\.example\.com (\d+\.\d) GiB", message)}
    assert room == {1: 3.5, 2: 5.5, 3: 5.5, 4: 5.5, 5: 5.5}, message
    assert cluster.instance("big.example.com") is None
    assert all(node.disk_files() == [] or "big" not in " ".join(node.disk_files())
               for node in cluster.nodes.values())


@needs_hail
def test_hail_places_and_evacuates(cluster: InProcessCluster) -> None:
    for index in range(4):
        nodes = add(cluster, f"h{index}.example.com", iallocator="hail")
        assert len(nodes) == 2 and nodes[0] != nodes[1]
    assert n1_errors(cluster) == []
    # stopped first: noded finishes a live migration on kvm only, not on the fake hypervisor
    # (the lab migrates for real); hail's migrate opcodes for stopped instances are failovers
    for index in range(4):
        stopped = cluster.run({"OP_ID": "OP_INSTANCE_SHUTDOWN",
                               "instance_name": f"h{index}.example.com"})
        assert stopped.status == "success", stopped.log
    # the busiest node, emptied through hail: primaries fail over, then copies move away
    cfg = cluster.config
    count = {n: sum(1 for i in cfg.instances.values() if n in i.all_nodes) for n in cfg.nodes}
    victim = cfg.nodes[max(count, key=lambda n: (count[n], cfg.node_name(n)))]
    outcome = cluster.run({"OP_ID": "OP_NODE_EVACUATE", "node_name": victim.name,
                           "mode": "all", "iallocator": "hail"}, timeout=30)
    assert outcome.status == "success", outcome.log
    assert not [i.name for i in cluster.config.instances.values()
                if victim.uuid in i.all_nodes]
    assert any("iallocator hail" in line for line in outcome.log), outcome.log
    assert n1_errors(cluster) == []


@needs_hail
def test_the_default_allocator_is_a_cluster_parameter(cluster: InProcessCluster) -> None:
    changed = cluster.run({"OP_ID": "OP_CLUSTER_SET_PARAMS", "default_iallocator": "hail",
                           "default_iallocator_params": {"no-capacity-checks": None}})
    assert changed.status == "success", changed.log
    saved = cluster.saved_config().cluster
    assert (saved.default_iallocator, saved.default_iallocator_params) == (
        "hail", {"no-capacity-checks": None})
    outcome = cluster.run(create_op("d0.example.com", template="drbd", disks=[{"size": GIB}],
                                    beparams={"memory": GIB}))
    assert outcome.status == "success", outcome.log
    assert any("via iallocator hail" in line for line in outcome.log), outcome.log
    # RAPI's /2/info answers them as Ganeti's does (its sample: tests/rapi/ganeti-samples)
    info = convert.cluster_info(query.cluster_info(cluster.ctx), {})
    assert (info["default_iallocator"], info["default_iallocator_params"]) == (
        "hail", {"no-capacity-checks": None})
    sample = json.loads((Path(__file__).parents[1] / "rapi/ganeti-samples/2_info.json")
                        .read_text())
    assert {k: v for k, v in info["ipolicy"].items() if k != "disk-templates"} == \
        {k: v for k, v in sample["ipolicy"].items() if k != "disk-templates"}
    last = json.loads((cluster.paths.data_dir / "iallocator-last.json").read_text())
    assert last["allocator"] == "hail" and last["input"]["request"]["type"] == "allocate"
    refused = cluster.run({"OP_ID": "OP_CLUSTER_SET_PARAMS", "default_iallocator": "nosuch"})
    assert refused.error is not None
    assert "instance allocator 'nosuch' not found in the search path" in refused.error[1]


def test_replace_disks_with_an_allocator_picks_a_new_secondary(
        cluster: InProcessCluster) -> None:
    nodes = add(cluster, "r0.example.com")
    outcome = cluster.run({"OP_ID": "OP_INSTANCE_REPLACE_DISKS",
                           "instance_name": "r0.example.com",
                           "mode": "replace_new_secondary", "iallocator": "."})
    assert outcome.status == "success", outcome.log
    inst = cluster.instance("r0.example.com")
    assert inst is not None
    new = [cluster.config.node_name(u) for u in inst.all_nodes]
    assert new[0] == nodes[0] and new[1] not in nodes
    refused = cluster.run({"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": "r0.example.com",
                           "iallocator": "hail"})
    assert refused.error is not None and "does not take an instance allocator" in \
        refused.error[1]


@pytest.mark.parametrize("allocator", ["herd", pytest.param("hail", marks=needs_hail)])
def test_recreate_disks_on_nodes_an_allocator_picks(cluster: InProcessCluster,
                                                     allocator: str) -> None:
    old = add(cluster, "rc.example.com")
    assert cluster.run({"OP_ID": "OP_INSTANCE_SHUTDOWN",
                        "instance_name": "rc.example.com"}).status == "success"
    outcome = cluster.run({"OP_ID": "OP_INSTANCE_RECREATE_DISKS",
                           "instance_name": "rc.example.com", "iallocator": allocator})
    assert outcome.status == "success", outcome.log
    inst = cluster.saved_config().find_instance("rc.example.com")
    assert inst is not None
    new = [cluster.config.node_name(u) for u in inst.all_nodes]
    assert len(new) == 2 and not set(new) & set(old), (old, new)
    assert any(f"via iallocator {allocator}" in line for line in outcome.log)
    # the disks exist there: the instance starts on its new primary
    started = cluster.run({"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "rc.example.com"})
    assert started.status == "success", started.log
    assert "rc.example.com" in cluster.running(new[0])
    refused = cluster.run({"OP_ID": "OP_INSTANCE_RECREATE_DISKS",
                           "instance_name": "rc.example.com", "nodes": new})
    assert refused.error is not None and "is marked up; stop it first" in refused.error[1]


def test_operations_without_an_allocator_say_which(cluster: InProcessCluster) -> None:
    """-I on an operation that places nothing is refused, naming it (it used to be ignored)."""
    add(cluster, "u0.example.com")
    failover = cluster.run({"OP_ID": "OP_INSTANCE_FAILOVER", "instance_name": "u0.example.com",
                            "iallocator": "hail"})
    assert failover.error is not None
    assert "OP_INSTANCE_FAILOVER does not take an instance allocator ('hail'" in \
        failover.error[1]


def install(cluster: InProcessCluster, name: str, body: str) -> Path:
    """An external allocator in Herd's own directory of the master's search path."""
    directory = cluster.paths.iallocator_search_path[0]
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / name
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return directory


def test_an_external_allocator_is_run_as_ganeti_runs_it(cluster: InProcessCluster) -> None:
    directory = install(cluster, "pick2", """\
echo "$@" > "$(dirname "$0")/argv"
cp "$1" "$(dirname "$0")/input"
echo "pick2: a warning on stderr" >&2
echo '{"success": true, "info": "fine", "result": ["node2.example.com"]}'
""")
    changed = cluster.run({"OP_ID": "OP_CLUSTER_SET_PARAMS",
                           "default_iallocator_params": {"flag": None, "level": "3"}})
    assert changed.status == "success", changed.log
    outcome = cluster.run(create_op("x0.example.com", template="file", disks=[{"size": GIB}],
                                    iallocator="pick2"))
    assert outcome.status == "success", outcome.log
    inst = cluster.instance("x0.example.com")
    assert inst is not None and cluster.config.node_name(inst.primary_node) == \
        node_name(2)
    argv = (directory / "argv").read_text().split()
    assert argv[1:] == ["--flag", "--level=3"] and not Path(argv[0]).exists()  # temp file
    sent = json.loads((directory / "input").read_text())
    assert sent["request"]["name"] == "x0.example.com" and sent["version"] == 2
    assert "allocator pick2: pick2: a warning on stderr" in outcome.log
    # a failing program, and one that does not answer JSON: hard errors naming it
    install(cluster, "broken", 'echo "boom: no data" >&2\nexit 3\n')
    install(cluster, "chatty", "echo hello\n")
    for name, said in (("broken", "instance allocator broken failed (exit 3): boom: no data"),
                       ("chatty", "instance allocator chatty did not answer JSON on stdout: "
                                  "'hello'"),
                       ("absent", "instance allocator 'absent' not found in the search path")):
        refused = cluster.run(create_op(f"{name}.example.com", template="file",
                                        disks=[{"size": GIB}], iallocator=name))
        assert refused.error is not None and said in refused.error[1], refused.error
        assert cluster.instance(f"{name}.example.com") is None


def test_multi_allocate_places_what_fits_and_says_what_does_not(
        cluster: InProcessCluster) -> None:
    """OP_INSTANCE_MULTI_ALLOC (RAPI /2/instances-multi-alloc): one allocator run, one
    creation job per placed instance, the rest named in allocation_failed."""
    def body(name: str, memory: int, template: str = "drbd") -> dict[str, Any]:
        op = create_op(name, template=template, disks=[{"size": GIB}],
                       beparams={"memory": memory})
        del op["OP_ID"], op["pnode"]
        return op

    outcome = cluster.run({"OP_ID": "OP_INSTANCE_MULTI_ALLOC", "instances": [
        body("ma1.example.com", GIB), body("ma2.example.com", GIB, "file"),
        body("huge.example.com", 24 * GIB)]})
    assert outcome.status == "success", outcome.log
    result = outcome.result
    assert result["allocatable"] == ["ma1.example.com", "ma2.example.com"]
    assert result["allocation_failed"] == ["huge.example.com"]
    assert any("huge.example.com" in line and "free memory" in line for line in outcome.log), \
        outcome.log
    for submitted, job_id in result["jobs"]:
        assert submitted and cluster.wait(cluster.finish(job_id)).status == "success"
    assert len(cluster.instance("ma1.example.com").all_nodes) == 2
    assert cluster.instance("huge.example.com") is None
    refused = cluster.run({"OP_ID": "OP_INSTANCE_MULTI_ALLOC",
                           "instances": [{**body("x.example.com", GIB), "pnode": "node1"}]})
    assert refused.error is not None and "chooses the nodes" in refused.error[1]
    refused = cluster.run({"OP_ID": "OP_INSTANCE_MULTI_ALLOC", "instances": [
        body("ma1.example.com", GIB)]})
    assert refused.error is not None and "already exists" in refused.error[1]
