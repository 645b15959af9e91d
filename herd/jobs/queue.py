"""The durable job queue, in SQLite.

Every state change is a committed transaction (WAL, synchronous=FULL), so a job acknowledged to a
client survives a crash of masterd, and a restarted masterd knows which jobs were running when it
died. Jobs hold Ganeti's fields: ops (opcode inputs), per-opcode status, result, log and times.

A submit is one transaction: the client gets a job id only once the job is committed, and a
submit that fails (disk full, I/O error) leaves no row behind to run later. The queue refuses new
jobs while its filesystem has less than :data:`RESERVE_BYTES` free, so that jobs already
accepted can still record their progress. At open it refuses a damaged file (``PRAGMA
quick_check``, its tables, a zero-length file where a queue existed) with one line naming the
file and the way out, instead of starting and failing every submit. Its files are 0600: job
inputs and results are the cluster's business only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import queue as stdqueue
import shlex
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from herd.errors import JobQueueError, NotFoundError
from herd.jobs import audit

# re-exported (``X as X``): callers use q.SUCCESS etc.
from herd.jobs.states import CANCELED as CANCELED
from herd.jobs.states import CANCELING as CANCELING
from herd.jobs.states import ERROR as ERROR
from herd.jobs.states import FINAL_STATES as FINAL_STATES
from herd.jobs.states import PENDING_STATES as PENDING_STATES
from herd.jobs.states import QUEUED as QUEUED
from herd.jobs.states import RUNNING as RUNNING
from herd.jobs.states import SUCCESS as SUCCESS
from herd.jobs.states import WAITING as WAITING

log = logging.getLogger(__name__)

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
#: The columns this code reads and writes; an existing queue lacking one is not usable.
REQUIRED_COLUMNS = {
    "jobs": {"id", "status", "priority", "received_ts", "start_ts", "end_ts", "archived", "ops"},
    "log": {"job_id", "serial", "op_index", "ts", "type", "message"},
}
#: Free space kept for jobs already queued (state changes, logs): no new job below it.
RESERVE_BYTES = 8 * 1024 * 1024
#: Beside the queue: says that a queue with a history existed here (see check_zero_length).
MARKER_SUFFIX = "-created"
FILE_MODE = 0o600


def queue_files(path: Path) -> list[Path]:
    """The queue file and SQLite's companions (write-ahead log, shared-memory index)."""
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def move_aside_command(path: Path, now: float | None = None) -> str:
    """The shell command that moves a damaged queue (and SQLite's companions, the marker)
    into a new directory beside it, named by the time, so a second damage keeps the first."""
    directory = shlex.quote(str(path.parent))
    aside = "queue-damaged-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"cd {directory} && mkdir {aside} && mv {path.name}* {aside}/"


def damaged_message(path: Path, cause: str) -> str:
    """One line: which file, what is wrong, and exactly how to get going again."""
    return (f"job queue {path} is damaged ({cause}); with masterd stopped, move it aside "
            f"({move_aside_command(path)}) and start masterd again ('herd-daemon-util start "
            "masterd'): the job history is lost, the cluster configuration is not")


def way_out_command(message: str) -> str | None:
    """The move-aside command inside a damaged-queue message (for scripts and tests)."""
    _head, found, rest = message.partition("move it aside (")
    return rest.partition(") and start masterd")[0] if found else None


def check_zero_length(size: int | None, had_queue: bool) -> str | None:
    """Pure: the problem with a queue file of ``size`` bytes (None: missing), if any.

    SQLite writes its header at the first open, so an empty file where a queue existed (the
    marker is there, or the cluster has a history) was truncated: starting on it would look
    like a queue without jobs. A missing file is a new queue (a node that just became master).
    """
    if size == 0 and had_queue:
        return "the file is empty (zero length) although this node had a job queue"
    return None


def schema_problem(tables: dict[str, set[str]]) -> str | None:
    """Pure: what is wrong with the tables found (name -> columns); None if usable or new."""
    present = [name for name in REQUIRED_COLUMNS if name in tables]
    if not present:
        other = sorted(t for t in tables if not t.startswith("sqlite_"))
        return f"it holds other tables ({', '.join(other)}), not jobs" if other else None
    for name, columns in REQUIRED_COLUMNS.items():
        if name not in tables:
            return f"table '{name}' is missing"
        missing = sorted(columns - tables[name])
        if missing:
            return f"table '{name}' lacks column(s) {', '.join(missing)}"
    return None


