"""OP_CLUSTER_RENEW_CRYPTO: new TLS certificates for the cluster (``gnt-cluster renew-crypto``).

Ganeti's opcode carries ``node_certificates`` and the SSH key fields, and Ganeti's client renews
the RAPI certificate itself; Herd does that in the job too (``new_rapi_certificate``,
``rapi_certificate``), so that the master, which holds the cluster's files, writes and
distributes it. ``rapi_certificate`` is the *path* of a PEM file on the master, never its
content: a private key must not enter the job queue.
"""

from __future__ import annotations

import dataclasses

from herd.opcodes.base import OpCode


@dataclasses.dataclass(kw_only=True)
class OpClusterRenewCrypto(OpCode):
    OP_ID = "OP_CLUSTER_RENEW_CRYPTO"

    #: Ganeti: re-issue every node's certificate (from the cluster CA).
    node_certificates: bool = False
    #: Ganeti's SSH key renewal; Herd has no SSH keys between nodes (refused with a reason).
    renew_ssh_keys: bool = False
    ssh_key_type: str | None = None
    ssh_key_bits: int | None = None
    verbose: bool = False
    #: Herd: make a new self-signed RAPI certificate (Ganeti: --new-rapi-certificate).
    new_rapi_certificate: bool = False
    #: Herd: install this PEM file (key and certificate) on the master as the RAPI certificate
    #: (Ganeti: --rapi-certificate FILE).
    rapi_certificate: str | None = None
