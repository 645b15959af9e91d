"""``gnt-cluster renew-crypto``: new RAPI and node certificates, and the upgrade of old clusters.

Certificates and what may use them are in :mod:`herd.rpc.tls`. Here the master replaces them:

- the RAPI certificate (a new self-signed one, or the admin's own from a PEM file on the master)
  is written on the master and pushed to the master candidates with the config, as redist-conf
  does, so that any of them serves it after a failover; herd-rapi serves the file on disk from
  its next TLS handshake on, so nothing restarts;
- node certificates are re-issued from the cluster CA and sent to each node over node RPC,
  whose noded serves them from its next handshake on (the old ones stay valid until they
  expire: they are signed by the same CA).

Clusters made before certificate roles have a RAPI certificate that noded would accept as a
node's; masterd replaces it when it starts (:func:`upgrade_rapi_certificate`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import logging
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509

from herd import errors
from herd.fileutil import pid_alive, read_pid
from herd.jobs.locking import LEVEL_CLUSTER, LockRequest
from herd.logic.base import LogicalUnit
from herd.objects import Cluster
from herd.opcodes.crypto import OpClusterRenewCrypto
from herd.paths import HerdPaths
from herd.rpc import certs, tls

log = logging.getLogger(__name__)

#: herd-rapi's port (as herd.daemons.rapi.RAPI_PORT; logic does not import daemons).
RAPI_PORT = 5080
PROBE_TIMEOUT = 5.0


# -- decisions (pure) -----------------------------------------------------------------------
def check_rapi_certificate_file(path: str, pem: bytes, ca_cert_pem: bytes,
                                now: datetime.datetime | None = None) -> tuple[bytes, bytes]:
    """The (certificate chain, key) to install from an admin's PEM file, or ParameterError.

    Refused: no key or a key of another certificate, an expired certificate, and one that
    noded would accept as a client (issued by the cluster CA with client use), which would give
    whoever holds RAPI's key root on every node.
    """
    try:
        cert, chain, key = certs.load_cert_and_key(pem, f"RAPI certificate file '{path}'")
    except ValueError as exc:
        raise errors.ParameterError(str(exc)) from None
    now = now or datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc <= now:
        raise errors.ParameterError(
            f"RAPI certificate file '{path}': the certificate expired on "
            f"{cert.not_valid_after_utc:%Y-%m-%d}")
    problem = certs.rapi_certificate_problem(cert, x509.load_pem_x509_certificate(ca_cert_pem))
    if problem:
        raise errors.ParameterError(f"RAPI certificate file '{path}' refused: {problem}; use a "
                                    "certificate from another CA, or --new-rapi-certificate")
    return chain, key


def rapi_certificate_reissue_reason(rapi_cert_pem: bytes, ca_cert_pem: bytes) -> str | None:
    """Why the installed RAPI certificate must be replaced (made before roles), or None."""
    try:
        cert = x509.load_pem_x509_certificate(rapi_cert_pem)
        ca = x509.load_pem_x509_certificate(ca_cert_pem)
    except ValueError:
        return None  # unreadable: herd-rapi will say so; not ours to overwrite blindly
    return certs.rapi_certificate_problem(cert, ca)


def renewal_request_problem(op: OpClusterRenewCrypto) -> str | None:
    """What is wrong with the options of a renew-crypto request, or None."""
    if op.renew_ssh_keys:
        return ("Herd uses no SSH keys between nodes (node RPC is mutual TLS); "
                "there is nothing to renew with --new-ssh-keys")
    if op.new_rapi_certificate and op.rapi_certificate:
        return "give only one of --new-rapi-certificate and --rapi-certificate"
    if op.rapi_certificate is not None and not op.rapi_certificate.startswith("/"):
        return (f"invalid RAPI certificate path '{op.rapi_certificate}': expected an absolute "
                "path of a file on the master")
    if not (op.node_certificates or op.new_rapi_certificate or op.rapi_certificate):
        return ("nothing to renew: give --new-rapi-certificate, --rapi-certificate FILE or "
                "--new-node-certificates")
    return None


# -- actions --------------------------------------------------------------------------------
def install_rapi_certificate(paths: HerdPaths, cert: bytes, key: bytes) -> None:
    tls.write_pair(paths.rapi_cert, paths.rapi_key, cert, key)
    tls.remember_rapi_certificate_checked(paths)  # made or validated as role-correct


def upgrade_rapi_certificate(paths: HerdPaths, cluster: Cluster) -> bool:
    """At masterd start: replace a RAPI certificate that noded would accept as a node's.

    Clusters made before certificate roles signed it with the cluster CA for both TLS ends.
    The replacement is made as ``gnt-cluster init`` makes it now; the caller's first config
    push takes it to the master candidates. Returns whether it replaced the certificate.
    """
    try:
        reason = rapi_certificate_reissue_reason(paths.rapi_cert.read_bytes(),
                                                 paths.ca_cert.read_bytes())
    except OSError:
        return False
    if reason is None:
        return False
    old = tls.fingerprint(paths.rapi_cert.read_bytes())
    cert, key = certs.create_rapi_certificate(cluster.cluster_name, [cluster.master_ip])
    install_rapi_certificate(paths, cert, key)
    log.warning("replaced the RAPI certificate (fingerprint %s...): %s. The new one "
                "(fingerprint %s...) is self-signed and for TLS servers only; RAPI clients "
                "that pinned the old certificate need the new %s", old[:16], reason,
                tls.fingerprint(cert)[:16], paths.rapi_cert)
    return True


async def served_fingerprint(host: str, port: int, ctx: ssl.SSLContext | None = None,
                             timeout: float = PROBE_TIMEOUT) -> str:
    """The SHA-256 fingerprint of the certificate a TLS server presents now."""
    if ctx is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # we only look at what it serves
    _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx),
                                            timeout)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), timeout)
    if not der:
        raise errors.RpcError(f"{host}:{port} presented no certificate")
    return tls.fingerprint_der(der)


class LUClusterRenewCrypto(LogicalUnit[OpClusterRenewCrypto]):
    """Replace the RAPI certificate and/or the node certificates (see the module)."""

    OPCODE = OpClusterRenewCrypto

    def locks(self) -> list[LockRequest]:
        # the whole cluster, exclusive: no node may join or leave meanwhile
        return [LockRequest(LEVEL_CLUSTER, "cluster", shared=False)]

    async def check(self) -> None:
        problem = renewal_request_problem(self.op)
        if problem:
            raise errors.ParameterError(problem)
        self.rapi_pair: tuple[bytes, bytes] | None = None
        if self.op.rapi_certificate:
            path = self.op.rapi_certificate
            try:
                pem = Path(path).read_bytes()
            except OSError as exc:
                raise errors.ParameterError(f"cannot read RAPI certificate file '{path}' on "
                                            f"the master: {exc.strerror}") from None
            self.rapi_pair = check_rapi_certificate_file(path, pem,
                                                         self.ctx.paths.ca_cert.read_bytes())

    async def execute(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        if self.op.new_rapi_certificate or self.rapi_pair:
            result["rapi_fingerprint"] = await self._renew_rapi()
        if self.op.node_certificates:
            result["node_certificates"] = await self._renew_nodes()
        return result

    # -- RAPI -----------------------------------------------------------------------------
    async def _renew_rapi(self) -> str:
        p, cluster = self.ctx.paths, self.cfg.cluster
        if self.rapi_pair is not None:
            cert, key = self.rapi_pair
            self.feedback(f"* installing the RAPI certificate from {self.op.rapi_certificate}")
        else:
            cert, key = certs.create_rapi_certificate(cluster.cluster_name, [cluster.master_ip])
            self.feedback("* new self-signed RAPI certificate")
        new = tls.fingerprint(cert)
        install_rapi_certificate(p, cert, key)
        self.feedback(f"  fingerprint (SHA-256) {new}")
        if self.ctx.replicator is not None:
            failures = await self.ctx.replicator.push(self.cfg, force=True)
            for name, error in sorted(failures.items()):
                self.feedback(f"  - WARNING: node {name} did not get it yet ({error}); "
                              "retried in the background")
            if not failures:
                self.feedback("  distributed to the master candidates")
        await self._check_rapi_serves(new)
        return new

    async def _check_rapi_serves(self, expected: str) -> None:
        if not pid_alive(read_pid(self.ctx.paths.pid_file("rapi"))):
            self.feedback("  herd-rapi is not running here; it serves the new certificate "
                          "when it starts")
            return
        try:
            served = await served_fingerprint("127.0.0.1", RAPI_PORT)
        except (OSError, TimeoutError, ssl.SSLError, errors.HerdError) as exc:
            self.feedback(f"  - WARNING: could not ask herd-rapi which certificate it serves: "
                          f"{exc}")
            return
        if served != expected:
            raise errors.OpExecError(
                f"herd-rapi still serves certificate {served[:16]}... after the renewal; "
                "restart it with 'herd-daemon-util stop rapi; herd-daemon-util start rapi'")
        self.feedback("  herd-rapi serves it")

    # -- nodes ----------------------------------------------------------------------------
    async def _renew_nodes(self) -> dict[str, str]:
        cfg, p = self.cfg, self.ctx.paths
        ca_cert, ca_key = p.ca_cert.read_bytes(), p.ca_key.read_bytes()
        self.feedback("* new node certificates")
        done: dict[str, str] = {}
        failures: dict[str, str] = {}
        for node in sorted(cfg.nodes.values(), key=lambda n: (n.uuid == cfg.master.uuid,
                                                              n.name)):
            if node.offline:
                self.feedback(f"  {node.name}: offline, skipped (its certificate stays valid; "
                              "run this again once it is back)")
                continue
            cert, key = certs.create_signed(ca_cert, ca_key, node.name, [node.name],
                                          [node.primary_ip, node.secondary_ip])
            try:
                await self._install_node_pair(node, cert, key)
            except (errors.HerdError, OSError, TimeoutError, ssl.SSLError) as exc:
                message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
                failures[node.name] = message
                self.feedback(f"  - ERROR: {node.name}: {message}")
                continue
            done[node.name] = tls.fingerprint(cert)
            self.feedback(f"  {node.name}: fingerprint {done[node.name][:16]}...")
        if failures:
            raise errors.OpExecError(
                f"node certificates not renewed on {', '.join(sorted(failures))} (their old "
                "certificates stay valid); run 'gnt-cluster renew-crypto "
                "--new-node-certificates' again")
        return done

    async def _install_node_pair(self, node: Any, cert: bytes, key: bytes) -> None:
        p, cfg = self.ctx.paths, self.cfg
        if node.uuid == cfg.master.uuid:
            tls.write_pair(p.node_cert, p.node_key, cert, key)
        else:
            rpc = self.ctx.rpc.node(node)
            # key first: until the certificate follows, noded keeps serving the old pair
            for path, content, mode in ((p.node_key, key, 0o600), (p.node_cert, cert, 0o644)):
                await rpc.file_upload(str(path.relative_to(p.root)),
                                      base64.b64encode(content).decode(), mode)
        served = await served_fingerprint(node.primary_ip, cfg.cluster.noded_port,
                                          tls.client_context(p))
        if served != tls.fingerprint(cert):
            raise errors.OpExecError(f"noded still serves certificate {served[:16]}...")
