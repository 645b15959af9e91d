"""The master's side of etcd membership: make etcd's member list equal the master candidates.

Called by the node operations after their config change is saved (so the node's new role is
already pushed), under the cluster lock, so two changes never interleave. The decisions are
:func:`herd.etcd.members.plan_membership`; this module carries them out in the order that keeps
quorum: a new candidate joins as a learner (``member add``), its noded starts the member with
``--initial-cluster-state=existing`` (RPC ``etcd_join``), and it becomes a voter once it caught
up (``member promote``, retried); a candidate that left is removed (``member remove``) before
its noded stops the member and drops its data (``etcd_leave``).

Until masterd keeps the config in etcd (issue 10's next steps), a failure here is a warning in
the job log, not a failed job: the config change it follows has been saved already.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from herd import errors
from herd.etcd import members as em
from herd.etcd.client import EtcdClient, EtcdError
from herd.objects import ConfigData, Node
from herd.paths import HerdPaths
from herd.rpc.client import RpcRunner

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How long a new learner may take to start and catch up before the job gives up promoting it.
PROMOTE_TIMEOUT = 60.0
READY_TIMEOUT = 60.0


def client_urls(cfg: ConfigData) -> list[str]:
    """Endpoints to reach etcd: the master's member first, then the other candidates'."""
    nodes = sorted(cfg.nodes.values(), key=lambda n: n.uuid != cfg.cluster.master_node)
    return [em.client_url(n.primary_ip) for n in nodes if n.master_candidate and not n.offline]


def wanted(cfg: ConfigData) -> dict[str, str]:
    return em.wanted_members([n.to_dict() for n in cfg.nodes.values()])


def local_client(paths: HerdPaths, cfg: ConfigData, timeout: float = 10.0) -> EtcdClient:
    return EtcdClient.for_node(paths, client_urls(cfg), timeout)


async def wait_ready(client: EtcdClient, timeout: float = READY_TIMEOUT) -> None:
    """Wait until a member answers with a leader (etcd takes an election timeout or two)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status = await client.status()
            if status.leader:
                await client.range("herd/", prefix=True, keys_only=True, limit=1)
                return
            last = "no leader elected yet"
        except EtcdError as exc:
            last = exc.message
        await asyncio.sleep(0.2)
    raise errors.OpExecError(f"etcd did not become ready within {timeout:.0f} s: {last}")


async def sync_members(paths: HerdPaths, cfg: ConfigData, rpc: RpcRunner,
                       feedback: Callable[[str], None],
                       departed: Iterable[Node] = ()) -> list[str]:
    """Carry out :func:`plan_membership` for ``cfg``; return the problems (also fed back as
    warnings). ``departed`` are nodes no longer in ``cfg`` whose member must still go."""
    local = _local_spec(paths)
    if local is None:
        log.info("this cluster has no etcd member on the master; membership left alone")
        return []
    problems: list[str] = []

    def warn(message: str) -> None:
        problems.append(message)
        feedback(f"  WARNING: {message}")

    by_name = {n.name: n for n in (*cfg.nodes.values(), *departed)}
    want = wanted(cfg)
    names_by_url = {url: name for name, url in want.items()}
    async with local_client(paths, cfg) as client:
        try:
            members = await client.member_list()
        except EtcdError as exc:
            warn(f"etcd membership not updated: {exc.message}")
            return problems
        plan = em.plan_membership(members, want)
        for message in plan.held:
            warn(message)
        for action in plan.actions:
            node = by_name.get(action.name)
            try:
                if action.kind == "add":
                    feedback(f"  adding {action.name} to etcd (as a learner)")
                    _, members = await _patiently(
                        lambda a=action: client.member_add([a.peer_url], learner=True))
                    await _start_member(rpc, node, action, members, names_by_url, local)
                elif action.kind == "promote":
                    if action.member_id:  # a learner from an earlier, interrupted change
                        members = await client.member_list()
                        await _start_member(rpc, node, action, members, names_by_url, local)
                    await _promote(client, action.peer_url)
                    feedback(f"  {action.name} is an etcd voting member")
                else:
                    feedback(f"  removing {action.name} from etcd")
                    await _hand_over_leadership(client, members, action.member_id,
                                                feedback)
                    await _patiently(lambda a=action: client.member_remove(a.member_id))
                    if node is not None and not node.offline:
                        try:
                            await rpc.node(node).call("etcd_leave", timeout=30)
                        except errors.HerdError as exc:
                            warn(f"{action.name} left etcd but did not stop its member: "
                                 f"{exc.message}")
            except errors.HerdError as exc:
                warn(f"etcd {action.kind} of {action.name} failed: {exc.message}")
                if action.kind == "add":
                    break  # the promotion after it cannot work either
    return problems


