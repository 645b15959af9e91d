"""Certificate roles: which certificate may call node RPC, and what OpenSSL makes of them.

The handshake tests run a real OpenSSL server context in a thread (no daemon), so they show
what noded's handshake does with each kind of certificate.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from herd.paths import HerdPaths
from herd.rpc import certs, tls
from tests.tlsutil import legacy_signed

CLUSTER = "cluster.example.com"


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return certs.create_ca(CLUSTER)


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_node_certificate_is_a_node(ca: tuple[bytes, bytes]) -> None:
    cert = _cert(certs.create_signed(*ca, "node1.example.com", ["node1.example.com"],
                                   ["192.0.2.1"])[0])
    assert certs.certificate_role(cert) == tls.ROLE_NODE
    assert certs.allows_client_auth(cert)
    assert certs.node_rpc_accepts(cert, _cert(ca[0]))
    assert certs.node_peer_refusal(cert, CLUSTER) is None


def test_rapi_certificate_cannot_be_a_node_client(ca: tuple[bytes, bytes]) -> None:
    cert = _cert(certs.create_rapi_certificate(CLUSTER, ["192.0.2.254"])[0])
    assert certs.certificate_role(cert) == tls.ROLE_RAPI
    assert not certs.allows_client_auth(cert)
    assert not certs.issued_by(cert, _cert(ca[0]))  # self-signed, as Ganeti's rapi.pem
    assert not certs.node_rpc_accepts(cert, _cert(ca[0]))
    assert certs.rapi_certificate_problem(cert, _cert(ca[0])) is None
    assert certs.node_peer_refusal(cert, CLUSTER) == "a herd-rapi certificate is not a node " \
        "certificate"
    assert CLUSTER in certs.names_of(cert)


def test_legacy_rapi_certificate_is_recognised(ca: tuple[bytes, bytes]) -> None:
    """The RAPI certificate of clusters made before roles: CA-signed, both usages."""
    cert = _cert(legacy_signed(*ca, CLUSTER, ["192.0.2.254"])[0])
    assert certs.certificate_role(cert) is None
    assert certs.node_rpc_accepts(cert, _cert(ca[0]))
    assert "noded would accept" in (certs.rapi_certificate_problem(cert, _cert(ca[0])) or "")
    refusal = certs.node_peer_refusal(cert, CLUSTER)
    assert refusal is not None and CLUSTER in refusal
    assert certs.node_peer_refusal(cert, CLUSTER.upper()) is not None


def test_legacy_node_certificate_still_a_node(ca: tuple[bytes, bytes]) -> None:
    """Old node certificates keep working until renew-crypto --new-node-certificates."""
    cert = _cert(legacy_signed(*ca, "node2.example.com", ["192.0.2.2"])[0])
    assert certs.node_peer_refusal(cert, CLUSTER) is None
    assert certs.node_peer_refusal(cert, None) is None


def test_role_in_subject_wins_over_usage(ca: tuple[bytes, bytes]) -> None:
    """Even a CA-signed certificate with client usage is refused if it says it is RAPI's."""
    import datetime

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = _cert(ca[0])
    ca_key = serialization.load_pem_private_key(ca[1], password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x"),
                                     x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                                        tls.ROLE_RAPI)]))
            .issuer_name(ca_cert.subject)
            .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .sign(ca_key, hashes.SHA256()))
    assert certs.node_rpc_accepts(cert, ca_cert)
    assert certs.node_peer_refusal(cert, CLUSTER) is not None
    assert certs.rapi_certificate_problem(cert, ca_cert) is not None


def test_unknown_role_is_refused_by_the_builder(ca: tuple[bytes, bytes]) -> None:
    with pytest.raises(ValueError, match="unknown certificate role 'admin'"):
        certs._leaf_builder(certs._subject("x", None), certs._subject("x", None), None, "admin",
                          [], [])


# -- a certificate and key in one file (--rapi-certificate) -----------------------------------
def test_load_cert_and_key_either_order() -> None:
    cert, key = certs.create_rapi_certificate(CLUSTER, [])
    for pem in (cert + key, key + cert):
        loaded, chain, key_pem = certs.load_cert_and_key(pem, "rapi.pem")
        assert loaded.fingerprint(certs.hashes.SHA256()) == _cert(cert).fingerprint(
            certs.hashes.SHA256())
        assert chain.strip() == cert.strip()
        assert b"PRIVATE KEY" in key_pem


