"""noded accepts only clients holding a cluster-signed *node* certificate, and clients trust
only it. The RAPI certificate, new or from before certificate roles, runs nothing on a node.

A real noded runs as a subprocess on 127.0.0.1 under a temporary HERD_ROOT; no QEMU is needed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd import errors
from herd.paths import HerdPaths
from herd.rpc import certs, tls
from herd.rpc.client import RpcRunner
from tests.tlsutil import legacy_signed

HOST = "127.0.0.1"
NODE_NAME = "node1.example.com"
CLUSTER_NAME = "cluster.example.com"
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _make_node(paths: HerdPaths, ca: tuple[bytes, bytes], name: str = NODE_NAME) -> None:
    """TLS material laid out as ``gnt-cluster init`` writes it (herd.logic.bootstrap)."""
    paths.ensure()
    tls.write_pair(paths.ca_cert, paths.ca_key, *ca)
    cert, key = certs.create_signed(*ca, name, [name], [HOST])
    tls.write_pair(paths.node_cert, paths.node_key, cert, key)


class Noded:
    def __init__(self, paths: HerdPaths, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.paths, self.port, self.proc = paths, port, proc


@pytest.fixture(scope="module")
def cluster_ca() -> tuple[bytes, bytes]:
    return certs.create_ca("cluster.example.com")


@pytest.fixture(scope="module")
def foreign_ca() -> tuple[bytes, bytes]:
    return certs.create_ca("other.example.com")


@pytest.fixture(scope="module")
def noded(tmp_path_factory: pytest.TempPathFactory,
          cluster_ca: tuple[bytes, bytes]) -> Iterator[Noded]:
    paths = HerdPaths(tmp_path_factory.mktemp("noded-root"))
    _make_node(paths, cluster_ca)
    (paths.data_dir / "node-name").write_text(NODE_NAME + "\n")
    paths.cluster_facts_file.write_text(json.dumps({"cluster_name": CLUSTER_NAME,
                                                    "master_node": NODE_NAME, "serial_no": 1}))
    port = _free_port()
    env = {**os.environ, "HERD_ROOT": str(paths.root),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "herd.daemons.noded", "--bind", HOST, "--port", str(port)],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"noded exited with {proc.returncode}: "
                                     f"{proc.stderr.read().decode(errors='replace')}"
                                     f"{_log_tail(paths)}")
            try:
                socket.create_connection((HOST, port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("noded did not listen within 15 s" +
                                         _log_tail(paths)) from None
                time.sleep(0.05)
        yield Noded(paths, port, proc)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


def _log_tail(paths: HerdPaths) -> str:
    log = paths.daemon_log("noded")
    return "\n" + log.read_text()[-2000:] if log.exists() else ""


def _context(ca_pem: bytes | None, cert: tuple[Path, Path] | None,
             tls12: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if ca_pem is None:
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cadata=ca_pem.decode())
    if cert is not None:
        ctx.load_cert_chain(*cert)
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _raw_ping(ctx: ssl.SSLContext, port: int) -> bytes:
    """Handshake, send a ping and return the answer; raise whatever the connection raises."""
    return _raw_rpc(ctx, port, "ping", b"{}")


def _ping_fails(ctx: ssl.SSLContext, port: int) -> BaseException:
    try:
        answer = _raw_ping(ctx, port)
    except (ssl.SSLError, ConnectionError, TimeoutError) as exc:
        return exc
    assert not answer.startswith(b"HTTP/"), f"noded answered an unauthenticated client: {answer!r}"
    return ConnectionAbortedError("connection closed without an answer")


def _pem_of(path: Path) -> bytes:
    return path.read_bytes()


def _runner_ping(paths: HerdPaths, port: int) -> dict[str, object]:
    async def go() -> dict[str, object]:
        runner = RpcRunner(paths, port)
        try:
            return await runner.address(NODE_NAME, HOST).ping()
        finally:
            await runner.close()

    return asyncio.run(go())


# -- the happy path --------------------------------------------------------------------------
def test_cluster_client_can_ping(noded: Noded) -> None:
    answer = _runner_ping(noded.paths, noded.port)
    assert answer["node_name"] == NODE_NAME
    assert answer["pid"] == noded.proc.pid


def test_other_node_of_the_cluster_can_ping(noded: Noded, tmp_path: Path,
                                            cluster_ca: tuple[bytes, bytes]) -> None:
    other = HerdPaths(tmp_path)
    _make_node(other, cluster_ca, "node2.example.com")
    assert _runner_ping(other, noded.port)["node_name"] == NODE_NAME


def test_raw_client_with_cluster_cert_gets_http_answer(noded: Noded) -> None:
    ctx = _context(_pem_of(noded.paths.ca_cert),
                   (noded.paths.node_cert, noded.paths.node_key))
    answer = _raw_ping(ctx, noded.port)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b'"ok":true' in answer.replace(b" ", b"")


# -- rejected clients ------------------------------------------------------------------------
def test_client_without_certificate_is_rejected_at_handshake(noded: Noded) -> None:
    # with TLS 1.2 the server's refusal is part of the handshake itself
    ctx = _context(_pem_of(noded.paths.ca_cert), None, tls12=True)
    with socket.create_connection((HOST, noded.port), timeout=5) as raw, \
            pytest.raises((ssl.SSLError, ConnectionError)):
        ctx.wrap_socket(raw, server_hostname=HOST).close()
    # with TLS 1.3 (the default) the client learns it on first read; never an HTTP answer
    _ping_fails(_context(_pem_of(noded.paths.ca_cert), None), noded.port)


def test_client_with_foreign_ca_certificate_is_rejected(noded: Noded, tmp_path: Path,
                                                        foreign_ca: tuple[bytes, bytes]) -> None:
    intruder = HerdPaths(tmp_path)
    _make_node(intruder, foreign_ca, "intruder.example.com")
    # it trusts the real cluster CA (so it accepts the server) but presents a foreign cert
    intruder.ca_cert.write_bytes(_pem_of(noded.paths.ca_cert))
    with socket.create_connection((HOST, noded.port), timeout=5) as raw, \
            pytest.raises((ssl.SSLError, ConnectionError)):
        _context(_pem_of(noded.paths.ca_cert), (intruder.node_cert, intruder.node_key),
                 tls12=True).wrap_socket(raw, server_hostname=HOST).close()
    _ping_fails(_context(_pem_of(noded.paths.ca_cert),
                         (intruder.node_cert, intruder.node_key)), noded.port)
    # through the real client, it is an RpcError naming the node
    with pytest.raises(errors.RpcError, match=NODE_NAME):
        _runner_ping(intruder, noded.port)


def test_client_with_self_signed_ca_cert_is_rejected(noded: Noded,
                                                     foreign_ca: tuple[bytes, bytes],
                                                     tmp_path: Path) -> None:
    """Presenting a CA certificate itself (not the cluster's) does not get in either."""
    cert, key = tmp_path / "ca.pem", tmp_path / "ca.key"
    tls.write_pair(cert, key, *foreign_ca)
    _ping_fails(_context(_pem_of(noded.paths.ca_cert), (cert, key)), noded.port)


# -- the client checks the server ------------------------------------------------------------
def test_client_not_trusting_cluster_ca_refuses_server(noded: Noded, tmp_path: Path,
                                                       foreign_ca: tuple[bytes, bytes]) -> None:
    ctx = _context(foreign_ca[0], (noded.paths.node_cert, noded.paths.node_key))
    with socket.create_connection((HOST, noded.port), timeout=5) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        ctx.wrap_socket(raw, server_hostname=HOST)
    # the real client, configured with another cluster's CA, refuses too
    other = HerdPaths(tmp_path)
    other.ensure()
    tls.write_pair(other.ca_cert, other.ca_key, *foreign_ca)
    tls.write_pair(other.node_cert, other.node_key, _pem_of(noded.paths.node_cert),
                   _pem_of(noded.paths.node_key))
    with pytest.raises(errors.RpcError, match="unreachable"):
        _runner_ping(other, noded.port)


def test_noded_still_serves_after_rejections(noded: Noded) -> None:
    assert noded.proc.poll() is None
    assert _runner_ping(noded.paths, noded.port)["node_name"] == NODE_NAME


# -- roles: the RAPI certificate is not a node -------------------------------------------------
def _raw_rpc(ctx: ssl.SSLContext, port: int, method: str, body: bytes) -> bytes:
    request = (f"POST /rpc/{method} HTTP/1.1\r\nHost: {HOST}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
               "Connection: close\r\n\r\n").encode() + body
    with socket.create_connection((HOST, port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=HOST) as conn:
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        return data


def _run_command_refused(noded: Noded, cert: tuple[Path, Path], tmp_path: Path) -> None:
    """`curl --cert CERT -d '{"command": ...}' https://NODE:1811/rpc/run_command` runs nothing."""
    marker = tmp_path / "ran-as-root"
    body = json.dumps({"command": f"id > {marker}"}).encode()
    for tls12 in (True, False):
        ctx = _context(_pem_of(noded.paths.ca_cert), cert, tls12=tls12)
        try:
            answer = _raw_rpc(ctx, noded.port, "run_command", body)
        except (ssl.SSLError, ConnectionError, TimeoutError):
            answer = b""
        assert not answer.startswith(b"HTTP/"), f"noded answered: {answer[:300]!r}"
    assert not marker.exists(), "noded ran a command for a client that is not a node"


def test_rapi_certificate_cannot_run_commands(noded: Noded, tmp_path: Path) -> None:
    """The RAPI certificate as ``gnt-cluster init`` makes it: self-signed, TLS server only."""
    cert, key = certs.create_rapi_certificate(CLUSTER_NAME, [HOST])
    tls.write_pair(tmp_path / "rapi.pem", tmp_path / "rapi.key", cert, key)
    _run_command_refused(noded, (tmp_path / "rapi.pem", tmp_path / "rapi.key"), tmp_path)


def test_rapi_certificate_signed_by_cluster_ca_refused_at_handshake(
        noded: Noded, tmp_path: Path, cluster_ca: tuple[bytes, bytes]) -> None:
    """Were RAPI's key-usage-limited certificate issued by the cluster CA, OpenSSL still refuses
    it in the handshake: its extended key usage lacks clientAuth."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = certs._key()
    cert = certs._leaf_builder(certs._subject(CLUSTER_NAME, tls.ROLE_RAPI),
                             x509.load_pem_x509_certificate(cluster_ca[0]).subject,
                             key.public_key(), tls.ROLE_RAPI, [CLUSTER_NAME], [HOST]) \
        .sign(serialization.load_pem_private_key(cluster_ca[1], None), certs.hashes.SHA256())
    tls.write_pair(tmp_path / "r.pem", tmp_path / "r.key",
                   cert.public_bytes(serialization.Encoding.PEM), certs._pem_key(key))
    ctx = _context(_pem_of(noded.paths.ca_cert), (tmp_path / "r.pem", tmp_path / "r.key"),
                   tls12=True)
    with socket.create_connection((HOST, noded.port), timeout=5) as raw, \
            pytest.raises((ssl.SSLError, ConnectionError)):
        ctx.wrap_socket(raw, server_hostname=HOST).close()
    _run_command_refused(noded, (tmp_path / "r.pem", tmp_path / "r.key"), tmp_path)


def test_legacy_rapi_certificate_cannot_run_commands(noded: Noded, tmp_path: Path,
                                                     cluster_ca: tuple[bytes, bytes]) -> None:
    """The RAPI certificate of a cluster made before roles (cluster CA, both TLS usages): the
    one from the issue, which answered ``uid=0(root)``. It passes the handshake; noded closes
    the connection before reading the request."""
    cert, key = legacy_signed(*cluster_ca, CLUSTER_NAME, [HOST])
    tls.write_pair(tmp_path / "rapi.pem", tmp_path / "rapi.key", cert, key)
    _run_command_refused(noded, (tmp_path / "rapi.pem", tmp_path / "rapi.key"), tmp_path)
    assert "names the cluster" in noded.paths.daemon_log("noded").read_text()


def test_node_certificates_old_and_new_still_work(noded: Noded, tmp_path: Path,
                                                  cluster_ca: tuple[bytes, bytes]) -> None:
    """A node certificate runs commands, whether made with roles or before them."""
    for name, pair in (("new", certs.create_signed(*cluster_ca, "node2.example.com",
                                                  ["node2.example.com"], [HOST])),
                       ("old", legacy_signed(*cluster_ca, "node3.example.com", [HOST]))):
        cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
        tls.write_pair(cert, key, *pair)
        ctx = _context(_pem_of(noded.paths.ca_cert), (cert, key))
        answer = _raw_rpc(ctx, noded.port, "run_command", b'{"command": "echo hello-$((6*7))"}')
        assert answer.startswith(b"HTTP/1.1 200"), (name, answer[:300])
        assert b"hello-42" in answer


def test_noded_serves_a_renewed_node_certificate_without_restart(
        noded: Noded, cluster_ca: tuple[bytes, bytes]) -> None:
    """What ``renew-crypto --new-node-certificates`` relies on: new files, next handshake."""
    def served() -> str:
        ctx = _context(_pem_of(noded.paths.ca_cert),
                       (noded.paths.node_cert, noded.paths.node_key))
        with socket.create_connection((HOST, noded.port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname=HOST) as conn:
            return tls.fingerprint_der(conn.getpeercert(binary_form=True) or b"")

    old_cert, old_key = _pem_of(noded.paths.node_cert), _pem_of(noded.paths.node_key)
    assert served() == tls.fingerprint(old_cert)
    new_cert, new_key = certs.create_signed(*cluster_ca, NODE_NAME, [NODE_NAME], [HOST])
    try:
        tls.write_pair(noded.paths.node_cert, noded.paths.node_key, new_cert, new_key)
        assert served() == tls.fingerprint(new_cert)
        assert _runner_ping(noded.paths, noded.port)["pid"] == noded.proc.pid
    finally:
        tls.write_pair(noded.paths.node_cert, noded.paths.node_key, old_cert, old_key)
    assert served() == tls.fingerprint(old_cert)
