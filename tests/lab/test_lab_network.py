"""The lab's network: reachability, names, isolation from the host, crash, partition, teardown.

One 3-node lab serves the module (building it takes about a second); each test that breaks
something puts it back in a ``finally``, so the tests do not depend on their order.
Reachability is a TCP connect to a closed port: a refusal (RST) proves the peer's kernel got the
SYN and answered, a timeout means the network dropped it. No listener and no ``ping`` needed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd.fileutil import pid_alive, read_pid
from herd.lab.cluster import (
    NETNS_ETC,
    NETNS_RUN,
    ROOT_BASE,
    STATE_DIR,
    Lab,
    LabError,
    lab_cluster,
)

pytestmark = pytest.mark.slow

HERD_LAB = str(Path(sys.executable).parent / "herd-lab")

PROBE = """
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor

def probe(addr):
    with socket.socket() as sock:
        sock.settimeout(1.0)
        try:
            sock.connect((addr, 9))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        return True

with ThreadPoolExecutor(16) as pool:
    print(json.dumps(dict(zip(sys.argv[1:], pool.map(probe, sys.argv[1:])))))
"""


def reaches(lab: Lab, src: str, *addrs: str) -> dict[str, bool]:
    """Which of ``addrs`` answer a TCP SYN sent from node ``src`` (all probed at once)."""
    out = lab.run(src, sys.executable, "-c", PROBE, *addrs, timeout=30).stdout
    return json.loads(out)


def addresses(lab: Lab, *nodes: str) -> list[str]:
    return [ip for n in nodes for ip in (lab.node(n).primary_ip, lab.node(n).secondary_ip)]


def host_network() -> tuple[set[str], set[str]]:
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    addrs = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True)
    names = {line.split(":")[1].strip() for line in links.stdout.splitlines()}
    return names, set(addrs.stdout.splitlines())


def unique_name() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def host_before() -> tuple[set[str], set[str]]:
    return host_network()


@pytest.fixture(scope="module")
def lab(host_before: tuple[set[str], set[str]]) -> Iterator[Lab]:
    with lab_cluster(3, name=unique_name()) as lab:
        yield lab


def test_nodes_reach_each_other_on_both_networks(lab: Lab) -> None:
    for node in lab.nodes:
        others = [n.name for n in lab.nodes if n != node]
        assert reaches(lab, node.name, *addresses(lab, *others)) == \
            dict.fromkeys(addresses(lab, *others), True)


def test_names_resolve_inside_nodes_only(lab: Lab) -> None:
    out = lab.run("node1", "getent", "hosts", "node2", "node3.example.com",
                  "cluster.example.com").stdout.split("\n")
    assert out[0].split()[:2] == ["198.51.100.2", "node2.example.com"]
    assert out[1].split()[0] == "198.51.100.3"
    assert out[2].split()[:2] == ["198.51.100.254", "cluster.example.com"]
    assert lab.run("node1", "getent", "hosts", "node1").stdout.split()[0] == "198.51.100.1"
    host = subprocess.run(["getent", "hosts", "node2.example.com"], capture_output=True,
                          text=True, check=False)
    assert "198.51.100.2" not in host.stdout


def test_nothing_added_to_host_namespace(
        lab: Lab, host_before: tuple[set[str], set[str]]) -> None:
    assert host_network() == host_before


def test_exec_passes_exit_code_root_and_path(lab: Lab) -> None:
    node2 = lab.node("node2.example.com")
    proc = lab.run("node2", "sh", "-c", 'echo "$HERD_ROOT"; command -v herd-daemon-util; exit 3',
                   check=False)
    assert proc.returncode == 3
    root, util = proc.stdout.split()
    assert root == str(node2.root)
    assert util == str(Path(sys.executable).parent / "herd-daemon-util")
    assert lab.run("node2", "sysctl", "-n", "net.ipv4.tcp_retries2").stdout.strip() == "5"
    # the command, from another process, agrees on the lab and passes the code straight on
    cli = subprocess.run([HERD_LAB, "--name", lab.name, "exec", "node2.example.com", "--",
                          "sh", "-c", 'echo "$HERD_ROOT"; exit 5'],
                         capture_output=True, text=True, check=False)
    assert (cli.returncode, cli.stdout.strip()) == (5, str(node2.root))


def test_noded_runs_in_every_node(lab: Lab) -> None:
    status = json.loads(subprocess.run([HERD_LAB, "--name", lab.name, "status"],
                                       capture_output=True, text=True, check=True).stdout)
    assert [n["fqdn"] for n in status["nodes"]] == [f"node{i}.example.com" for i in (1, 2, 3)]
    for node in status["nodes"]:
        assert node["daemons"]["noded"], node
        assert node["addresses"]["eth0"] == [f"{node['primary_ip']}/24"]
        assert node["addresses"]["eth1"] == [f"{node['secondary_ip']}/24"]


def test_crash_kills_everything_and_unplugs_then_start_restores(lab: Lab) -> None:
    node3 = lab.node("node3")
    sleeper = lab.popen("node3", "sleep", "1000")
    noded = read_pid(node3.paths.pid_file("noded"))
    assert pid_alive(noded)
    # as masterd would add the master IP: a power cut loses it, the node boots without it
    lab.run("node3", "ip", "addr", "add", "198.51.100.254/24", "dev", "eth0")
    try:
        lab.crash("node3")
        assert sleeper.wait(timeout=10) == -9
        assert not pid_alive(noded)
        assert subprocess.run(["ip", "netns", "pids", node3.netns], capture_output=True,
                              text=True, check=True).stdout == ""
        assert not any(reaches(lab, "node1", *addresses(lab, "node3")).values())
        assert Lab.load(lab.name).status()["nodes"][2]["crashed"] is True
        with pytest.raises(LabError, match="crashed"):
            lab.run("node3", "true")
    finally:
        for stream in (sleeper.stdin, sleeper.stdout, sleeper.stderr):
            stream.close()  # type: ignore[union-attr]
        lab.start("node3")
    assert all(reaches(lab, "node1", *addresses(lab, "node3")).values())
    assert all(reaches(lab, "node3", *addresses(lab, "node1", "node2")).values())
    assert pid_alive(read_pid(node3.paths.pid_file("noded")))
    status = Lab.load(lab.name).status()["nodes"][2]
    assert status["crashed"] is False
    assert status["addresses"]["eth0"] == [f"{node3.primary_ip}/24"]


def test_partition_cuts_one_pair_only_and_heal_restores(lab: Lab) -> None:
    subprocess.run([HERD_LAB, "--name", lab.name, "partition", "node1", "node2.example.com"],
                   check=True)
    try:
        from1 = reaches(lab, "node1", *addresses(lab, "node2", "node3"))
        from2 = reaches(lab, "node2", *addresses(lab, "node1", "node3"))
        from3 = reaches(lab, "node3", *addresses(lab, "node1", "node2"))
        assert from1 == {**dict.fromkeys(addresses(lab, "node2"), False),
                         **dict.fromkeys(addresses(lab, "node3"), True)}
        assert from2 == {**dict.fromkeys(addresses(lab, "node1"), False),
                         **dict.fromkeys(addresses(lab, "node3"), True)}
        assert all(from3.values())
        assert Lab.load(lab.name).status()["partitions"] == [["node1", "node2"]]
    finally:
        lab.heal()
    assert all(reaches(lab, "node1", *addresses(lab, "node2")).values())
    assert all(reaches(lab, "node2", *addresses(lab, "node1")).values())


def test_instance_segment_carries_l2_across_nodes(lab: Lab) -> None:
    """A guest-like port in br0 of node1 talks to one in br0 of node2 (100.64.0.0/24 only)."""
    for k in (1, 2):
        node = f"node{k}"
        lab.run(node, "ip", "link", "add", "tguest", "type", "veth", "peer", "name", "tguest-br")
        lab.run(node, "ip", "link", "set", "tguest-br", "master", "br0", "up")
        lab.run(node, "ip", "addr", "add", f"100.64.0.{k}/24", "dev", "tguest")
        lab.run(node, "ip", "link", "set", "tguest", "up")
    try:
        assert reaches(lab, "node1", "100.64.0.2") == {"100.64.0.2": True}
        lab.partition("node2", "node1")
        try:
            assert reaches(lab, "node1", "100.64.0.2") == {"100.64.0.2": False}
        finally:
            lab.heal()
        assert reaches(lab, "node1", "100.64.0.2") == {"100.64.0.2": True}
    finally:
        for k in (1, 2):
            lab.run(f"node{k}", "ip", "link", "del", "tguest", check=False)


def lab_leftovers(name: str) -> list[Path]:
    candidates = [*NETNS_RUN.glob(f"herdlab-{name}-*"), *NETNS_ETC.glob(f"herdlab-{name}-*"),
                  ROOT_BASE / name, STATE_DIR / f"{name}.json"]
    return [p for p in candidates if p.exists()]


def test_down_leaves_nothing_and_is_idempotent(host_before: tuple[set[str], set[str]]) -> None:
    lab = Lab(unique_name())
    lab.up(2, start_daemons=False)
    sleeper = lab.popen("node2", "sleep", "1000")
    assert lab_leftovers(lab.name)
    lab.down()
    assert sleeper.wait(timeout=10) == -9
    for stream in (sleeper.stdin, sleeper.stdout, sleeper.stderr):
        stream.close()  # type: ignore[union-attr]
    assert lab_leftovers(lab.name) == []
    lab.down()
    assert subprocess.run([HERD_LAB, "--name", lab.name, "down"], check=False).returncode == 0
    assert host_network() == host_before


def test_down_removes_a_half_built_lab() -> None:
    """What an 'up' killed midway leaves (a namespace, a hosts file, a root, no state) goes."""
    name = unique_name()
    netns = f"herdlab-{name}-n1"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    (NETNS_ETC / netns).mkdir(parents=True)
    (NETNS_ETC / netns / "hosts").write_text("127.0.0.1 localhost\n")
    (ROOT_BASE / name / "node1").mkdir(parents=True)
    Lab(name).down()
    assert lab_leftovers(name) == []
