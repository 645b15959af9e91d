"""Fixtures for multi-node tests: a real cluster in a herd-lab (network namespaces)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from herd.lab.cluster import Lab, lab_cluster
from herd.lab.single import build_test_guest


class LabCluster:
    """A lab whose node1 ran gnt-cluster init; helpers for what tests ask again and again."""

    def __init__(self, lab: Lab, kernel: Path, initrd: Path) -> None:
        self.lab = lab
        self.kernel, self.initrd = kernel, initrd
        self.master = "node1"

    def gnt(self, *argv: str, node: str | None = None, check: bool = True):
        return self.lab.run(node or self.master, *argv, check=check)

    def init(self, *extra: str) -> None:
        """gnt-cluster init on node1 (``extra``: more options, e.g. --vg-name VG)."""
        self.gnt("gnt-cluster", "init", "--node-name", "node1.example.com",
                 "--master-netdev", "eth0", "-s", self.lab.node("node1").secondary_ip,
                 "-H", f"kvm:kernel_path={self.kernel},initrd_path={self.initrd}",
                 *extra, "cluster.example.com")

    def token(self, node: str) -> str:
        return self.lab.run(node, "herd-join-token").stdout.strip()

    def add_node(self, node: str) -> None:
        info = self.lab.node(node)
        self.gnt("gnt-node", "add", "-s", info.secondary_ip, "--join-token", self.token(node),
                 info.fqdn)

    def config(self, node: str | None = None) -> dict:
        """The config as etcd holds it, read through ``node``'s certificate and members."""
        return json.loads(self.gnt("gnt-debug", "dump-config", node=node).stdout)

    def nodes(self) -> dict[str, dict]:
        out = self.gnt("gnt-node", "list", "--json", "-o", "name,role,pinst_cnt").stdout
        return {row["name"]: row for row in json.loads(out)}

    def instances(self) -> dict[str, dict]:
        out = self.gnt("gnt-instance", "list", "--json", "-o", "name,pnode,status").stdout
        return {row["name"]: row for row in json.loads(out)}


C = TypeVar("C", bound=LabCluster)


@contextlib.contextmanager
def joined_cluster(nodes: int, cls: type[C]) -> Iterator[C]:
    """A lab of ``nodes`` nodes, node1 the master, every other node joined."""
    kernel, initrd = build_test_guest()
    with lab_cluster(nodes) as lab:
        cluster = cls(lab, kernel, initrd)
        cluster.init()
        for index in range(2, nodes + 1):
            cluster.add_node(f"node{index}")
        yield cluster


@pytest.fixture(scope="module")
def lab3() -> Iterator[LabCluster]:
    kernel, initrd = build_test_guest()
    with lab_cluster(3) as lab:
        yield LabCluster(lab, kernel, initrd)
