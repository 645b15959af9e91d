"""The balancer (herd.allocator.balance): its score is hbal's, to the printed decimal, and its
plans lower it as far as hbal's do, never breaking N+1 nor leaving a group.

hbal (Debian's ganeti-htools-3.0) reads the same clusters through its RAPI backend from files
(``hbal -m file://DIR``: the four answers /2/groups, /2/nodes, /2/instances and /2/info
would give), written here from each test document by :func:`rapi_files`. Tests that run hbal
are skipped only when it is not installed (tools/bootstrap-system installs it).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from herd import errors
from herd.allocator import balance
from herd.allocator.balance import Move
from herd.logic import rebalance
from herd.objects import params

HBAL = shutil.which("hbal") or next(
    (p for p in ("/usr/lib/ganeti/3.0/usr/bin/hbal",) if Path(p).is_file()), None)
needs_hbal = pytest.mark.skipif(HBAL is None, reason="hbal (ganeti-htools-3.0) is not installed")
GROUP = "g-uuid-1"


# -- cluster documents ------------------------------------------------------------------------
def node(group: str = GROUP, *, mem: int = 16384, dsk: int = 102400, cpus: int = 8,
         reserved: int = 1024, offline: bool = False, drained: bool = False) -> dict[str, Any]:
    """A node entry as protocol.build_input writes it; free figures are set by finish()."""
    entry: dict[str, Any] = {"group": group, "offline": offline, "drained": drained,
                             "vm_capable": True, "tags": [],
                             "ndparams": {"exclusive_storage": False, "spindle_count": 1,
                                          "cpu_speed": 1}}
    if not offline:
        entry.update(total_memory=mem, reserved_memory=reserved, free_memory=0,
                     total_disk=dsk, free_disk=0, total_cpus=cpus, reserved_cpus=1)
    return entry


def inst(nodes: list[str], *, mem: int = 1024, disk: int = 10240, vcpus: int = 1,
         template: str = "drbd", state: str = "up", tags: list[str] | None = None,
         auto_balance: bool = True) -> dict[str, Any]:
    meta = 128 if template == "drbd" else 0
    return {"nodes": nodes, "memory": mem, "vcpus": vcpus, "spindle_use": 1,
            "admin_state": state, "tags": tags or [], "disk_template": template,
            "disks": [{"size": disk, "mode": "rw"}], "disk_space_total": disk + meta,
            "nics": [], "auto_balance": auto_balance}


def document(nodes: dict[str, dict[str, Any]], instances: dict[str, dict[str, Any]],
             cluster_tags: list[str] | None = None, groups: tuple[str, ...] = (GROUP,),
             slack: dict[str, int] | None = None) -> dict[str, Any]:
    """A complete input document whose free memory and disk are what the instances leave
    (plus ``slack`` MiB of memory per node: what the node reports beyond its record)."""
    templates = ["drbd", "plain", "file", "diskless"]
    data = {"version": 2, "cluster_name": "c1.example.com", "cluster_tags": cluster_tags or [],
            "enabled_hypervisors": ["fake"], "ipolicy": params.default_ipolicy(templates),
            "nodegroups": {g: {"name": "default" if g == GROUP else g,
                               "alloc_policy": "preferred", "networks": [], "tags": [],
                               "ipolicy": params.default_ipolicy(templates)} for g in groups},
            "nodes": nodes, "instances": instances, "request": {"type": "rebalance"}}
    for name, n in nodes.items():
        if "total_memory" not in n:
            continue
        used_mem = sum(i["memory"] for i in instances.values()
                       if i["nodes"][0] == name and i["admin_state"] == "up")
        used_dsk = sum(i["disk_space_total"] for i in instances.values()
                       if name in i["nodes"] and i["disk_template"] in ("drbd", "plain"))
        n["free_memory"] = (n["total_memory"] - n["reserved_memory"] - used_mem
                            + (slack or {}).get(name, 0))
        n["free_disk"] = n["total_disk"] - used_dsk
    return data


def rapi_files(data: dict[str, Any], directory: Path) -> Path:
    """What Herd's RAPI answers for this cluster, in the files ``hbal -m file://`` reads."""
    groups = [{"uuid": uuid, "name": g["name"], "alloc_policy": g["alloc_policy"],
               "ipolicy": g["ipolicy"], "tags": g["tags"]}
              for uuid, g in data["nodegroups"].items()]
    nodes = []
    for name, n in data["nodes"].items():
        live = "total_memory" in n
        nodes.append({"name": name, "offline": n["offline"], "drained": n["drained"],
                      "vm_capable": n["vm_capable"], "ndparams": n["ndparams"],
                      "group.uuid": n["group"], "tags": n["tags"], "sptotal": None,
                      "spfree": None,
                      "mtotal": n.get("total_memory") if live else None,
                      "mnode": n.get("reserved_memory") if live else None,
                      "mfree": n.get("free_memory") if live else None,
                      "dtotal": n.get("total_disk") if live else None,
                      "dfree": n.get("free_disk") if live else None,
                      "ctotal": n.get("total_cpus") if live else None,
                      "cnos": n.get("reserved_cpus") if live else None})
    status = {"up": "running", "down": "ADMIN_down", "offline": "ADMIN_offline"}
    instances = [{"name": name, "disk_usage": i["disk_space_total"],
                  "disk.sizes": [d["size"] for d in i["disks"]],
                  "disk.spindles": [None for _ in i["disks"]],
                  "beparams": {"memory": i["memory"], "maxmem": i["memory"],
                               "vcpus": i["vcpus"], "auto_balance": i["auto_balance"],
                               "spindle_use": i["spindle_use"]},
                  "oper_ram": None, "pnode": i["nodes"][0], "snodes": i["nodes"][1:],
                  "status": status[i["admin_state"]], "tags": i["tags"],
                  "disk_template": i["disk_template"]}
                 for name, i in data["instances"].items()]
    info = {"master": sorted(data["nodes"])[0], "tags": data["cluster_tags"],
            "ipolicy": data["ipolicy"], "default_hypervisor": data["enabled_hypervisors"][0]}
    directory.mkdir(parents=True, exist_ok=True)
    for name, body in (("groups", groups), ("nodes", nodes), ("instances", instances),
                       ("info", info)):
        (directory / f"{name}.json").write_text(json.dumps(body))
    return directory


