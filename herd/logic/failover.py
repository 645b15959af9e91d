"""``gnt-cluster master-failover``: make this master candidate the master.

Runs on the candidate itself, without masterd (the old master may be dead). The master role is
the etcd election (herd.etcd.election), so there is no vote to count here: etcd's quorum is the
vote. The steps: ask the old master to step down (it stops masterd and RAPI, drops the master
IP and ends its term); if it does not answer, wait for its lease to run out. If the lease is
still renewed after that, the old master is alive and reaches etcd, only not this node: the
failover is refused, since taking over would make two masters. Then masterd starts here; it
wins the election and records the new master in the config.

``--no-voting`` is the disaster path for when the quorum is gone for good (most candidates
lost): this node's etcd member restarts as a one-member cluster with its data (etcd's
``--force-new-cluster``), then the failover goes on as above. As in Ganeti, the admin must be
sure the other nodes are really gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from herd import errors
from herd.config.facts import node_name, read_facts
from herd.daemons import util as daemon_util
from herd.etcd.client import Compare, EtcdClient, EtcdError, Op
from herd.etcd.election import HANDOVER_KEY, MASTER_KEY, TTL, MasterLease
from herd.etcd.members import client_urls_from_facts
from herd.objects import Node
from herd.paths import HerdPaths
from herd.rpc.client import RpcRunner

#: How long a master that does not answer may take to lose its lease: etcd renews every
#: lease in full when a member becomes leader, so up to twice the TTL, plus slack.
LEASE_WAIT = 2 * TTL + 3.0
#: The handover marker lives this long at most (a failover that dies does not block the
#: candidates' master watch for longer).
HANDOVER_TTL = 60
#: How long one etcd member may take to answer (etcd itself gives up on a request after
#: about 7 s without a leader), and how long all of them may take before the quorum is taken
#: as lost (a member cut off from the leader is passed over for the next).
MEMBER_WAIT = 10.0
QUORUM_WAIT = 25.0


def _node(facts: dict[str, Any], name: str) -> Node:
    info = facts["nodes"][name]
    return Node(name=name, primary_ip=info["primary_ip"],
                secondary_ip=info.get("secondary_ip", ""))


async def _holder(client: EtcdClient, timeout: float) -> str | None:
    """The node named by the master key (a linearizable read: it needs a quorum)."""
    kv = await asyncio.wait_for(client.get(MASTER_KEY), timeout)
    return kv.value.decode() if kv is not None else None


#: One look at the master's lease: (monotonic time, seconds left, etcd's raft term).
LeaseLook = tuple[float, int, int]


def lease_renewed(earlier: LeaseLook, later: LeaseLook) -> bool:
    """Whether the lease was renewed between two looks: more time left than the earlier look
    allows, in one known raft term (a new leader renews every lease, so a new term proves
    nothing).

    ``earlier`` is timed after its answer came and ``later`` before its request went, so the
    time between them is at most etcd's; the second of slack covers etcd's whole seconds. An
    unrenewed lease can never pass this test."""
    t0, left0, term0 = earlier
    t1, left1, term1 = later
    return (term0 == term1 > 0 and left0 > 0 and left1 > 0
            and left1 > left0 - (t1 - t0) + 1)


async def _wait_released(client: EtcdClient, holder: str, timeout: float) -> str | None:
    """The holder after it let the role go, or ``holder`` if it keeps it: its lease still
    held after ``timeout``, or renewed meanwhile (it runs and reaches etcd: no need to wait
    for the rest of ``timeout`` to know that)."""
    deadline = time.monotonic() + timeout
    current: str | None = holder
    first: LeaseLook | None = None
    while time.monotonic() < deadline:
        kv = await asyncio.wait_for(client.get(MASTER_KEY), QUORUM_WAIT)
        current = kv.value.decode() if kv is not None else None
        if current != holder or kv is None:
            return current
        sent = time.monotonic()
        left, term = await asyncio.wait_for(client.lease_left(kv.lease), QUORUM_WAIT)
        if first is not None and lease_renewed(first, (sent, left, term)):
            return holder
        if first is None or first[2] != term:
            first = (time.monotonic(), left, term)
        await asyncio.sleep(0.3)
    return current


async def _force_new_cluster(p: HerdPaths, rpc: RpcRunner, facts: dict[str, Any], me: str,
                             client: EtcdClient, say: Callable[[str], None]) -> None:
    say("WARNING: restarting this node's etcd member as a new one-member cluster; the other "
        "candidates must be re-added (gnt-node modify -C yes) when they return")
    await rpc.node(_node(facts, me)).call("etcd_force_new_cluster", timeout=60)
    deadline = time.monotonic() + 60
    while True:
        try:
            await _holder(client, 3.0)
            return
        except (EtcdError, TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise errors.OpExecError(
                    f"the restarted etcd member does not answer: {exc}") from None
        await asyncio.sleep(0.5)


async def _failover(p: HerdPaths, no_voting: bool, say: Callable[[str], None],
                    answered: list[str]) -> str | None:
    """The failover up to the campaign won (see the module). Once the handover marker is
    (being) written, ``answered`` is filled with the etcd endpoints in the order that worked
    (the members that answered first), for the marker's removal; empty, there is none."""
    me = node_name(p)
    facts = read_facts(p)
    if facts is None or me is None:
        raise errors.OpPrereqError("this node holds no cluster facts: only a master candidate "
                                   "of a cluster can become master")
    info = (facts.get("nodes") or {}).get(me)
    if info is None:
        raise errors.OpPrereqError(f"this node ({me}) is not in the cluster")
    if not info.get("master_candidate") or not p.etcd_spec_file.exists():
        raise errors.OpPrereqError(f"this node ({me}) is not a master candidate: only a master "
                                   "candidate can become master (gnt-node modify -C yes first)")
    rpc = RpcRunner(p, int(facts.get("noded_port") or 1811))
    client = EtcdClient.for_node(p, client_urls_from_facts(facts, me), timeout=MEMBER_WAIT)
    marked = False
    try:
        try:
            holder = await _holder(client, QUORUM_WAIT)
        except (EtcdError, TimeoutError) as exc:
            reason = getattr(exc, "message", None) or "no answer"
            if not no_voting:
                raise errors.OpPrereqError(
                    f"etcd has no quorum ({reason}): a majority is needed (of the master "
                    "candidates' etcd members) for a master failover; use --no-voting if most "
                    "nodes are gone for good") from None
            await _force_new_cluster(p, rpc, facts, me, client, say)
            holder = await _holder(client, QUORUM_WAIT)
        if holder == me and daemon_util.is_running(p, "masterd"):
            raise errors.OpPrereqError(f"this node ({me}) is already the master")
        # tell the other candidates' master watch that the role is being handed to this node,
        # so that none of them takes it in the moment between the step-down and our campaign
        handover, _ttl = await client.lease_grant(HANDOVER_TTL)
        marked = True
        await client.put(HANDOVER_KEY, me, lease=handover)
        if holder is not None and holder != me:
            await _step_down(rpc, facts, holder, say)
            left = await _wait_released(client, holder, LEASE_WAIT)
            if left == holder:
                raise errors.OpPrereqError(
                    f"the master {holder} still holds its lease: it runs and reaches etcd, "
                    "only not this node; refusing to start a second master (fix the network, "
                    "or stop the master's daemons)")
        # win the election here; masterd adopts this term (herd.etcd.election)
        taken = await MasterLease(client, me, p.run_dir / "master-term.json").campaign(
            wait_own=False)
        if taken not in (None, me):
            raise errors.OpExecError(f"{taken} took the master role meanwhile; run "
                                     "master-failover again if this node should have it")
    finally:
        if marked:
            answered[:] = client.endpoints
        await client.close()
        await rpc.close()
    return holder


