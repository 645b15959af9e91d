"""herd-cleaner: expired join tokens, old OS logs and old archived jobs go; the rest stays."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from herd.cleaner import DAY, clean, expired_token, old_files
from herd.jobs import queue as q
from herd.paths import HerdPaths


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_expired_token_and_old_os_logs_go_recent_ones_stay(tmp_path: Path) -> None:
    p = HerdPaths(tmp_path)
    p.ensure()
    token = p.data_dir / "join-token"
    now = time.time()
    token.write_text(json.dumps({"secret": "s", "pin": "p", "expires": now - 1}))
    assert expired_token(token, now)
    old = p.os_log_dir / "add-w1-1.log"
    new = p.os_log_dir / "add-w2-1.log"
    other = p.os_log_dir / "notes.txt"
    for path in (old, new, other):
        path.write_text("x")
    _age(old, 15 * DAY)
    _age(other, 30 * DAY)
    (p.os_log_dir / "dir.log").mkdir()
    _age(p.os_log_dir / "dir.log", 30 * DAY)
    assert old_files(p.os_log_dir, "*.log", now, 14 * DAY) == [old]
    calls: list[tuple[str, dict[str, Any]]] = []

    def master(method: str, **args: Any) -> int:
        calls.append((method, args))
        return 3

    report = clean(p, now=now, master_call=master)
    assert sorted(report.removed) == sorted([str(token), str(old)])
    assert not token.exists() and not old.exists() and new.exists() and other.exists()
    assert report.purged_jobs == 3 and calls == [("purge_archive", {"age": 21 * DAY})]
    assert clean(p, now=now).removed == []  # nothing left to do; not the master: no call


def test_a_valid_token_is_kept(tmp_path: Path) -> None:
    p = HerdPaths(tmp_path)
    p.ensure()
    token = p.data_dir / "join-token"
    token.write_text(json.dumps({"secret": "s", "pin": "p", "expires": time.time() + 600}))
    assert clean(p).removed == [] and token.exists()
    assert not expired_token(p.data_dir / "no-such-token", time.time())


def test_purge_drops_old_archived_jobs_and_their_logs_only(tmp_path: Path) -> None:
    queue = q.JobQueue(tmp_path / "queue.db")
    ids = [queue.submit([{"OP_ID": "OP_TEST_DELAY", "duration": 0}]) for _ in range(4)]
    now = time.time()
    for job_id, ended in zip(ids, (now - 30 * DAY, now - DAY, now - 30 * DAY, now - 30 * DAY),
                             strict=True):
        job = queue.get(job_id)
        job.status, job.end_ts = q.SUCCESS, ended
        queue.save(job)
        queue.append_log(job_id, 0, "message", f"job {job_id}")
    queue.archive_older_than(0)
    # ended long ago but not archived: the archive is what the cleaner empties, nothing else
    queue._db.execute("UPDATE jobs SET archived=0 WHERE id=?", (ids[2],))
    assert queue.purge_archived_older_than(21 * DAY) == 2
    assert queue.has_job(ids[1]) and queue.has_job(ids[2])
    assert not queue.has_job(ids[0]) and not queue.has_job(ids[3])
    assert queue._db.execute("SELECT COUNT(*) FROM log WHERE job_id IN (?, ?)",
                             (ids[0], ids[3])).fetchone()[0] == 0
    assert queue.submit([{"OP_ID": "OP_TEST_DELAY", "duration": 0}]) > ids[3]  # no reuse
