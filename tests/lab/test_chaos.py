"""A randomized run on three nodes: crashes, partitions and node daemon restarts of random
nodes while a client tags the cluster through whichever node is master.

Afterwards every tag the client was told was added is in the config, read through every
node's etcd member; each member's history of the cluster object shows the acknowledged tags
arriving in the order they were acknowledged and never leaving; and the master IP was never on
two live nodes at once (sampled four times a second, with the masterd processes, into a
timeline printed with the counts).
``HERD_CHAOS_SECONDS`` (default 60) and ``HERD_CHAOS_SEED`` repeat or lengthen a run.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Iterator

import pytest

from herd.fileutil import pid_alive, read_pid
from herd.lab.cluster import LabError
from tests.lab.conftest import LabCluster, joined_cluster
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

NODES = ("node1", "node2", "node3")
MASTER_IP = "198.51.100.254"
DURATION = float(os.environ.get("HERD_CHAOS_SECONDS", "60"))


#: Run in a node: the history of the cluster object as that node's own member holds it (a watch
#: from the oldest revision kept, up to now): the chaos tags of every version, in order.
HISTORY = """
import asyncio, json, re
from herd import paths
from herd.etcd.client import EtcdClient, EtcdError
from herd.node.etcd_member import read_spec
KEY = "/herd/config/cluster"
async def main():
    p = paths.current()
    async with EtcdClient.for_node(p, [read_spec(p).client_url], timeout=30) as c:
        now = (await c.get(KEY)).mod_revision
        start = 1
        while True:
            versions = []
            try:
                async for events in c.watch(KEY, start_revision=start):
                    for event in events:
                        tags = json.loads(event.kv.value)["tags"] if event.kv.value else []
                        versions.append([t for t in tags if t.startswith("chaos-")])
                    if events[-1].kv.mod_revision >= now:
                        print(json.dumps(versions))
                        return
            except EtcdError as exc:
                found = re.search(r"oldest kept is (\\d+)", exc.message)
                if not found:
                    raise
                start = int(found.group(1))
