"""The master role as an etcd election: whoever holds ``/herd/master`` under a live lease.

Campaign: one transaction puts the key with this node's lease only if the key does not exist.
The holder renews the lease every second; a holder that has not had a renewal confirmed for
``TTL - MARGIN`` seconds (measured from when the confirmed request was *sent*, on the
monotonic clock) gives the role up at once, before etcd can let the lease expire and elect
somebody else. Every config write of the master carries :meth:`MasterLease.guard`: the key
still names this node *and* is the very key this term created, so a deposed master cannot
write even if its own timers lag.

A masterd that restarts on the same node finds its term in ``state_file`` and adopts it while
the lease lives, so a daemon restart does not move the master role.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from herd.etcd.client import Compare, EtcdClient, EtcdError, Op
from herd.etcd.members import Member
from herd.fileutil import atomic_write

log = logging.getLogger(__name__)

MASTER_KEY = "/herd/master"
#: Names the node a master failover hands the role to, while it runs (herd.logic.failover):
#: the other candidates' master watch leaves the role to it.
HANDOVER_KEY = "/herd/handover"
#: Lease time to live, seconds. A dead master is replaced after about this long.
TTL = 5
#: How long before the lease could expire on etcd's side the holder gives up the role.
MARGIN = 2.0
#: Interval between renewals.
RENEW_EVERY = 1.0
#: Interval between looks at the member list (for the sole-voter case).
MEMBERS_EVERY = 2.0


def report_loss(on_lost: Callable[[str], Awaitable[None]] | None,
                tasks: set[asyncio.Task[None]], reason: str) -> None:
    """Tell masterd that a guarded write showed the role lost, in the background (the job
    whose write failed records its error first); ``tasks`` keeps the task referenced."""
    if on_lost is None:
        return
    task = asyncio.get_running_loop().create_task(on_lost(reason))
    tasks.add(task)
    task.add_done_callback(tasks.discard)


def lease_lost(now: float, last_confirmed_sent: float, ttl: float = TTL,
               margin: float = MARGIN, sole_voter: bool = False) -> bool:
    """True once the holder can no longer be sure its lease is alive on etcd's side.

    ``last_confirmed_sent``: when the newest renewal that etcd confirmed was sent. etcd
    counts the TTL from when it handled that request, which is after it was sent, so
    ``ttl`` after the send is the earliest the lease can expire; ``margin`` leaves time to
    stop serving and drop the master IP before then.

    ``sole_voter``: the only voting member is this node's own. Then no other node can win an
    election without it, and etcd renews every lease in full when its member (re)gains
    leadership, so a silence (the member restarting with noded) is not a reason to give up."""
    if sole_voter:
        return False
    return now - last_confirmed_sent >= ttl - margin


def sole_voter(members: list[Member], own_client_url: str | None) -> bool:
    """Whether the member list has exactly one voter and it is this node's member."""
    voters = [m for m in members if not m.is_learner]
    return own_client_url is not None and len(voters) == 1 and \
        own_client_url in voters[0].client_urls


@dataclass(frozen=True)
class Term:
    """One tenure of the master role: the lease and the revision that created the key."""

    node: str
    lease: int
    revision: int

    def to_json(self) -> str:
        return json.dumps({"node": self.node, "lease": self.lease, "revision": self.revision})


