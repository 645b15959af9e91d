"""Job ids from the cluster's counter (herd.jobs.ids) and a queue that takes given ids."""

from __future__ import annotations

from pathlib import Path

from herd.jobs import queue as q
from herd.jobs.ids import BLOCK, next_block


def test_the_counter_starts_after_the_local_queue_and_never_goes_back() -> None:
    assert next_block(None, 0) == (1, 1 + BLOCK)
    assert next_block(None, 306) == (307, 307 + BLOCK)  # an upgraded cluster goes on
    assert next_block(401, 0) == (401, 401 + BLOCK)  # a new master: after the dead one's block
    assert next_block(401, 450) == (451, 451 + BLOCK)


def test_the_queue_stores_a_job_under_the_id_it_is_given(tmp_path: Path) -> None:
    queue = q.JobQueue(tmp_path / "queue.db")
    try:
        assert queue.submit([{"OP_ID": "OP_TEST_DELAY"}], job_id=501) == 501
        assert queue.has_job(501) and not queue.has_job(1)
        assert queue.max_id() == 501
        assert queue.submit([{"OP_ID": "OP_TEST_DELAY"}]) == 502  # its own numbering follows
        assert queue.get(501).status == q.QUEUED
    finally:
        queue.close()


def test_replica_plan_puts_records_then_logs_and_deletes_archived_jobs() -> None:
    from herd.jobs.replica import (
        LOG_PREFIX,
        MAX_LOG_ENTRIES,
        job_id_of,
        log_key,
        plan_ops,
        rec_key,
    )

    entry = (1, 0, 1.5, "message", "hello")
    ops = plan_ops({7: {"id": 7}, 8: {"id": 8}}, [(7, entry), (8, (1, 0, 2.0, "m", "x")),
                                                (7, (MAX_LOG_ENTRIES + 1, 0, 3.0, "m", "y"))],
                   archived=[8])
    assert [(o.kind, o.key) for o in ops] == [
        ("put", rec_key(7)), ("put", log_key(7, 1)),
        ("delete", rec_key(8)), ("delete", f"{LOG_PREFIX}{8:010d}/")]
    assert ops[-1].range_end is not None  # every log line of job 8
    assert job_id_of(rec_key(12)) == 12 and job_id_of(log_key(12, 3)) == 12


def test_a_new_master_takes_jobs_and_runs_only_those_that_never_started(
        tmp_path: Path) -> None:
    from herd.jobs.executor import not_started

    queue = q.JobQueue(tmp_path / "queue.db")
    try:
        record = {"id": 40, "status": q.WAITING, "priority": 0, "received_ts": 1.0,
                  "start_ts": 2.0, "end_ts": None,
                  "ops": [{"input": {"OP_ID": "OP_TEST_DELAY"}, "status": q.WAITING,
                           "result": None, "start_ts": 2.0, "exec_ts": None, "end_ts": None}]}
        queue.import_job(record, [(1, 0, 2.0, "message", "waiting for locks")])
        job = queue.get(40)
        assert job.status == q.WAITING and job.log[0][4] == "waiting for locks"
        assert not_started(job)
        job.ops[0].exec_ts, job.ops[0].status, job.status = 3.0, q.RUNNING, q.RUNNING
        assert not not_started(job)
        queue.set_archived([40])
        assert queue.current_ids() == []
    finally:
        queue.close()


def test_reservations_belong_to_one_job_until_it_ends() -> None:
    from herd.config.reservations import Reservations

    res, job_a, job_b = Reservations(), object(), object()
    assert res.claim("mac", "aa:00:00:00:00:01", job_a)
    assert res.claim("mac", "aa:00:00:00:00:01", job_a)  # again by the same job: fine
    assert not res.claim("mac", "aa:00:00:00:00:01", job_b)
    assert res.claim("port", 11000, job_b)
    assert res.claimed("port") == {11000}
    res.release(job_a)
    assert res.claimed("mac") == set()
    assert res.claim("mac", "aa:00:00:00:00:01", job_b)
    res.release(job_b)
    assert res.claimed("port") == set() and res.claimed("mac") == set()