def run_hbal(directory: Path, *extra: str) -> tuple[float, float, int]:
    """hbal's initial score, final score and number of moves on the files in ``directory``."""
    assert HBAL is not None
    proc = subprocess.run([HBAL, "-m", f"file://{directory}", "-C", *extra],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "LC_ALL": "C.UTF-8"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    initial = float(re.search(r"Initial score: ([\d.]+)", proc.stdout)[1])  # type: ignore[index]
    improved = re.search(r"Cluster score improved from [\d.]+ to ([\d.]+)", proc.stdout)
    moves = re.search(r"Solution length=(\d+)", proc.stdout)
    return (initial, float(improved[1]) if improved else initial,
            int(moves[1]) if moves else 0)


def unbalanced(seed: int) -> dict[str, Any]:
    """A random single-group cluster: nodes of different sizes, the instances crowded on
    the first two, some stopped, a plain and a file one, an exclusion tag."""
    rng = random.Random(seed)
    count = rng.randint(3, 6)
    nodes = {f"node{k}.example.com": node(mem=rng.choice([8192, 16384, 24576]),
                                          dsk=rng.choice([81920, 122880]),
                                          cpus=rng.choice([4, 8]))
             for k in range(1, count + 1)}
    names = sorted(nodes)
    instances: dict[str, dict[str, Any]] = {}
    for k in range(rng.randint(4, 9)):
        pri, sec = rng.sample(names[:2] if rng.random() < 0.8 else names, 2)
        instances[f"i{k}.example.com"] = inst(
            [pri, sec], mem=rng.choice([512, 1024, 2048]), disk=rng.choice([2048, 10240]),
            vcpus=rng.randint(1, 4), state="up" if rng.random() < 0.8 else "down",
            tags=["svc:web"] if k % 3 == 0 else [])
    instances["p0.example.com"] = inst([names[0]], template="plain")
    instances["f0.example.com"] = inst([names[1]], template="file")
    return document(nodes, instances, cluster_tags=["htools:iextags:svc"],
                    slack={names[-1]: 300})


# -- the score --------------------------------------------------------------------------------
@needs_hbal
@pytest.mark.parametrize("seed", range(6))
def test_the_score_is_hbals_and_the_plan_reaches_hbals(seed: int, tmp_path: Path) -> None:
    data = unbalanced(seed)
    hbal_initial, hbal_final, hbal_moves = run_hbal(rapi_files(data, tmp_path / "rapi"))
    (plan,) = balance.plan(data)
    assert round(plan.initial_score, 8) == pytest.approx(hbal_initial, abs=2e-8)
    assert plan.final_score <= hbal_final + 1e-6, (plan.final_score, hbal_final)
    assert (len(plan.moves) > 0) == (hbal_moves > 0)


@needs_hbal
def test_the_score_counts_offline_drained_n1_and_tags_as_hbal(tmp_path: Path) -> None:
    """A cluster with every kind of term: an offline and a drained node holding instances,
    a node failing N+1, two primaries sharing an exclusion tag, an instance off
    auto_balance, a stopped and an admin-offline instance, and memory the record lacks."""
    nodes = {"n1": node(mem=8192), "n2": node(mem=16384), "n3": node(mem=16384),
             "n4": node(offline=True), "n5": node(drained=True)}
    instances = {
        "a": inst(["n1", "n2"], mem=4096, tags=["svc:db"]),
        "b": inst(["n1", "n3"], mem=1024, tags=["svc:db"]),
        "c": inst(["n2", "n1"], mem=6000),  # n1 cannot take c and a over: fails N+1
        "d": inst(["n4", "n2"], mem=1024),
        "e": inst(["n3", "n5"], mem=1024, state="down"),
        "f": inst(["n2", "n3"], mem=512, auto_balance=False),
        "g": inst(["n3", "n2"], mem=512, state="offline"),
        "h": inst(["n5"], mem=256, template="plain"),
    }
    data = document(nodes, instances, cluster_tags=["htools:iextags:svc"],
                    slack={"n2": 700, "n3": -300})
    hbal_initial, hbal_final, _ = run_hbal(rapi_files(data, tmp_path / "rapi"))
    cluster = balance.Cluster(data)
    score = balance.score_of(cluster.nodes.values())
    metrics = balance.metrics_of(cluster.nodes.values())
    assert metrics["n1_cnt"] > 0 and metrics["offline_pri_cnt"] == 2
    assert metrics["pri_tags_score"] == 1
    assert round(score, 8) == pytest.approx(hbal_initial, abs=2e-8)
    (plan,) = balance.plan(data)
    assert plan.final_score <= hbal_final + 1e-6


def test_a_score_by_hand() -> None:
    """Two equal nodes, one 2 GiB mirrored instance: every term worked out here."""
    data = document({"n1": node(mem=8192, dsk=10240, reserved=0),
                     "n2": node(mem=8192, dsk=10240, reserved=0)},
                    {"i": inst(["n1", "n2"], mem=2048, disk=1920, vcpus=2)})
    m = balance.metrics_of(balance.Cluster(data).nodes.values())
    assert m["free_mem_cv"] == pytest.approx(0.125)  # free 6/8 and 8/8
    assert m["free_disk_cv"] == 0  # the mirror takes 2 GiB on both
    assert m["reserved_mem_cv"] == pytest.approx(0.125)  # n2 keeps 2/8 for a failover
    assert m["reserved_mem_rtotal"] == pytest.approx(0.25)
    assert m["vcpu_ratio_cv"] == pytest.approx(0.125)  # (1+2)/8 and 1/8
    assert m["cpu_load_cv"] == m["mem_load_cv"] == m["net_load_cv"] == pytest.approx(0.5)
    assert m["disk_load_cv"] == 0 and m["n1_cnt"] == 0
    assert balance.group_score(data, GROUP) == pytest.approx(
        0.5 * 0.125 + 0.125 + 0.25 * 0.25 + 0.5 * 0.125 + 3 * 0.5 + 0.5 * 0.125
        + 0.5 * 0.125)


# -- the plan ---------------------------------------------------------------------------------
def replay(data: dict[str, Any], plan: balance.Plan) -> None:
    """Apply the plan step by step, checking what must hold after every step: the score
    is the one the plan says, no node that passed N+1 fails it, every node's memory and
    disk stay positive, both nodes of an instance in its group."""
    cluster = balance.Cluster(data)
    nodes = {name: n for name, n in cluster.nodes.items() if n.group == plan.group}
    previous = balance.score_of(nodes.values())
    assert previous == pytest.approx(plan.initial_score)
    for move in plan.moves:
        inst = cluster.instances[move.instance]
        assert (inst.pnode, inst.snode) == move.old_nodes
        changed, new_nodes = balance.apply_move(nodes, inst, move.kind, move.target)
        for name, after in changed.items():
            assert not after.fail_n1 or nodes[name].fail_n1, (move, name)
            assert after.offline or (after.unallocated() > 0 and after.f_dsk > 0)
        nodes.update(changed)
        inst.pnode, inst.snode = new_nodes
        assert new_nodes == move.new_nodes
        assert {nodes[n].group for n in new_nodes} == {nodes[move.old_nodes[0]].group}
        score = balance.score_of(nodes.values())
        assert score == pytest.approx(move.score) and score < previous
        previous = score


@pytest.mark.parametrize("seed", range(10))
def test_every_step_keeps_n1_and_lowers_the_score(seed: int) -> None:
    data = unbalanced(100 + seed)
    (plan,) = balance.plan(data)
    replay(data, plan)
    moved = {m.instance for m in plan.moves}
    assert not moved & {"p0.example.com", "f0.example.com"}  # no second node: they stay


def test_moves_stay_within_their_group() -> None:
    nodes = {"a1": node(), "a2": node(), "a3": node(),
             "b1": node("g2"), "b2": node("g2"), "b3": node("g2")}
    instances = {f"x{k}": inst(["a1", "a2"]) for k in range(4)}
    instances.update({f"y{k}": inst(["b1", "b2"]) for k in range(4)})
    instances["split"] = inst(["a3", "b3"])
    data = document(nodes, instances, groups=(GROUP, "g2"))
    plans = balance.plan(data)
    assert [p.group_name for p in plans] == ["default", "g2"]
    for p in plans:
        assert p.moves and p.final_score < p.initial_score
        replay(data, p)
    assert "split: its nodes are in different groups" in plans[0].unmovable
    (only,) = balance.plan(data, "g2")
    assert only.group == "g2" and all(m.instance.startswith("y") for m in only.moves)
    with pytest.raises(ValueError, match=r"unknown node group 'nosuch' \(groups with nodes: "
                                         r"default, g2\)"):
        balance.plan(data, "nosuch")


def test_options_limit_the_moves() -> None:
    data = unbalanced(7)
    (full,) = balance.plan(data)
    assert len(full.moves) > 2
    (short,) = balance.plan(data, opts=balance.Options(max_length=2))
    assert short.moves == full.moves[:2]
    (failovers,) = balance.plan(data, opts=balance.Options(disk_moves=False))
    assert failovers.moves == [] or {m.kind for m in failovers.moves} == {balance.FAILOVER}
    (copies,) = balance.plan(data, opts=balance.Options(instance_moves=False))
    assert {m.kind for m in copies.moves} <= {balance.REPLACE_SECONDARY}
    (none,) = balance.plan(data, opts=balance.Options(evac_mode=True))
    assert none.moves == []  # no node is offline or drained
    (stopped,) = balance.plan(data, opts=balance.Options(min_score=full.initial_score))
    assert stopped.moves == []


def test_evac_mode_moves_instances_off_a_drained_node() -> None:
    nodes = {"n1": node(), "n2": node(), "n3": node(), "n4": node(drained=True)}
    instances = {"a": inst(["n4", "n1"]), "b": inst(["n2", "n4"]), "c": inst(["n1", "n2"])}
    data = document(nodes, instances)
    (plan,) = balance.plan(data, opts=balance.Options(evac_mode=True))
    assert {m.instance for m in plan.moves} == {"a", "b"}
    replay(data, plan)


def test_a_move_that_would_break_n1_is_refused() -> None:
    """n3 (7000 MiB free) could take big (6 GiB) over alone, not big and small together,
    should n1, the primary of both, fail."""
    nodes = {"n1": node(mem=16384, reserved=0), "n2": node(mem=16384, reserved=0),
             "n3": node(mem=8192, reserved=0)}
    data = document(nodes, {"big": inst(["n1", "n2"], mem=6144),
                            "small": inst(["n1", "n3"], mem=1024),
                            "other": inst(["n3", "n2"], mem=1192)})
    cluster = balance.Cluster(data)
    with pytest.raises(balance.MoveRefused, match="n3: would fail N\\+1 \\(7000 MiB free, "
                                                  "7168 MiB reserved for failovers\\)"):
        balance.apply_move(cluster.nodes, cluster.instances["big"],
                           balance.REPLACE_SECONDARY, "n3")
    (plan,) = balance.plan(data)
    assert all(not (m.instance == "big" and "n3" in m.new_nodes[1:]) for m in plan.moves)


def test_jobs_of_a_move() -> None:
    move = Move(instance="i1", kind=balance.REPLACE_PRIMARY, target="n3",
                old_nodes=("n1", "n2"), new_nodes=("n3", "n2"), score=1.0, running=True)
    assert move.code == "f r:n3 f"
    assert [op["OP_ID"] for op in move.opcodes()] == [
        "OP_INSTANCE_MIGRATE", "OP_INSTANCE_REPLACE_DISKS", "OP_INSTANCE_MIGRATE"]
    assert move.opcodes()[1]["remote_node"] == "n3"
    stopped = Move(instance="i2", kind=balance.FAILOVER_AND_REPLACE, target="n4",
                   old_nodes=("n1", "n2"), new_nodes=("n2", "n4"), score=1.0, running=False)
    assert [op["OP_ID"] for op in stopped.opcodes()] == [
        "OP_INSTANCE_FAILOVER", "OP_INSTANCE_REPLACE_DISKS"]


# -- batches ----------------------------------------------------------------------------------
def _move(name: str, old: tuple[str, str], new: tuple[str, str]) -> Move:
    return Move(instance=name, kind=balance.REPLACE_SECONDARY, target=new[1], old_nodes=old,
                new_nodes=new, score=0.0, running=True)


def test_batches_touch_each_node_once() -> None:
    a = _move("a", ("n1", "n2"), ("n1", "n3"))
    b = _move("b", ("n4", "n5"), ("n4", "n6"))
    c = _move("c", ("n7", "n3"), ("n7", "n8"))  # n3: a's new secondary
    d = _move("d", ("n9", "n10"), ("n9", "n11"))
    e = _move("e", ("n1", "n3"), ("n1", "n12"))  # a again: after c's batch
    assert balance.batches([a, b, c, d, e]) == [[a, b], [c, d], [e]]
    assert balance.batches([]) == []
    for batch in balance.batches([a, b, c, d, e]):
        touched = [n for m in batch for n in m.nodes]
        assert len(touched) == len(set(touched))


def test_a_plan_says_its_batches() -> None:
    data = unbalanced(3)
    (plan,) = balance.plan(data)
    out = plan.to_dict()
    flat = [i for batch in out["batches"] for i in batch]
    assert flat == list(range(len(plan.moves)))  # in order, each once


# -- options as masterd takes them ------------------------------------------------------------
def test_bad_options_are_refused_naming_them() -> None:
    assert rebalance.options({"max_length": 3, "min_gain": 0.5}).max_length == 3
    with pytest.raises(errors.ParameterError, match="unknown rebalance option\\(s\\) colour; "
                                                    "allowed are max_length"):
        rebalance.options({"colour": 1})
    with pytest.raises(errors.ParameterError, match="invalid value 'x' for rebalance option "
                                                    "min_gain: expected float"):
        rebalance.options({"min_gain": "x"})
    with pytest.raises(errors.ParameterError, match="invalid value 1 for rebalance option "
                                                    "evac_mode: expected bool"):
        rebalance.options({"evac_mode": 1})
    with pytest.raises(errors.ParameterError, match="expected a number >= 0"):
        rebalance.options({"min_score": -1})


@needs_hbal
def test_kvm_node_memory_as_hbal_counts_it(tmp_path: Path) -> None:
    """On KVM hbal counts 4096 MiB for each node's own use whatever the node reports
    (--static-kvm-node-memory); Herd counts what the node reports unless told the same."""
    data = unbalanced(11)
    data["enabled_hypervisors"] = ["kvm"]
    directory = rapi_files(data, tmp_path / "rapi")
    hbal_static, _, _ = run_hbal(directory)
    hbal_reported, _, _ = run_hbal(directory, "--static-kvm-node-memory=0")
    assert hbal_static != pytest.approx(hbal_reported)
    cluster = balance.Cluster(data)
    assert round(balance.score_of(cluster.nodes.values()), 8) == pytest.approx(
        hbal_reported, abs=2e-8)
    (plan,) = balance.plan(data, opts=balance.Options(static_kvm_node_memory=4096))
    assert round(plan.initial_score, 8) == pytest.approx(hbal_static, abs=2e-8)
