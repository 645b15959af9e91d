"""Runs jobs: concurrently, each holding the locks its logical units declare.

The executor is the only writer of job state. Each change is committed to the queue before
anyone is told, and watchers are woken through one event per job. At start, jobs that were
running when masterd stopped are failed with a clear message (their outcome is unknown); jobs
that were only queued run normally.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from herd import errors
from herd.config.etcdstore import SAVE_SCOPE
from herd.config.layout import scope_from_locks
from herd.jobs import queue as q
from herd.jobs.limits import check_job_size
from herd.jobs.locking import ALL, LEVEL_CLUSTER, LEVEL_INSTANCE, LEVEL_NODE
from herd.logic import hooks, intents, unsupported
from herd.logic.base import MasterContext, lu_for
from herd.opcodes import OpCode, opcode_from_dict
from herd.rpc.client import NODES_DOWN, RPC_FEEDBACK

log = logging.getLogger(__name__)

LOST_MESSAGE = ("job was running when masterd stopped (or the master changed), so its "
                "outcome is unknown; check the objects it touched ('gnt-cluster verify') and "
                "submit it again")


SECRET_LOST_MESSAGE = ("this job's secret parameter ({fields}) was kept in masterd's memory "
                       "only, and masterd restarted before the job ran; nothing was done: "
                       "run the command again")


def not_started(job: q.Job) -> bool:
    """Pure: no opcode of ``job`` began to execute (it waited for locks at most), so running
    it after a masterd restart or on a new master is safe."""
    return job.status in (q.QUEUED, q.WAITING) and all(
        op.exec_ts is None and op.status in (q.QUEUED, q.WAITING) for op in job.ops)


def encode_error(exc: BaseException) -> list[Any]:
    """Ganeti's encoding of an exception in a job result: [class name, [message]]."""
    if isinstance(exc, errors.HerdError):
        return [exc.code, [exc.message]]
    return ["OpExecError", [f"{type(exc).__name__}: {exc}"]]


