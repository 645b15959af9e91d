"""The job queue (SQLite) and the executor: validation, running, failure, cancel, recovery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from herd.config.store import ConfigStore
from herd.errors import NotFoundError, ParameterError
from herd.jobs import queue as q
from herd.jobs.executor import LOST_MESSAGE, JobExecutor
from herd.jobs.locking import LEVEL_CLUSTER, LockManager, LockRequest
from herd.logic.base import MasterContext
from herd.objects import Cluster, ConfigData, Node, NodeGroup
from herd.paths import HerdPaths


def delay(duration: float = 0.0, **extra: Any) -> dict[str, Any]:
    return {"OP_ID": "OP_TEST_DELAY", "duration": duration, **extra}


def make_context(root: Path) -> MasterContext:
    paths = HerdPaths(root)
    group = NodeGroup(name="default")
    node = Node(name="node1.example.com", primary_ip="192.0.2.1", group=group.uuid)
    data = ConfigData(cluster=Cluster(cluster_name="cluster.example.com", master_node=node.uuid),
                      nodegroups={group.uuid: group}, nodes={node.uuid: node})
    store = ConfigStore.create(paths.config_file, data)
    return MasterContext(paths=paths, config=store, locks=LockManager(), rpc=None)  # type: ignore[arg-type]


Scenario = Callable[[JobExecutor], Coroutine[Any, Any, None]]


def run_with_executor(tmp_path: Path, scenario: Scenario, max_running: int = 25) -> None:
    async def main() -> None:
        ctx = make_context(tmp_path)
        queue = q.JobQueue(ctx.paths.queue_db)
        executor = JobExecutor(queue, ctx, max_running=max_running)
        try:
            await asyncio.wait_for(scenario(executor), timeout=10)
        finally:
            await executor.shutdown()
            queue.close()

    asyncio.run(main())


async def wait_final(executor: JobExecutor, job_id: int, timeout: float = 5) -> q.Job:
    deadline = time.monotonic() + timeout
    status: str | None = None
    while True:
        change = await executor.wait_for_change(job_id, status, 0, deadline - time.monotonic())
        assert change is not None, f"job {job_id} did not finish within {timeout} s"
        status = change["status"]
        if status in q.FINAL_STATES:
            return executor.queue.get(job_id)


async def wait_status(executor: JobExecutor, job_id: int, wanted: str) -> None:
    for _ in range(200):
        if executor.queue.get(job_id, with_log=False).status == wanted:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_id} never reached {wanted}")


# -- submit validation -----------------------------------------------------------------------
@pytest.mark.parametrize(("ops", "fragment"), [
    ([{"OP_ID": "OP_NO_SUCH_THING"}], "unknown opcode 'OP_NO_SUCH_THING'"),
    ([{"duration": 1}], "unknown opcode None"),
    ([delay(0.1, bogus=1)], "unknown parameter 'bogus' for OP_TEST_DELAY"),
    ([delay("soon")], "parameter 'duration' of OP_TEST_DELAY has invalid value 'soon'"),
    ([delay(0.1, repeat=True)], "parameter 'repeat'"),
    ([{"OP_ID": "OP_TEST_DELAY"}], "OP_TEST_DELAY requires parameter(s): duration"),
    ([delay(0), {"OP_ID": "OP_INSTANCE_STARTUP"}], "requires parameter(s): instance_name"),
    ([], "at least one opcode"),
    # bounded for every client (CLI and RAPI alike): a 41.6 MB body once made the queue unusable
    ([delay(0.1, comment="x" * (1024 * 1024))], "job too large"),
    ([delay(0.1, comment="x" * 600_000), delay(0.1, comment="y" * 600_000)], "job too large"),
])
def test_submit_rejects_invalid_and_stores_nothing(tmp_path: Path, ops: list[dict[str, Any]],
                                                   fragment: str) -> None:
    async def scenario(executor: JobExecutor) -> None:
        with pytest.raises(ParameterError) as err:
            executor.submit(ops)
        assert fragment in err.value.message
        assert "\n" not in err.value.message
        assert executor.queue.list(include_archived=True) == []

    run_with_executor(tmp_path, scenario)


# -- running ---------------------------------------------------------------------------------
def test_delay_job_succeeds_with_timestamps(tmp_path: Path) -> None:
    async def scenario(executor: JobExecutor) -> None:
        before = time.time()
        job_id = executor.submit([delay(0.1)])
        job = await wait_final(executor, job_id)
        d = job.to_dict()
        assert d["status"] == "success"
        assert d["opstatus"] == ["success"]
        assert d["opresult"] == [None]
        assert d["ops"][0]["OP_ID"] == "OP_TEST_DELAY"
        assert d["ops"][0]["duration"] == 0.1
        assert d["summary"] == ["TEST_DELAY"]
        assert before <= d["received_ts"] <= d["start_ts"] <= d["end_ts"]
        (start,), (exec_ts,), (end,) = d["opstart"], d["opexec"], d["opend"]
        assert d["start_ts"] <= start <= exec_ts <= end <= d["end_ts"]
        assert end - exec_ts >= 0.09  # the delay ran while the opcode was executing

    run_with_executor(tmp_path, scenario)


def test_job_state_is_durable(tmp_path: Path) -> None:
    """What the executor reports is what a fresh reader of the database sees."""

    async def scenario(executor: JobExecutor) -> None:
        job_id = executor.submit([delay(0)])
        await wait_final(executor, job_id)
        other = q.JobQueue(executor.queue.path)
        try:
            job = other.get(job_id)
            assert job.status == "success"
            assert [op.status for op in job.ops] == ["success"]
        finally:
            other.close()

    run_with_executor(tmp_path, scenario)


def test_failing_opcode_gives_error_with_encoded_result_and_log(tmp_path: Path) -> None:
    async def scenario(executor: JobExecutor) -> None:
        job_id = executor.submit([delay(0, fail=True)])
        d = (await wait_final(executor, job_id)).to_dict()
        assert d["status"] == "error"
        assert d["opstatus"] == ["error"]
        assert d["opresult"] == [["OpExecError", ["test delay asked to fail"]]]
        entries = d["oplog"][0]
        assert [(kind, msg) for _, _, kind, msg in entries if kind == "error"] == \
            [("error", "Error: test delay asked to fail")]
        assert d["end_ts"] is not None and d["opend"][0] is not None

    run_with_executor(tmp_path, scenario)


def test_check_failure_is_recorded_as_error(tmp_path: Path) -> None:
    async def scenario(executor: JobExecutor) -> None:
        job_id = executor.submit([delay(-1)])
        d = (await wait_final(executor, job_id)).to_dict()
        assert d["status"] == "error"
        assert d["opresult"][0][0] == "ParameterError"
        assert "invalid duration -1" in d["opresult"][0][1][0]

    run_with_executor(tmp_path, scenario)


def test_multi_opcode_job_stops_at_first_failure(tmp_path: Path) -> None:
    async def scenario(executor: JobExecutor) -> None:
        job_id = executor.submit([delay(0), delay(0, fail=True), delay(0), delay(0)])
        d = (await wait_final(executor, job_id)).to_dict()
        assert d["status"] == "error"
        assert d["opstatus"] == ["success", "error", "error", "error"]
        assert d["opresult"][0] is None
        assert d["opresult"][1] == ["OpExecError", ["test delay asked to fail"]]
        for result in d["opresult"][2:]:
            assert result[0] == "OpExecError"
        # the opcodes after the failure never started
        assert d["opstart"][2:] == [None, None]
        assert d["opexec"][2:] == [None, None]
        assert d["oplog"][2] == [] and d["oplog"][3] == []

    run_with_executor(tmp_path, scenario)


def test_jobs_run_concurrently(tmp_path: Path) -> None:
    async def scenario(executor: JobExecutor) -> None:
        start = time.monotonic()
        ids = [executor.submit([delay(0.2)]) for _ in range(20)]
        jobs = [await wait_final(executor, i) for i in ids]
        elapsed = time.monotonic() - start
        assert [j.status for j in jobs] == ["success"] * 20
        assert elapsed < 1.5, f"20 x 0.2 s delay jobs took {elapsed:.2f} s: not concurrent"

    run_with_executor(tmp_path, scenario)


def test_max_running_limits_concurrency(tmp_path: Path) -> None:
    async def scenario(executor: JobExecutor) -> None:
        start = time.monotonic()
        ids = [executor.submit([delay(0.1)]) for _ in range(4)]
        for i in ids:
            await wait_final(executor, i)
        assert time.monotonic() - start >= 0.35  # one at a time

    run_with_executor(tmp_path, scenario, max_running=1)


# -- cancel ----------------------------------------------------------------------------------
def test_cancel_queued_job(tmp_path: Path) -> None:
    async def scenario(executor: JobExecutor) -> None:
        running = executor.submit([delay(0.5)])
        queued = executor.submit([delay(0)])
        await wait_status(executor, running, "running")
        assert executor.queue.get(queued).status == "queued"
        ok, message = executor.cancel(queued)
        assert ok, message
        job = await wait_final(executor, queued)
        assert job.status == "canceled"
        assert [op.status for op in job.ops] == ["canceled"]
        assert (await wait_final(executor, running)).status == "success"

    run_with_executor(tmp_path, scenario, max_running=1)


def test_cancel_job_waiting_for_locks(tmp_path: Path) -> None:
    async def scenario(executor: JobExecutor) -> None:
        locks = executor.ctx.locks
        async with locks.hold("test", [LockRequest(LEVEL_CLUSTER, "cluster")]):
            # an instance opcode needs the cluster lock (shared) and so has to wait
            job_id = executor.submit([{"OP_ID": "OP_INSTANCE_STARTUP",
                                       "instance_name": "web1"}])
            await wait_status(executor, job_id, "waiting")
            ok, message = executor.cancel(job_id)
            assert ok, message
            assert message == f"Job {job_id} canceled"
            job = await wait_final(executor, job_id)
        assert job.status == "canceled"
        assert job.to_dict()["opstatus"] == ["canceled"]
        assert job.ops[0].exec_ts is None  # it never ran
        assert locks.held() == []

    run_with_executor(tmp_path, scenario)


def test_cancel_finished_job_is_refused(tmp_path: Path) -> None:
    async def scenario(executor: JobExecutor) -> None:
        job_id = executor.submit([delay(0)])
        await wait_final(executor, job_id)
        ok, message = executor.cancel(job_id)
        assert not ok
        assert str(job_id) in message
        assert executor.queue.get(job_id).status == "success"

    run_with_executor(tmp_path, scenario)


def test_cancel_running_job_is_refused(tmp_path: Path) -> None:
    async def scenario(executor: JobExecutor) -> None:
        job_id = executor.submit([delay(0.3)])
        await wait_status(executor, job_id, "running")
        ok, _ = executor.cancel(job_id)
        assert not ok
        assert (await wait_final(executor, job_id)).status == "success"

    run_with_executor(tmp_path, scenario)


def test_cancel_unknown_job(tmp_path: Path) -> None:
    async def scenario(executor: JobExecutor) -> None:
        with pytest.raises(NotFoundError):
            executor.cancel(4242)

    run_with_executor(tmp_path, scenario)


# -- watching --------------------------------------------------------------------------------
def test_wait_for_change_returns_on_status_change(tmp_path: Path) -> None:
    async def scenario(executor: JobExecutor) -> None:
        job_id = executor.submit([delay(0.3)])
        change = await executor.wait_for_change(job_id, "queued", 0, 5)
        assert change is not None and change["status"] in ("waiting", "running")
        await wait_status(executor, job_id, "running")
        start = time.monotonic()
        change = await executor.wait_for_change(job_id, "running", 0, 5)
        assert change is not None and change["status"] == "success"
        assert time.monotonic() - start < 2  # woken by the change, not by the timeout

    run_with_executor(tmp_path, scenario)


def test_wait_for_change_times_out_with_none(tmp_path: Path) -> None:
    async def scenario(executor: JobExecutor) -> None:
        job_id = executor.submit([delay(1)])
        await wait_status(executor, job_id, "running")
        start = time.monotonic()
        assert await executor.wait_for_change(job_id, "running", 0, 0.2) is None
        assert 0.15 <= time.monotonic() - start < 0.8

    run_with_executor(tmp_path, scenario)


def test_wait_for_change_returns_new_log_entries(tmp_path: Path) -> None:
    async def scenario(executor: JobExecutor) -> None:
        job_id = executor.submit([delay(0, fail=True)])
        job = await wait_final(executor, job_id)
        assert job.log
        change = await executor.wait_for_change(job_id, "error", 0, 1)
        assert change is not None
        assert [e[0] for e in change["log"]] == [e[0] for e in job.log]
        last = job.log[-1][0]
        # a finished job answers at once (with nothing new) instead of hanging
        change = await executor.wait_for_change(job_id, "error", last, 5)
        assert change == {"status": "error", "log": []}

    run_with_executor(tmp_path, scenario)


# -- recovery --------------------------------------------------------------------------------
def test_recover_fails_running_jobs_and_runs_queued(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    queue = q.JobQueue(ctx.paths.queue_db)
    lost_id = queue.submit([delay(10)])
    lost = queue.get(lost_id)
    lost.status, lost.start_ts = q.RUNNING, time.time()
    lost.ops[0].status = q.RUNNING
    queue.save(lost)
    queued_id = queue.submit([delay(0)])
    done_id = queue.submit([delay(0)])
    done = queue.get(done_id)
    done.status = q.SUCCESS
    done.ops[0].status = q.SUCCESS
    queue.save(done)
    queue.close()  # masterd "stops"

    async def main() -> None:
        queue2 = q.JobQueue(ctx.paths.queue_db)
        executor = JobExecutor(queue2, ctx)
        try:
            executor.recover()
            lost = queue2.get(lost_id).to_dict()
            assert lost["status"] == "error"
            assert lost["opstatus"] == ["error"]
            assert lost["opresult"][0][1] == [LOST_MESSAGE]
            assert "was running when masterd stopped" in LOST_MESSAGE
            assert any(kind == "error" and "was running when masterd stopped" in msg
                       for _, _, kind, msg in lost["oplog"][0])
            assert lost["end_ts"] is not None
            assert (await wait_final(executor, queued_id)).status == "success"
            assert queue2.get(done_id).status == "success"  # untouched
        finally:
            await executor.shutdown()
            queue2.close()

    asyncio.run(asyncio.wait_for(main(), 10))


# -- archive ---------------------------------------------------------------------------------
def test_archive_only_finished_jobs(tmp_path: Path) -> None:
    async def scenario(executor: JobExecutor) -> None:
        queue = executor.queue
        long_id = executor.submit([delay(0.5)])
        done_id = executor.submit([delay(0)])
        await wait_final(executor, done_id)
        assert queue.archive(long_id) is False
        assert queue.archive(done_id) is True
        assert [j.id for j in queue.list()] == [long_id]
        assert [j.id for j in queue.list(include_archived=True)] == [long_id, done_id]
        assert queue.get(done_id).archived is True
        assert queue.get(long_id).archived is False
        assert queue.archive(4242) is False

    run_with_executor(tmp_path, scenario)
