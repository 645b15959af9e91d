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
mode. The node's private key never leaves it.

A token is short-lived and works for one attempt: it expires (:data:`DEFAULT_TOKEN_TTL`, or
``herd-join-token --ttl``), and the node spends it as soon as the master has proven it, whether
the join then completes or not, so a token that leaked from a failed attempt opens nothing.
:data:`MAX_WRONG_PROOFS` wrong proofs spend it too. The admin gets a new one from
``herd-join-token`` (the node's certificate, and so the pin, stay the same). On the master the
token is a secret opcode field: it never enters the job queue, job listings or logs.
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
import time
from dataclasses import asdict, dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from herd import __version__, errors
from herd.fileutil import atomic_write, atomic_write_json
from herd.paths import HerdPaths
from herd.rpc import certs, tls
from herd.version import RPC_VERSION, announced, mismatch

log = logging.getLogger(__name__)
PIN_HEX = 32  # 128 bits of the certificate's SHA-256 fingerprint
#: How long a join token works unless ``herd-join-token --ttl`` says otherwise (seconds).
DEFAULT_TOKEN_TTL = 3600
#: The longest lifetime ``--ttl`` may give (a week).
MAX_TOKEN_TTL = 7 * 86400
#: Wrong proofs a token survives; the next one spends it (guessing stays hopeless, and an
#: admin's typo is forgiven a couple of times).
MAX_WRONG_PROOFS = 3


@dataclass
class JoinToken:
    """The node's record of its token (file ``join-token``, 0600)."""

    secret: str
    pin: str
    expires: float
    wrong: int = 0

    @property
    def text(self) -> str:
        """What the admin copies to ``gnt-node add --join-token``."""
        return f"{self.secret}:{self.pin}"


def format_utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def token_problem(token: JoinToken | None, now: float) -> str | None:
    """Pure: why ``token`` cannot be used for a join at ``now`` (None: it can)."""
    if token is None:
        return ("this node has no join token (it joined already, or its token was spent): "
                "run 'herd-join-token' on it for a new one")
    if now >= token.expires:
        return (f"the join token expired at {format_utc(token.expires)}: run "
                "'herd-join-token' on the node for a new one")
    return None


def after_wrong_proof(token: JoinToken) -> JoinToken | None:
    """Pure: the token after one more wrong proof, or None once it is spent."""
    wrong = token.wrong + 1
    if wrong >= MAX_WRONG_PROOFS:
        return None
    return JoinToken(token.secret, token.pin, token.expires, wrong)


def check_ttl(seconds: float) -> float:
    """A token lifetime between one second and :data:`MAX_TOKEN_TTL`."""
    if not 1 <= seconds <= MAX_TOKEN_TTL:
        raise errors.ParameterError(
            f"invalid token lifetime {seconds:g} s: expected 1 s to {MAX_TOKEN_TTL // 86400} "
            "days")
    return seconds


# -- node side -------------------------------------------------------------------------------
def _join_files(p: HerdPaths) -> tuple[Path, Path, Path]:
    return p.ssl_dir / "join.pem", p.ssl_dir / "join.key", p.data_dir / "join-token"


def read_token(path: Path) -> JoinToken | None:
    """The token on file, or None. A token written by an older Herd (``secret:pin``, no
    expiry) expires :data:`DEFAULT_TOKEN_TTL` after it was written."""
    try:
        text = path.read_text().strip()
        if text.startswith("{"):
            data = json.loads(text)
            return JoinToken(str(data["secret"]), str(data["pin"]), float(data["expires"]),
                             int(data.get("wrong", 0)))
        secret, _, pin = text.partition(":")
        return JoinToken(secret, pin, path.stat().st_mtime + DEFAULT_TOKEN_TTL)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_token(path: Path, token: JoinToken) -> None:
    atomic_write_json(path, asdict(token), 0o600)


def issue_join_token(p: HerdPaths, ttl: float | None = None) -> JoinToken:
    """Create (once) the join certificate of a node waiting to join, and return a usable token:
    the current one, or a new one if there is none, it expired or was spent, or ``ttl`` asks
    for a new lifetime. A new token has a new secret; the pin (the certificate) stays."""
    cert_path, key_path, token_path = _join_files(p)
    p.ensure()
    if not (cert_path.exists() and key_path.exists()):
        cert, key = certs.create_self_signed(socket.getfqdn())
        tls.write_pair(cert_path, key_path, cert, key)
        token_path.unlink(missing_ok=True)  # its pin named the old certificate
    now = time.time()
    token = read_token(token_path)
    if ttl is None and token_problem(token, now) is None:
        assert token is not None
        return token
    pin = tls.fingerprint(cert_path.read_bytes())[:PIN_HEX]
    token = JoinToken(secrets.token_hex(16), pin,
                      now + check_ttl(ttl if ttl is not None else DEFAULT_TOKEN_TTL))
    _write_token(token_path, token)
    return token


def ensure_join_material(p: HerdPaths) -> str:
    """Make sure a node waiting to join has its certificate and a usable token; return it."""
    return issue_join_token(p).text


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
        problem = token_problem(read_token(token_path), time.time())
        if problem:  # say it before the master signs anything
            return fail(403, errors.OpPrereqError(problem))
        pem = certs.create_csr(key_path.read_bytes(), socket.getfqdn())
        return JSONResponse({"ok": True, "result": {"csr": pem.decode(),
                                                    "hostname": socket.getfqdn(),
                                                    "rpc": RPC_VERSION,
                                                    "herd_version": __version__}})

    async def complete(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            node_name, ca_cert = str(body["node_name"]), str(body["ca_cert"])
            node_cert, facts = str(body["node_cert"]), dict(body["facts"])
            given = str(body["proof"])
        except (ValueError, KeyError, TypeError):
            return fail(400, errors.ParameterError("malformed join request"))
        token = read_token(token_path)
        problem = token_problem(token, time.time())
        if problem:
            if token is not None:
                token_path.unlink(missing_ok=True)  # expired: of no use any more
            return fail(403, errors.OpPrereqError(problem))
        assert token is not None
        try:
            right = hmac.compare_digest(proof(token.secret, node_name, ca_cert, node_cert), given)
        except ValueError:  # a secret that is not hex: a damaged token file
            right = False
        if not right:
            left = after_wrong_proof(token)
            if left is None:
                token_path.unlink(missing_ok=True)
                log.warning("join attempt with a wrong token refused; the token is spent")
                return fail(403, errors.OpPrereqError(
                    f"wrong join token; after {MAX_WRONG_PROOFS} wrong tries the token is "
                    "spent: run 'herd-join-token' on the node for a new one"))
            _write_token(token_path, left)
            log.warning("join attempt with a wrong token refused (%d of %d)", left.wrong,
                        MAX_WRONG_PROOFS)
            return fail(403, errors.OpPrereqError(
                f"wrong join token ({left.wrong} of {MAX_WRONG_PROOFS} wrong tries before it "
                "is spent)"))
        # proven: this attempt spends the token, whatever happens next
        token_path.unlink(missing_ok=True)
        spent = " (the join token is spent: run 'herd-join-token' on the node for a new one)"
        try:
            cert = x509.load_pem_x509_certificate(node_cert.encode())
            key_cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except ValueError:
            return fail(400, errors.ParameterError("malformed node certificate" + spent))
        if certs.public_key_bytes(cert) != certs.public_key_bytes(key_cert):
            return fail(400, errors.ParameterError(
                "the certificate is not for this node's key" + spent))
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
        if resp.status_code == 403:
            raise errors.OpPrereqError(
                f"node {node_name} refused the join token: {_error_message(resp)}")
        body = resp.json()
        problem = mismatch(node_name, announced(body["result"]))
        if problem:  # before anything is signed: the node stays as it was
            raise errors.OpPrereqError(problem)
        csr = x509.load_pem_x509_csr(body["result"]["csr"].encode())
        if not csr.is_signature_valid or \
                certs.public_key_bytes(csr) != certs.public_key_bytes(
                    x509.load_der_x509_certificate(peer)):
            raise errors.OpPrereqError(f"node {node_name} sent a signing request for a key it "
                                       "does not hold")
        node_cert = certs.sign_public_key(ca_cert, ca_key, csr.public_key(), node_name,
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
                f"node {node_name} refused the join token: {_error_message(resp)}")
        if resp.status_code != 200:
            raise errors.OpExecError(f"node {node_name} failed to join: {_error_message(resp)}")


def _error_message(resp: httpx.Response) -> str:
    """The one-line message of a join-mode node's error answer."""
    try:
        message = resp.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = resp.text
    return " ".join(str(message).split())[:300] or f"HTTP {resp.status_code}"


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