class JobExecutor:
    def __init__(self, queue: q.JobQueue, ctx: MasterContext, max_running: int = 25) -> None:
        self.queue = queue
        self.ctx = ctx
        self._slots = asyncio.Semaphore(max_running)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._changed: dict[int, asyncio.Event] = {}
        self._canceled: set[int] = set()
        #: Secret opcode fields per job and opcode, never stored (see herd.opcodes.base).
        self._secrets: dict[int, list[dict[str, Any]]] = {}
        #: Told of every job that reached a final state here (masterd's audit line).
        self.on_done: Callable[[q.Job], None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    async def recover_created(self) -> dict[int | None, list[str]]:
        """Remove what jobs that died with the last masterd created on nodes and the config
        does not own (their intent records, see herd.logic.intents); call before recover()
        and give it the result, so each dead job's log says what was removed."""
        journal = intents.IntentJournal.for_master(self.ctx.paths.data_dir)
        try:
            return await intents.recover(self.ctx, journal)
        except Exception:  # never a reason not to start: verify reports what is left
            log.exception("removing what dead jobs created failed")
            return {}

    def recover(self, notes: dict[int | None, list[str]] | None = None) -> None:
        """Fail jobs that were running at the last stop; restart the ones still queued.
        ``notes``: lines for the failed jobs' logs (from recover_created)."""
        notes = notes or {}
        for job in self.queue.pending():
            if job.status == q.QUEUED:
                self._spawn(job.id)
                continue
            if not_started(job):
                # it only waited for its locks: nothing of it ran, so it runs now
                for op in job.ops:
                    op.status, op.start_ts = q.QUEUED, None
                job.status, job.start_ts = q.QUEUED, None
                self.queue.save(job)
                self._spawn(job.id)
                continue
            now = time.time()
            for op in job.ops:
                if op.status not in q.FINAL_STATES:
                    op.status = q.ERROR
                    op.result = ["JobLost", [LOST_MESSAGE]]
                    op.end_ts = now
            job.status, job.end_ts = q.ERROR, now
            self.queue.save(job)
            self._done(job)
            for line in notes.get(job.id, []):
                self.queue.append_log(job.id, 0, "message", line)
            self.queue.append_log(job.id, 0, "error", f"Error: {LOST_MESSAGE}")
            log.warning("job %s marked as failed: it was running when masterd stopped", job.id)

    async def shutdown(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    # -- client entry points ------------------------------------------------------------------
    def submit(self, ops: list[dict[str, Any]], job_id: int | None = None) -> int:
        """Validate every opcode, store the job durably, start it; return its id."""
        parsed = self.validate(ops)
        return self._store(parsed, job_id)

    async def enqueue(self, ops: list[dict[str, Any]],
                      next_id: Callable[[], Awaitable[int]]) -> int:
        """``submit`` with the id from the cluster's counter (herd.jobs.ids), taken only once
        the job is valid."""
        parsed = self.validate(ops)
        job_id = await next_id()
        while self.queue.has_job(job_id):  # a queue from before the counter: skip its ids
            job_id = await next_id()
        priority, secrets = self._prepare(parsed)
        # committed on the queue's writer thread: the fsync does not stall the other jobs
        job_id = await self.queue.submit_async([op.to_dict() for op in parsed], priority,
                                               job_id=job_id)
        self._schedule(job_id, secrets)
        return job_id

    @staticmethod
    def validate(ops: list[dict[str, Any]]) -> list[OpCode]:
        if not ops:
            raise errors.ParameterError("a job needs at least one opcode")
        check_job_size(ops)  # every listing carries every job's opcodes: keep jobs small
        return [opcode_from_dict(op) for op in ops]

    def _store(self, parsed: list[OpCode], job_id: int | None) -> int:
        priority, secrets = self._prepare(parsed)
        job_id = self.queue.submit([op.to_dict() for op in parsed], priority, job_id=job_id)
        self._schedule(job_id, secrets)
        return job_id

    @staticmethod
    def _prepare(parsed: list[OpCode]) -> tuple[int, list[dict[str, Any]]]:
        """The job's priority and its secrets: the queue stores the inputs with secrets
        redacted; the secrets stay in memory."""
        return min(op.priority for op in parsed), [op.secrets() for op in parsed]

    def _schedule(self, job_id: int, secrets: list[dict[str, Any]]) -> None:
        """Run a committed job (only then: a failed submit leaves nothing to run)."""
        if any(secrets):
            self._secrets[job_id] = secrets
        self._spawn(job_id)

    def cancel(self, job_id: int) -> tuple[bool, str]:
        job = self.queue.get(job_id, with_log=False)
        if job.status in q.FINAL_STATES:
            return False, f"Job {job_id} is no longer waiting in the queue"
        if job.status == q.RUNNING:
            return False, f"Job {job_id} is running and cannot be canceled"
        self._canceled.add(job_id)
        task = self._tasks.get(job_id)
        if task is not None:
            task.cancel()
        return True, f"Job {job_id} canceled"

    async def wait_for_change(self, job_id: int, prev_status: str | None, prev_serial: int,
                              timeout: float, until_final: bool = False
                              ) -> dict[str, Any] | None:
        """Long poll: return the job's status and new log entries once something changed.

        ``until_final`` (the CLI, which prints only log entries): a status change alone does
        not end the wait, only new log entries or the end of the job, whose whole record
        comes along (``job``). A trivial job then costs its waiter one wake-up instead of
        four (queued, waiting, running, success), each of which waited for a CPU while other
        clients kept the master busy."""
        deadline = time.monotonic() + timeout
        while True:
            event = self._changed.setdefault(job_id, asyncio.Event())
            job = self.queue.get(job_id, with_log=False)
            entries = self.queue.log_since(job_id, prev_serial)
            final = job.status in q.FINAL_STATES
            if until_final and final:
                return {"status": job.status, "log": entries,
                        "job": self.queue.get(job_id).to_dict()}
            if entries or final or (job.status != prev_status and not until_final):
                return {"status": job.status, "log": entries}
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return None

    # -- running ------------------------------------------------------------------------------
    def _notify(self, job_id: int) -> None:
        event = self._changed.pop(job_id, None)
        if event is not None:
            event.set()

    def _spawn(self, job_id: int) -> None:
        task = asyncio.get_running_loop().create_task(self._run(job_id), name=f"job-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _t: self._forget(job_id))

    def _forget(self, job_id: int) -> None:
        self._tasks.pop(job_id, None)
        self._secrets.pop(job_id, None)

    def _restore_secrets(self, job_id: int, index: int, op: OpCode) -> None:
        """Give ``op`` back the secrets kept in memory; fail it if they were lost."""
        kept = self._secrets.get(job_id, [])
        missing = op.restore_secrets(kept[index] if index < len(kept) else {})
        if missing:
            raise errors.OpPrereqError(SECRET_LOST_MESSAGE.format(fields=", ".join(missing)))

    async def _set_status(self, job: q.Job, status: str) -> None:
        """Record ``status``, then tell watchers (committed on the queue's writer thread,
        so the fsync does not stall the event loop that runs the other jobs)."""
        job.status = status
        await self.queue.save_async(job)
        self._notify(job.id)
        if status in q.FINAL_STATES:
            self._done(job)

    def _done(self, job: q.Job) -> None:
        if self.on_done is None:
            return
        try:
            self.on_done(job)
        except Exception:  # an audit problem must not change the job's outcome
            log.exception("reporting the end of job %s failed", job.id)

    async def _run(self, job_id: int) -> None:
        job = self.queue.get(job_id, with_log=False)
        try:
            async with self._slots:
                job.start_ts = time.time()
                for index, state in enumerate(job.ops):
                    op = opcode_from_dict(state.input)
                    ok = await self._run_op(job, index, state, op)
                    if not ok:
                        for rest in job.ops[index + 1:]:
                            rest.status = q.ERROR
                            rest.result = ["OpExecError", ["Job aborted: an earlier opcode failed"]]
                        job.end_ts = time.time()
                        await self._set_status(job, q.ERROR)
                        return
                job.end_ts = time.time()
                await self._set_status(job, q.SUCCESS)
        except asyncio.CancelledError:
            if job_id in self._canceled:
                now = time.time()
                for state in job.ops:
                    if state.status not in q.FINAL_STATES:
                        state.status, state.end_ts = q.CANCELED, now
                        state.result = ["JobCanceled", ["Job canceled by request"]]
                job.end_ts = now
                await self._set_status(job, q.CANCELED)
                self._canceled.discard(job_id)
                return
            raise
        except Exception:  # a bug in the executor itself: never leave a job hanging
            log.exception("job %s crashed", job_id)
            job.end_ts = time.time()
            await self._set_status(job, q.ERROR)

    async def _run_op(self, job: q.Job, index: int, state: q.OpState, op: OpCode) -> bool:
        def feedback(message: str, kind: str = "message") -> None:
            # committed on the writer thread, in order with the job's status changes;
            # watchers are woken once it is
            self.queue.append_log_soon(job.id, index, kind, message,
                                       lambda: self._notify(job.id))

        # the node RPC client and intent records speak of this job (see their modules)
        RPC_FEEDBACK.set(feedback)
        NODES_DOWN.set({})
        intents.CURRENT_JOB.set(job.id)
        state.start_ts = time.time()
        state.status = job.status = q.WAITING
        # not waited for: a job found waiting after a crash is run again as a queued one is
        # (recover), so nothing depends on this being durable before the locks are asked;
        # RUNNING, which does (a job found running is failed, never run twice), is waited for
        self.queue.save_soon(job, lambda: self._notify(job.id))
        lu = None
        # whether the opcode may have changed config objects in memory (see the finally)
        may_change = True
        try:
            self._restore_secrets(job.id, index, op)
            lu = lu_for(op)(op, self.ctx, feedback)
            requests = lu.locks()
            # a change needs an exclusive lock; its saves mark the config changed themselves
            may_change = any(not req.shared for req in requests)
            # a save of this job writes only what it holds exclusively (herd.config.layout)
            SAVE_SCOPE.set(scope_from_locks(requests, LEVEL_CLUSTER, LEVEL_INSTANCE, LEVEL_NODE,
                                            ALL))
            async with self.ctx.locks.hold(f"job/{job.id}", requests):
                if job.id in self._canceled:
                    raise asyncio.CancelledError
                state.status, state.exec_ts = q.RUNNING, time.time()
                await self._set_status(job, q.RUNNING)
                refusal = unsupported.allocator_refusal(op, type(lu))
                if refusal:
                    raise errors.OpPrereqError(refusal)
                await lu.check()
                # pre hooks, execute (unless a dry run), post hooks
                result: Any = await hooks.execute(lu)
        except asyncio.CancelledError:
            may_change = True
            raise
        except Exception as exc:  # every failure is recorded in the job, never lost
            may_change = True
            if not isinstance(exc, errors.HerdError):
                log.exception("opcode %s of job %s failed unexpectedly", op.OP_ID, job.id)
            state.status, state.result, state.end_ts = q.ERROR, encode_error(exc), time.time()
            message = exc.message if isinstance(exc, errors.HerdError) else str(exc)
            feedback(f"Error: {message}", "error")
            return False
        finally:
            if lu is not None:
                lu.cleanup()
            if may_change:
                # what a failed opcode (or one holding objects exclusively) changed in memory,
                # saved or not: no kept query answer (herd.daemons.lists) predates it
                self.ctx.config.note_change()
        state.status, state.result, state.end_ts = q.SUCCESS, result, time.time()
        # not waited for either: the next opcode's RUNNING or the job's end is, and commits
        # after it (the writer keeps the order), so no one is told of this result before it is
        # durable; a crash in between fails the job (it was running), as it did before
        self.queue.save_soon(job)
        return True
