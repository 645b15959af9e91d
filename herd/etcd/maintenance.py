"""Keeping etcd's disk space bounded: defragment members whose database is mostly free pages.

etcd never shrinks its database file by itself: auto-compaction (herd.etcd.members'
flags) drops old revisions and bbolt reuses the freed pages, so the file stays about as big
as the largest the live data ever was. After a peak (a big import, thousands of instances
removed, a burst of jobs archived) the space stays taken until a member is defragmented,
which rewrites its file with the live data only. A defragmenting member answers nothing
meanwhile (a second or so per 100 MiB), so masterd does it one member at a time, only where
a lot is to be gained, and never where it would stall the master:

- the master's own member is defragmented while the master's client sends its requests
  (lease renewals, config writes) to the other members (:meth:`EtcdClient.avoiding`);
- etcd's leader first hands its leadership to a member already done, so that the cluster
  keeps a leader that answers;
- a cluster of one member is defragmented in place: its master is the sole voter, which may
  go without renewals (herd.etcd.election.lease_lost).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from herd.etcd.client import EtcdClient, EtcdError

log = logging.getLogger(__name__)

#: Defragment when at least this much would be given back ...
RECLAIM_MIN_BYTES = 64 << 20
#: ... and it is at least this share of the file.
RECLAIM_MIN_SHARE = 0.5
#: How often masterd looks (the first look comes one interval after it took the role).
EVERY = 3600.0


def defrag_wanted(db_size: int, in_use: int, min_bytes: int = RECLAIM_MIN_BYTES,
                  min_share: float = RECLAIM_MIN_SHARE) -> bool:
    """Whether a member's database is worth defragmenting (both thresholds reached). An
    unknown in-use size (0: a member too old to report it) never is."""
    if in_use <= 0 or db_size <= in_use:
        return False
    free = db_size - in_use
    return free >= min_bytes and free >= db_size * min_share


@dataclass(frozen=True)
class MemberState:
    id: int
    url: str
    db_size: int
    in_use: int
    leader: bool
    own: bool  # the master's own member


def defrag_order(members: list[MemberState], min_bytes: int = RECLAIM_MIN_BYTES,
                 min_share: float = RECLAIM_MIN_SHARE) -> list[MemberState]:
    """The members to defragment, in the order that keeps the cluster answering: the other
    followers first, then the master's own member, the leader last (it hands over to one
    already done)."""
    wanted = [m for m in members if defrag_wanted(m.db_size, m.in_use, min_bytes, min_share)]
    return sorted(wanted, key=lambda m: (m.leader, m.own, m.id))


async def member_states(client: EtcdClient, own_url: str | None) -> list[MemberState]:
    """Every started voting member that answers, with its database sizes."""
    states = []
    for member in await client.member_list():
        if member.is_learner or not member.client_urls:
            continue
        url = member.client_urls[0]
        try:
            status = await client.status(endpoint=url)
        except EtcdError as exc:
            log.info("etcd member %s not looked at: %s", member.name or member.id, exc.message)
            continue
        states.append(MemberState(id=member.id, url=url, db_size=status.db_size,
                                  in_use=status.db_size_in_use,
                                  leader=status.leader == status.member_id,
                                  own=own_url is not None and own_url in member.client_urls))
    return states


async def _hand_over(client: EtcdClient, leader: MemberState,
                     others: list[MemberState]) -> bool:
    """Move the leadership from ``leader`` to another member; True once it moved."""
    target = others[0]
    try:
        return await client.hand_over_leadership(leader.id, leader.url, target.id, target.url)
    except EtcdError as exc:
        log.warning("etcd leadership not moved before defragmenting: %s", exc.message)
        return False


async def defragment_where_wasted(client: EtcdClient, own_url: str | None,
                                  min_bytes: int = RECLAIM_MIN_BYTES,
                                  min_share: float = RECLAIM_MIN_SHARE) -> list[str]:
    """Defragment, one at a time, the members worth it; return one line per member done."""
    states = await member_states(client, own_url)
    done: list[str] = []
    for member in defrag_order(states, min_bytes, min_share):
        others = [m for m in states if m.id != member.id]
        if member.leader and others and not await _hand_over(client, member, others):
            continue  # a leader that cannot hand over is left for the next look
        started = time.monotonic()
        try:
            with client.avoiding(member.url):
                await client.defragment(member.url)
            after = (await client.status(endpoint=member.url)).db_size
        except EtcdError as exc:
            log.warning("defragmenting etcd member %s failed: %s", member.url, exc.message)
            continue
        line = (f"etcd member {member.url} defragmented in {time.monotonic() - started:.1f} s: "
                f"{member.db_size >> 20} -> {after >> 20} MiB")
        log.info("%s", line)
        done.append(line)
    return done