async def _hand_over_leadership(client: EtcdClient, members: list[em.Member],
                                leaving_id: int, feedback: Callable[[str], None]) -> None:
    """Before removing the member that leads, move the leadership to the master's own member
    (or another voter). Removing the leader means an election among the rest, and with a
    member just restarted that took longer than the master may go without renewing its
    lease: the master gave its role up in the middle of a plain ``gnt-node modify -C no``."""
    status = await client.status()
    if status.leader != leaving_id:
        return
    voters = [m for m in members if not m.is_learner and m.id != leaving_id]
    target = next((m for m in voters if m.id == status.member_id), voters[0] if voters else None)
    leaving = next((m for m in members if m.id == leaving_id), None)
    if target is None or leaving is None or not leaving.client_urls:
        return
    feedback(f"  moving etcd's leadership to {target.name or target.id} first")
    try:
        await client.hand_over_leadership(leaving_id, leaving.client_urls[0], target.id)
    except EtcdError as exc:
        log.warning("could not move etcd's leadership: %s", exc.message)


#: etcd refuses membership changes (strict reconfig check) until every voting member has been
#: connected for 5 s: right after a promotion or a restart. Such refusals are waited out.
_NOT_YET = ("unhealthy cluster", "not enough started members")
RECONFIG_TIMEOUT = 30.0


async def _patiently(call: Callable[[], Awaitable[T]]) -> T:
    deadline = time.monotonic() + RECONFIG_TIMEOUT
    while True:
        try:
            return await call()
        except EtcdError as exc:
            if not any(s in exc.message for s in _NOT_YET) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.5)


def _local_spec(paths: HerdPaths) -> em.MemberSpec | None:
    from herd.node.etcd_member import read_spec

    return read_spec(paths)


async def _start_member(rpc: RpcRunner, node: Node | None, action: em.Action,
                        members: list[em.Member], names_by_url: dict[str, str],
                        local: em.MemberSpec) -> None:
    if node is None:
        raise errors.OpExecError(f"node {action.name} is not in the config")
    spec = em.MemberSpec(name=node.name, peer_url=action.peer_url,
                         client_url=em.client_url(node.primary_ip),
                         initial_cluster=em.initial_cluster(members, names_by_url),
                         state="existing", cluster_token=local.cluster_token)
    await rpc.node(node).call("etcd_join", spec=spec.__dict__, timeout=30)


async def _promote(client: EtcdClient, peer_url: str) -> None:
    """Promote the learner at ``peer_url`` once it has caught up (etcd refuses before)."""
    deadline = time.monotonic() + PROMOTE_TIMEOUT
    while True:
        members = await client.member_list()
        member = next((m for m in members if peer_url in m.peer_urls), None)
        if member is None:
            raise errors.OpExecError(f"no etcd member at {peer_url}")
        if not member.is_learner:
            return
        try:
            await client.member_promote(member.id)
            return
        except EtcdError as exc:
            if time.monotonic() > deadline:
                raise errors.OpExecError(f"learner at {peer_url} not promoted within "
                                         f"{PROMOTE_TIMEOUT:.0f} s: {exc.message}") from None
        await asyncio.sleep(0.3)


def wait_first_member(paths: HerdPaths, cfg: ConfigData, timeout: float = READY_TIMEOUT) -> None:
    """``gnt-cluster init``: wait until the one-member etcd that noded started answers."""

    async def run() -> None:
        async with local_client(paths, cfg) as client:
            await wait_ready(client, timeout)

    asyncio.run(run())
