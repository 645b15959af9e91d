"""LockManager.hold: shared/exclusive semantics, fairness, deadlock freedom, cancellation."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from typing import Any

import pytest

from herd.jobs.locking import (
    ALL,
    LEVEL_CLUSTER,
    LEVEL_INSTANCE,
    LEVEL_NODE,
    LockManager,
    LockRequest,
)

# How long a task that should be blocked is given to (wrongly) get through.
SETTLE = 0.05


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


def inst(name: str, shared: bool = False) -> LockRequest:
    return LockRequest(LEVEL_INSTANCE, name, shared=shared)


class Holder:
    """A task that takes locks, reports when it has them, and holds them until released."""

    def __init__(self, lm: LockManager, owner: str, reqs: list[LockRequest]) -> None:
        self.acquired = asyncio.Event()
        self.release = asyncio.Event()
        self.task = asyncio.create_task(self._run(lm, owner, reqs))

    async def _run(self, lm: LockManager, owner: str, reqs: list[LockRequest]) -> None:
        async with lm.hold(owner, reqs):
            self.acquired.set()
            await self.release.wait()

    async def wait_acquired(self, timeout: float = 1.0) -> None:
        await asyncio.wait_for(self.acquired.wait(), timeout)

    async def done(self) -> None:
        self.release.set()
        await asyncio.wait_for(self.task, 1.0)


async def settle() -> None:
    await asyncio.sleep(SETTLE)


def test_shared_holders_coexist() -> None:
    async def main() -> None:
        lm = LockManager()
        holders = [Holder(lm, f"job/{i}", [inst("web1", shared=True)]) for i in range(5)]
        for h in holders:
            await h.wait_acquired()
        (entry,) = [e for e in lm.held() if e[1] == "web1"]
        assert sorted(entry[2]) == sorted(f"job/{i}:shared" for i in range(5))
        for h in holders:
            await h.done()

    run(main())


@pytest.mark.parametrize("first_shared", [True, False])
def test_exclusive_excludes(first_shared: bool) -> None:
    async def main() -> None:
        lm = LockManager()
        first = Holder(lm, "job/1", [inst("web1", shared=first_shared)])
        await first.wait_acquired()
        second = Holder(lm, "job/2", [inst("web1", shared=False)])
        await settle()
        assert not second.acquired.is_set(), "exclusive lock granted while another job held it"
        await first.done()
        await second.wait_acquired()
        await second.done()

    run(main())


def test_shared_waits_for_exclusive_holder() -> None:
    async def main() -> None:
        lm = LockManager()
        first = Holder(lm, "job/1", [inst("web1")])
        await first.wait_acquired()
        second = Holder(lm, "job/2", [inst("web1", shared=True)])
        await settle()
        assert not second.acquired.is_set()
        await first.done()
        await second.wait_acquired()
        await second.done()

    run(main())


def test_different_names_do_not_conflict() -> None:
    async def main() -> None:
        lm = LockManager()
        a = Holder(lm, "job/1", [inst("web1")])
        b = Holder(lm, "job/2", [inst("web2")])
        await a.wait_acquired()
        await b.wait_acquired()
        await a.done()
        await b.done()

    run(main())


def test_exclusive_waiter_not_starved_by_later_shared() -> None:
    async def main() -> None:
        lm = LockManager()
        reader = Holder(lm, "job/1", [inst("web1", shared=True)])
        await reader.wait_acquired()
        writer = Holder(lm, "job/2", [inst("web1")])
        await settle()
        assert not writer.acquired.is_set()
        # shared requests arriving after the exclusive waiter queue behind it
        late = [Holder(lm, f"job/{i}", [inst("web1", shared=True)]) for i in range(3, 6)]
        await settle()
        assert not any(h.acquired.is_set() for h in late), \
            "a later shared request overtook a waiting exclusive one"
        await reader.done()
        await writer.wait_acquired()
        await settle()
        assert not any(h.acquired.is_set() for h in late)
        await writer.done()
        for h in late:  # then all the shared ones together
            await h.wait_acquired()
        for h in late:
            await h.done()

    run(main())


def test_waiters_are_served_in_arrival_order() -> None:
    async def main() -> None:
        lm = LockManager()
        order: list[int] = []

        async def job(i: int) -> None:
            async with lm.hold(f"job/{i}", [inst("web1")]):
                order.append(i)
                await asyncio.sleep(0)

        first = Holder(lm, "job/0", [inst("web1")])
        await first.wait_acquired()
        tasks = []
        for i in range(1, 8):
            tasks.append(asyncio.create_task(job(i)))
            await asyncio.sleep(0)  # make sure task i queues before task i+1
        await first.done()
        await asyncio.gather(*tasks)
        assert order == list(range(1, 8))

    run(main())


def test_opposite_order_requests_never_deadlock() -> None:
    """Many jobs asking for the same locks in different orders all finish."""

    async def main() -> None:
        lm = LockManager()
        rng = random.Random(1234)
        names = ["a", "b", "c"]
        inside: dict[str, int] = dict.fromkeys(names, 0)
        finished = 0

        async def job(i: int) -> None:
            nonlocal finished
            chosen = rng.sample(names, 2)
            if i % 2:
                chosen.reverse()
            reqs = [LockRequest(LEVEL_INSTANCE, chosen[0]),
                    LockRequest(LEVEL_NODE, chosen[1]),
                    LockRequest(LEVEL_INSTANCE, chosen[1]),
                    LockRequest(LEVEL_NODE, chosen[0])]
            if i % 3 == 0:
                reqs.reverse()
            async with lm.hold(f"job/{i}", reqs):
                for n in chosen:
                    inside[n] += 1
                    assert inside[n] == 1, f"two jobs inside exclusive lock {n}"
                await asyncio.sleep(rng.random() * 0.002)
                for n in chosen:
                    inside[n] -= 1
            finished += 1

        tasks = [asyncio.create_task(job(i)) for i in range(200)]
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
        assert finished == 200
        assert lm.held() == []

    run(main())


def test_two_jobs_opposite_order_with_pause_between() -> None:
    """The classic deadlock: A wants (x, y), B wants (y, x), both start at once."""

    async def main() -> None:
        lm = LockManager()
        for _ in range(50):
            a = Holder(lm, "job/a", [inst("x"), inst("y")])
            b = Holder(lm, "job/b", [inst("y"), inst("x")])
            await asyncio.sleep(0)
            a.release.set()
            b.release.set()
            await asyncio.wait_for(asyncio.gather(a.task, b.task), timeout=1)

    run(main())


@pytest.mark.parametrize(("single_shared", "all_shared"),
                         [(True, False), (False, True), (False, False)])
def test_all_excludes_single_holders(single_shared: bool, all_shared: bool) -> None:
    async def main() -> None:
        lm = LockManager()
        single = Holder(lm, "job/1", [inst("web1", shared=single_shared)])
        await single.wait_acquired()
        whole = Holder(lm, "job/2", [LockRequest(LEVEL_INSTANCE, ALL, shared=all_shared)])
        await settle()
        assert not whole.acquired.is_set(), \
            "whole-level lock granted while a job held one of its objects"
        await single.done()
        await whole.wait_acquired()
        await whole.done()

    run(main())


@pytest.mark.parametrize(("single_shared", "all_shared"),
                         [(True, False), (False, True), (False, False)])
def test_single_waits_for_all_holder(single_shared: bool, all_shared: bool) -> None:
    async def main() -> None:
        lm = LockManager()
        whole = Holder(lm, "job/1", [LockRequest(LEVEL_INSTANCE, ALL, shared=all_shared)])
        await whole.wait_acquired()
        single = Holder(lm, "job/2", [inst("web1", shared=single_shared)])
        await settle()
        assert not single.acquired.is_set(), \
            "single-object lock granted while a job held the whole level"
        await whole.done()
        await single.wait_acquired()
        await single.done()

    run(main())


def test_shared_all_and_shared_single_both_complete() -> None:
    """Two readers never conflict in meaning; whether they overlap, both must finish."""

    async def main() -> None:
        lm = LockManager()
        whole = Holder(lm, "job/1", [LockRequest(LEVEL_INSTANCE, ALL, shared=True)])
        single = Holder(lm, "job/2", [inst("web1", shared=True)])
        whole.release.set()
        single.release.set()
        await asyncio.wait_for(asyncio.gather(whole.task, single.task), 1)
        assert lm.held() == []

    run(main())


def test_all_at_one_level_does_not_block_other_levels() -> None:
    async def main() -> None:
        lm = LockManager()
        whole = Holder(lm, "job/1", [LockRequest(LEVEL_INSTANCE, ALL)])
        await whole.wait_acquired()
        node = Holder(lm, "job/2", [LockRequest(LEVEL_NODE, "node1")])
        await node.wait_acquired()
        await node.done()
        await whole.done()

    run(main())


def test_cancel_waiting_task_releases_only_what_it_holds() -> None:
    async def main() -> None:
        lm = LockManager()
        blocker = Holder(lm, "job/1", [inst("b")])
        await blocker.wait_acquired()
        # job/2 gets "a" then waits for "b" (global order a < b)
        waiter = Holder(lm, "job/2", [inst("a"), inst("b")])
        await settle()
        assert not waiter.acquired.is_set()
        held = {(lvl, name): holders for lvl, name, holders in lm.held()}
        assert held[("instance", "a")] == ["job/2:exclusive"]

        waiter.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter.task

        held = {(lvl, name): holders for lvl, name, holders in lm.held()}
        assert ("instance", "a") not in held, "cancelled job kept a lock it had acquired"
        assert held[("instance", "b")] == ["job/1:exclusive"], \
            "cancelling a waiter released a lock held by another job"

        # "a" is free now, "b" still excludes and is usable once released
        other = Holder(lm, "job/3", [inst("a")])
        await other.wait_acquired()
        third = Holder(lm, "job/4", [inst("b")])
        await settle()
        assert not third.acquired.is_set()
        await blocker.done()
        await third.wait_acquired()
        await third.done()
        await other.done()
        assert lm.held() == []
        assert lm._locks == {}, "idle locks are not cleaned up"

    run(main())


def test_cancel_waiter_in_front_of_queue_lets_next_one_through() -> None:
    async def main() -> None:
        lm = LockManager()
        reader = Holder(lm, "job/1", [inst("web1", shared=True)])
        await reader.wait_acquired()
        writer = Holder(lm, "job/2", [inst("web1")])
        late_reader = Holder(lm, "job/3", [inst("web1", shared=True)])
        await settle()
        assert not late_reader.acquired.is_set()  # queued behind the writer
        writer.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writer.task
        # with the writer gone, the late reader joins the current reader
        await late_reader.wait_acquired()
        await late_reader.done()
        await reader.done()
        assert lm.held() == []

    run(main())


def test_cancel_exactly_when_granted_leaves_lock_usable() -> None:
    async def main() -> None:
        lm = LockManager()
        async with lm.hold("job/1", [inst("web1")]):
            waiter = Holder(lm, "job/2", [inst("web1")])
            await settle()
            assert not waiter.acquired.is_set()
        # leaving the block granted the lock to the waiter, which has not run yet
        assert ("instance", "web1", ["job/2:exclusive"]) in lm.held()
        waiter.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter.task
        assert not waiter.acquired.is_set()
        assert lm.held() == [], "a lock granted to a cancelled task was never released"
        again = Holder(lm, "job/3", [inst("web1")])
        await again.wait_acquired()
        await again.done()

    run(main())


def test_exception_in_body_releases_everything() -> None:
    async def main() -> None:
        lm = LockManager()
        with pytest.raises(RuntimeError):
            async with lm.hold("job/1", [inst("web1"), LockRequest(LEVEL_CLUSTER, "cluster")]):
                raise RuntimeError("boom")
        assert lm.held() == []
        async with lm.hold("job/2", [inst("web1")]):
            pass

    run(main())


def test_held_reports_holders() -> None:
    async def main() -> None:
        lm = LockManager()
        assert lm.held() == []
        async with lm.hold("job/7", [LockRequest(LEVEL_CLUSTER, "cluster", shared=True),
                                     inst("web1"),
                                     LockRequest(LEVEL_NODE, "node1", shared=True)]):
            held = lm.held()
            assert ("cluster", "cluster", ["job/7:shared"]) in held
            assert ("instance", "web1", ["job/7:exclusive"]) in held
            assert ("node", "node1", ["job/7:shared"]) in held
            assert {name for _, name, _ in held} >= {"cluster", "web1", "node1"}
            assert all(holders == ["job/7:shared"]
                       for _, name, holders in held if name == "<level>")
        assert lm.held() == []

    run(main())


def test_duplicate_request_takes_strongest_mode() -> None:
    async def main() -> None:
        lm = LockManager()
        async with lm.hold("job/1", [inst("web1", shared=True), inst("web1", shared=False)]):
            assert ("instance", "web1", ["job/1:exclusive"]) in lm.held()

    run(main())
