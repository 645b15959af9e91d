"""Pure decisions about etcd members: where a node's member listens, how it is started, and
which membership changes make etcd's member list equal the master candidates.

Kept free of I/O so that every rule is a unit test: noded (which runs the member) and the
master (which changes the membership) both call these.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: etcd's registered ports (IANA), on the node's addresses only, never on a wildcard.
CLIENT_PORT = 2379
PEER_PORT = 2380

#: Flags that keep a member small and quiet on a node that also runs guests (measured in the
#: issue 10 note): raft entries kept in memory before a snapshot (3.4 defaults to 100,000,
#: which grows RSS with every write), a backend quota that a config of 20,000 instances fits
#: many times over, compaction so that the history stays bounded, and pre-vote so that a
#: member returning from a partition does not depose a healthy leader. Heartbeat and election
#: timeout are etcd's defaults (100 ms, 1 s): the master gives its role up after 3 s without a
#: lease renewal (herd.etcd.election), so etcd must elect a new leader well within that, or
#: every leader change (a member removed, restarted or cut off) would take the master down
#: with it; a 2.5 s election timeout did that in CI. It also bounds automatic failover: leader
#: election (1-2 s) + the lease, renewed in full plus one election timeout on a new leader.
TUNING_FLAGS: tuple[str, ...] = (
    "--snapshot-count=5000",
    "--quota-backend-bytes=1073741824",
    "--auto-compaction-mode=revision",
    "--auto-compaction-retention=10000",
    "--heartbeat-interval=100",
    "--election-timeout=1000",
    "--pre-vote=true",
    "--max-snapshots=2",
    "--max-wals=2",
    "--logger=zap",
    "--log-outputs=stderr",
    "--log-level=error",  # warn logs a line per gateway request (the client's common name)
)
#: Environment of the etcd process: Go's collector runs earlier (GOGC, smaller heap at rest),
#: and two OS threads run Go code at once at most (etcd needs little CPU here; the node's
#: cores belong to guests).
TUNING_ENV: dict[str, str] = {"GOGC": "50", "GOMAXPROCS": "2"}
#: Go's soft memory limit for a member (see :func:`memory_limit`): at least this ...
MEMORY_LIMIT_MIN = 64 << 20
#: ... or this many times its database file, whichever is more.
MEMORY_LIMIT_PER_DB = 3


def memory_limit(db_bytes: int) -> int:
    """The soft memory limit (``GOMEMLIMIT``, bytes) to start a member with, given the size
    of its database file.

    Go returns freed heap to the system lazily, so a member that took a burst of writes (the
    import of a big config, or a bench filling 20,000 instances) kept 132 MiB of heap at rest
    whose live part was under 50 MiB; with a soft limit the collector and the scavenger work
    to stay under it, which took the same member to 49 MiB. The limit must stay above the
    live heap or the collector runs again and again (Go caps it at about half the CPU, still
    far too much): the live heap is the key index and the raft entries kept between
    snapshots, which grow with the data, so the limit is a multiple of the database file as
    the member finds it at start (each restart adjusts it), never below a floor that a
    small cluster's bursts fit in. The file includes free pages, which only raises it."""
    return max(MEMORY_LIMIT_MIN, MEMORY_LIMIT_PER_DB * max(0, db_bytes))


def memory_env(db_file: Path) -> dict[str, str]:
    """The environment for a member: :data:`TUNING_ENV` and its :func:`memory_limit`."""
    try:
        size = db_file.stat().st_size
    except OSError:
        size = 0  # a new member: no file yet
    return {**TUNING_ENV, "GOMEMLIMIT": str(memory_limit(size))}


def client_url(primary_ip: str) -> str:
    """Clients (masterd, noded, tests) reach a member on the node's primary address."""
    return f"https://{primary_ip}:{CLIENT_PORT}"


def peer_url(secondary_ip: str) -> str:
    """Members replicate over the secondary network, as mirrored disks do."""
    return f"https://{secondary_ip}:{PEER_PORT}"


@dataclass(frozen=True)
class MemberSpec:
    """How a node's member is started; kept in the member's directory (``member.json``).

    ``initial_cluster`` and ``state`` matter only for the first start: once the data dir
    exists, etcd reads its membership from there and ignores them.
    """

    name: str
    peer_url: str
    client_url: str
    initial_cluster: str
    state: str = "new"  # "new" (gnt-cluster init) or "existing" (added to a running cluster)
    cluster_token: str = "herd"

    def __post_init__(self) -> None:
        if self.state not in ("new", "existing"):
            raise ValueError(f"invalid etcd initial cluster state '{self.state}'; allowed are "
                             "new, existing")
        if not self.name or "=" in self.name or "," in self.name:
            raise ValueError(f"invalid etcd member name '{self.name}'")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemberSpec:
        return cls(**{k: data[k] for k in ("name", "peer_url", "client_url",
                                           "initial_cluster", "state", "cluster_token")
                      if k in data})


def first_member(name: str, primary_ip: str, secondary_ip: str, cluster_name: str) -> MemberSpec:
    """The one member ``gnt-cluster init`` starts: a new cluster of itself."""
    peer = peer_url(secondary_ip)
    return MemberSpec(name=name, peer_url=peer, client_url=client_url(primary_ip),
                      initial_cluster=f"{name}={peer}", state="new",
                      cluster_token=f"herd-{cluster_name}")


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path


