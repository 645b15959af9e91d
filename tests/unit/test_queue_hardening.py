"""The job queue under faults: a submit is all or nothing, a full disk is one clear line, the
files are private, and a damaged queue is refused at open with the way out."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from herd.errors import JobQueueError
from herd.jobs import queue as q
from herd.jobs.executor import JobExecutor
from tests.unit.test_jobs import delay, make_context

SECRET = "5ec2e75ec2e75ec2e75ec2e75ec2e700"


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    return text


def job_rows(path: Path) -> list[int]:
    """Read the file with a separate connection, as a restarted masterd would."""
    db = sqlite3.connect(path)
    try:
        return [row[0] for row in db.execute("SELECT id FROM jobs ORDER BY id")]
    finally:
        db.close()


def fill_queue(path: Path, jobs: int = 60) -> None:
    queue = q.JobQueue(path)
    for index in range(jobs):
        queue.submit([delay(0.0, comment=f"job {index} " + "x" * 400)])
    queue.close()  # checkpoints: everything is in the main file now


def corrupt_a_page(path: Path) -> None:
    """Garbage over the page in the middle of the file (a b-tree page of the jobs)."""
    pages = path.stat().st_size // 4096
    with open(path, "r+b") as fh:
        fh.seek(4096 * (pages // 2))
        fh.write(b"\xa5" * 512)


# -- a submit is one transaction ----------------------------------------------------------------
def test_failure_after_insert_rolls_the_job_back(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    queue = q.JobQueue(path)
    kept = queue.submit([delay()])
    seen: list[int] = []

    def fail_before_commit(job_id: int) -> None:
        seen.append(job_id)
        raise sqlite3.OperationalError("database or disk is full")

    with pytest.raises(JobQueueError) as err:
        queue.submit([delay()], before_commit=fail_before_commit)
    line = one_line(err.value)
    assert str(path) in line and "database or disk is full" in line
    assert "nothing was queued" in line
    assert seen == [kept + 1]  # the row existed inside the transaction ...
    assert [j.id for j in queue.list()] == [kept]  # ... and is gone
    assert job_rows(path) == [kept]
    # the queue is usable afterwards (no transaction left open)
    assert queue.submit([delay()]) > kept
    queue.close()


def test_any_exception_after_insert_leaves_nothing(tmp_path: Path) -> None:
    queue = q.JobQueue(tmp_path / "queue.db")

    def boom(_job_id: int) -> None:
        raise RuntimeError("injected")

    with pytest.raises(RuntimeError):
        queue.submit([delay()], before_commit=boom)
    assert queue.list() == []
    assert not queue._db.in_transaction
    queue.close()


def test_real_sqlite_full_is_one_line_and_nothing_runs_later(tmp_path: Path) -> None:
    """SQLite's own SQLITE_FULL (the database may not grow), through the executor: the submit
    fails with one line naming the queue, nothing is scheduled, and a restarted executor finds
    no job to run."""

    async def main() -> None:
        ctx = make_context(tmp_path)
        queue = q.JobQueue(ctx.paths.queue_db)
        executor = JobExecutor(queue, ctx)
        first = executor.submit([delay()])
        await asyncio.sleep(0)
        pages = queue._db.execute("PRAGMA page_count").fetchone()[0]
        queue._db.execute(f"PRAGMA max_page_count={pages}")
        for _ in range(4):  # as in the report: four failed commands
            with pytest.raises(JobQueueError) as err:
                executor.submit([delay(0.0, comment="y" * 20000)])
            line = one_line(err.value)
            assert str(ctx.paths.queue_db) in line and "full" in line
        assert set(executor._tasks) <= {first}
        await executor.shutdown()
        queue.close()
        again = q.JobQueue(ctx.paths.queue_db)
        assert [j.id for j in again.list()] == [first]
        restarted = JobExecutor(again, ctx)
        restarted.recover()
        assert set(restarted._tasks) <= {first}
        await restarted.shutdown()
        again.close()

    asyncio.run(main())


def test_no_job_is_accepted_without_room_to_run(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    queue = q.JobQueue(path, reserve=1 << 62)  # more than any disk has free
    with pytest.raises(JobQueueError) as err:
        queue.submit([delay()])
    line = one_line(err.value)
    assert str(path) in line and "is full" in line and "free some space" in line
    assert queue.list() == []
    queue.close()


def test_space_problem_is_a_pure_decision() -> None:
    path = Path("/x/queue.db")
    assert q.space_problem(path, 9 << 20, reserve=8 << 20) is None
    assert q.space_problem(path, 8 << 20, reserve=8 << 20) is None
    text = q.space_problem(path, (1 << 20) + 100, reserve=8 << 20)
    assert text is not None and "1.0 MiB free" in text and "8 MiB" in text


# -- private files ------------------------------------------------------------------------------
def test_queue_files_are_0600_and_old_ones_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    queue = q.JobQueue(path)
    queue.submit([delay()])
    for name in (*q.queue_files(path), path.with_name("queue.db" + q.MARKER_SUFFIX)):
        assert name.exists(), name
        assert name.stat().st_mode & 0o777 == 0o600, name
    queue.close()
    os.chmod(path, 0o644)  # as older versions left it
    q.JobQueue(path).close()
    assert path.stat().st_mode & 0o777 == 0o600


# -- damaged queues are refused at open ---------------------------------------------------------
def refused(path: Path, **kwargs: Any) -> str:
    with pytest.raises(JobQueueError) as err:
        q.JobQueue(path, **kwargs)
    line = one_line(err.value)
    assert f"job queue {path} is damaged" in line
    command = q.way_out_command(line)
    assert command and command.startswith(f"cd {path.parent} && mkdir queue-damaged-")
    assert command.endswith(f"mv queue.db* {command.split()[4]}/")
    return line


def test_corrupted_page_is_refused_by_quick_check(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    fill_queue(path)
    corrupt_a_page(path)
    line = refused(path)
    assert "quick_check" in line or "malformed" in line


def test_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    path.write_bytes(os.urandom(8192))
    assert "not a database" in refused(path)


def test_zero_length_queue_is_refused_where_a_queue_existed(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    fill_queue(path, jobs=3)
    os.truncate(path, 0)
    assert "zero length" in refused(path)


def test_zero_length_queue_is_refused_when_the_cluster_has_a_history(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    path.touch()
    assert "zero length" in refused(path, had_history=True)
    # a brand-new cluster (no marker, config never changed): an empty queue is fine
    q.JobQueue(path).close()


def test_missing_queue_is_a_new_queue(tmp_path: Path) -> None:
    """A node that just became master has no queue file yet; that is not damage."""
    path = tmp_path / "queue.db"
    fill_queue(path, jobs=1)
    for name in q.queue_files(path):
        name.unlink(missing_ok=True)
    queue = q.JobQueue(path, had_history=True)
    assert queue.list() == []
    queue.close()


@pytest.mark.parametrize(("sql", "fragment"), [
    ("CREATE TABLE jobs (id INTEGER PRIMARY KEY, status, priority, received_ts, start_ts, "
     "end_ts, archived, ops)", "table 'log' is missing"),
    ("CREATE TABLE jobs (id INTEGER PRIMARY KEY, status TEXT);"
     "CREATE TABLE log (job_id INTEGER)", "lacks column(s)"),
    ("CREATE TABLE photos (id INTEGER PRIMARY KEY)", "other tables (photos)"),
])
def test_wrong_schema_is_refused(tmp_path: Path, sql: str, fragment: str) -> None:
    path = tmp_path / "queue.db"
    db = sqlite3.connect(path)
    db.executescript(sql)
    db.close()
    assert fragment in refused(path)


def test_the_way_out_works_as_written(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    fill_queue(path)
    corrupt_a_page(path)
    command = q.way_out_command(refused(path))
    assert command is not None
    subprocess.run(["sh", "-c", command], check=True)
    (aside,) = tmp_path.glob("queue-damaged-*")
    assert sorted(p.name for p in aside.iterdir()) == ["queue.db", "queue.db-created"]
    queue = q.JobQueue(path, had_history=True)
    assert queue.list() == [] and queue.submit([delay()]) == 1
    queue.close()


def test_full_filesystem_at_open_is_not_called_damage() -> None:
    err = sqlite3.OperationalError("disk I/O error")
    text = q.open_error_message(Path("/x/queue.db"), err, free=0)
    assert "filesystem is full" in text and "damaged" not in text
    text = q.open_error_message(Path("/x/queue.db"), sqlite3.DatabaseError("file is not a "
                                                                           "database"), 10 << 30)
    assert "damaged" in text


# -- secrets stored by older versions are removed -------------------------------------------------
def test_redact_rewrites_old_inputs_and_leaves_no_copy_in_the_file(tmp_path: Path) -> None:
    from herd.opcodes.base import all_secret_fields, redact_input

    path = tmp_path / "queue.db"
    queue = q.JobQueue(path)
    old = {"OP_ID": "OP_NODE_ADD", "node_name": "node2", "join_token": f"{SECRET}:{'a' * 32}"}
    job_id = queue.submit([old])  # as the queue of an older Herd holds it
    other = queue.submit([delay()])
    assert queue.redact(all_secret_fields(), redact_input) == 1
    assert queue.get(job_id).ops[0].input["join_token"] == "<redacted>"
    assert queue.get(other).ops[0].input == delay()
    assert queue.redact(all_secret_fields(), redact_input) == 0  # once is enough
    queue.close()
    data = b"".join(p.read_bytes() for p in q.queue_files(path) if p.exists())
    assert SECRET.encode() not in data
    assert json.loads(json.dumps(q.JobQueue(path).get(job_id).ops[0].input))["node_name"] == \
        "node2"
