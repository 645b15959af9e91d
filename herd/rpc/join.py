"""Joining a node to a cluster without root SSH: a one-time token, and TLS on both sides.

A node that has no cluster certificate runs noded in *join mode*: it makes a key and a
self-signed certificate, and a token ``<secret>:<pin>`` where the pin is the fingerprint of that
certificate. The admin reads the token on the new node (``herd-join-token``) and gives it to
``gnt-node add --join-token``. Then:

1. the master connects, checks that the node's TLS certificate matches the pin (so it talks to
   the right machine), and asks for a certificate signing request for the node's own key;
2. the master signs it with the cluster CA and sends the certificate, the CA certificate and the
   cluster facts, with an HMAC over them keyed by the secret. The secret itself never travels,
   so nobody in between can forge a join or learn how to make one.

The node checks the HMAC, installs its certificate and restarts noded in normal (mutual TLS)
mode. The node's private key never leaves it. A token works once.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import secrets
import socket
import ssl
import sys
from hashlib import sha256
from typing import Any

import httpx
from cryptography import x509
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from herd import errors
from herd.fileutil import atomic_write, atomic_write_json
from herd.paths import HerdPaths
from herd.rpc import tls

log = logging.getLogger(__name__)
PIN_HEX = 32  # 128 bits of the certificate's SHA-256 fingerprint


# -- node side -------------------------------------------------------------------------------
def _join_files(p: HerdPaths) -> tuple[Any, Any, Any]:
    return p.ssl_dir / "join.pem", p.ssl_dir / "join.key", p.data_dir / "join-token"


def ensure_join_material(p: HerdPaths) -> str:
    """Create (once) the join certificate and token of a node waiting to join; return the token."""
    cert_path, key_path, token_path = _join_files(p)
    p.ensure()
    if not (cert_path.exists() and key_path.exists() and token_path.exists()):
        cert, key = tls.create_self_signed(socket.getfqdn())
        tls.write_pair(cert_path, key_path, cert, key)
        secret = secrets.token_hex(16)
        pin = tls.fingerprint(cert)[:PIN_HEX]
        atomic_write(token_path, f"{secret}:{pin}\n", 0o600)
    return token_path.read_text().strip()


def join_server_context(p: HerdPaths) -> ssl.SSLContext:
    cert_path, key_path, _ = _join_files(p)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


def proof(secret: str, node_name: str, ca_cert: str, node_cert: str) -> str:
    message = "\0".join((node_name, ca_cert, node_cert)).encode()
    return hmac.new(bytes.fromhex(secret), message, sha256).hexdigest()


def build_join_app(p: HerdPaths) -> Starlette:
    """noded's app while the node waits to join: only the two join steps answer."""
    cert_path, key_path, token_path = _join_files(p)

    def fail(status: int, exc: errors.HerdError) -> JSONResponse:
        return JSONResponse({"ok": False, "error": exc.to_dict()}, status_code=status)

    async def csr(request: Request) -> JSONResponse:
        pem = tls.create_csr(key_path.read_bytes(), socket.getfqdn())
        return JSONResponse({"ok": True, "result": {"csr": pem.decode(),
                                                    "hostname": socket.getfqdn()}})

    async def complete(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            node_name, ca_cert = str(body["node_name"]), str(body["ca_cert"])
            node_cert, facts = str(body["node_cert"]), dict(body["facts"])
            given = str(body["proof"])
        except (ValueError, KeyError, TypeError):
            return fail(400, errors.ParameterError("malformed join request"))
        if not token_path.exists():
            return fail(403, errors.OpPrereqError("this node has no join token (already joined?)"))
        secret = token_path.read_text().strip().split(":", 1)[0]
        if not hmac.compare_digest(proof(secret, node_name, ca_cert, node_cert), given):
            log.warning("join attempt with a wrong token refused")
            return fail(403, errors.OpPrereqError("wrong join token"))
        cert = x509.load_pem_x509_certificate(node_cert.encode())
        key_cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if tls.public_key_bytes(cert) != tls.public_key_bytes(key_cert):
            return fail(400, errors.ParameterError("the certificate is not for this node's key"))
        atomic_write(p.ca_cert, ca_cert, 0o644)
        atomic_write(p.node_key, key_path.read_bytes(), 0o600)
        atomic_write(p.node_cert, node_cert, 0o644)
        atomic_write(p.data_dir / "node-name", node_name + "\n", 0o644)
        atomic_write_json(p.cluster_facts_file, facts, 0o644)
        for path in (token_path, cert_path, key_path):
            path.unlink(missing_ok=True)
        log.info("joined cluster %s as %s; restarting in cluster mode",
                 facts.get("cluster_name"), node_name)
        asyncio.get_running_loop().call_later(0.2, _reexec)
        return JSONResponse({"ok": True, "result": None})

    return Starlette(routes=[Route("/join/csr", csr, methods=["POST"]),
                             Route("/join/complete", complete, methods=["POST"])])


def _reexec() -> None:
    """Restart noded in place (same pid, so its pid file stays right) in cluster mode."""
    logging.shutdown()
    os.execv(sys.executable, [sys.executable, "-m", "herd.daemons.noded", *sys.argv[1:]])


# -- master side -----------------------------------------------------------------------------
def parse_token(token: str) -> tuple[str, str]:
    secret, _, pin = token.strip().partition(":")
    try:
        bytes.fromhex(secret)
        bytes.fromhex(pin)
    except ValueError:
        secret = ""
    if len(secret) != 32 or len(pin) != PIN_HEX:
        raise errors.ParameterError(
            "invalid join token: expected the <secret>:<pin> string that 'herd-join-token' "
            "prints on the new node")
    return secret, pin.lower()


async def join_node(address: str, port: int, token: str, node_name: str, ips: list[str],
                    ca_cert: bytes, ca_key: bytes, facts: dict[str, Any],
                    timeout: float = 15.0) -> None:
    """Make the node at ``address`` a member: verify it by its pin, certify its key."""
    secret, pin = parse_token(token)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the pin below is the check
    base = f"https://{address}:{port}"
    async with httpx.AsyncClient(verify=ctx, timeout=timeout,
                                 limits=httpx.Limits(max_connections=1)) as client:
        try:
            resp = await client.post(f"{base}/join/csr", json={})
        except httpx.HTTPError as exc:
            raise errors.RpcError(
                f"cannot reach node {node_name} at {address}:{port} ({type(exc).__name__}); "
                "is herd-noded running there? ('herd-join-token' starts it)") from None
        stream = resp.extensions.get("network_stream")
        ssl_object = stream.get_extra_info("ssl_object") if stream else None
        peer = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        if not peer or not tls.fingerprint_der(peer).startswith(pin):
            raise errors.OpPrereqError(
                f"node {node_name} at {address} does not hold the certificate named by the join "
                "token (wrong token, or another machine answers at that address)")
        if resp.status_code == 404:
            raise errors.OpPrereqError(f"node {node_name} is already a member of a cluster")
        body = resp.json()
        csr = x509.load_pem_x509_csr(body["result"]["csr"].encode())
        if not csr.is_signature_valid or \
                tls.public_key_bytes(csr) != tls.public_key_bytes(
                    x509.load_der_x509_certificate(peer)):
            raise errors.OpPrereqError(f"node {node_name} sent a signing request for a key it "
                                       "does not hold")
        node_cert = tls.sign_public_key(ca_cert, ca_key, csr.public_key(), node_name,
                                        [node_name], ips).decode()
        payload = {"node_name": node_name, "ca_cert": ca_cert.decode(), "node_cert": node_cert,
                   "facts": facts,
                   "proof": proof(secret, node_name, ca_cert.decode(), node_cert)}
        try:
            resp = await client.post(f"{base}/join/complete", content=json.dumps(payload),
                                     headers={"content-type": "application/json"})
        except httpx.HTTPError as exc:
            raise errors.RpcError(f"node {node_name} dropped the join: {exc}") from None
        if resp.status_code == 403:
            raise errors.OpPrereqError(
                f"node {node_name} refused the join token: wrong or already used token")
        if resp.status_code != 200:
            message = resp.json().get("error", {}).get("message", resp.text)
            raise errors.OpExecError(f"node {node_name} failed to join: {message}")


async def wait_join_mode(address: str, port: int, timeout: float = 10.0) -> bool:
    """Wait until the node at ``address`` waits to be joined (after it left the cluster)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient(verify=ctx, timeout=2.0) as client:
        while asyncio.get_running_loop().time() < deadline:
            try:
                resp = await client.post(f"https://{address}:{port}/join/csr", json={})
                if resp.status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    return False
