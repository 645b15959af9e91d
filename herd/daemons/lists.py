"""masterd's answers to the list queries (``query_instances``, ``query_nodes``).

Four clients listing 20,000 instances in a loop, or sixteen RAPI clients asking for the bulk
list, made masterd compute and encode the same rows again and again on the event loop that
also runs the jobs, and a job's steps waited behind them. Here each list query

- is computed once per round for the clients asking together (herd.rpc.answer_cache.Rounds):
  a request never gets an answer computed from what the nodes said before it arrived;
- asks the nodes (only when a requested field needs them), then compares the config
  generation (bumped by every save and after every opcode) and what the nodes said with
  what the kept answer was computed from: when both are the same, the kept bytes are the
  answer and no row is computed or encoded (herd.rpc.answer_cache.AnswerCache);
- otherwise computes and encodes its rows in pieces on the event loop, letting the loop run
  other work (the jobs, the other clients) every few milliseconds. The rows read the config
  objects that jobs change, and jobs run between the pieces: when the config generation
  moved on meanwhile the answer is computed again from the start, so that it shows the
  config of one moment (after a few tries, at once in one piece).

The answer carries an etag; a client that sends it back (RAPI) is told "same" without the
rows when it is still the answer. Queries stay free of side effects: nothing here changes
the config or the nodes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from itertools import islice
from typing import Any, Protocol

from herd import errors
from herd.logic import query
from herd.logic.base import MasterContext
from herd.rpc import master_protocol as proto
from herd.rpc.answer_cache import TIDY_EVERY, AnswerCache, Entry, Rounds, tidy

#: Rows computed and encoded between two looks at the clock.
PIECE_ROWS = 100
#: How long a computation may hold the event loop before letting other work run (seconds).
SLICE = 0.005
#: Computations started again because the config changed meanwhile, before one in one piece.
ATTEMPTS = 3
#: The methods answered here.
METHODS = frozenset({"query_instances", "query_nodes"})


class ListQuery(Protocol):
    """A query in steps (herd.logic.query.InstanceQuery, NodeQuery)."""

    async def fetch(self) -> Any: ...

    def stamp(self, state: Any) -> Any: ...

    def rows(self, state: Any) -> Any: ...


def _names(value: Any, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errors.ParameterError(f"bad request: {what} must be a list of strings, "
                                    f"not {value!r}"[:200])
    return tuple(value)


def query_key(method: str, names: Any = None, live: Any = True,
              fields: Any = None) -> tuple[Any, ...]:
    """The key of a list query's answer: the method and its arguments, checked (a bad one
    is a ParameterError naming it; an unknown argument a TypeError, as for every request).
    An empty list of names means all, as None does."""
    if not isinstance(live, bool):
        raise errors.ParameterError(f"bad request: live must be true or false, not {live!r}")
    return (method, _names(names, "names") or None, live, _names(fields, "fields"))


def _make(ctx: MasterContext, key: tuple[Any, ...]) -> ListQuery:
    method, names, live, fields = key
    cls = query.InstanceQuery if method == "query_instances" else query.NodeQuery
    return cls(ctx, list(names) if names else None, live,
               list(fields) if fields is not None else None)


class ListAnswers:
    """The list queries of one masterd (see the module doc)."""

    def __init__(self, context: Callable[[], MasterContext],
                 release: Callable[[], None] = lambda: None) -> None:
        #: masterd's master context, looked up at each query (tests attach it late)
        self._context = context
        #: gives the memory of dropped answers back to the system (masterd: malloc_trim)
        self._release = release
        self.cache = AnswerCache()
        self.rounds: Rounds[Entry] = Rounds()
        #: per key, the query object of the last round and the config generation it chose
        #: its objects in (sorting 20,000 instances again for every round cost more than
        #: the round when the answer is kept)
        self._queries: dict[tuple[Any, ...], tuple[int, int, ListQuery]] = {}

    async def answer(self, method: str, args: dict[str, Any], etag: Any = None) -> bytes:
        """The answer line of a list query: "same" when ``etag`` is still the answer."""
        key = query_key(method, **args)
        entry = await self.rounds.run(key, lambda: self._compute(key))
        if etag is not None and entry.etag is not None and etag == entry.etag:
            return proto.same_line(entry.etag)
        return entry.body

    async def _compute(self, key: tuple[Any, ...]) -> Entry:
        ctx = self._context()
        store = ctx.config
        for _attempt in range(ATTEMPTS):
            generation = store.generation
            lister = self._query(ctx, key, generation)
            state = await lister.fetch()
            if store.generation != generation:
                continue  # a save while the nodes answered: choose the objects again
            stamp = (generation, lister.stamp(state))
            kept = self.cache.lookup(key, stamp)
            if kept is not None:
                return kept
            text = await self._encode(lister, state, store, generation)
            if text is None:
                continue
            etag = self.cache.new_etag()
            return self.cache.store(key, stamp, proto.answer_line(text, etag), etag)
        # the config changes faster than the rows are computed: at once, not kept
        lister = _make(ctx, key)
        state = await lister.fetch()
        rows = list(lister.rows(state))
        return Entry(proto.answer_line(proto.encode_json(rows)), None, None, 0.0)

    def _query(self, ctx: MasterContext, key: tuple[Any, ...], generation: int) -> ListQuery:
        """The query for ``key``: the last round's while the config is the same one."""
        last = self._queries.get(key)
        if last is not None and last[0] == generation and last[1] == id(ctx.config.data):
            return last[2]
        lister = _make(ctx, key)
        self._queries[key] = (generation, id(ctx.config.data), lister)
        return lister

    @staticmethod
    async def _encode(lister: ListQuery, state: Any, store: Any,
                      generation: int) -> str | None:
        """The rows as JSON text, computed and encoded a piece at a time; None when the
        config generation moved on meanwhile."""
        pieces: list[str] = []
        rows = lister.rows(state)
        held_since = time.perf_counter()
        while True:
            piece = list(islice(rows, PIECE_ROWS))
            if not piece:
                break
            pieces.append(proto.encode_json(piece)[1:-1])
            if time.perf_counter() - held_since > SLICE:
                await asyncio.sleep(0)  # the jobs and the other clients run
                if store.generation != generation:
                    return None
                held_since = time.perf_counter()
        return "[" + ",".join(pieces) + "]"

    async def tidy(self, every: float = TIDY_EVERY) -> None:
        """Drop answers nobody asked for in a while and give the heap of the rows built
        and freed back (herd.rpc.answer_cache.tidy): masterd at rest keeps no megabytes."""
        await tidy(self.cache, self._release, every, self._forget_queries)

    def _forget_queries(self) -> None:
        self._queries = {k: v for k, v in self._queries.items() if k in self.cache}

    async def close(self) -> None:
        await self.rounds.close()
        self.cache.clear()
        self._queries.clear()
