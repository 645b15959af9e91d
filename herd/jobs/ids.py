"""Job ids from a counter in etcd: never given twice in the cluster, whichever node is master.

Before, each master numbered jobs from its own queue file, so after a failover ids began
again at 1 and a RAPI client polling job 306 could read somebody else's job. Now masterd takes
ids in blocks (one etcd transaction per ``BLOCK`` jobs, guarded by the master election like
every master write) from ``/herd/jobs/next-id``. A block a dead master did not use up is
skipped, never handed out again: ids stay unique and increasing, with gaps after a failover.

The first master on etcd starts the counter after the highest id of its own queue, so an
upgraded cluster's ids go on from where they were.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from herd.etcd.client import Compare, EtcdClient, Op
from herd.etcd.election import report_loss

NEXT_ID_KEY = "/herd/jobs/next-id"
BLOCK = 100


def next_block(stored: int | None, local_max: int, size: int = BLOCK) -> tuple[int, int]:
    """The block ``[first, end)`` to take, given the stored counter (None: no counter yet)
    and the highest id in this master's queue."""
    first = max(stored or 1, local_max + 1)
    return first, first + size


class JobIds:
    def __init__(self, client: EtcdClient, guard: Callable[[], list[Compare]],
                 local_max: Callable[[], int]) -> None:
        self.client = client
        self._guard = guard
        self._local_max = local_max
        self._next = 0
        self._end = 0
        self._lock = asyncio.Lock()
        #: called (in the background) when the guard shows this node is no longer master
        self.on_lost: Callable[[str], Awaitable[None]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def left(self) -> int:
        return self._end - self._next

    async def take(self) -> int:
        """One new id (an etcd transaction only when the block is used up)."""
        async with self._lock:
            if self._next >= self._end:
                await self._refill()
            job_id = self._next
            self._next += 1
            return job_id

    async def _refill(self) -> None:
        while True:
            kv = await self.client.get(NEXT_ID_KEY)
            stored = int(json.loads(kv.value)) if kv is not None else None
            first, end = next_block(stored, self._local_max())
            compare = Compare.mod_revision(NEXT_ID_KEY, "=", kv.mod_revision if kv else 0)
            result = await self.client.txn([*self._guard(), compare],
                                           [Op.put(NEXT_ID_KEY, str(end))])
            if result.succeeded:
                self._next, self._end = first, end
                return
            # the guard failed (no longer master: the save path notices and stops masterd)
            # or the counter moved: read again; a deposed master's guard keeps failing
            kv_now = await self.client.get(NEXT_ID_KEY)
            if (kv_now.mod_revision if kv_now else 0) == (kv.mod_revision if kv else 0):
                from herd.config.etcdstore import MasterRoleLost

                reason = "this node is no longer the master: no job id given"
                report_loss(self.on_lost, self._tasks, reason)
                raise MasterRoleLost(reason)