def etcd_argv(spec: MemberSpec, data_dir: Path, tls: TlsFiles,
              binary: str = "etcd", force_new_cluster: bool = False) -> list[str]:
    """etcd's command line for ``spec``: mutual TLS on both ports, from the cluster CA.

    The node certificate serves both ends (it carries serverAuth and clientAuth), so members
    authenticate each other as nodes, and etcd's JSON gateway (which calls etcd's own gRPC
    server with the server's certificate) works under client-cert-auth. Clients must present a
    certificate issued by the cluster CA: RAPI's certificate is self-signed and TLS-server only
    (herd.rpc.tls), so the handshake refuses it.
    """
    return [
        binary,
        f"--name={spec.name}",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={spec.client_url}",
        f"--advertise-client-urls={spec.client_url}",
        f"--listen-peer-urls={spec.peer_url}",
        f"--initial-advertise-peer-urls={spec.peer_url}",
        f"--initial-cluster={spec.initial_cluster}",
        f"--initial-cluster-state={spec.state}",
        f"--initial-cluster-token={spec.cluster_token}",
        f"--cert-file={tls.cert}", f"--key-file={tls.key}",
        f"--trusted-ca-file={tls.ca}", "--client-cert-auth=true",
        f"--peer-cert-file={tls.cert}", f"--peer-key-file={tls.key}",
        f"--peer-trusted-ca-file={tls.ca}", "--peer-client-cert-auth=true",
        *TUNING_FLAGS,
        # the disaster path (master-failover --no-voting): this member alone, keeping its data
        *(["--force-new-cluster"] if force_new_cluster else []),
    ]


# -- membership ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Member:
    """One entry of etcd's member list (as the client returns it)."""

    id: int
    name: str  # empty until the member first started
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...] = ()
    is_learner: bool = False

    @property
    def started(self) -> bool:
        return bool(self.name)


@dataclass(frozen=True)
class Action:
    """One membership change. ``add``: add the node as a learner, then start its member;
    ``promote``: make a caught-up learner a voter; ``remove``: drop a member, then stop it."""

    kind: str  # "add", "promote", "remove"
    name: str
    peer_url: str = ""
    member_id: int = 0


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    #: changes that are needed but refused for safety, with the reason (shown as warnings)
    held: list[str] = field(default_factory=list)


def plan_membership(members: list[Member], wanted: dict[str, str]) -> Plan:
    """The changes that make the member list equal ``wanted`` (node name -> peer URL).

    Members are matched by peer URL (names are empty until a member starts). Order matters
    for quorum: additions come first and join as learners (they do not count for quorum until
    promoted, so a new member that fails to start blocks nothing), then promotions, then
    removals, so that a replaced candidate leaves only after its successor votes. The last
    voter is never removed (that would end the cluster's data), nor is anything removed when
    no candidate is wanted at all (a config without candidates is a bug, not an intent).
    """
    plan = Plan()
    by_url = {u: m for m in members for u in m.peer_urls}
    wanted_urls = {url: name for name, url in wanted.items()}
    for name, url in sorted(wanted.items()):
        member = by_url.get(url)
        if member is None:
            plan.actions.append(Action("add", name, url))
            plan.actions.append(Action("promote", name, url))
        elif member.is_learner:
            plan.actions.append(Action("promote", name, url, member.id))
    extra = [m for m in members if not any(u in wanted_urls for u in m.peer_urls)]
    if not wanted:
        plan.held += [f"not removing etcd member {m.name or m.id}: no master candidate is "
                      "wanted at all" for m in extra]
        return plan
    voters_left = sum(1 for m in members if not m.is_learner) + \
        sum(1 for a in plan.actions if a.kind == "promote")
    for member in sorted(extra, key=lambda m: (not m.is_learner, m.name)):
        if not member.is_learner and voters_left <= 1:
            plan.held.append(f"not removing etcd member {member.name or member.id}: it is the "
                             "last voting member")
            continue
        if not member.is_learner:
            voters_left -= 1
        plan.actions.append(Action("remove", member.name or _url_name(member, wanted_urls),
                                   member.peer_urls[0] if member.peer_urls else "", member.id))
    return plan


def _url_name(member: Member, wanted_urls: dict[str, str]) -> str:
    return next((wanted_urls[u] for u in member.peer_urls if u in wanted_urls),
                f"member {member.id:x}")


def initial_cluster(members: list[Member], names: dict[str, str]) -> str:
    """etcd's ``--initial-cluster`` for a member joining ``members`` (the list after its
    ``member add``): every member as name=peer URL. Members that never started have no name
    yet; ``names`` (peer URL -> node name) supplies it, as etcdctl does for the new member."""
    parts = []
    for member in members:
        for url in member.peer_urls:
            name = member.name or names.get(url, "")
            if not name:
                raise ValueError(f"etcd member {member.id:x} at {url} has not started and is "
                                 "not a node being added; remove it with 'etcdctl member "
                                 "remove' and retry")
            parts.append(f"{name}={url}")
    return ",".join(parts)


def wanted_members(nodes: list[dict[str, Any]]) -> dict[str, str]:
    """Node name -> peer URL of the nodes that must run a member: online master candidates.

    ``nodes`` are dicts with name, secondary_ip, master_candidate, offline (the shape of
    both the config's nodes and the cluster facts)."""
    return {n["name"]: peer_url(n["secondary_ip"]) for n in nodes
            if n.get("master_candidate") and not n.get("offline")}


def client_urls_from_facts(facts: dict[str, Any], local: str | None = None) -> list[str]:
    """Where to reach etcd from a node that has only the cluster facts: every online
    candidate's member, this node's own (``local``) first when it is one."""
    nodes = facts.get("nodes") or {}
    names = sorted(nodes, key=lambda name: name != local)
    return [client_url(nodes[n]["primary_ip"]) for n in names
            if nodes[n].get("master_candidate") and not nodes[n].get("offline")]
