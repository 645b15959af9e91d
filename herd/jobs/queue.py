"""The durable job queue, in SQLite.

Every state change is a committed transaction (WAL, synchronous=FULL), so a job acknowledged to a
client survives a crash of masterd, and a restarted masterd knows which jobs were running when it
died. Jobs hold Ganeti's fields: ops (opcode inputs), per-opcode status, result, log and times.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd.errors import NotFoundError

QUEUED, WAITING, RUNNING = "queued", "waiting", "running"
SUCCESS, ERROR, CANCELING, CANCELED = "success", "error", "canceling", "canceled"
PENDING_STATES = (QUEUED, WAITING, RUNNING, CANCELING)
FINAL_STATES = (SUCCESS, ERROR, CANCELED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    received_ts REAL NOT NULL,
    start_ts REAL,
    end_ts REAL,
    archived INTEGER NOT NULL DEFAULT 0,
    ops TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
    job_id INTEGER NOT NULL,
    serial INTEGER NOT NULL,
    op_index INTEGER NOT NULL,
    ts REAL NOT NULL,
    type TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (job_id, serial)
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
"""


@dataclass
class OpState:
    input: dict[str, Any]
    status: str = QUEUED
    result: Any = None
    start_ts: float | None = None
    exec_ts: float | None = None
    end_ts: float | None = None


@dataclass
class Job:
    id: int
    status: str
    ops: list[OpState]
    priority: int = 0
    received_ts: float = 0.0
    start_ts: float | None = None
    end_ts: float | None = None
    archived: bool = False
    log: list[tuple[int, int, float, str, str]] = field(default_factory=list)

    @property
    def summary(self) -> list[str]:
        out = []
        for op in self.ops:
            name = str(op.input.get("OP_ID", "?")).removeprefix("OP_")
            target = op.input.get("instance_name") or op.input.get("node_name")
            out.append(f"{name}({target})" if target else name)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Ganeti's job fields (times as floats; RAPI converts them to [sec, usec])."""
        oplog: list[list[tuple[int, float, str, str]]] = [[] for _ in self.ops]
        for serial, op_index, ts, kind, message in self.log:
            if 0 <= op_index < len(oplog):
                oplog[op_index].append((serial, ts, kind, message))
        return {
            "id": self.id,
            "status": self.status,
            "priority": self.priority,
            "ops": [op.input for op in self.ops],
            "opstatus": [op.status for op in self.ops],
            "opresult": [op.result for op in self.ops],
            "opstart": [op.start_ts for op in self.ops],
            "opexec": [op.exec_ts for op in self.ops],
            "opend": [op.end_ts for op in self.ops],
            "oplog": oplog,
            "received_ts": self.received_ts,
            "start_ts": self.start_ts,
            "end_ts": self.end_ts,
            "summary": self.summary,
            "archived": self.archived,
        }


class JobQueue:
    """SQLite-backed storage of jobs. Only masterd writes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- writes -------------------------------------------------------------------------------
    def submit(self, ops: list[dict[str, Any]], priority: int = 0) -> int:
        states = [OpState(input=op).__dict__ for op in ops]
        cur = self._db.execute(
            "INSERT INTO jobs (status, priority, received_ts, ops) VALUES (?, ?, ?, ?)",
            (QUEUED, priority, time.time(), json.dumps(states)))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def save(self, job: Job) -> None:
        self._db.execute(
            "UPDATE jobs SET status=?, start_ts=?, end_ts=?, archived=?, ops=? WHERE id=?",
            (job.status, job.start_ts, job.end_ts, int(job.archived),
             json.dumps([op.__dict__ for op in job.ops], default=str), job.id))

    def append_log(self, job_id: int, op_index: int, kind: str, message: str) -> int:
        with self._db:
            row = self._db.execute(
                "SELECT COALESCE(MAX(serial), 0) FROM log WHERE job_id=?", (job_id,)).fetchone()
            serial = int(row[0]) + 1
            self._db.execute(
                "INSERT INTO log (job_id, serial, op_index, ts, type, message) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, serial, op_index, time.time(), kind, message))
        return serial

    def archive(self, job_id: int) -> bool:
        cur = self._db.execute(
            "UPDATE jobs SET archived=1 WHERE id=? AND status IN (?, ?, ?)",
            (job_id, *FINAL_STATES))
        return cur.rowcount > 0

    def archive_older_than(self, age: float) -> int:
        cur = self._db.execute(
            "UPDATE jobs SET archived=1 WHERE archived=0 AND end_ts < ? AND status IN (?, ?, ?)",
            (time.time() - age, *FINAL_STATES))
        return cur.rowcount

    # -- reads --------------------------------------------------------------------------------
    def get(self, job_id: int, with_log: bool = True) -> Job:
        row = self._db.execute(
            "SELECT id, status, priority, received_ts, start_ts, end_ts, archived, ops "
            "FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"job {job_id} does not exist")
        job = _job_from_row(row)
        if with_log:
            job.log = self.log_since(job_id, 0)
        return job

    def log_since(self, job_id: int, serial: int) -> list[tuple[int, int, float, str, str]]:
        return [tuple(r) for r in self._db.execute(  # type: ignore[misc]
            "SELECT serial, op_index, ts, type, message FROM log "
            "WHERE job_id=? AND serial>? ORDER BY serial", (job_id, serial))]

    def list(self, ids: list[int] | None = None, include_archived: bool = False) -> list[Job]:
        query = ("SELECT id, status, priority, received_ts, start_ts, end_ts, archived, ops "
                 "FROM jobs")
        args: list[Any] = []
        clauses = []
        if ids:
            clauses.append(f"id IN ({','.join('?' * len(ids))})")
            args.extend(ids)
        if not include_archived and not ids:
            clauses.append("archived=0")
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY id"
        return [_job_from_row(r) for r in self._db.execute(query, args)]

    def pending(self) -> list[Job]:
        rows = self._db.execute(
            "SELECT id, status, priority, received_ts, start_ts, end_ts, archived, ops "
            f"FROM jobs WHERE status IN ({','.join('?' * len(PENDING_STATES))}) ORDER BY id",
            PENDING_STATES)
        return [_job_from_row(r) for r in rows]


def _job_from_row(row: tuple[Any, ...]) -> Job:
    ops = [OpState(**op) for op in json.loads(row[7])]
    return Job(id=row[0], status=row[1], priority=row[2], received_ts=row[3], start_ts=row[4],
               end_ts=row[5], archived=bool(row[6]), ops=ops)
