"""Placement with node groups on a real four-node lab and real TCG guests: instances added
without -n (Herd's allocator) and with -I hail land with both copies in one group;
change-group moves a *running* mirrored guest into the other group (new secondary there,
live migration, new secondary); gnt-node evacuate -I hail empties a node; a request nothing
can hold is refused naming each node's room. The harness tests (tests/unit/
test_node_groups.py, test_allocation_cluster.py) cover the decisions with many instances;
this one shows them on real daemons, real mirrors and real migrations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd.paths import GANETI_IALLOCATOR_SEARCH_PATH
from tests.lab.conftest import LabCluster, joined_cluster

pytestmark = pytest.mark.slow

HAIL = any((Path(d) / "hail").is_file() for d in GANETI_IALLOCATOR_SEARCH_PATH)
GROUP2 = {"node3", "node4"}
ADD = ("gnt-instance", "add", "-t", "drbd", "-o", "busybox+default", "-s", "32M",
       "-B", "memory=128M", "--no-name-check", "--no-ip-check")


@pytest.fixture(scope="module")
def lab() -> Iterator[LabCluster]:
    with joined_cluster(4, LabCluster) as cluster:
        cluster.gnt("gnt-group", "add", "g2")
        cluster.gnt("gnt-group", "assign-nodes", "g2", "node3.example.com",
                    "node4.example.com")
        # small test guests: a policy whose smallest disk is 16 MiB (the default's is 1 GiB)
        for group in ("default", "g2"):
            cluster.gnt("gnt-group", "modify", "--ipolicy-bounds-specs",
                        "min:disk-size=16,cpu-count=1,disk-count=1,memory-size=64,nic-count=1,"
                        "spindle-use=1/max:disk-size=1048576,cpu-count=8,disk-count=16,"
                        "memory-size=32768,nic-count=8,spindle-use=12", group)
        yield cluster


def placement(lab: LabCluster, name: str) -> tuple[str, set[str], str]:
    """(primary, {primary, secondary}, status), node names without the domain."""
    out = lab.gnt("gnt-instance", "list", "--json", "-o", "name,pnode,snodes,status",
                  name).stdout
    row = json.loads(out)[0]
    nodes = {row["pnode"].split(".")[0], *(s.split(".")[0] for s in row["snodes"])}
    return row["pnode"].split(".")[0], nodes, row["status"]


def one_group(nodes: set[str]) -> bool:
    return nodes <= GROUP2 or not nodes & GROUP2


def verify_clean(lab: LabCluster) -> None:
    out = lab.gnt("gnt-cluster", "verify", check=False).stdout
    problems = [line for line in out.splitlines() if "ERROR" in line and "rapi/users" not in line]
    assert not problems, out


def test_placement_change_group_and_evacuation_with_real_guests(lab: LabCluster) -> None:
    lab.gnt(*ADD, "g1")  # Herd's allocator (the default), no -n
    pnode, nodes, status = placement(lab, "g1")
    assert len(nodes) == 2 and one_group(nodes) and status == "running"
    if HAIL:
        lab.gnt(*ADD, "-I", "hail", "g2inst")
        _, hail_nodes, _ = placement(lab, "g2inst")
        assert len(hail_nodes) == 2 and one_group(hail_nodes)
        lab.gnt("gnt-instance", "remove", "--shutdown-timeout=0", "g2inst")
    # the running guest moves to the other group, live
    target = "default" if nodes <= GROUP2 else "g2"
    lab.gnt("gnt-instance", "change-group", "--to", target, "g1")
    _, moved, status = placement(lab, "g1")
    assert moved.isdisjoint(nodes) and one_group(moved) and status == "running", moved
    verify_clean(lab)
    # evacuating the guest's primary with hail (or Herd's allocator) leaves it empty
    pnode, _, _ = placement(lab, "g1")
    lab.gnt("gnt-node", "evacuate", "-f", "-I", "hail" if HAIL else "herd", "-p",
            f"{pnode}.example.com")
    new_pnode, after, status = placement(lab, "g1")
    assert new_pnode != pnode and one_group(after) and status == "running"
    print(f"g1: placed on {sorted(nodes)}, change-group to {sorted(moved)}, "
          f"evacuated from {pnode} to {sorted(after)} (hail: {HAIL})")
    assert lab.nodes()[f"{pnode}.example.com"]["pinst_cnt"] == 0
    # what no node can hold is refused with each node's room, and nothing is made
    proc = lab.gnt(*ADD[:-4], "-B", "memory=30G", "--no-name-check", "--no-ip-check",
                   "huge", check=False)
    assert proc.returncode != 0
    assert "30.0 GiB" in proc.stderr and "node1" in proc.stderr, proc.stderr
    assert "huge" not in lab.instances()
    lab.gnt("gnt-instance", "remove", "--shutdown-timeout=0", "g1")
