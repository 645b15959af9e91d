"""A submit's wait for the job queue's etcd copy (herd.jobs.replica.JobReplica.flush): it
returns once the changes made before it are written, while the job goes on changing.

etcd is an in-process stand-in here (a ``txn`` that holds each transaction until the test
lets it through), so the order of events is exact; the lab tests run the real etcd."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from herd.jobs.replica import JobReplica, rec_key


class HeldEtcd:
    """Records each transaction's keys and answers it when the test releases it."""

    def __init__(self) -> None:
        self.txns: list[list[str]] = []
        self.gates: list[asyncio.Event] = []

    async def txn(self, compares: list[Any], ops: list[Any]) -> SimpleNamespace:
        gate = asyncio.Event()
        self.txns.append([op.key for op in ops])
        self.gates.append(gate)
        await gate.wait()
        return SimpleNamespace(succeeded=True)


async def until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0)


async def submitted(job_id: int) -> tuple[HeldEtcd, JobReplica, asyncio.Future[None]]:
    """A replica whose first write (job ``job_id``'s record) etcd holds, and the flush of
    that job's submit."""
    etcd = HeldEtcd()
    replica = JobReplica(etcd, lambda: [])  # type: ignore[arg-type]
    replica.start()
    replica.job_stored({"id": job_id, "status": "queued"})
    flush = asyncio.ensure_future(replica.flush())
    await until(lambda: len(etcd.txns) == 1)
    return etcd, replica, flush


def test_a_flush_waits_for_earlier_changes_only() -> None:
    async def body() -> None:
        etcd, replica, submit = await submitted(7)  # the submit of job 7
        assert etcd.txns[0] == [rec_key(7)]
        # job 7 runs on meanwhile: its status and a log line pile up behind the write
        replica.job_stored({"id": 7, "status": "running"})
        replica.log_added(7, (1, 0, 0.0, "message", "working"))
        later = asyncio.ensure_future(replica.flush())  # e.g. a client told of the end
        etcd.gates[0].set()
        await until(lambda: len(etcd.txns) == 2)
        await asyncio.sleep(0)
        # the submit is answered although the next write is still under way...
        assert submit.done()
        assert not later.done()  # ...which the later flush does wait for
        etcd.gates[1].set()
        await asyncio.wait_for(later, 1)
        assert await asyncio.wait_for(replica.flush(), 1) is None  # nothing new: at once
        replica._task.cancel()  # type: ignore[union-attr]

    asyncio.run(body())


def test_a_cancelled_flush_leaves_no_waiter_behind() -> None:
    async def body() -> None:
        etcd, replica, waiter = await submitted(8)
        waiter.cancel()  # masterd gives up after SUBMIT_FLUSH_WAIT or when it stops
        await asyncio.sleep(0)
        assert replica._flushes == []
        etcd.gates[0].set()
        await asyncio.sleep(0)
        replica._task.cancel()  # type: ignore[union-attr]

    asyncio.run(body())
