"""Automatic master failover: on a master candidate, start masterd when nobody is master.

Every candidate's noded looks at the election key (``/herd/master``): while somebody holds it,
through an etcd watch that wakes the moment the key is deleted; otherwise twice a second. When
the key is gone (the master's lease ran out: its node died or was cut off from the quorum, and
its masterd gave the role up), it starts masterd here; masterd campaigns, and of several
candidates doing the same at once exactly one wins (the others' masterd exits with "not the
master"). The winner records itself as master in the config, takes the master IP and starts
RAPI. No admin is needed; Ganeti needs one.

An admin who stops masterd on purpose (``herd-daemon-util stop masterd``, or a master
failover that demotes this node) leaves a marker (``masterd.held``) so that this node does not
take the role back by itself; starting masterd removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from herd.config.facts import node_name, read_facts, write_facts_dict
from herd.daemons import util as daemon_util
from herd.etcd.client import EtcdClient, EtcdError
from herd.etcd.election import HANDOVER_KEY, MASTER_KEY
from herd.etcd.members import client_urls_from_facts
from herd.paths import HerdPaths

log = logging.getLogger(__name__)

#: One read of the local member (a persistent connection): cheap enough twice a second, and
#: it is part of how long a dead master goes unreplaced.
CHECK_EVERY = 0.5
#: While somebody holds the role, the key is watched (its deletion wakes the check at once);
#: the watch is renewed this often all the same (a member restart ends it quietly, and a member
#: cut from its leader would keep it open without events: the check reads past such members).
HOLDER_WATCH = 3.0
#: After starting masterd here, wait this long before trying again (it may have lost).
BACKOFF = 5.0


def should_start(candidate: bool, held: bool, masterd_running: bool,
                 holder: str | None, etcd_answered: bool,
                 handed_to_other: bool = False) -> bool:
    """Start masterd here? Only on a candidate not held back by an admin, when etcd says
    (with a quorum) that nobody holds the role, no masterd runs here, and no master failover
    is handing the role to another node right now."""
    return candidate and not held and not masterd_running and etcd_answered and \
        holder is None and not handed_to_other


class MasterWatch:
    def __init__(self, paths: HerdPaths) -> None:
        self.paths = paths
        #: one client, kept while the endpoints stay the same (a TLS handshake a second per
        #: candidate would be a waste)
        self._client: EtcdClient | None = None
        self._urls: list[str] = []
        #: the election key's revision when the last check saw somebody hold it (0: it saw
        #: nobody, or did not ask)
        self._held_at = 0

    def _client_for(self, urls: list[str]) -> EtcdClient:
        if self._client is None or urls != self._urls:
            if self._client is not None:
                asyncio.get_running_loop().create_task(self._client.close())
            self._client = EtcdClient.for_node(self.paths, urls, timeout=3.0)
            self._urls = list(urls)
        return self._client

    async def run(self) -> None:
        while True:
            try:
                started = await self.check()
            except Exception:  # never let the watch die
                log.exception("master watch failed")
                started = False
            if started:
                await asyncio.sleep(BACKOFF)
            elif self._held_at:
                await self._until_changed(self._held_at, HOLDER_WATCH)
            else:
                await asyncio.sleep(CHECK_EVERY + random.uniform(0, 0.2))

    async def _until_changed(self, revision: int, timeout: float) -> None:
        """Wait (at most ``timeout``) for the election key to change after ``revision``: the
        holder's lease running out deletes it, and this wakes at once rather than at the
        next poll. Any trouble with the watch just ends the wait (the poll takes over)."""
        assert self._client is not None
        client = self._client

        async def first_change() -> None:
            async for _events in client.watch(MASTER_KEY, start_revision=revision + 1):
                return

        with contextlib.suppress(TimeoutError, EtcdError):
            await asyncio.wait_for(first_change(), timeout)

    async def check(self) -> bool:
        p = self.paths
        facts = read_facts(p)
        me = node_name(p)
        candidate = bool(facts and me and p.etcd_spec_file.exists() and
                         (facts.get("nodes") or {}).get(me, {}).get("master_candidate"))
        held = daemon_util.master_held(p)
        running = daemon_util.is_running(p, "masterd") is not None
        self._held_at = 0
        if not candidate or held or running:
            return False
        assert facts is not None
        holder, answered = None, False
        handed_to_other = False
        try:
            client = self._client_for(client_urls_from_facts(facts, me))
            kv = await client.get(MASTER_KEY)
            holder, answered = (kv.value.decode() if kv else None), True
            self._held_at = kv.mod_revision if kv is not None else 0
            if holder is None:
                handover = await client.get(HANDOVER_KEY)
                handed_to_other = handover is not None and handover.value.decode() != me
        except EtcdError:
            pass
        if answered and holder is not None and facts.get("master_node") != holder:
            write_facts_dict(p, dict(facts, master_node=holder))
        if not should_start(candidate, held, running, holder, answered, handed_to_other):
            return False
        log.warning("no node holds the master role: starting masterd here")
        try:
            await asyncio.to_thread(daemon_util.start, p, "masterd")
            await asyncio.to_thread(daemon_util.start, p, "rapi", daemon_util.RAPI_PORT)
        except daemon_util.NotMaster as exc:
            log.info("another candidate took the master role: %s", exc)
        except RuntimeError as exc:
            log.error("starting masterd failed: %s", exc)
        return True
