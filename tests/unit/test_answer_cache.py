"""Kept list answers and one computation per round (herd.rpc.answer_cache, issue 17): the
rules that make sharing safe (never an answer of another stamp, never one computed before the
request arrived) are checked here without I/O."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from herd.rpc.answer_cache import RELEASE_AFTER_BYTES, AnswerCache, Rounds, tidy


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- AnswerCache ---------------------------------------------------------------------------------
def test_an_answer_is_found_only_with_the_stamp_it_was_computed_from() -> None:
    cache = AnswerCache(prefix="p")
    live = {"node1": {"i1": {"state": "running"}}}
    entry = cache.store("k", (7, live), b"rows", cache.new_etag())
    assert cache.lookup("k", (7, {"node1": {"i1": {"state": "running"}}})) is entry  # equal
    assert cache.lookup("k", (7, {"node1": {}})) is None  # the nodes said something else
    assert "k" not in cache  # ... and the old answer is gone for good
    cache.store("k", (7, live), b"rows")
    assert cache.lookup("k", (8, live)) is None  # a save (or an opcode) since
    assert cache.lookup("other", (7, live)) is None


def test_etags_are_new_each_time_and_differ_between_processes() -> None:
    one, two = AnswerCache(), AnswerCache()
    tags = {one.new_etag() for _ in range(3)} | {two.new_etag() for _ in range(3)}
    assert len(tags) == 6  # a restarted masterd never confirms a client's old etag


def test_the_least_recently_used_answers_go_first_when_over_budget() -> None:
    clock = Clock()
    cache = AnswerCache(max_bytes=10, clock=clock)
    cache.store("a", 1, b"aaaa")
    clock.now += 1
    cache.store("b", 1, b"bbbb")
    clock.now += 1
    assert cache.lookup("a", 1) is not None  # a used last
    cache.store("c", 1, b"cccc")  # 12 bytes: b goes
    assert "b" not in cache and "a" in cache and "c" in cache and cache.size == 8
    huge = cache.store("d", 1, b"d" * 11)  # larger than the budget: answered, not kept
    assert huge.body == b"d" * 11 and "d" not in cache and cache.size == 8
    cache.store("a", 2, b"aa")  # replacing counts the new size only
    assert cache.size == 6


def test_answers_unused_for_a_while_are_dropped() -> None:
    clock = Clock()
    cache = AnswerCache(idle=60, clock=clock)
    cache.store("a", 1, b"a")
    cache.store("b", 1, b"b")
    clock.now += 50
    assert cache.get("a") is not None  # used: its clock starts again
    clock.now += 20
    assert cache.prune() == 1 and "a" in cache and "b" not in cache
    clock.now += 61
    cache.store("c", 1, b"c")  # storing prunes too
    assert "a" not in cache and len(cache) == 1


def test_the_heap_is_given_back_after_big_answers_were_built_or_dropped_not_at_rest() -> None:
    """A daemon's upkeep (answer_cache.tidy): unused answers dropped (and told), the freed
    heap released after big answers came and went, and nothing done by an idle daemon."""
    clock = Clock()
    cache = AnswerCache(idle=60, clock=clock)
    released: list[float] = []
    forgotten: list[float] = []
    big = b"x" * RELEASE_AFTER_BYTES

    async def scenario() -> None:
        task = asyncio.create_task(tidy(cache, lambda: released.append(clock.now), every=0.01,
                                        dropped=lambda: forgotten.append(clock.now)))

        async def ticks(count: int = 3) -> None:
            for _ in range(count):
                await asyncio.sleep(0.02)

        await ticks()
        assert released == [] and forgotten == []  # at rest: no work, no trim
        cache.store("bulk", 1, big)  # a 20,000-instance list was built
        await ticks()
        assert len(released) == 1 and forgotten == []  # once, not at every tick
        cache.store("small", 1, b"names")
        await ticks()
        assert len(released) == 1  # small answers are not worth a trim
        clock.now += 61
        await ticks()
        assert len(forgotten) == 1 and len(cache) == 0
        assert len(released) == 2  # the dropped megabyte given back too
        task.cancel()

    asyncio.run(scenario())


def test_big_answers_used_outside_the_cache_count_for_the_release() -> None:
    """The web manager's lists decode and drop masterd's whole answer without keeping it:
    herd-rapi kept ~70 MiB of freed heap after a few pages of 20,000 instances until its
    next kept answer, since only the kept bodies counted for the release."""
    cache = AnswerCache()
    released: list[int] = []

    async def scenario() -> None:
        task = asyncio.create_task(tidy(cache, lambda: released.append(1), every=0.01))
        cache.note_churn(RELEASE_AFTER_BYTES // 4)
        await asyncio.sleep(0.03)
        assert released == []  # a quarter of a megabyte: not worth a trim
        cache.note_churn(RELEASE_AFTER_BYTES)
        await asyncio.sleep(0.03)
        assert released == [1] and len(cache) == 0  # nothing kept, the heap given back
        task.cancel()

    asyncio.run(scenario())


# -- Rounds --------------------------------------------------------------------------------------
def test_requests_during_a_computation_share_the_next_one() -> None:
    """The first caller's computation serves it alone; the three that arrive meanwhile wait
    for it to end and share one computation that starts after they all arrived."""
    async def scenario() -> tuple[list[int], int]:
        rounds: Rounds[int] = Rounds()
        started: list[int] = []
        gate = asyncio.Event()

        async def compute() -> int:
            started.append(len(started) + 1)
            await gate.wait()
            return started[-1]

        first = asyncio.ensure_future(rounds.run("k", compute))
        await asyncio.sleep(0)
        later = [asyncio.ensure_future(rounds.run("k", compute)) for _ in range(3)]
        await asyncio.sleep(0)
        assert started == [1]  # the later ones did not join the computation under way
        gate.set()
        results = [await first] + [await f for f in later]
        return results, rounds.computations

    results, computations = asyncio.run(scenario())
    assert results == [1, 2, 2, 2] and computations == 2


def test_other_keys_do_not_wait_and_a_lone_caller_computes_at_once() -> None:
    async def scenario() -> list[str]:
        rounds: Rounds[str] = Rounds()
        gate = asyncio.Event()

        async def slow() -> str:
            await gate.wait()
            return "slow"

        async def fast() -> str:
            return "fast"

        pending = asyncio.ensure_future(rounds.run("a", slow))
        await asyncio.sleep(0)
        got = [await rounds.run("b", fast)]
        gate.set()
        got.append(await pending)
        got.append(await rounds.run("a", fast))  # a new round: nothing under way
        return got

    assert asyncio.run(scenario()) == ["fast", "slow", "fast"]


def test_an_error_reaches_every_caller_of_its_round_and_the_next_round_runs() -> None:
    async def scenario() -> tuple[list[Any], int]:
        rounds: Rounds[int] = Rounds()
        gate = asyncio.Event()
        calls = [0]

        async def compute() -> int:
            calls[0] += 1
            await gate.wait()
            if calls[0] == 1:
                raise ValueError("no such instance")
            return calls[0]

        first = asyncio.ensure_future(rounds.run("k", compute))
        second = asyncio.ensure_future(rounds.run("k", compute))
        await asyncio.sleep(0)
        gate.set()
        out = await asyncio.gather(first, second, return_exceptions=True)
        return out, calls[0]

    out, calls = asyncio.run(scenario())
    assert isinstance(out[0], ValueError) and out[1] == 2 and calls == 2


def test_a_caller_that_goes_away_does_not_cancel_the_others_answer() -> None:
    async def scenario() -> int:
        rounds: Rounds[int] = Rounds()
        gate = asyncio.Event()

        async def compute() -> int:
            await gate.wait()
            return 5

        gone = asyncio.ensure_future(rounds.run("k", compute))
        await asyncio.sleep(0)
        waiting = asyncio.ensure_future(rounds.run("k", compute))
        stays = asyncio.ensure_future(rounds.run("k", compute))
        await asyncio.sleep(0)
        gone.cancel()
        waiting.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await stays

    assert asyncio.run(scenario()) == 5


def test_close_cancels_the_rounds_under_way() -> None:
    async def scenario() -> bool:
        rounds: Rounds[int] = Rounds()

        async def forever() -> int:
            await asyncio.Event().wait()
            return 0

        first = asyncio.ensure_future(rounds.run("k", forever))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(rounds.run("k", forever))
        await asyncio.sleep(0)
        await rounds.close()
        done = await asyncio.gather(first, second, return_exceptions=True)
        return all(isinstance(d, asyncio.CancelledError) for d in done) \
            and not rounds.running("k")

    assert asyncio.run(scenario())
