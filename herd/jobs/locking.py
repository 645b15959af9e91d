"""Shared/exclusive locks at cluster, node group, node, instance and network level.

Deadlock freedom comes from order: a job asks for all its locks at once and they are granted one
by one in a fixed global order (level, then name). Each level also has a level lock, taken shared
by a job that names single objects and exclusive by one that wants the whole level ("all
instances"), so that the two never miss each other. Waiters are served first come, first served,
so a stream of shared holders cannot starve an exclusive waiter.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

LEVEL_CLUSTER, LEVEL_INSTANCE, LEVEL_NODEGROUP, LEVEL_NODE, LEVEL_NETWORK = range(5)
LEVEL_NAMES = {LEVEL_CLUSTER: "cluster", LEVEL_INSTANCE: "instance",
               LEVEL_NODEGROUP: "nodegroup", LEVEL_NODE: "node", LEVEL_NETWORK: "network"}
ALL = "*"


@dataclass(frozen=True)
class LockRequest:
    level: int
    name: str  # ALL for the whole level
    shared: bool = False


class _SharedLock:
    def __init__(self) -> None:
        self.holders: dict[object, bool] = {}  # owner -> shared
        self.waiters: deque[tuple[asyncio.Future[None], object, bool]] = deque()

    def _compatible(self, shared: bool) -> bool:
        if not self.holders:
            return True
        return shared and all(self.holders.values())

    async def acquire(self, owner: object, shared: bool) -> None:
        if not self.waiters and self._compatible(shared):
            self.holders[owner] = shared
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (fut, owner, shared)
        self.waiters.append(entry)
        try:
            await fut
        except asyncio.CancelledError:
            if entry in self.waiters:
                self.waiters.remove(entry)
            elif fut.done() and not fut.cancelled():
                self.holders.pop(owner, None)  # granted just as we were cancelled
            self._wake()
            raise

    def release(self, owner: object) -> None:
        self.holders.pop(owner, None)
        self._wake()

    def _wake(self) -> None:
        while self.waiters:
            fut, owner, shared = self.waiters[0]
            if fut.done():
                self.waiters.popleft()
                continue
            if not self._compatible(shared):
                return
            self.waiters.popleft()
            self.holders[owner] = shared
            fut.set_result(None)

    @property
    def idle(self) -> bool:
        return not self.holders and not self.waiters


class LockManager:
    def __init__(self) -> None:
        self._locks: dict[tuple[int, int, str], _SharedLock] = {}

    @staticmethod
    def _expand(requests: Iterable[LockRequest]) -> list[tuple[tuple[int, int, str], bool]]:
        wanted: dict[tuple[int, int, str], bool] = {}
        for req in requests:
            if req.name == ALL:
                # always exclusive: a shared level lock would not exclude single-name
                # holders, which take it shared whatever their mode
                keys = [((req.level, 0, ""), False)]
            else:
                keys = [((req.level, 0, ""), True), ((req.level, 1, req.name), req.shared)]
            for key, shared in keys:
                wanted[key] = wanted.get(key, True) and shared
        return sorted(wanted.items())

    @contextlib.asynccontextmanager
    async def hold(self, owner: object, requests: Iterable[LockRequest]) -> AsyncIterator[None]:
        """Acquire all ``requests`` in global order; release them all on exit."""
        acquired: list[_SharedLock] = []
        try:
            for key, shared in self._expand(requests):
                lock = self._locks.setdefault(key, _SharedLock())
                await lock.acquire(owner, shared)
                acquired.append(lock)
            yield
        finally:
            for lock in reversed(acquired):
                lock.release(owner)
            for key in [k for k, v in self._locks.items() if v.idle]:
                del self._locks[key]

    def held(self) -> list[tuple[str, str, list[str]]]:
        """(level, name, holder descriptions) for every held lock: for debugging and tests."""
        out = []
        for (level, _, name), lock in sorted(self._locks.items()):
            if lock.holders:
                out.append((LEVEL_NAMES[level], name or "<level>",
                            [f"{o}:{'shared' if s else 'exclusive'}"
                             for o, s in lock.holders.items()]))
        return out
