"""The cluster's TLS material: a CA, one certificate per node, one for RAPI.

All node RPC is mutual TLS: noded accepts only clients holding a certificate signed by the cluster
CA, and clients accept only servers signed by it. Names are checked by the CA signature, not by
host name, because nodes are addressed by IP and may change it.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from herd.fileutil import atomic_write
from herd.paths import HerdPaths

VALIDITY_DAYS = 5 * 365


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def create_ca(cluster_name: str) -> tuple[bytes, bytes]:
    """A self-signed CA for the cluster: (cert PEM, key PEM)."""
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Herd CA {cluster_name}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def create_signed(ca_cert_pem: bytes, ca_key_pem: bytes, common_name: str,
                  dns_names: list[str], ips: list[str]) -> tuple[bytes, bytes]:
    """A certificate for a node or for RAPI, signed by the cluster CA, usable both ways."""
    key = _key()
    cert = sign_public_key(ca_cert_pem, ca_key_pem, key.public_key(), common_name, dns_names,
                           ips)
    return cert, _pem_key(key)


def sign_public_key(ca_cert_pem: bytes, ca_key_pem: bytes, public_key: Any, common_name: str,
                    dns_names: list[str], ips: list[str]) -> bytes:
    """Certify ``public_key`` (a joining node's own key) with the cluster CA."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    alt += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips) if ip]
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(ca_cert.subject).public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False))
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def create_self_signed(common_name: str) -> tuple[bytes, bytes]:
    """A throw-away certificate for a node waiting to join (its key becomes the node key)."""
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def create_csr(key_pem: bytes, common_name: str) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def public_key_bytes(obj: Any) -> bytes:
    """DER of the public key of a certificate, CSR or private key (for comparisons)."""
    key = obj.public_key()
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint_der(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def write_pair(cert_path: Path, key_path: Path, cert: bytes, key: bytes) -> None:
    atomic_write(key_path, key, 0o600)
    atomic_write(cert_path, cert, 0o644)


def fingerprint(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.fingerprint(hashes.SHA256()).hex()


def server_context(paths: HerdPaths) -> ssl.SSLContext:
    """noded's context: present the node certificate, require a cluster-signed client."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(paths.node_cert, paths.node_key)
    ctx.load_verify_locations(paths.ca_cert)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(paths: HerdPaths) -> ssl.SSLContext:
    """A client's context: present our node certificate, trust only the cluster CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # nodes are addressed by IP; the CA signature is the check
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(paths.ca_cert)
    ctx.load_cert_chain(paths.node_cert, paths.node_key)
    return ctx
