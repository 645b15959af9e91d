"""etcd membership follows the master candidates on three nodes (issue 10, first step).

Joins make every candidate a voting member; ``gnt-node modify -C no`` removes a node's member
(its process ends, its data goes), ``-C yes`` brings it back from nothing, ``gnt-node remove``
removes it for good; and a write on one member is read on another. Client code runs inside
the nodes' namespaces, with their node certificates.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from herd.fileutil import pid_alive, read_pid
from tests.lab.conftest import LabCluster, joined_cluster
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

PRELUDE = textwrap.dedent("""
    import asyncio, json, sys
    from herd import paths
    from herd.etcd.client import EtcdClient, EtcdError
    p = paths.current()
""")


@pytest.fixture(scope="module")
def lab() -> Iterator[LabCluster]:
    with joined_cluster(3, LabCluster) as cluster:
        yield cluster


def run_py(lab: LabCluster, node: str, body: str) -> Any:
    code = PRELUDE + textwrap.dedent(body) + "\nprint(json.dumps(asyncio.run(main())))\n"
    out = lab.lab.run(node, sys.executable, "-c", code, timeout=60).stdout
    return json.loads(out.strip().splitlines()[-1])


def client_url(lab: LabCluster, node: str) -> str:
    return f"https://{lab.lab.node(node).primary_ip}:2379"


def members(lab: LabCluster, via: str = "node1") -> dict[str, bool]:
    """etcd's member list as seen by ``via``'s member: name -> is a learner."""
    return {name: learner for name, learner in run_py(lab, via, f"""
        async def main():
            async with EtcdClient.for_node(p, ["{client_url(lab, via)}"]) as c:
                return [[m.name, m.is_learner] for m in await c.member_list()]
    """)}


def candidates(lab: LabCluster) -> set[str]:
    return {name for name, row in lab.nodes().items() if row["role"] in ("M", "C")}


def etcd_status(lab: LabCluster, node: str) -> dict[str, Any]:
    """noded's view of its member (RPC etcd_status, asked from the node itself)."""
    info = lab.lab.node(node)
    return run_py(lab, node, f"""
        from herd.rpc.client import RpcRunner
        async def main():
            rpc = RpcRunner(p, 1811)
            try:
                return await rpc.address("{info.fqdn}", "{info.primary_ip}").call("etcd_status")
            finally:
                await rpc.close()
    """)


def etcd_pid(lab: LabCluster, node: str) -> int | None:
    pid = read_pid(lab.lab.node(node).paths.pid_file("etcd"))
    return pid if pid_alive(pid) else None




def test_every_candidate_is_a_voting_member(lab: LabCluster) -> None:
    assert candidates(lab) == {f"node{i}.example.com" for i in (1, 2, 3)}
    for via in ("node1", "node2", "node3"):
        assert members(lab, via) == {name: False for name in candidates(lab)}
        assert etcd_pid(lab, via)


def test_a_write_on_one_member_is_read_on_another(lab: LabCluster) -> None:
    revision = run_py(lab, "node1", f"""
        async def main():
            async with EtcdClient.for_node(p, ["{client_url(lab, 'node1')}"]) as c:
                return await c.put("test/hello", "from node1")
    """)
    seen = run_py(lab, "node3", f"""
        async def main():
            async with EtcdClient.for_node(p, ["{client_url(lab, 'node3')}"]) as c:
                kv = await c.get("test/hello")  # linearizable: node3 asks the leader
                return [kv.value.decode(), kv.mod_revision]
    """)
    assert seen == ["from node1", revision]


def test_demoting_a_candidate_removes_its_member(lab: LabCluster) -> None:
    node3 = lab.lab.node("node3")
    pid = etcd_pid(lab, "node3")
    lab.gnt("gnt-node", "modify", "-C", "no", node3.fqdn)
    assert candidates(lab) == {"node1.example.com", "node2.example.com"}
    assert members(lab) == {"node1.example.com": False, "node2.example.com": False}
    wait_until("node3's etcd to end", lambda: not pid_alive(pid))
    assert not node3.paths.etcd_dir.exists()
    assert etcd_pid(lab, "node3") is None


def test_promoting_it_again_brings_a_fresh_member(lab: LabCluster) -> None:
    lab.gnt("gnt-node", "modify", "-C", "yes", "node3.example.com")
    assert members(lab) == {name: False for name in candidates(lab)}
    assert len(members(lab)) == 3
    seen = run_py(lab, "node3", f"""
        async def main():
            async with EtcdClient.for_node(p, ["{client_url(lab, 'node3')}"]) as c:
                return (await c.get("test/hello")).value.decode()
    """)
    assert seen == "from node1"


