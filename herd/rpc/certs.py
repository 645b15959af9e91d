"""The cluster's certificates: a CA, one certificate per node, one for RAPI.

All node RPC is mutual TLS: noded accepts only clients holding a *node* certificate signed by the
cluster CA, and clients accept only servers signed by it. Names are checked by the CA signature,
not by host name, because nodes are addressed by IP and may change it.

Every certificate carries its role twice: in the subject's OU (``herd-node``, ``herd-rapi``), for
people and for noded's own check, and in its extended key usage, which OpenSSL enforces during the
handshake. Node certificates are for TLS servers and clients; the RAPI certificate is for a
TLS server only and, as Ganeti's ``rapi.pem``, is self-signed rather than issued by the cluster
CA. So whoever holds the RAPI key (a reverse proxy, a stolen backup) can neither call node RPC
(the cluster CA did not sign it, and its key usage forbids client use) nor pose as a node to the
master, which sends the CA key to master candidates.

Building and inspecting certificates needs ``cryptography`` (about 9 MiB per process); the
daemons that only speak TLS import :mod:`herd.rpc.tls`, which needs the ``ssl`` module alone.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from herd.rpc.tls import ROLE_NODE, ROLE_RAPI

VALIDITY_DAYS = 5 * 365

#: What each role may do in TLS (extended key usage); OpenSSL refuses a client certificate whose
#: key usage lacks clientAuth, before any request reaches noded.
ROLE_USAGES: dict[str, tuple[x509.ObjectIdentifier, ...]] = {
    ROLE_NODE: (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
    ROLE_RAPI: (ExtendedKeyUsageOID.SERVER_AUTH,),
}


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


def _subject(common_name: str, role: str | None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if role is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role))
    return x509.Name(attrs)


def _alt_names(dns_names: Iterable[str], ips: Iterable[str]) -> list[x509.GeneralName]:
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(dns_names) if n]
    alt += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips) if ip]
    return alt


def _leaf_builder(subject: x509.Name, issuer: x509.Name, public_key: Any, role: str,
                  dns_names: Iterable[str], ips: Iterable[str]) -> x509.CertificateBuilder:
    if role not in ROLE_USAGES:
        raise ValueError(f"unknown certificate role '{role}'; allowed are "
                         f"{', '.join(ROLE_USAGES)}")
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage(list(ROLE_USAGES[role])), critical=False))
    alt = _alt_names(dns_names, ips)
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder


def create_signed(ca_cert_pem: bytes, ca_key_pem: bytes, common_name: str,
                  dns_names: list[str], ips: list[str]) -> tuple[bytes, bytes]:
    """A node certificate and its new key, signed by the cluster CA (TLS server and client)."""
    key = _key()
    cert = sign_public_key(ca_cert_pem, ca_key_pem, key.public_key(), common_name, dns_names,
                           ips)
    return cert, _pem_key(key)


def sign_public_key(ca_cert_pem: bytes, ca_key_pem: bytes, public_key: Any, common_name: str,
                    dns_names: list[str], ips: list[str]) -> bytes:
    """Certify ``public_key`` (a joining node's own key) as a node of the cluster.

    The cluster CA signs node certificates only: anything it signs can call node RPC.
    """
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    builder = _leaf_builder(_subject(common_name, ROLE_NODE), ca_cert.subject, public_key,
                            ROLE_NODE, dns_names, ips)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def create_rapi_certificate(cluster_name: str, ips: list[str]) -> tuple[bytes, bytes]:
    """RAPI's certificate and key: self-signed (as Ganeti's rapi.pem), TLS server only.

    Not issued by the cluster CA, so noded never trusts it as a client and node RPC clients
    never trust it as a node; clients of RAPI pin this certificate (or the admin replaces it
    with one from their own CA, ``gnt-cluster renew-crypto --rapi-certificate``).
    """
    key = _key()
    name = _subject(cluster_name, ROLE_RAPI)
    cert = _leaf_builder(name, name, key.public_key(), ROLE_RAPI, [cluster_name], ips) \
        .sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


# -- roles: pure decisions on certificates ------------------------------------------------------
def certificate_role(cert: x509.Certificate) -> str | None:
    """The role a certificate names in its subject, or None (made before roles existed)."""
    for attr in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME):
        if attr.value in ROLE_USAGES:
            return str(attr.value)
    return None


def allows_client_auth(cert: x509.Certificate) -> bool:
    """Would OpenSSL accept this certificate from a TLS client? (key usage absent or clientAuth)"""
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ExtendedKeyUsageOID.CLIENT_AUTH in usages or \
        ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages


def names_of(cert: x509.Certificate) -> set[str]:
    """The host names a certificate is for: its common name and DNS alternative names."""
    names = {str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names.update(alt.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        pass
    return {n.lower() for n in names}


def issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    if cert.issuer != ca_cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def node_rpc_accepts(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """Would noded's TLS handshake let this certificate in as a client?"""
    return issued_by(cert, ca_cert) and allows_client_auth(cert)


def node_peer_refusal(cert: x509.Certificate, cluster_name: str | None) -> str | None:
    """Why noded must refuse a client that passed the handshake with ``cert``, or None.

    The handshake already checked the CA signature and the key usage; this is the role. A
    certificate made before roles (no OU) is a node's unless it names the cluster: Herd made
    exactly one such certificate, the old RAPI certificate, and clusters upgraded from then must
    not keep honouring it as a node, even before ``gnt-cluster renew-crypto`` replaces it.
    """
    role = certificate_role(cert)
    if role == ROLE_NODE:
        return None
    if role is not None:
        return f"a {role} certificate is not a node certificate"
    if not allows_client_auth(cert):
        return "the certificate is not for TLS clients"
    if cluster_name and cluster_name.lower() in names_of(cert):
        return (f"the certificate names the cluster ({cluster_name}): it is the RAPI "
                "certificate from before certificate roles")
    return None


def rapi_certificate_problem(cert: x509.Certificate, ca_cert: x509.Certificate) -> str | None:
    """Why ``cert`` must not serve RAPI (it would open node RPC to its holder), or None."""
    if node_rpc_accepts(cert, ca_cert):
        return ("it is signed by the cluster CA and allows TLS client use, so noded would "
                "accept its holder as a node")
    return None


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.S)


def load_cert_and_key(pem: bytes, what: str) -> tuple[x509.Certificate, bytes, bytes]:
    """Parse a PEM file holding a certificate and its private key (Ganeti's rapi.pem format).

    Returns the (first) certificate, every certificate block in file order (the chain to
    serve) and the key as unencrypted PKCS#8 PEM; one-line ValueErrors name ``what``.
    """
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise ValueError(f"{what} holds no PEM certificate") from None
    key = None
    chain = b"".join(b.group(0) + b"\n" for b in _PEM_BLOCK.finditer(pem)
                     if b.group(1) in (b"CERTIFICATE", b"X509 CERTIFICATE"))
    for block in _PEM_BLOCK.finditer(pem):
        if block.group(1).endswith(b"PRIVATE KEY"):
            try:
                key = serialization.load_pem_private_key(block.group(0), password=None)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{what}: cannot read its private key ({exc})") from None
            break
    if key is None:
        raise ValueError(f"{what} holds no private key (expected the key and the certificate "
                         "in one PEM file)")
    ours = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    if ours != public_key_bytes(cert):
        raise ValueError(f"{what}: the private key does not belong to the certificate")
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert, chain, key_pem


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
