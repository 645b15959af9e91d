"""Debian's real ``hail`` (ganeti-htools-3.0) on the protocol documents Herd builds, and the
built-in allocator diff-tested on the same documents.

Each answer is checked by :func:`check_placement`, written here independently of both
allocators: nodes online and not drained, a mirror in one group, memory and disk enough, N+1
kept on every node after the placement or the moves, the instance within the policy.
Skipped only when hail is not installed (tools/bootstrap-system installs it).

What they answered (hail 3.0.2, checked when this was written): the same nodes for all five
allocations below, and the same migrations when n1's primaries are evacuated (a drbd primary
can only go to its secondary without a new copy). They differ on one answer, both valid:
moving db1's secondary off n1, hail picks n3 (which already holds web2's copy, 2 GiB
reserve) and Herd n4 (no copy, a 1 GiB plain primary). Herd's score weighs the spread of
N+1-reserved memory (weight 1) and of instance counts, which n4 evens out; hail's also
counts its per-instance disk/net load terms, which it charges to secondaries differently.
The tests therefore check validity, not equality.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from herd.allocator import builtin, protocol
from herd.objects import ConfigData
from herd.paths import GANETI_IALLOCATOR_SEARCH_PATH
from tests.unit.test_allocator import GIB, add_instance, alloc, make_cluster, space

HAIL = next((Path(d) / "hail" for d in GANETI_IALLOCATOR_SEARCH_PATH
             if (Path(d) / "hail").is_file()), None)
pytestmark = pytest.mark.skipif(HAIL is None, reason="hail (ganeti-htools-3.0) is not "
                                "installed")
#: hail's fixed KVM node memory (optStaticKvmNodeMemory): the documents here report it, so
#: that hail's memory consistency check agrees with Herd's numbers (no stderr warnings).
KVM_NODE = 4096


def run_hail(data: dict[str, Any], tmp_path: Path) -> tuple[Any, str]:
    assert HAIL is not None
    doc = tmp_path / "input.json"
    doc.write_text(json.dumps(data))
    proc = subprocess.run([str(HAIL), str(doc)], capture_output=True, text=True, timeout=60,
                          check=False, env={**os.environ, "LC_ALL": "C.UTF-8"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def cluster(nodes: dict[str, int]) -> tuple[ConfigData, dict[str, protocol.NodeRuntime]]:
    """Nodes of 16 GiB with ``nodes[name]`` MiB used by running primaries (set below)."""
    cfg, runtime = make_cluster({name: 0 for name in nodes})
    return cfg, runtime


def consistent(cfg: ConfigData, runtime: dict[str, protocol.NodeRuntime]) -> None:
    """Free memory = total - node memory - the running primaries' maxmem (what a real node
    reports), so that both allocators see the same numbers."""
    used: dict[str, int] = {}
    for inst in cfg.instances.values():
        if inst.admin_state == "up":
            used[inst.primary_node] = used.get(inst.primary_node, 0) + \
                int(inst.beparams["maxmem"])
    for uuid, facts in list(runtime.items()):
        runtime[uuid] = protocol.NodeRuntime(**{
            **facts.__dict__, "reserved_memory": KVM_NODE,
            "free_memory": facts.total_memory - KVM_NODE - used.get(uuid, 0)})


def check_placement(data: dict[str, Any], result: Any) -> None:
    """The answer (already through protocol.validate_answer) is a placement a user accepts."""
    nodes, insts = data["nodes"], copy.deepcopy(data["instances"])
    request = data["request"]
    free = {n: v.get("free_memory", 0) for n, v in nodes.items()}
    disk = {n: v.get("free_disk", 0) for n, v in nodes.items()}
    if request["type"] == "allocate":
        assert all(not nodes[n]["offline"] and not nodes[n]["drained"] for n in result)
        assert len({nodes[n]["group"] for n in result}) == 1, "a mirror spans groups"
        free[result[0]] -= request["memory"]
        for n in result:
            disk[n] -= request["disk_space_total"]
        insts[request["name"]] = {"nodes": result, "memory": request["memory"],
                                  "admin_state": "up"}
        policy = data["nodegroups"][nodes[result[0]]["group"]]["ipolicy"]["minmax"][0]
        assert policy["min"]["memory-size"] <= request["memory"] <= \
            policy["max"]["memory-size"]
        assert all(policy["min"]["disk-size"] <= d["size"] <= policy["max"]["disk-size"]
                   for d in request["disks"])
        assert policy["min"]["cpu-count"] <= request["vcpus"] <= policy["max"]["cpu-count"]
    else:
        assert not result.failed, result.failed
        evacuated = {i: data["instances"][i]["nodes"] for i in request["instances"]}
        for name, _group, new_nodes in result.moved:
            old = evacuated[name]
            inst = insts[name]
            if request["evac_mode"] == "primary-only":
                assert new_nodes[0] != old[0]
            else:
                assert old[1] not in new_nodes[1:]
            assert len({nodes[n]["group"] for n in new_nodes}) == 1
            if inst["admin_state"] == "up":
                free[old[0]] += inst["memory"]
                free[new_nodes[0]] -= inst["memory"]
            inst["nodes"] = new_nodes
        assert {m[0] for m in result.moved} == set(request["instances"])
    assert all(v >= 0 for v in free.values()), free
    assert all(v >= 0 for n, v in disk.items() if "free_disk" in nodes[n]), disk
    for node in nodes:  # N+1: each node can take what any one peer would fail over to it
        peers: dict[str, int] = {}
        for inst in insts.values():
            if node in inst["nodes"][1:] and inst.get("admin_state", "up") == "up":
                primary = inst["nodes"][0]
                peers[primary] = peers.get(primary, 0) + inst["memory"]
        assert max(peers.values(), default=0) <= free[node], (node, peers, free[node])


def both(data: dict[str, Any], tmp_path: Path) -> tuple[tuple[bool, str, Any],
                                                         tuple[bool, str, Any], str]:
    hail_answer, stderr = run_hail(data, tmp_path)
    hail = protocol.validate_answer("hail", data, hail_answer)
    herd = protocol.validate_answer("herd", data, builtin.run(copy.deepcopy(data)))
    return hail, herd, stderr


def example() -> tuple[ConfigData, dict[str, protocol.NodeRuntime]]:
    """Four nodes, three mirrored instances and a plain one, unevenly spread."""
    cfg, runtime = cluster({f"n{i}.example.com": 0 for i in range(1, 5)})
    add_instance(cfg, "web1.example.com", ["n1.example.com", "n2.example.com"], memory=4 * GIB)
    add_instance(cfg, "web2.example.com", ["n1.example.com", "n3.example.com"], memory=2 * GIB)
    add_instance(cfg, "db1.example.com", ["n2.example.com", "n1.example.com"], memory=3 * GIB)
    add_instance(cfg, "f1.example.com", ["n4.example.com"], memory=GIB, template="file")
    consistent(cfg, runtime)
    return cfg, runtime


@pytest.mark.parametrize("request_kwargs", [
    {}, {"template": "file"}, {"memory": 6 * GIB}, {"memory": 7 * GIB, "template": "file"},
    {"vcpus": 4, "size": 100 * GIB}])
def test_hail_and_builtin_allocate_validly(tmp_path: Path,
                                           request_kwargs: dict[str, Any]) -> None:
    cfg, runtime = example()
    data = protocol.build_input(cfg, runtime, alloc(**request_kwargs), disk_space=space)
    hail, herd, stderr = both(data, tmp_path)
    assert stderr.strip() == "", stderr  # no "inconsistent data" warning: the numbers agree
    assert hail[0], hail[1]
    assert herd[0], herd[1]
    check_placement(data, hail[2])
    check_placement(data, herd[2])


def test_both_refuse_what_cannot_fit_and_herd_says_why(tmp_path: Path) -> None:
    cfg, runtime = example()
    data = protocol.build_input(cfg, runtime, alloc(memory=13 * GIB), disk_space=space)
    hail, herd, _ = both(data, tmp_path)
    assert not hail[0] and "FailMem" in hail[1]
    assert not herd[0]
    assert "no node has 13.0 GiB free memory" in herd[1]
    for name in ("n1", "n2", "n3", "n4"):
        assert f"{name}.example.com" in herd[1]


@pytest.mark.parametrize("mode", ["secondary-only", "primary-only"])
def test_hail_and_builtin_evacuate_a_node_validly(tmp_path: Path, mode: str) -> None:
    cfg, runtime = example()
    on_n1 = sorted(i.name for i in cfg.instances.values()
                   if (i.primary_node == cfg.get_node("n1.example.com").uuid)
                   == (mode == "primary-only")
                   and cfg.get_node("n1.example.com").uuid in i.all_nodes)
    data = protocol.build_input(cfg, runtime, protocol.node_evacuate_request(on_n1, mode),
                                disk_space=space)
    hail, herd, _ = both(data, tmp_path)
    assert hail[0] and herd[0]
    check_placement(data, hail[2])
    check_placement(data, herd[2])
    # the same kind of move: replace the secondary, or migrate to it
    op_ids = {op["OP_ID"] for job in hail[2].jobs + herd[2].jobs for op in job}
    assert op_ids == ({"OP_INSTANCE_REPLACE_DISKS"} if mode == "secondary-only"
                      else {"OP_INSTANCE_MIGRATE"})
