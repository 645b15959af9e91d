"""TLS contexts of the cluster's daemons and clients (the ``ssl`` module only).

All node RPC is mutual TLS: noded accepts only clients holding a *node* certificate signed by the
cluster CA, and clients accept only servers signed by it. How the certificates are made and what
their roles mean is :mod:`herd.rpc.certs`; this module only loads them, so a daemon that speaks
TLS without building certificates (masterd, herd-rapi) does not load ``cryptography``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from herd.fileutil import atomic_write
from herd.paths import HerdPaths

log = logging.getLogger(__name__)

#: Roles, written as the subject's organizational unit.
ROLE_NODE = "herd-node"
ROLE_RAPI = "herd-rapi"
ROLES = (ROLE_NODE, ROLE_RAPI)


def peer_role(decoded: dict[str, Any] | None) -> str | None:
    """The role a verified peer certificate names, from ``SSLObject.getpeercert()`` (the
    decoded form the handshake made): the first subject OU that is a role, as
    :func:`herd.rpc.certs.certificate_role` reads it. Pure, and needs no ``cryptography``
    (about 9 MiB resident in noded, which checks every new node peer)."""
    for rdn in (decoded or {}).get("subject", ()):
        for name, value in rdn:
            if name == "organizationalUnitName" and value in ROLES:
                return str(value)
    return None



def fingerprint_der(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def write_pair(cert_path: Path, key_path: Path, cert: bytes, key: bytes) -> None:
    atomic_write(key_path, key, 0o600)
    atomic_write(cert_path, cert, 0o644)


def rapi_certificate_checked(paths: HerdPaths) -> bool:
    """Whether the installed RAPI certificate is the one last found role-correct.

    Inspecting a certificate needs ``cryptography``, which stays resident (about 9 MiB) in the
    process that loads it; masterd checks the RAPI certificate at each start, so it remembers
    the fingerprint of the one it (or ``gnt-cluster init``/``renew-crypto``, which make or
    validate it) found fine, and loads ``cryptography`` only for a certificate not seen before.
    """
    try:
        current = fingerprint(paths.rapi_cert.read_bytes())
        return paths.rapi_cert_checked.read_text().strip() == current
    except (OSError, ValueError):
        return False


def remember_rapi_certificate_checked(paths: HerdPaths) -> None:
    atomic_write(paths.rapi_cert_checked, fingerprint(paths.rapi_cert.read_bytes()) + "\n",
                 0o644)


_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the (first) certificate's DER form, as ``openssl x509 -fingerprint`` shows it."""
    found = _PEM_CERT.search(cert_pem)
    if found is None:
        raise ValueError("no PEM certificate found")
    return fingerprint_der(base64.b64decode(b"".join(found.group(1).split())))


def _files_signature(files: Sequence[Path]) -> tuple[tuple[int, int, int], ...]:
    out = []
    for path in files:
        try:
            st = os.stat(path)
        except OSError:
            out.append((0, 0, 0))
        else:
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(out)


def reloading_context(build: Callable[[], ssl.SSLContext], files: Sequence[Path],
                      what: str) -> ssl.SSLContext:
    """A server context that follows ``files``: each handshake uses their current content.

    A TLS server-name callback runs at the start of every handshake, SNI or not; when the files
    changed it builds a fresh context with ``build`` and moves the connection to it. So a
    renewed certificate is served from the next connection on, without restarting the daemon
    or dropping the connections it has. If the new files cannot be loaded yet (a certificate
    written, its key not yet), the previous context keeps serving and the next handshake
    tries again.
    """
    base = build()
    state: dict[str, Any] = {"signature": _files_signature(files), "context": base}

    def pick(conn: ssl.SSLObject, _server_name: str | None, _ctx: ssl.SSLContext) -> None:
        signature = _files_signature(files)
        if signature != state["signature"]:
            try:
                state["context"] = build()
            except (OSError, ssl.SSLError) as exc:
                log.warning("%s changed but cannot be loaded yet: %s", what, exc)
            else:
                state["signature"] = signature
                log.info("%s reloaded (fingerprint %s)", what,
                         fingerprint(files[0].read_bytes())[:16])
        if state["context"] is not base:
            conn.context = state["context"]

    base.sni_callback = pick  # type: ignore[assignment]
    return base


def _plain_server_context(paths: HerdPaths) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(paths.node_cert, paths.node_key)
    ctx.load_verify_locations(paths.ca_cert)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def server_context(paths: HerdPaths) -> ssl.SSLContext:
    """noded's context: present the node certificate, require a cluster-signed client.

    OpenSSL checks the client's chain to the cluster CA and its key usage (clientAuth; see
    :data:`ROLE_USAGES`). A renewed node certificate (``gnt-cluster renew-crypto
    --new-node-certificates``) is served from the next handshake on.
    """
    return reloading_context(lambda: _plain_server_context(paths),
                             (paths.node_cert, paths.node_key, paths.ca_cert),
                             "node certificate")


def _plain_rapi_context(paths: HerdPaths) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(paths.rapi_cert, paths.rapi_key)
    return ctx


def rapi_server_context(paths: HerdPaths) -> ssl.SSLContext:
    """herd-rapi's context: serves the RAPI certificate, the one on disk at each handshake
    (``gnt-cluster renew-crypto --new-rapi-certificate`` needs no restart)."""
    return reloading_context(lambda: _plain_rapi_context(paths),
                             (paths.rapi_cert, paths.rapi_key), "RAPI certificate")


def client_context(paths: HerdPaths) -> ssl.SSLContext:
    """A client's context: present our node certificate, trust only the cluster CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # nodes are addressed by IP; the CA signature is the check
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(paths.ca_cert)
    ctx.load_cert_chain(paths.node_cert, paths.node_key)
    return ctx