def test_an_offlined_member_stops_by_itself_and_returns_fresh(lab: LabCluster) -> None:
    """Offline nodes get no RPC: the master removes the member only, and the member, still
    running, learns it was removed and exits; noded does not restart it (it would only fail
    again) until the node is a candidate again, and then it joins as a new member."""
    node3 = lab.lab.node("node3")
    pid = etcd_pid(lab, "node3")
    lab.gnt("gnt-node", "modify", "-O", "yes", node3.fqdn)
    assert members(lab) == {"node1.example.com": False, "node2.example.com": False}
    wait_until("node3's removed member to exit", lambda: not pid_alive(pid))
    status = wait_until("noded to see the removal", lambda: (s := etcd_status(lab, "node3"))
                      ["removed"] and s)
    assert status["pid"] is None and status["restarts"] == 0
    assert etcd_pid(lab, "node3") is None
    assert node3.paths.etcd_spec_file.exists()  # kept for inspection until it joins again
    lab.gnt("gnt-node", "modify", "-O", "no", node3.fqdn)
    lab.gnt("gnt-node", "modify", "-C", "yes", node3.fqdn)
    assert members(lab) == {name: False for name in candidates(lab)} and \
        len(candidates(lab)) == 3
    assert etcd_pid(lab, "node3")


MASTER_IP = "198.51.100.254"


def holder(lab: LabCluster, node: str) -> str | None:
    """Who holds the master election, read through ``node`` (None: nobody, or no answer)."""
    proc = lab.gnt("gnt-debug", "dump-config", "--master", "--timeout", "5", node=node,
                   check=False)
    out = proc.stdout.strip()
    return out if proc.returncode == 0 and out != "None" else None


def masterd_nodes(lab: LabCluster) -> list[str]:
    return [n for n in ("node1", "node2", "node3")
            if pid_alive(read_pid(lab.lab.node(n).paths.pid_file("masterd")))]


def has_master_ip(lab: LabCluster, node: str) -> bool:
    return MASTER_IP in lab.lab.run(node, "ip", "-4", "addr").stdout


def maxmem(lab: LabCluster, node: str) -> int:
    return lab.config(node)["cluster"]["beparams"]["maxmem"]


def test_master_cut_from_one_candidate_keeps_the_role_and_no_second_master(
        lab: LabCluster) -> None:
    """The report's partition: the master (node1) cannot reach node3; node2 reaches both."""
    assert masterd_nodes(lab) == ["node1"]
    lab.lab.partition("node1", "node3")
    try:
        # a change on the master reaches a quorum through node2: it succeeds and is there
        # on the cut-off side too
        lab.gnt("gnt-cluster", "modify", "-B", "maxmem=384M")
        assert maxmem(lab, "node3") == 384
        # a failover on the cut-off side is refused: the master still holds its lease
        proc = lab.gnt("gnt-cluster", "master-failover", node="node3", check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "still holds its lease" in proc.stderr, proc.stderr
        assert masterd_nodes(lab) == ["node1"]
    finally:
        lab.lab.heal()
    assert holder(lab, "node3") == "node1.example.com"
    assert masterd_nodes(lab) == ["node1"] and has_master_ip(lab, "node1")
    lab.gnt("gnt-cluster", "modify", "-B", "maxmem=256M")  # the master works on


def test_master_cut_from_everyone_gives_up_and_the_majority_takes_over(
        lab: LabCluster) -> None:
    """The master alone on its side: it stops serving within its lease, the other two elect a
    new master by themselves, and after healing exactly one masterd runs."""
    old_masterd = read_pid(lab.lab.node("node1").paths.pid_file("masterd"))
    lab.lab.partition("node1", "node2")
    lab.lab.partition("node1", "node3")
    try:
        wait_until("the cut-off master to stop", lambda: not pid_alive(old_masterd),
                   timeout=20)
        assert not has_master_ip(lab, "node1")
        new = wait_until("a master on the majority side",
                         lambda: holder(lab, "node2") not in (None, "node1.example.com")
                         and holder(lab, "node2"), timeout=60, interval=0.5)
        short = new.split(".")[0]
        wait_until("the new masterd", lambda: masterd_nodes(lab) == [short], timeout=30)
        lab.master = short
        wait_until("the master IP on the new master", lambda: has_master_ip(lab, short),
                   timeout=30)
        lab.gnt("gnt-cluster", "modify", "-B", "maxmem=320M")
    finally:
        lab.lab.heal()
    # node1 comes back as a candidate: its master watch sees the role taken, starts nothing
    wait_until("node1 to see the new master",
               lambda: holder(lab, "node1") == new, timeout=60, interval=0.5)
    assert masterd_nodes(lab) == [short]
    assert not has_master_ip(lab, "node1")
    assert maxmem(lab, "node1") == 320
    # hand the role back, so the tests below find node1 the master
    lab.gnt("gnt-cluster", "master-failover", node="node1")
    lab.master = "node1"
    assert masterd_nodes(lab) == ["node1"]


def test_removing_a_node_removes_its_member(lab: LabCluster) -> None:
    pid = etcd_pid(lab, "node3")
    lab.gnt("gnt-node", "remove", "node3.example.com")
    assert members(lab) == {"node1.example.com": False, "node2.example.com": False}
    wait_until("node3's etcd to end", lambda: not pid_alive(pid))
    assert not lab.lab.node("node3").paths.etcd_dir.exists()