class MasterLease:
    def __init__(self, client: EtcdClient, node: str, state_file: Path | None = None,
                 ttl: int = TTL, own_client_url: str | None = None) -> None:
        self.client = client
        self.node = node
        #: this node's member, if it runs one (see lease_lost's ``sole_voter``)
        self.own_client_url = own_client_url
        self._sole = False
        self._members_checked = 0.0
        self.state_file = state_file
        self.ttl = ttl
        self.term: Term | None = None
        self._last_ok = 0.0

    # -- who holds it ---------------------------------------------------------------------------
    async def holder(self) -> str | None:
        kv = await self.client.get(MASTER_KEY)
        return kv.value.decode() if kv is not None else None

    def guard(self) -> list[Compare]:
        """Conditions for a write made as master (see the module doc)."""
        if self.term is None:
            raise RuntimeError("not the master: no term")
        return [Compare.value_is(MASTER_KEY, self.node),
                Compare.create_revision(MASTER_KEY, "=", self.term.revision)]

    # -- taking it ------------------------------------------------------------------------------
    async def _adopt(self) -> bool:
        """Take over our own term if a restarted masterd finds its lease alive."""
        if self.state_file is None:
            return False
        try:
            saved = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return False
        kv = await self.client.get(MASTER_KEY)
        if kv is None or kv.value.decode() != self.node or kv.lease != saved.get("lease") or \
                kv.create_revision != saved.get("revision"):
            return False
        sent = time.monotonic()
        if await self.client.lease_keepalive(kv.lease) <= 0:
            return False
        self.term = Term(self.node, kv.lease, kv.create_revision)
        self._last_ok = sent
        log.info("kept the master role across a restart (lease %x)", kv.lease)
        return True

    async def campaign(self, wait_own: bool = True) -> str | None:
        """Try to become master. None if this node is master now, else the holder's name.

        A key naming this node that cannot be adopted (a previous masterd's lease, state
        lost) is waited out, up to the TTL, when ``wait_own``."""
        if await self._adopt():
            return None
        deadline = time.monotonic() + self.ttl + 2
        while True:
            sent = time.monotonic()
            lease, _ttl = await self.client.lease_grant(self.ttl)
            result = await self.client.txn(
                [Compare.create_revision(MASTER_KEY, "=", 0)],
                [Op.put(MASTER_KEY, self.node, lease=lease)],
                [Op.get(MASTER_KEY)])
            if result.succeeded:
                self.term = Term(self.node, lease, result.revision)
                self._last_ok = sent
                if self.state_file is not None:
                    atomic_write(self.state_file, self.term.to_json() + "\n", 0o600)
                log.info("took the master role (lease %x, revision %d)", lease,
                         result.revision)
                return None
            await self._revoke_quietly(lease)
            kvs = result.ranges()[0] if result.ranges() else []
            holder = kvs[0].value.decode() if kvs else None
            if holder != self.node or not wait_own or time.monotonic() > deadline:
                return holder
            await asyncio.sleep(0.5)  # our own stale key: its lease runs out within the TTL

    async def _revoke_quietly(self, lease: int) -> None:
        with contextlib.suppress(EtcdError):  # it expires by itself
            await self.client.lease_revoke(lease)

    # -- keeping it -----------------------------------------------------------------------------
    async def keep(self, on_lost: Callable[[str], Awaitable[None]]) -> None:
        """Renew until the lease is lost, then call ``on_lost(reason)`` once and return."""
        assert self.term is not None
        while True:
            now = time.monotonic()
            if lease_lost(now, self._last_ok, self.ttl, sole_voter=self._sole):
                await on_lost(f"no lease renewal confirmed for {now - self._last_ok:.1f} s")
                return
            sent = now
            try:
                left = await asyncio.wait_for(self.client.lease_keepalive(self.term.lease),
                                              RENEW_EVERY)
            except (EtcdError, TimeoutError) as exc:
                log.warning("master lease renewal failed: %s",
                            getattr(exc, "message", None) or type(exc).__name__)
                left = None
            if left is not None and left <= 0:
                await on_lost("the master lease expired")
                return
            if left is not None:
                self._last_ok = sent
                await self._check_members()
            await asyncio.sleep(max(0.0, RENEW_EVERY - (time.monotonic() - sent)))

    async def _check_members(self) -> None:
        """Refresh ``sole_voter`` now and then, while etcd answers (a voter is added only
        through a learner's promotion, seconds after this check would see the learner)."""
        if time.monotonic() - self._members_checked < MEMBERS_EVERY:
            return
        self._members_checked = time.monotonic()
        try:
            members = await asyncio.wait_for(self.client.member_list(), RENEW_EVERY)
        except (EtcdError, TimeoutError):
            self._sole = False
            return
        # a learner on its way to voter counts as a second voter already
        self._sole = sole_voter(members, self.own_client_url) and \
            not any(m.is_learner for m in members)

    async def resign(self) -> None:
        """Give the role up now (a handover): delete our key and end the lease."""
        if self.term is None:
            return
        term, self.term = self.term, None
        try:
            await self.client.txn([Compare.create_revision(MASTER_KEY, "=", term.revision)],
                                  [Op.delete(MASTER_KEY)])
        except EtcdError as exc:
            log.warning("could not delete the master key: %s", exc.message)
        await self._revoke_quietly(term.lease)
        if self.state_file is not None:
            self.state_file.unlink(missing_ok=True)


class KeeperThread:
    """Renews a held term from a thread of its own, with its own event loop and etcd client.

    masterd's event loop runs the jobs and answers every client; a long answer (every row of
    20,000 instances, for four clients at once) kept it busy for seconds, the renewals waited
    behind it, and masterd gave the role up although nothing was wrong. Renewed from here, the
    lease lives as long as etcd confirms it, whatever the loop does (the interpreter switches
    threads every few milliseconds). The rules do not change: :meth:`MasterLease.keep` runs
    here on a copy of the term, and a loss is handed to ``on_lost`` on masterd's loop; every
    write still carries :meth:`MasterLease.guard`.
    """

    def __init__(self, lease: MasterLease, make_client: Callable[[], EtcdClient],
                 on_lost: Callable[[str], Awaitable[None]]) -> None:
        if lease.term is None:
            raise RuntimeError("not the master: no term to keep")
        self.lease = lease
        self._make_client = make_client
        self._on_lost = on_lost
        self._main: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, name="master-lease", daemon=True)
        self._cancelled = threading.Event()

    def start(self) -> None:
        self._main = asyncio.get_running_loop()
        self._thread.start()

    def cancel(self) -> None:
        """Stop renewing (masterd stops); the lease then runs out unless a restart adopts it."""
        self._cancelled.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # its loop already ended
                loop.call_soon_threadsafe(task.cancel)

    def join(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            asyncio.run(self._keep())

    async def _keep(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()  # type: ignore[assignment]
        if self._cancelled.is_set():
            return
        client = self._make_client()
        mirror = MasterLease(client, self.lease.node, ttl=self.lease.ttl,
                             own_client_url=self.lease.own_client_url)
        mirror.term, mirror._last_ok = self.lease.term, self.lease._last_ok
        try:
            await mirror.keep(self._lost)
        finally:
            await client.close()

    async def _lost(self, reason: str) -> None:
        if self._main is not None and not self._cancelled.is_set():
            asyncio.run_coroutine_threadsafe(self._on_lost(reason), self._main)


async def revoke_saved_term(client: EtcdClient, state_file: Path) -> bool:
    """End the term a stopped masterd left behind (a handover by master_demote), so another
    node need not wait for the lease to run out. True if there was one."""
    try:
        saved = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return False
    try:
        await client.txn([Compare.create_revision(MASTER_KEY, "=", int(saved["revision"]))],
                         [Op.delete(MASTER_KEY)])
        await client.lease_revoke(int(saved["lease"]))
    except (EtcdError, KeyError, ValueError):
        pass
    state_file.unlink(missing_ok=True)
    return True