async def _step_down(rpc: RpcRunner, facts: dict[str, Any], holder: str,
                     say: Callable[[str], None]) -> None:
    if holder not in (facts.get("nodes") or {}):
        say(f"the master role is held by {holder}, unknown to this node; waiting for its lease")
        return
    say(f"asking the old master {holder} to step down")
    try:
        await rpc.node(_node(facts, holder)).master_demote(
            facts.get("master_netdev") or "", facts.get("master_ip") or "",
            int(facts.get("master_netmask") or 32))
    except errors.HerdError as exc:
        say(f"the old master {holder} does not answer ({exc.message}); waiting up to "
            f"{LEASE_WAIT:.0f} s for its lease to run out")


async def _end_handover(p: HerdPaths, answered: list[str]) -> None:
    """Delete the handover marker, asking first the member that answered the failover: the
    delete is a write, never sent twice, and this node's own member cut off from its leader
    (the refused failover of a partition) held it for etcd's ~7 s request timeout and left
    the marker for its lease's 60 s. No marker written (no quorum, say), nothing to do."""
    if not answered:
        return
    me = node_name(p)
    with contextlib.suppress(EtcdError):
        async with EtcdClient.for_node(p, answered, timeout=MEMBER_WAIT) as client:
            await client.txn([Compare.value_is(HANDOVER_KEY, me or "")],
                             [Op.delete(HANDOVER_KEY)])


def master_failover(p: HerdPaths, no_voting: bool, say: Callable[[str], None]) -> str:
    answered: list[str] = []
    try:
        old = asyncio.run(_failover(p, no_voting, say, answered))
        # masterd adopts the term won above and records this node as master in the config
        try:
            daemon_util.start(p, "masterd")
        except daemon_util.NotMaster as exc:
            raise errors.OpExecError(f"masterd did not take the master role: {exc}") from None
    finally:
        asyncio.run(_end_handover(p, answered))
    daemon_util.start(p, "rapi", daemon_util.RAPI_PORT)
    return old or "(none)"