def test_load_cert_and_key_errors() -> None:
    cert, _key = certs.create_rapi_certificate(CLUSTER, [])
    _, other_key = certs.create_rapi_certificate(CLUSTER, [])
    with pytest.raises(ValueError, match=r"^/x/r\.pem holds no private key"):
        certs.load_cert_and_key(cert, "/x/r.pem")
    with pytest.raises(ValueError, match="does not belong to the certificate"):
        certs.load_cert_and_key(cert + other_key, "/x/r.pem")
    with pytest.raises(ValueError, match=r"^/x/r\.pem holds no PEM certificate"):
        certs.load_cert_and_key(b"hello", "/x/r.pem")


# -- what OpenSSL does with them --------------------------------------------------------------
@pytest.fixture()
def node_paths(tmp_path: Path, ca: tuple[bytes, bytes]) -> HerdPaths:
    paths = HerdPaths(tmp_path / "node")
    paths.ensure()
    tls.write_pair(paths.ca_cert, paths.ca_key, *ca)
    tls.write_pair(paths.node_cert, paths.node_key,
                   *certs.create_signed(*ca, "node1.example.com", ["node1.example.com"], []))
    return paths


@pytest.fixture()
def tls_server(node_paths: HerdPaths) -> Iterator[int]:
    """noded's server context on a thread: answers b'ok' to each client it lets in."""
    ctx = tls.server_context(node_paths)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with ctx.wrap_socket(raw, server_side=True) as conn:
                    conn.sendall(b"ok")
            except (ssl.SSLError, OSError):
                raw.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def _hello(port: int, ca_pem: bytes, cert: bytes, key: bytes, tmp_path: Path,
           tls12: bool = False) -> tuple[bytes, bytes]:
    """Connect presenting (cert, key); return what the server said and its certificate."""
    certfile, keyfile = tmp_path / "client.pem", tmp_path / "client.key"
    tls.write_pair(certfile, keyfile, cert, key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=ca_pem.decode())
    ctx.load_cert_chain(certfile, keyfile)
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
        return conn.recv(10), conn.getpeercert(binary_form=True) or b""


def test_handshake_admits_node_certificate(tls_server: int, node_paths: HerdPaths,
                                           ca: tuple[bytes, bytes], tmp_path: Path) -> None:
    cert, key = certs.create_signed(*ca, "node2.example.com", [], [])
    assert _hello(tls_server, ca[0], cert, key, tmp_path)[0] == b"ok"


@pytest.mark.parametrize("tls12", [True, False])
def test_handshake_refuses_server_only_certificate(tls_server: int, ca: tuple[bytes, bytes],
                                                   tmp_path: Path, tls12: bool) -> None:
    """Signed by the cluster CA but serverAuth only: OpenSSL refuses it as a client."""
    from cryptography.hazmat.primitives import serialization

    pub_key_holder = certs._key()
    cert = certs._leaf_builder(certs._subject("rapi", tls.ROLE_RAPI),
                             _cert(ca[0]).subject, pub_key_holder.public_key(), tls.ROLE_RAPI,
                             [], []).sign(serialization.load_pem_private_key(ca[1], None),
                                          certs.hashes.SHA256())
    pem = cert.public_bytes(serialization.Encoding.PEM)
    with pytest.raises((ssl.SSLError, ConnectionError)) as exc:
        _hello(tls_server, ca[0], pem, certs._pem_key(pub_key_holder), tmp_path, tls12)
    assert "unsupported certificate" in str(exc.value).lower() or \
        isinstance(exc.value, ConnectionError)


def test_handshake_refuses_rapi_certificate(tls_server: int, ca: tuple[bytes, bytes],
                                            tmp_path: Path) -> None:
    cert, key = certs.create_rapi_certificate(CLUSTER, [])
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _hello(tls_server, ca[0], cert, key, tmp_path, tls12=True)


def test_server_context_reloads_a_new_node_certificate(tls_server: int, node_paths: HerdPaths,
                                                       ca: tuple[bytes, bytes],
                                                       tmp_path: Path) -> None:
    client = certs.create_signed(*ca, "node2.example.com", [], [])
    _, served = _hello(tls_server, ca[0], *client, tmp_path)
    assert tls.fingerprint_der(served) == tls.fingerprint(node_paths.node_cert.read_bytes())
    new_cert, new_key = certs.create_signed(*ca, "node1.example.com", [], [])
    # the certificate lands first: until its key follows, the old pair keeps serving
    node_paths.node_cert.write_bytes(new_cert)
    assert _hello(tls_server, ca[0], *client, tmp_path)[0] == b"ok"
    tls.write_pair(node_paths.node_cert, node_paths.node_key, new_cert, new_key)
    _, served = _hello(tls_server, ca[0], *client, tmp_path)
    assert tls.fingerprint_der(served) == tls.fingerprint(new_cert)
