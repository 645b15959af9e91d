"""renew-crypto on three real nodes: no node lets the RAPI certificate in, new node and RAPI
certificates reach every node while the daemons keep running, and they survive a master
failover (the new master serves the renewed RAPI certificate and calls the other nodes with
its renewed node certificate). No guests are needed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd.fileutil import read_pid
from herd.rpc import tls
from tests.lab.conftest import LabCluster, joined_cluster
from tests.tlsutil import SERVED_FINGERPRINT

pytestmark = pytest.mark.slow

NODES = ("node1", "node2", "node3")


@pytest.fixture(scope="module")
def lab() -> Iterator[LabCluster]:
    with joined_cluster(3, LabCluster) as cluster:
        yield cluster


def _served(lab: LabCluster, from_node: str, address: str, port: int) -> str:
    return lab.lab.run(from_node, sys.executable, "-c", SERVED_FINGERPRINT, address, str(port)) \
        .stdout.strip()


def _fingerprint(path: Path) -> str:
    return tls.fingerprint(path.read_bytes())


def test_no_node_runs_commands_for_the_rapi_certificate(lab: LabCluster,
                                                        tmp_path: Path) -> None:
    master = lab.lab.node("node1").paths
    cert, key = tmp_path / "rapi.pem", tmp_path / "rapi.key"
    tls.write_pair(cert, key, master.rapi_cert.read_bytes(), master.rapi_key.read_bytes())
    for name in NODES:
        node = lab.lab.node(name)
        marker = tmp_path / f"ran-on-{name}"
        proc = lab.lab.run("node2", "curl", "-sk", "--max-time", "10", "--cert", str(cert),
                           "--key", str(key), "-d", json.dumps({"command": f"id > {marker}"}),
                           f"https://{node.primary_ip}:1811/rpc/run_command", check=False)
        assert proc.returncode != 0 and "exit_code" not in proc.stdout, (name, proc.stdout)
        assert not marker.exists()


def test_renew_everything_then_fail_over(lab: LabCluster) -> None:
    nodes = {name: lab.lab.node(name) for name in NODES}
    before = {name: _fingerprint(n.paths.node_cert) for name, n in nodes.items()}
    old_rapi = _fingerprint(nodes["node1"].paths.rapi_cert)
    nodeds = {name: read_pid(n.paths.pid_file("noded")) for name, n in nodes.items()}

    proc = lab.gnt("gnt-cluster", "renew-crypto", "--new-rapi-certificate",
                   "--new-node-certificates", "-f")
    new_rapi = _fingerprint(nodes["node1"].paths.rapi_cert)
    assert new_rapi != old_rapi and "herd-rapi serves it" in proc.stdout, proc.stdout
    for name, node in nodes.items():
        assert read_pid(node.paths.pid_file("noded")) == nodeds[name], f"{name}: restarted"
        renewed = _fingerprint(node.paths.node_cert)
        assert renewed != before[name], name
        assert _served(lab, "node1", node.primary_ip, 1811) == renewed, name
        # every candidate holds the new RAPI certificate and key, as the master does
        assert node.paths.rapi_cert.read_bytes() == nodes["node1"].paths.rapi_cert.read_bytes()
        assert node.paths.rapi_key.read_bytes() == nodes["node1"].paths.rapi_key.read_bytes()
        assert node.paths.rapi_key.stat().st_mode & 0o777 == 0o600
    lab.gnt("gnt-cluster", "verify")  # also compares the distributed files

    lab.gnt("gnt-cluster", "master-failover", node="node2")
    lab.master = "node2"
    try:
        assert _served(lab, "node2", nodes["node2"].primary_ip, 5080) == new_rapi
        # the new master's masterd started with its renewed node certificate
        out = lab.gnt("gnt-cluster", "command", "echo", "ok-$((6*7))").stdout
        assert out.count("ok-42") == 3, out
        lab.gnt("gnt-cluster", "verify")
    finally:
        lab.gnt("gnt-cluster", "master-failover", node="node1")
        lab.master = "node1"