asyncio.run(main())
"""


def tag_history(lab: LabCluster, node: str) -> list[list[str]]:
    proc = lab.lab.run(node, "python3", "-c", HISTORY, timeout=120)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def order_problems(history: list[list[str]], acked: list[str]) -> list[str]:
    """What is wrong with a member's history: an acknowledged tag that arrived out of order
    (before one acknowledged earlier) or that left after it had arrived."""
    problems: list[str] = []
    arrived: dict[str, int] = {}
    for index, tags in enumerate(history):
        for tag in tags:
            arrived.setdefault(tag, index)
        for tag in arrived:
            if tag in acked and tag not in tags:
                problems.append(f"{tag} left at version {index}")
    times = [arrived.get(tag, -1) for tag in acked]
    for earlier, later, tag in zip(times, times[1:], acked[1:], strict=False):
        if later < earlier:
            problems.append(f"{tag} arrived before an earlier acknowledged tag")
    return sorted(set(problems))


@pytest.fixture(scope="module")
def lab() -> Iterator[LabCluster]:
    with joined_cluster(3, LabCluster) as cluster:
        yield cluster


class Monitor(threading.Thread):
    """Samples who has the master IP and who runs masterd."""

    def __init__(self, lab: LabCluster) -> None:
        super().__init__(daemon=True)
        self.lab = lab
        self.samples: list[tuple[float, list[str], list[str]]] = []
        self.crashed: set[str] = set()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            now = time.monotonic()
            live = [n for n in NODES if n not in self.crashed]
            with_ip = [n for n in live if MASTER_IP in self.lab.lab.run(
                n, "ip", "-4", "addr", check=False).stdout]
            masterd = [n for n in NODES if pid_alive(read_pid(
                self.lab.lab.node(n).paths.pid_file("masterd")))]
            # a node crashed while we looked is not "live": drop it from this sample
            with_ip = [n for n in with_ip if n not in self.crashed]
            self.samples.append((now, with_ip, masterd))
            self.done.wait(0.25)


class Client(threading.Thread):
    """Adds tags chaos-0, chaos-1, ... through the master, wherever it is."""

    def __init__(self, lab: LabCluster) -> None:
        super().__init__(daemon=True)
        self.lab = lab
        self.acked: list[str] = []
        self.attempts = 0
        self.done = threading.Event()
        self.crashed: set[str] = set()

    def run(self) -> None:
        number, target = 0, "node1"
        while not self.done.is_set():
            tag = f"chaos-{number}"
            self.attempts += 1
            if target not in self.crashed:
                proc = self.lab.lab.run(target, "gnt-cluster", "add-tags", tag, check=False,
                                        timeout=120)
                if proc.returncode == 0:
                    self.acked.append(tag)
                    number += 1
                    continue
            number += 1  # the outcome of that one is unknown: never reuse the tag
            target = NODES[(NODES.index(target) + 1) % len(NODES)]
            self.done.wait(0.3)


def test_random_failures_lose_no_acknowledged_change_and_never_two_masters(
        lab: LabCluster) -> None:
    seed = int(os.environ.get("HERD_CHAOS_SEED", str(int(time.time()))))
    rng = random.Random(seed)
    monitor, client = Monitor(lab), Client(lab)
    monitor.start()
    client.start()
    actions: list[str] = []
    start = time.monotonic()
    try:
        while time.monotonic() - start < DURATION:
            kind = rng.choice(["crash", "partition", "noded", "pause"])
            node = rng.choice(NODES)
            if kind == "crash":
                monitor.crashed.add(node)
                client.crashed.add(node)
                lab.lab.crash(node)
                time.sleep(rng.uniform(6, 14))  # long enough, often, for a failover
                try:
                    lab.lab.start(node)
                except LabError as exc:  # masterd may refuse to start: noded runs
                    actions.append(f"(start {node}: {str(exc).splitlines()[-1][:80]})")
                monitor.crashed.discard(node)
                client.crashed.discard(node)
            elif kind == "partition":
                other = rng.choice([n for n in NODES if n != node])
                lab.lab.partition(node, other)
                time.sleep(rng.uniform(3, 10))
                lab.lab.heal()
                node = f"{node}|{other}"
            elif kind == "noded":
                lab.lab.run(node, "herd-daemon-util", "stop", "noded", check=False)
                lab.lab.run(node, "herd-daemon-util", "start", "noded", check=False)
            else:
                time.sleep(rng.uniform(2, 5))
            actions.append(f"{time.monotonic() - start:.0f}s {kind} {node}")
            time.sleep(rng.uniform(1, 4))
    finally:
        lab.lab.heal()
        client.done.set()
        client.join(180)
    # everything healed: a master serves again, without any command
    wait_until("a master that takes changes",
               lambda: any(lab.lab.run(n, "gnt-cluster", "add-tags", "chaos-final",
                                       check=False).returncode == 0 for n in NODES),
               timeout=120, interval=1)
    monitor.done.set()
    monitor.join(10)

    versions = {}
    for node in NODES:
        tags = set(json.loads(lab.gnt("gnt-debug", "dump-config", node=node).stdout)
                   ["cluster"]["tags"])
        lost = [t for t in client.acked if t not in tags]
        assert not lost, f"seed {seed}: acknowledged tags missing via {node}: {lost}"
        history = tag_history(lab, node)
        versions[node] = len(history)
        problems = order_problems(history, client.acked)
        assert not problems, f"seed {seed}: {node}'s member: {problems[:5]}"
    doubles = [(round(t - start, 2), ips) for t, ips, _ in monitor.samples if len(ips) > 1]
    holders = []
    for _t, ips, _ in monitor.samples:
        if ips and (not holders or holders[-1] != ips[0]):
            holders.append(ips[0])
    print(f"\nchaos: seed {seed}, {len(actions)} actions in {DURATION:.0f} s, "
          f"{len(client.acked)} acknowledged changes of {client.attempts} attempts, "
          f"master IP holders in turn: {' -> '.join(holders)}, {len(monitor.samples)} samples, "
          f"cluster object versions per member (all in acknowledged order): {versions}")
    print("actions: " + "; ".join(actions))
    assert not doubles, f"seed {seed}: the master IP on two nodes at once: {doubles[:5]}"
    assert client.acked, "no change was acknowledged at all"