def space_problem(path: Path, free: int, reserve: int = RESERVE_BYTES) -> str | None:
    """Pure: why no job may be queued with ``free`` bytes left, if so."""
    if free >= reserve:
        return None
    return (f"cannot queue the job: the filesystem of the job queue {path} is full "
            f"({free / 2**20:.1f} MiB free; {reserve // 2**20} MiB are kept for jobs already "
            "queued): free some space there and run the command again")


def open_error_message(path: Path, exc: sqlite3.Error, free: int) -> str:
    """Pure: one line for an SQLite error while opening the queue.

    A full filesystem shows as "disk is full" or as a plain I/O error (SQLite cannot create
    its shared-memory index); the file is not damaged then, and moving it aside would lose
    the history for nothing.
    """
    text = str(exc) or type(exc).__name__
    if "full" in text.lower() or (isinstance(exc, sqlite3.OperationalError) and free < 2**20):
        return (f"cannot open the job queue {path}: its filesystem is full ({text}; "
                f"{free / 2**20:.1f} MiB free): free some space there and start masterd again")
    return damaged_message(path, text)


def write_error_message(path: Path, exc: sqlite3.Error) -> str:
    """One line for an SQLite error while queuing a job: the file and the cause."""
    text = str(exc) or type(exc).__name__
    if "full" in text.lower():
        return (f"cannot queue the job: the job queue {path} cannot grow ({text}): free some "
                "space on its filesystem and run the command again; nothing was queued")
    if isinstance(exc, sqlite3.DatabaseError) and "malformed" in text.lower():
        return damaged_message(path, text)
    return (f"cannot queue the job: the job queue {path} failed ({text}); nothing was "
            "queued")


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
            "origin": audit.origin_of([op.input for op in self.ops]),
        }


class QueueListener(Protocol):
    """Told of every committed change (herd.jobs.replica copies them to etcd)."""

    def job_stored(self, record: dict[str, Any]) -> None: ...

    def log_added(self, job_id: int, entry: tuple[int, int, float, str, str]) -> None: ...

    def jobs_archived(self, job_ids: list[int]) -> None: ...


def job_record(job: Job) -> dict[str, Any]:
    """A job without its log, as the queue stores it (and its copy in etcd)."""
    return {"id": job.id, "status": job.status, "priority": job.priority,
            "received_ts": job.received_ts, "start_ts": job.start_ts, "end_ts": job.end_ts,
            "ops": [op.__dict__ for op in job.ops]}


def _listener_record(job: Job) -> dict[str, Any]:
    """The job as the listener (the etcd copy) is given it: a copy in JSON's types, taken
    now, as the job goes on changing."""
    return json.loads(json.dumps(job_record(job), default=str))


