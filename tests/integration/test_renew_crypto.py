"""On a real one-node cluster: the RAPI certificate runs nothing on a node, and
``gnt-cluster renew-crypto`` replaces certificates while every daemon keeps running.

The attacks are the issue's own: ``curl --cert rapi.pem --key rapi.key -d '{"command": ...}'
https://NODE:1811/rpc/run_command`` from inside the cluster's network.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from herd.lab.single import CLUSTER_NAME, NODE_IP, SingleNodeCluster
from herd.rpc import certs, tls
from tests.tlsutil import SERVED_FINGERPRINT, legacy_signed
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

NODED = f"https://{NODE_IP}:1811"


def _served(cluster: SingleNodeCluster, host: str, port: int) -> str:
    return cluster.run(sys.executable, "-c", SERVED_FINGERPRINT, host, str(port)).stdout.strip()


def _run_command_as(cluster: SingleNodeCluster, cert: Path, key: Path,
                    marker: Path) -> tuple[int, str]:
    """The issue's curl; returns (curl's exit code, what noded answered)."""
    proc = cluster.run("curl", "-sk", "--max-time", "10", "--cert", str(cert), "--key", str(key),
                       "-H", "content-type: application/json",
                       "-d", json.dumps({"command": f"id > {marker}; echo ran-$((6*7))"}),
                       f"{NODED}/rpc/run_command", check=False)
    return proc.returncode, proc.stdout




def _keep(path: Path, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    copy.write_bytes(path.read_bytes())
    copy.chmod(0o600)
    return copy


def test_rapi_certificate_cannot_run_commands_node_certificate_can(
        cluster: SingleNodeCluster, tmp_path: Path) -> None:
    p = cluster.paths
    marker = tmp_path / "rapi-ran"
    code, answer = _run_command_as(cluster, p.rapi_cert, p.rapi_key, marker)
    assert code != 0 and "ran-42" not in answer, answer
    assert not marker.exists(), "the RAPI certificate ran a command as root on the node"
    marker = tmp_path / "node-ran"
    code, answer = _run_command_as(cluster, p.node_cert, p.node_key, marker)
    assert code == 0 and "ran-42" in answer, answer
    assert marker.exists()


def test_renew_rapi_certificate(cluster: SingleNodeCluster, tmp_path: Path) -> None:
    p = cluster.paths
    old_cert, old_key = _keep(p.rapi_cert, tmp_path, "old.pem"), _keep(p.rapi_key, tmp_path,
                                                                         "old.key")
    old = tls.fingerprint(old_cert.read_bytes())
    rapi_pid = cluster.daemon_pid("rapi")
    assert _served(cluster, NODE_IP, 5080) == old

    started = time.monotonic()
    proc = cluster.run("gnt-cluster", "renew-crypto", "--new-rapi-certificate", "-f")
    elapsed = time.monotonic() - started
    new = tls.fingerprint(p.rapi_cert.read_bytes())
    assert new != old
    assert new in proc.stdout and "herd-rapi serves it" in proc.stdout, proc.stdout
    assert _served(cluster, NODE_IP, 5080) == new
    assert cluster.daemon_pid("rapi") == rapi_pid, "herd-rapi was restarted"
    version = cluster.run("curl", "-sk", "--max-time", "10", "-o", "/dev/null",
                          "-w", "%{http_code}", f"https://{NODE_IP}:5080/version")
    assert version.stdout in ("200", "401")  # it answers (reads may need a user)
    # neither the old nor the new RAPI certificate runs anything on the node
    for cert, key, name in ((old_cert, old_key, "old"), (p.rapi_cert, p.rapi_key, "new")):
        code, answer = _run_command_as(cluster, cert, key, tmp_path / name)
        assert code != 0 and "ran-42" not in answer, (name, answer)
        assert not (tmp_path / name).exists()
    # the job's input holds no key, and nothing of the key reaches the job's log
    jobs = cluster.run("gnt-job", "list", "--no-headers", "-o", "id").stdout.split()
    info = cluster.run("gnt-job", "info", jobs[-1]).stdout
    assert "OP_CLUSTER_RENEW_CRYPTO" in info and "PRIVATE KEY" not in info
    print(f"renew-crypto --new-rapi-certificate: {elapsed:.2f} s")


def test_renew_with_own_rapi_certificate_file(cluster: SingleNodeCluster,
                                              tmp_path: Path) -> None:
    p = cluster.paths
    cert, key = certs.create_rapi_certificate(CLUSTER_NAME, [])
    own = tmp_path / "own.pem"
    own.write_bytes(key + cert)
    cluster.run("gnt-cluster", "renew-crypto", "--rapi-certificate", str(own), "-f")
    assert tls.fingerprint(p.rapi_cert.read_bytes()) == tls.fingerprint(cert)
    assert _served(cluster, NODE_IP, 5080) == tls.fingerprint(cert)
    # a certificate from the cluster CA with client use would open node RPC: refused
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"".join(legacy_signed(p.ca_cert.read_bytes(), p.ca_key.read_bytes(),
                                           CLUSTER_NAME, [])))
    proc = cluster.run("gnt-cluster", "renew-crypto", "--rapi-certificate", str(bad), "-f",
                       check=False)
    assert proc.returncode != 0
    assert f"RAPI certificate file '{bad}' refused" in proc.stderr, proc.stderr
    assert tls.fingerprint(p.rapi_cert.read_bytes()) == tls.fingerprint(cert)


def test_renew_node_certificates(cluster: SingleNodeCluster) -> None:
    p = cluster.paths
    old = tls.fingerprint(p.node_cert.read_bytes())
    noded_pid = cluster.daemon_pid("noded")
    cluster.run("gnt-cluster", "renew-crypto", "--new-node-certificates", "-f")
    new = tls.fingerprint(p.node_cert.read_bytes())
    assert new != old
    assert _served(cluster, NODE_IP, 1811) == new
    assert cluster.daemon_pid("noded") == noded_pid, "noded was restarted"
    # node RPC still works, from the running masterd (its old certificate is still valid)
    # and from a new client presenting the new certificate
    proc = cluster.run("gnt-cluster", "command", "echo", "still-$((6*7))")
    assert "still-42" in proc.stdout
    cluster.run("gnt-cluster", "verify")


def test_masterd_replaces_rapi_certificate_from_before_roles(cluster: SingleNodeCluster,
                                                             tmp_path: Path) -> None:
    """An upgraded cluster: the old RAPI certificate (cluster CA, both TLS usages) is replaced
    when masterd starts, once, and herd-rapi serves the new one without a restart."""
    p = cluster.paths
    legacy = legacy_signed(p.ca_cert.read_bytes(), p.ca_key.read_bytes(), CLUSTER_NAME,
                           ["198.51.100.254"])
    tls.write_pair(p.rapi_cert, p.rapi_key, *legacy)
    # even before masterd replaces it, noded refuses it (it names the cluster)
    old_cert, old_key = _keep(p.rapi_cert, tmp_path, "old.pem"), _keep(p.rapi_key, tmp_path,
                                                                         "old.key")
    code, answer = _run_command_as(cluster, old_cert, old_key, tmp_path / "legacy")
    assert code != 0 and "ran-42" not in answer, answer
    assert not (tmp_path / "legacy").exists()

    log = p.daemon_log("masterd")
    for _ in range(2):
        cluster.run("herd-daemon-util", "stop", "masterd")
        cluster.run("herd-daemon-util", "start", "masterd")
    assert log.read_text().count("replaced the RAPI certificate") == 1
    new = tls.fingerprint(p.rapi_cert.read_bytes())
    assert new != tls.fingerprint(legacy[0])
    wait_until("herd-rapi serving it", lambda: _served(cluster, NODE_IP, 5080) == new, 10)
    cluster.run("gnt-cluster", "verify")
