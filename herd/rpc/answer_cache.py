"""Kept answers of list queries, and one computation for the clients that ask together.

At 20,000 instances one ``gnt-instance list`` costs masterd about 0.15 s of CPU and a RAPI
bulk list about 1.6 s. Four clients listing in a loop, or sixteen RAPI clients, made masterd
compute and encode the same answer again and again on the event loop that also runs the
jobs. Two pieces, both free of I/O so that their rules are unit-tested:

- :class:`Rounds`: one computation per *round*. A request that arrives while the same query
  is being computed waits for that computation to end and is then answered by the next one,
  which starts after it arrived and answers every request that came meanwhile. So sharing
  never hands out an answer older than the request (the nodes are asked after it came in),
  and N clients asking at once cost at most two computations, not N.
- :class:`AnswerCache`: an encoded answer kept with the *stamp* of what it was computed from
  (masterd: the config generation and what the nodes said). A lookup with another stamp finds
  nothing, so a kept answer is never served once the config or the live data differ. Each
  kept answer has an etag, unique across masterd restarts (a random prefix), so that a client
  holding the answer already (RAPI) is told "same" instead of receiving megabytes again.
  Bounded in bytes (least recently used first out) and dropped after a while unused, so that
  a daemon at rest does not keep megabytes resident.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: Bytes of kept answers per cache (masterd's, RAPI's): at 20,000 instances a RAPI bulk
#: list (20 MB) and the CLI's default list (3 MB) fit; every field of every instance (36 MB)
#: is answered but not kept (the RSS goal counts: at most 300 MiB for all daemons).
MAX_BYTES = 32 * 1024 * 1024
#: Seconds a kept answer stays unused before it is dropped.
IDLE_SECONDS = 60.0
#: How often a daemon tidies its cache (:func:`tidy`).
TIDY_EVERY = 30.0
#: Answers built or dropped since the last tidy worth giving their heap back for: a list of
#: 20,000 instances leaves tens of MiB of freed rows that the C allocator keeps otherwise.
RELEASE_AFTER_BYTES = 1024 * 1024


class Entry:
    """One kept answer: its bytes, etag and the stamp it is valid for."""

    __slots__ = ("body", "etag", "stamp", "used")

    def __init__(self, body: bytes, etag: str | None, stamp: Any, used: float) -> None:
        self.body, self.etag, self.stamp, self.used = body, etag, stamp, used


class AnswerCache:
    """Answers by query key, each valid for one stamp (see the module doc)."""

    def __init__(self, max_bytes: int = MAX_BYTES, idle: float = IDLE_SECONDS,
                 clock: Callable[[], float] = time.monotonic, prefix: str | None = None) -> None:
        self.max_bytes = max_bytes
        self.idle = idle
        self._clock = clock
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()
        self._bytes = 0
        self._prefix = prefix if prefix is not None else secrets.token_hex(4)
        self._count = 0
        self._churn = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    @property
    def size(self) -> int:
        """Bytes of the answers kept."""
        return self._bytes

    def new_etag(self) -> str:
        """An etag never given before, by this cache or by an earlier process."""
        self._count += 1
        return f"{self._prefix}-{self._count}"

    def get(self, key: Hashable) -> Entry | None:
        """The answer kept for ``key`` whatever its stamp (RAPI keeps one per query and asks
        masterd whether its etag is still the answer)."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.used = self._clock()
            self._entries.move_to_end(key)
        return entry

    def lookup(self, key: Hashable, stamp: Any) -> Entry | None:
        """The answer kept for ``key`` if it was computed from ``stamp``; else None (and a
        kept answer of another stamp is dropped: it can never be valid again)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.stamp is not stamp and entry.stamp != stamp:
            self._drop(key)
            return None
        entry.used = self._clock()
        self._entries.move_to_end(key)
        return entry

    def store(self, key: Hashable, stamp: Any, body: bytes, etag: str | None = None) -> Entry:
        """Keep ``body`` for ``key`` (replacing what was kept) and return its entry. An answer
        larger than the whole budget is returned but not kept."""
        self.prune()
        self._churn += len(body)
        entry = Entry(body, etag, stamp, self._clock())
        if key in self._entries:
            self._drop(key)
        if len(body) > self.max_bytes:
            return entry
        self._entries[key] = entry
        self._bytes += len(body)
        while self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
        return entry

    def prune(self) -> int:
        """Drop the answers unused for ``idle`` seconds; return how many were dropped."""
        limit = self._clock() - self.idle
        old = [key for key, entry in self._entries.items() if entry.used < limit]
        for key in old:
            self._drop(key)
        return len(old)

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def note_churn(self, size: int) -> None:
        """Count ``size`` bytes of an answer handled outside the cache (decoded, used,
        dropped: the web manager's pages sort and page every instance of masterd's answer):
        the next tidy gives their freed heap back too, as it does for kept answers."""
        self._churn += size

    def take_churn(self) -> int:
        """Bytes of the answers built (kept or not) and dropped since the last call: what
        the process allocated and freed for them, its heap to give back when large."""
        churn, self._churn = self._churn, 0
        return churn

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key)
        self._bytes -= len(entry.body)
        self._churn += len(entry.body)


async def tidy(cache: AnswerCache, release: Callable[[], None],
               every: float = TIDY_EVERY,
               dropped: Callable[[], None] | None = None) -> None:
    """A daemon's upkeep of ``cache``, run as a task for its life: every ``every`` seconds
    drop the answers nobody asked for in a while (at rest a daemon keeps no megabytes), tell
    ``dropped`` so, and when answers were built or dropped meanwhile, ``release`` the freed
    heap to the system (glibc keeps freed memory as the process's RSS until it is trimmed:
    herd-rapi kept ~130 MiB after a few 20,000-instance lists)."""
    while True:
        await asyncio.sleep(every)
        if cache.prune() and dropped is not None:
            dropped()
        if cache.take_churn() >= RELEASE_AFTER_BYTES:
            release()


class Rounds(Generic[T]):
    """One computation per round for each key (see the module doc). ``run(key, compute)``
    returns the result of a computation that started after the call; callers of one key
    must pass equivalent computations (the one of the first caller of a round is used)."""

    def __init__(self) -> None:
        #: the round being computed, per key
        self._current: dict[Hashable, asyncio.Future[T]] = {}
        #: the round that starts when the current one ends, per key, with its computation
        self._next: dict[Hashable, tuple[asyncio.Future[T], Callable[[], Awaitable[T]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: computations started (for tests and the bench: how many rounds served how many)
        self.computations = 0

    def running(self, key: Hashable) -> bool:
        return key in self._current

    async def run(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        if key in self._current:
            waiting = self._next.get(key)
            if waiting is None:
                waiting = (loop.create_future(), compute)
                self._next[key] = waiting
            future = waiting[0]
        else:
            future = loop.create_future()
            self._current[key] = future
            self._start(key, future, compute)
        # shielded: a client that goes away must not cancel the others' answer
        return await asyncio.shield(future)

    def _start(self, key: Hashable, future: asyncio.Future[T],
               compute: Callable[[], Awaitable[T]]) -> None:
        self.computations += 1
        task = asyncio.get_running_loop().create_task(self._round(key, future, compute))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _round(self, key: Hashable, future: asyncio.Future[T],
                     compute: Callable[[], Awaitable[T]]) -> None:
        try:
            result = await compute()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no warning when every waiter went away
        else:
            future.set_result(result)
        finally:
            del self._current[key]
            following = self._next.pop(key, None)
            if following is not None:
                self._current[key] = following[0]
                self._start(key, *following)

    async def close(self) -> None:
        """Cancel the computations under way (masterd stopping)."""
        for future, _compute in self._next.values():
            future.cancel()
        self._next.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