def _serialized(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``method`` holding the queue's write lock: the writer thread and the event loop
    share the writing connection, and a transaction must not interleave with another."""
    @functools.wraps(method)
    def locked(self: JobQueue, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


class JobQueue:
    """SQLite-backed storage of jobs. Only masterd writes it.

    ``had_history`` says that the cluster has been in use (its config changed since init), so
    that an empty queue file is recognised as truncated even without the marker file.

    Each commit waits for an fsync (synchronous=FULL: 0.5-3 ms on the lab disks, more on a
    busy one), several per job. masterd's job path therefore writes through the ``*_async`` /
    ``append_log_soon`` methods: one writer thread commits them in order, what piled up
    meanwhile in one transaction (group commit), while the event loop serves other clients
    and jobs; the listener (the etcd copy) is told on the loop once the commit is done.
    Reads use a second connection (WAL: they see the last commit and never wait for the
    writer). The plain methods stay for startup, tools and tests.
    """

    def __init__(self, path: Path, had_history: bool = False,
                 reserve: int = RESERVE_BYTES) -> None:
        self.path = path
        self.reserve = reserve
        #: told of every committed change (None: nobody; see QueueListener)
        self.listener: QueueListener | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        marker = path.with_name(path.name + MARKER_SUFFIX)
        size = path.stat().st_size if path.exists() else None
        problem = check_zero_length(size, had_history or marker.exists())
        if problem:
            raise JobQueueError(damaged_message(path, problem))
        if size is None:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE))
        for name in queue_files(path):
            if name.exists():
                os.chmod(name, FILE_MODE)  # older queues were created 0644
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise JobQueueError(open_error_message(path, exc, self.free_bytes())) from None
        try:
            self._open_checked()
            self._rdb = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            self._db.close()
            raise JobQueueError(open_error_message(path, exc, self.free_bytes())) from None
        except JobQueueError:
            self._db.close()
            raise
        self._lock = threading.RLock()
        #: writes of the async methods, in order, for the writer thread (None: stop)
        self._pending: stdqueue.SimpleQueue[_Write | None] = stdqueue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="job-queue-writer",
                                        daemon=True)
        self._writer.start()
        if not marker.exists():
            marker.write_text("a job queue exists beside this file since "
                              f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            os.chmod(marker, FILE_MODE)

    def _open_checked(self) -> None:
        db = self._db
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        result = [row[0] for row in db.execute("PRAGMA quick_check(3)")]
        if result != ["ok"]:
            detail = " / ".join(" ".join(r.split()) for r in result[:2])[:200]
            raise JobQueueError(damaged_message(self.path, f"quick_check: {detail}"))
        tables = {name: {col[1] for col in db.execute(f"PRAGMA table_info('{name}')")}
                  for (name,) in db.execute(
                      "SELECT name FROM sqlite_master WHERE type='table'").fetchall()}
        problem = schema_problem(tables)
        if problem:
            raise JobQueueError(damaged_message(self.path, problem))
        db.executescript(_SCHEMA)

    def close(self) -> None:
        self._pending.put(None)
        self._writer.join()
        with self._lock:
            self._db.close()
        self._rdb.close()

    # -- the writer thread: group commit ------------------------------------------------------
    def _write_soon(self, func: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Have the writer thread run ``func(*args)`` (SQL without transaction control);
        the future, of the running loop, gets its result once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.put(_Write(func, args, loop, future))
        return future

    async def _in_writer(self, func: Callable[..., Any], *args: Any) -> Any:
        return await self._write_soon(func, *args)

    def _write_loop(self) -> None:
        """Commit what piled up in one transaction, each write in its own savepoint (one
        that fails is undone alone, its future gets the error): one fsync for all the jobs
        that changed meanwhile, instead of one each, which cost the event loop's thread
        more in hand-overs than the fsyncs it saved."""
        while True:
            first = self._pending.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._pending.get_nowait()
                except stdqueue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit_batch(batch)
            if stop:
                return

    def _commit_batch(self, batch: list[_Write]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for write in batch:
                    self._db.execute("SAVEPOINT one_write")
                    try:
                        outcomes.append((True, write.func(*write.args)))
                    except Exception as exc:  # this write only: undone, the others stay
                        self._db.execute("ROLLBACK TO one_write")
                        if isinstance(exc, sqlite3.Error):
                            exc = JobQueueError(write_error_message(self.path, exc))
                        outcomes.append((False, exc))
                    self._db.execute("RELEASE one_write")
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                error = JobQueueError(write_error_message(self.path, exc))
                outcomes = [(False, error)] * len(batch)
        for write, outcome in zip(batch, outcomes, strict=True):
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                write.loop.call_soon_threadsafe(_settle, write.future, outcome)

    # -- writes -------------------------------------------------------------------------------
    def free_bytes(self) -> int:
        st = os.statvfs(self.path.parent)
        return st.f_bavail * st.f_frsize

    def submit(self, ops: list[dict[str, Any]], priority: int = 0,
               before_commit: Callable[[int], None] | None = None,
               job_id: int | None = None) -> int:
        """Store a new job in one transaction and return its id; on any failure nothing is
        stored (the insert is rolled back) and JobQueueError says why in one line.

        ``before_commit`` runs inside the transaction with the new id (a check that may
        still refuse the job). ``job_id``: the id to use (from the cluster's counter,
        herd.jobs.ids); by default the queue numbers jobs itself.
        """
        job_id = self._insert(json.dumps([OpState(input=op).__dict__ for op in ops]),
                              priority, before_commit, job_id)
        self._tell_stored(job_id)
        return job_id

    async def submit_async(self, ops: list[dict[str, Any]], priority: int = 0,
                           job_id: int | None = None) -> int:
        """:meth:`submit`, committed on the writer thread (see the class doc)."""
        states = json.dumps([OpState(input=op).__dict__ for op in ops])
        job_id = await self._in_writer(self._insert_row, states, priority, job_id)
        self._tell_stored(job_id)
        return int(job_id)

    def _tell_stored(self, job_id: int) -> None:
        if self.listener is not None:
            self.listener.job_stored(job_record(self.get(job_id, with_log=False)))

    @_serialized
    def _insert(self, states: str, priority: int,
                before_commit: Callable[[int], None] | None, job_id: int | None) -> int:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                job_id = self._insert_row(states, priority, job_id)
                if before_commit is not None:
                    before_commit(job_id)
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        except sqlite3.Error as exc:
            raise JobQueueError(write_error_message(self.path, exc)) from None
        return job_id

    def _insert_row(self, states: str, priority: int, job_id: int | None) -> int:
        """The INSERT of a new job (the caller holds the transaction)."""
        problem = space_problem(self.path, self.free_bytes(), self.reserve)
        if problem:
            raise JobQueueError(problem)
        cur = self._db.execute(
            "INSERT INTO jobs (id, status, priority, received_ts, ops) "
            "VALUES (?, ?, ?, ?, ?)", (job_id, QUEUED, priority, time.time(), states))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def _rollback(self) -> None:
        """Undo the open transaction; if even that fails, the connection drops it itself."""
        if not self._db.in_transaction:
            return
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")

    @_serialized
    def redact(self, fields: Iterable[str], redact_input: Callable[[dict[str, Any]],
                                                                   dict[str, Any]]) -> int:
        """Rewrite stored opcode inputs that still hold a value of a secret field (jobs
        stored before secrets were redacted); return how many jobs changed.

        Overwritten content is zeroed (secure_delete) and the write-ahead log checkpointed,
        so the old values do not linger in free pages.
        """
        names = sorted(set(fields))
        if not names:
            return 0
        where = " OR ".join("ops LIKE ?" for _ in names)
        rows = self._db.execute(f"SELECT id, ops FROM jobs WHERE {where}",
                                [f'%"{name}"%' for name in names]).fetchall()
        changed = 0
        self._db.execute("PRAGMA secure_delete=ON")
        try:
            for job_id, raw in rows:
                states = json.loads(raw)
                for state in states:
                    state["input"] = redact_input(state.get("input", {}))
                new = json.dumps(states)
                if new != raw:
                    self._db.execute("UPDATE jobs SET ops=? WHERE id=?", (new, job_id))
                    changed += 1
            if changed:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:  # e.g. disk full: the next start tries again
            log.warning("could not remove secrets from old jobs in %s: %s", self.path, exc)
        finally:
            self._db.execute("PRAGMA secure_delete=OFF")
        return changed

    def save(self, job: Job) -> None:
        self._update(_row(job))
        self._tell_saved(job)

    async def save_async(self, job: Job) -> None:
        """:meth:`save`, committed on the writer thread. The row is encoded here, on the
        caller's thread, as the job goes on changing meanwhile."""
        await self._in_writer(self._update_row, _row(job))
        self._tell_saved(job)

    def save_soon(self, job: Job, then: Callable[[], None] | None = None) -> None:
        """:meth:`save_async` without waiting for the commit: the row, encoded now, goes to
        the writer thread in order with every other write (a later save of the same job
        commits after it, often in the same transaction); once it is committed the listener
        is given the job as it was here (it goes on changing meanwhile), then ``then`` runs
        on the loop. For the changes of a job that nothing needs durable before the job goes
        on (see JobExecutor._run_op): each awaited commit is an fsync in the job's path."""
        row = _row(job)
        record = _listener_record(job) if self.listener is not None else None
        future = self._write_soon(self._update_row, row)

        def done(fut: asyncio.Future[Any]) -> None:
            if fut.cancelled() or fut.exception() is not None:
                log.error("job %s: could not record its state %s (%s)", job.id, row[0],
                          fut.exception() if not fut.cancelled() else "canceled")
                return
            if self.listener is not None and record is not None:
                self.listener.job_stored(record)
            if then is not None:
                then()
        future.add_done_callback(done)

    def _tell_saved(self, job: Job) -> None:
        if self.listener is not None:
            self.listener.job_stored(_listener_record(job))

    @_serialized
    def _update(self, row: tuple[Any, ...]) -> None:
        self._update_row(row)

    def _update_row(self, row: tuple[Any, ...]) -> None:
        self._db.execute(
            "UPDATE jobs SET status=?, start_ts=?, end_ts=?, archived=?, ops=? WHERE id=?", row)

    def append_log(self, job_id: int, op_index: int, kind: str, message: str) -> int:
        serial, now = self._insert_log(job_id, op_index, kind, message)
        if self.listener is not None:
            self.listener.log_added(job_id, (serial, op_index, now, kind, message))
        return serial

    def append_log_soon(self, job_id: int, op_index: int, kind: str, message: str,
                        then: Callable[[], None]) -> None:
        """:meth:`append_log` on the writer thread (after every write asked before it);
        ``then`` runs on the event loop once the entry is committed. Called off the loop
        (a thread of a logical unit), it writes at once as :meth:`append_log` does."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.append_log(job_id, op_index, kind, message)
            then()
            return
        future = self._write_soon(self._insert_log_row, job_id, op_index, kind, message)

        def done(fut: asyncio.Future[tuple[int, float]]) -> None:
            if fut.cancelled() or fut.exception() is not None:
                log.error("job %s: could not record a log line (%s): %s", job_id,
                          fut.exception() if not fut.cancelled() else "canceled", message)
                return
            serial, now = fut.result()
            if self.listener is not None:
                self.listener.log_added(job_id, (serial, op_index, now, kind, message))
            then()
        future.add_done_callback(done)

    @_serialized
    def _insert_log(self, job_id: int, op_index: int, kind: str,
                    message: str) -> tuple[int, float]:
        with self._db:
            return self._insert_log_row(job_id, op_index, kind, message)

    def _insert_log_row(self, job_id: int, op_index: int, kind: str,
                        message: str) -> tuple[int, float]:
        row = self._db.execute(
            "SELECT COALESCE(MAX(serial), 0) FROM log WHERE job_id=?", (job_id,)).fetchone()
        serial = int(row[0]) + 1
        self._db.execute(
            "INSERT INTO log (job_id, serial, op_index, ts, type, message) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (job_id, serial, op_index, now := time.time(), kind, message))
        return serial, now

    async def drain(self) -> None:
        """Wait until every write asked so far is committed."""
        await self._in_writer(lambda: None)

    @_serialized
    def archive(self, job_id: int) -> bool:
        cur = self._db.execute(
            "UPDATE jobs SET archived=1 WHERE id=? AND status IN (?, ?, ?)",
            (job_id, *FINAL_STATES))
        if cur.rowcount > 0 and self.listener is not None:
            self.listener.jobs_archived([job_id])
        return cur.rowcount > 0

    @_serialized
    def archive_older_than(self, age: float) -> int:
        where = "archived=0 AND end_ts < ? AND status IN (?, ?, ?)"
        args = (time.time() - age, *FINAL_STATES)
        ids = [r[0] for r in self._db.execute(f"SELECT id FROM jobs WHERE {where}", args)]
        if not ids:
            return 0
        cur = self._db.execute(
            f"UPDATE jobs SET archived=1 WHERE id IN ({','.join('?' * len(ids))})", ids)
        if self.listener is not None:
            self.listener.jobs_archived(ids)
        return cur.rowcount

    @_serialized
    def purge_archived_older_than(self, age: float) -> int:
        """Delete archived jobs that ended more than ``age`` seconds ago, with their logs
        (herd-cleaner; Ganeti's cleaner drops its queue archive after 21 days). Their ids are
        never given out again: the cluster's counter and AUTOINCREMENT only go up."""
        cutoff = time.time() - age
        with self._db:
            ids = [r[0] for r in self._db.execute(
                "SELECT id FROM jobs WHERE archived=1 AND end_ts < ?", (cutoff,))]
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                self._db.execute(f"DELETE FROM log WHERE job_id IN ({marks})", chunk)
                self._db.execute(f"DELETE FROM jobs WHERE id IN ({marks})", chunk)
        return len(ids)

    @_serialized
    def import_job(self, record: dict[str, Any],
                   log: list[tuple[int, int, float, str, str]]) -> None:
        """Take a job as the cluster's copy has it (a new master, herd.jobs.replica): it
        replaces what this node's queue holds under that id, log included."""
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO jobs (id, status, priority, received_ts, start_ts, "
                "end_ts, archived, ops) VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
                (int(record["id"]), record["status"], int(record.get("priority", 0)),
                 float(record.get("received_ts") or 0.0), record.get("start_ts"),
                 record.get("end_ts"), json.dumps(record["ops"], default=str)))
            self._db.execute("DELETE FROM log WHERE job_id=?", (int(record["id"]),))
            self._db.executemany(
                "INSERT INTO log (job_id, serial, op_index, ts, type, message) "
                "VALUES (?, ?, ?, ?, ?, ?)", [(int(record["id"]), *entry) for entry in log])

    def current_ids(self) -> list[int]:
        """Ids of the jobs not archived."""
        return [r[0] for r in self._rdb.execute("SELECT id FROM jobs WHERE archived=0")]

    @_serialized
    def set_archived(self, job_ids: list[int]) -> None:
        """Mark jobs archived without telling the listener (history the cluster's copy does
        not hold)."""
        if job_ids:
            self._db.execute(
                f"UPDATE jobs SET archived=1 WHERE id IN ({','.join('?' * len(job_ids))})",
                job_ids)

    # -- reads --------------------------------------------------------------------------------
    def get(self, job_id: int, with_log: bool = True) -> Job:
        row = self._rdb.execute(
            "SELECT id, status, priority, received_ts, start_ts, end_ts, archived, ops "
            "FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"job {job_id} does not exist")
        job = _job_from_row(row)
        if with_log:
            job.log = self.log_since(job_id, 0)
        return job

    def log_since(self, job_id: int, serial: int) -> list[tuple[int, int, float, str, str]]:
        return [tuple(r) for r in self._rdb.execute(  # type: ignore[misc]
            "SELECT serial, op_index, ts, type, message FROM log "
            "WHERE job_id=? AND serial>? ORDER BY serial", (job_id, serial))]

    def has_job(self, job_id: int) -> bool:
        return self._rdb.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() \
            is not None

    def max_id(self) -> int:
        """The highest job id this queue holds (archived ones too); 0 when empty."""
        row = self._rdb.execute("SELECT MAX(id) FROM jobs").fetchone()
        return int(row[0] or 0)

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
        return [_job_from_row(r) for r in self._rdb.execute(query, args)]

    def pending(self) -> list[Job]:
        rows = self._rdb.execute(
            "SELECT id, status, priority, received_ts, start_ts, end_ts, archived, ops "
            f"FROM jobs WHERE status IN ({','.join('?' * len(PENDING_STATES))}) ORDER BY id",
            PENDING_STATES)
        return [_job_from_row(r) for r in rows]


#: Most writes one group commit carries.
MAX_BATCH = 256


@dataclass
class _Write:
    func: Callable[..., Any]
    args: tuple[Any, ...]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.cancelled():
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _row(job: Job) -> tuple[Any, ...]:
    """The UPDATE parameters of ``job`` (its state now)."""
    return (job.status, job.start_ts, job.end_ts, int(job.archived),
            json.dumps([op.__dict__ for op in job.ops], default=str), job.id)


def _job_from_row(row: tuple[Any, ...]) -> Job:
    ops = [OpState(**op) for op in json.loads(row[7])]
    return Job(id=row[0], status=row[1], priority=row[2], received_ts=row[3], start_ts=row[4],
               end_ts=row[5], archived=bool(row[6]), ops=ops)
