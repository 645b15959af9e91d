"""X.509 files for QEMU's VNC TLS (``tls-creds-x509`` dir= / Herd's ``vnc_x509_path``), made
with ``cryptography`` for the RFB handshake tests: a CA, a server and a client certificate."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_vnc_x509_dir(directory: Path, client: bool = True) -> Path:
    """ca-cert.pem, server-cert.pem, server-key.pem (and client-cert.pem, client-key.pem)
    in ``directory``, the names QEMU's tls-creds-x509 reads."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("herd test VNC CA"))
          .issuer_name(_name("herd test VNC CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    (directory / "ca-cert.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    roles = [("server", ExtendedKeyUsageOID.SERVER_AUTH)]
    if client:
        roles.append(("client", ExtendedKeyUsageOID.CLIENT_AUTH))
    for role, usage in roles:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name(f"vnc-{role}.example.com"))
                .issuer_name(ca.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .add_extension(x509.SubjectAlternativeName(
                    [x509.DNSName(f"vnc-{role}.example.com"),
                     x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        (directory / f"{role}-cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{role}-key.pem").write_bytes(_pem_key(key))
        (directory / f"{role}-key.pem").chmod(0o600)
    return directory
