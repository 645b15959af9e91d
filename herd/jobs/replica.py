"""The job queue's copy in etcd: jobs survive a master change.

masterd keeps its SQLite queue (herd.jobs.queue) for everything it reads: listings and long
polls never wait for etcd. Every committed change is also written to etcd, in order, by one
background writer that batches what piled up into transactions (each guarded by the master
election, as config writes are):

    /herd/jobs/meta                      {"version": 1, "writer": node}: see restore
    /herd/jobs/rec/<id:010d>             the job without its log (queue.job_record)
    /herd/jobs/log/<id:010d>/<serial:08d>  one log entry [serial, op, ts, type, message]

A submit waits until its job is in etcd before the id is returned, so a job a client was told
about survives the master; status changes and log lines follow within milliseconds. Archiving
deletes a job's keys (the archive stays in the archiving master's SQLite), so etcd holds the
jobs of the last hours only (the watcher archives finished jobs after six hours).

At start masterd makes its queue and the copy agree (``restore``). The copy's meta key names
the node that wrote it last. If that is another node, this is a new master: the copy's jobs
replace its own rows, and a job of its own that is unfinished but unknown to the cluster is of
an earlier term of this node: it is failed, never run again. If it is this node (masterd
restarted) or nobody (the first master on etcd), its own queue is at least as new as the copy
(which may lack the last changes before a crash) and is written over it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from herd.config.layout import MAX_TXN_OPS
from herd.etcd.client import Compare, EtcdClient, EtcdError, Op
from herd.jobs import queue as q

log = logging.getLogger(__name__)

META_KEY = "/herd/jobs/meta"
REC_PREFIX = "/herd/jobs/rec/"
LOG_PREFIX = "/herd/jobs/log/"
#: Log entries of one job kept in etcd; later ones stay in the master's queue only.
MAX_LOG_ENTRIES = 1000

STALE_MESSAGE = ("job was not finished on this node when it was master before; another "
                 "master ran the cluster since, so it is not run again: submit it again")


def rec_key(job_id: int) -> str:
    return f"{REC_PREFIX}{job_id:010d}"


def log_key(job_id: int, serial: int) -> str:
    return f"{LOG_PREFIX}{job_id:010d}/{serial:08d}"


def job_id_of(key: str) -> int:
    return int(key.rsplit("/", 2)[-1] if key.startswith(REC_PREFIX)
               else key[len(LOG_PREFIX):].split("/")[0])


def plan_ops(records: dict[int, dict[str, Any]],
             logs: list[tuple[int, tuple[int, int, float, str, str]]],
             archived: list[int]) -> list[Op]:
    """Pure: the etcd operations for what piled up, in an order that keeps the copy sane
    (a job's record before its log lines; an archived job's keys deleted last)."""
    gone = set(archived)
    ops = [Op.put(rec_key(job_id), json.dumps(rec, default=str, separators=(",", ":")))
           for job_id, rec in records.items() if job_id not in gone]
    ops += [Op.put(log_key(job_id, entry[0]), json.dumps(list(entry), separators=(",", ":")))
            for job_id, entry in logs if job_id not in gone and entry[0] <= MAX_LOG_ENTRIES]
    for job_id in archived:
        ops.append(Op.delete(rec_key(job_id)))
        ops.append(Op.delete(f"{LOG_PREFIX}{job_id:010d}/", prefix=True))
    return ops


class JobReplica:
    """A QueueListener writing the queue's changes to etcd (see the module doc)."""

    def __init__(self, client: EtcdClient, guard: Callable[[], list[Compare]]) -> None:
        self.client = client
        self._guard = guard
        self._records: dict[int, dict[str, Any]] = {}
        self._logs: list[tuple[int, tuple[int, int, float, str, str]]] = []
        self._archived: list[int] = []
        self._wake = asyncio.Event()
        #: changes handed over so far, and how many of the first of them are in etcd: a
        #: flush waits for the changes made before it, not for the writer to fall idle
        self._handed = 0
        self._written = 0
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        #: called when a guarded write is refused (this node is no longer the master)
        self.on_lost: Callable[[str], Any] | None = None

    # -- QueueListener --------------------------------------------------------------------------
    def job_stored(self, record: dict[str, Any]) -> None:
        self._records[int(record["id"])] = record
        self._kick()

    def log_added(self, job_id: int, entry: tuple[int, int, float, str, str]) -> None:
        self._logs.append((job_id, entry))
        self._kick()

    def jobs_archived(self, job_ids: list[int]) -> None:
        self._archived.extend(job_ids)
        self._kick()

    def _kick(self) -> None:
        self._handed += 1
        self._wake.set()

    # -- the writer -----------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="job-replica")

    async def stop(self, timeout: float = 5.0) -> None:
        """Write what is left (briefly), then stop."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except TimeoutError:
            log.warning("job changes not written to etcd before masterd stopped")
        self._task.cancel()

    async def flush(self) -> None:
        """Return once every change made so far is in etcd.

        Only those: a submit waits for its own job's record, not for the status changes and
        log lines that job (and every other) goes on making meanwhile. Waiting until the
        writer had nothing left, as before, made a submit's answer wait for the whole run of
        a short job (a trivial job's submit took as long as the job: 10 ms instead of ~4),
        and under a steady stream of jobs for SUBMIT_FLUSH_WAIT."""
        target = self._handed
        if self._written >= target:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (target, waiter)
        self._flushes.append(entry)
        try:
            await waiter
        finally:
            if entry in self._flushes:  # cancelled before it was answered
                self._flushes.remove(entry)

    def _mark_written(self, upto: int) -> None:
        """The first ``upto`` changes are in etcd: answer the flushes waiting for them."""
        self._written = max(self._written, upto)
        waiting = []
        for target, waiter in self._flushes:
            if target <= self._written:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiting.append((target, waiter))
        self._flushes = waiting

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            await self._wake.wait()
            self._wake.clear()
            taken = self._handed  # every change handed over so far is in this batch
            records, self._records = self._records, {}
            logs, self._logs = self._logs, []
            archived, self._archived = self._archived, []
            ops = plan_ops(records, logs, archived)
            try:
                for start in range(0, len(ops), MAX_TXN_OPS):
                    result = await self.client.txn(self._guard(), ops[start:start + MAX_TXN_OPS])
                    if not result.succeeded:
                        log.error("job changes refused by etcd: this node is no longer the "
                                  "master")
                        if self.on_lost is not None:
                            await self.on_lost("the job queue's copy refused a write")
                        return
                backoff = 0.2
                self._mark_written(taken)
            except EtcdError as exc:
                # put it back (newer changes of the same jobs win) and try again
                log.warning("writing job changes to etcd failed: %s", exc.message)
                for job_id, rec in records.items():
                    self._records.setdefault(job_id, rec)
                self._logs[:0] = logs
                self._archived[:0] = archived
                self._wake.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue

    # -- a new master ---------------------------------------------------------------------------
    async def restore(self, queue: q.JobQueue, me: str) -> dict[str, int]:
        """Make this master's queue and the cluster's copy agree (see the module doc).

        Whoever wrote the copy last decides: if that was this node (a masterd restart, or
        the first master on etcd), its own queue is at least as new as the copy, which may
        lack the last changes before a crash: the queue is written over the copy. Otherwise
        the copy is taken into the queue."""
        meta = await self.client.get(META_KEY)
        writer = json.loads(meta.value).get("writer") if meta is not None else None
        if meta is None or writer == me:
            counts = await self._export(queue)
        else:
            counts = await self._import(queue)
        await self.flush()
        result = await self.client.txn(
            [*self._guard(), Compare.mod_revision(META_KEY, "=", meta.mod_revision if meta else 0)],
            [Op.put(META_KEY, json.dumps({"version": 1, "writer": me}))])
        if not result.succeeded:
            raise EtcdError("the job copy changed meanwhile, or this node lost the master role")
        return counts

    async def _export(self, queue: q.JobQueue) -> dict[str, int]:
        jobs = queue.list()
        local = {job.id for job in jobs}
        stored = await self.client.range(REC_PREFIX, prefix=True, keys_only=True)
        extra = [job_id_of(kv.key.decode()) for kv in stored.kvs]
        extra = [job_id for job_id in extra if job_id not in local]
        for job in jobs:
            self.job_stored(q.job_record(job))
            for entry in queue.log_since(job.id, 0):
                self.log_added(job.id, entry)
        if extra:
            self.jobs_archived(extra)
        return {"exported": len(jobs), "dropped": len(extra)}

    async def _import(self, queue: q.JobQueue) -> dict[str, int]:
        recs = await self.client.range(REC_PREFIX, prefix=True)
        logs = await self.client.range(LOG_PREFIX, prefix=True)
        entries: dict[int, list[tuple[int, int, float, str, str]]] = {}
        for kv in logs.kvs:
            entry = json.loads(kv.value)
            entries.setdefault(job_id_of(kv.key.decode()), []).append(
                (int(entry[0]), int(entry[1]), float(entry[2]), str(entry[3]), str(entry[4])))
        known = set()
        for kv in recs.kvs:
            record = json.loads(kv.value)
            known.add(int(record["id"]))
            queue.import_job(record, sorted(entries.get(int(record["id"]), [])))
        stale = [j for j in queue.list() if j.id not in known]
        now = time.time()
        failed = 0
        for job in stale:
            if job.status in q.FINAL_STATES:
                continue
            for op in job.ops:
                if op.status not in q.FINAL_STATES:
                    op.status, op.result, op.end_ts = q.ERROR, ["JobLost", [STALE_MESSAGE]], now
            job.status, job.end_ts = q.ERROR, now
            queue.save(job)  # (the listener is not attached yet: history only)
            queue.append_log(job.id, 0, "error", f"Error: {STALE_MESSAGE}")
            failed += 1
        queue.set_archived([j.id for j in stale])
        return {"imported": len(known), "stale_failed": failed}
