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
    real_update = queue._update_row

    def update(row: tuple[Any, ...]) -> None:
        writers.append(threading.current_thread().name)
        real_update(row)

    queue._update_row = update  # type: ignore[method-assign]

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
    (first, seen1), (second, seen2) = listener.seen[1][2], listener.seen[2][2]
    assert (first, second) == ("one", "two")  # (committed together or one after the other)
    assert "one" in seen1 and seen2 == ["one", "two"]
    assert listener.seen[3][2] == (q.SUCCESS, q.SUCCESS)
    queue.close()


def test_a_slow_commit_does_not_stall_the_event_loop(tmp_path: Path) -> None:
    """A commit held up for 0.3 s (a busy disk): the loop keeps ticking meanwhile."""
    queue = q.JobQueue(tmp_path / "queue.db")
    real_update = queue._update_row

    def slow_update(row: tuple[Any, ...]) -> None:
        time.sleep(0.3)
        real_update(row)

    queue._update_row = slow_update  # type: ignore[method-assign]

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


def test_writes_that_pile_up_share_one_commit_and_a_failed_one_is_undone_alone(
        tmp_path: Path) -> None:
    queue = q.JobQueue(tmp_path / "queue.db")
    commits: list[int] = []
    real_commit = queue._commit_batch

    def counting(batch: list[Any]) -> None:
        commits.append(len(batch))
        real_commit(batch)

    queue._commit_batch = counting  # type: ignore[method-assign]

    def refused(job_id: int) -> None:
        queue._insert_log_row(job_id, 0, "message", "undone")
        raise q.JobQueueError("refused")

    async def scenario() -> tuple[list[int], BaseException | None]:
        ids = await asyncio.gather(*(queue.submit_async(OPS) for _ in range(20)))
        bad = queue._write_soon(refused, ids[0])
        good = queue._write_soon(queue._insert_log_row, ids[0], 0, "message", "kept")
        error = None
        try:
            await bad
        except q.JobQueueError as exc:
            error = exc
        await good
        return ids, error

    ids, error = asyncio.run(scenario())
    assert sorted(ids) == list(range(ids[0], ids[0] + 20))
    assert isinstance(error, q.JobQueueError)
    assert [e[4] for e in queue.log_since(ids[0], 0)] == ["kept"]
    assert sum(commits) == 22 and len(commits) < 22  # grouped: fewer commits than writes
    queue.close()
