"""The master lease is renewed from a thread of its own (herd.etcd.election.KeeperThread):
masterd's loop, busy for seconds with a long answer, no longer makes it give the role up."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from herd.etcd import election
from herd.etcd.election import KeeperThread, MasterLease, Term


class FakeEtcd:
    """The two calls MasterLease.keep makes; ``left``: the TTL etcd answers."""

    def __init__(self, left: int = 5) -> None:
        self.left = left
        self.renewals: list[str] = []
        self.closed = False

    async def lease_keepalive(self, lease: int) -> int:
        self.renewals.append(threading.current_thread().name)
        return self.left

    async def member_list(self) -> list[object]:
        return []

    async def close(self) -> None:
        self.closed = True


def held(client: FakeEtcd, ttl: int = election.TTL) -> MasterLease:
    lease = MasterLease(client, "node1.example.com", ttl=ttl)  # type: ignore[arg-type]
    lease.term = Term("node1.example.com", 7, 3)
    lease._last_ok = time.monotonic()
    return lease


def test_renewals_go_on_while_the_loop_is_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(election, "RENEW_EVERY", 0.1)
    fake = FakeEtcd()
    lost: list[str] = []

    async def on_lost(reason: str) -> None:
        lost.append(reason)

    async def scenario() -> None:
        # TTL 3 s: given up after 1 s without a confirmed renewal (the margin is 2 s)
        keeper = KeeperThread(held(fake, ttl=3), lambda: fake, on_lost)  # type: ignore[arg-type]
        keeper.start()
        time.sleep(1.6)  # the loop held past that
        await asyncio.sleep(0.1)
        keeper.cancel()
        await asyncio.to_thread(keeper.join, 2.0)

    asyncio.run(scenario())
    assert lost == []
    assert len(fake.renewals) >= 8 and set(fake.renewals) == {"master-lease"}
    assert fake.closed


def test_a_lost_lease_is_reported_on_the_loop() -> None:
    fake = FakeEtcd(left=0)  # etcd says the lease is gone
    seen: list[tuple[str, str]] = []

    async def on_lost(reason: str) -> None:
        seen.append((reason, threading.current_thread().name))

    async def scenario() -> None:
        keeper = KeeperThread(held(fake), lambda: fake, on_lost)  # type: ignore[arg-type]
        keeper.start()
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.02)
        keeper.cancel()
        await asyncio.to_thread(keeper.join, 2.0)

    asyncio.run(scenario())
    assert seen == [("the master lease expired", threading.current_thread().name)]
