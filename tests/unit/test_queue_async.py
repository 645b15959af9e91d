"""The job queue's commits leave the event loop (issue 17 item 2, masterd side): each waits for
an fsync, several per job, and masterd's one loop runs every job and answers every client."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from herd.jobs import queue as q

OPS = [{"OP_ID": "OP_TEST_DELAY", "duration": 0}]


class Listener:
    """Records, for each notice, the thread it came on and what a reader saw then."""

    def __init__(self, queue: q.JobQueue) -> None:
        self.queue = queue
        self.seen: list[tuple[str, str, Any]] = []

    def job_stored(self, record: dict[str, Any]) -> None:
        stored = self.queue.get(int(record["id"]), with_log=False).status
        self.seen.append(("job", threading.current_thread().name, (record["status"], stored)))

    def log_added(self, job_id: int, entry: tuple[int, int, float, str, str]) -> None:
        lines = [e[4] for e in self.queue.log_since(job_id, 0)]
        self.seen.append(("log", threading.current_thread().name, (entry[4], lines)))

    def jobs_archived(self, job_ids: list[int]) -> None:
        self.seen.append(("archived", threading.current_thread().name, job_ids))


def test_async_writes_commit_in_order_off_the_loop_and_tell_on_it(tmp_path: Path) -> None:
    queue = q.JobQueue(tmp_path / "queue.db")
    listener = Listener(queue)
    queue.listener = listener
    writers: list[str] = []
    real_update = queue._update

    def update(row: tuple[Any, ...]) -> None:
        writers.append(threading.current_thread().name)
        real_update(row)

    queue._update = update  # type: ignore[method-assign]

    async def scenario() -> list[str]:
        job_id = await queue.submit_async(OPS)
        job = queue.get(job_id)
        woken: list[str] = []
        queue.append_log_soon(job_id, 0, "message", "one", lambda: woken.append("one"))
        queue.append_log_soon(job_id, 0, "message", "two", lambda: woken.append("two"))
        job.status = q.SUCCESS
        await queue.save_async(job)
        return woken

    loop_thread = threading.current_thread().name
    woken = asyncio.run(scenario())
    assert woken == ["one", "two"]  # each once committed, in order, before the status
    assert writers and all(w.startswith("job-queue-writer") for w in writers)
    assert [kind for kind, _t, _v in listener.seen] == ["job", "log", "log", "job"]
    assert all(thread == loop_thread for _k, thread, _v in listener.seen)
    # every notice came after its commit: a reader saw it
    assert listener.seen[0][2] == (q.QUEUED, q.QUEUED)
    assert listener.seen[1][2] == ("one", ["one"])
    assert listener.seen[2][2] == ("two", ["one", "two"])
    assert listener.seen[3][2] == (q.SUCCESS, q.SUCCESS)
    queue.close()


def test_a_slow_commit_does_not_stall_the_event_loop(tmp_path: Path) -> None:
    """A commit held up for 0.3 s (a busy disk): the loop keeps ticking meanwhile."""
    queue = q.JobQueue(tmp_path / "queue.db")
    real_update = queue._update

    def slow_update(row: tuple[Any, ...]) -> None:
        time.sleep(0.3)
        real_update(row)

    queue._update = slow_update  # type: ignore[method-assign]

    async def scenario() -> tuple[int, str]:
        job_id = queue.submit(OPS)
        job = queue.get(job_id)
        job.status = q.RUNNING
        ticks = 0
        save = asyncio.ensure_future(queue.save_async(job))
        while not save.done():
            await asyncio.sleep(0.01)
            ticks += 1
        await save
        return ticks, queue.get(job_id).status

    ticks, status = asyncio.run(scenario())
    assert status == q.RUNNING
    assert ticks >= 10, ticks  # blocked inline, the loop would have ticked once
    queue.close()


def test_a_log_line_from_a_thread_is_written_at_once(tmp_path: Path) -> None:
    queue = q.JobQueue(tmp_path / "queue.db")
    job_id = queue.submit(OPS)
    woken: list[bool] = []
    worker = threading.Thread(target=queue.append_log_soon,
                              args=(job_id, 0, "message", "from a thread",
                                    lambda: woken.append(True)))
    worker.start()
    worker.join()
    assert woken == [True]
    assert [e[4] for e in queue.log_since(job_id, 0)] == ["from a thread"]
    queue.close()
