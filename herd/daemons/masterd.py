"""herd-masterd: the job queue, the config authority and the local client socket.

At start it wins the master election in etcd (herd.etcd.election; exit code 11 when another
node holds it), loads the config from etcd (importing config.data once on a new or upgraded
cluster), takes the master IP, fails the jobs that were running at the last stop and serves
clients on a unix socket. It renews its lease every second; when it cannot, it drops the master
IP and RAPI and exits before the lease can run out on etcd's side, so that two masters never
serve at once. A damaged queue stops it with one line that names the file and the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import gc
import logging
import os
import pwd
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from herd import errors, paths
from herd.config.etcdstore import EtcdConfigStore, NotImported, import_config
from herd.config.facts import read_facts, write_facts, write_facts_dict
from herd.config.replication import Replicator
from herd.config.store import ConfigStore
from herd.daemons import util as daemon_util
from herd.daemons.common import (
    add_log_file,
    install_stop_handlers,
    pid_file,
    release_free_memory,
    setup_logging,
)
from herd.daemons.lists import METHODS as LIST_METHODS
from herd.daemons.lists import ListAnswers
from herd.etcd import maintenance as etcd_maintenance
from herd.etcd.client import EtcdClient, EtcdError
from herd.etcd.election import KeeperThread, MasterLease
from herd.etcd.members import client_urls_from_facts
from herd.jobs import audit
from herd.jobs.executor import JobExecutor
from herd.jobs.ids import JobIds
from herd.jobs.locking import LockManager
from herd.jobs.queue import JobQueue
from herd.jobs.replica import JobReplica
from herd.jobs.stats import JobStats
from herd.logic import query
from herd.logic.base import MasterContext
from herd.logic.etcd_sync import wait_ready as etcd_wait_ready
from herd.network import masterip
from herd.node.etcd_member import read_spec
from herd.objects import access
from herd.objects.cluster import NODED_PORT, Cluster
from herd.opcodes.base import all_secret_fields, redact_input
from herd.rpc import master_protocol as proto
from herd.rpc import tls
from herd.rpc.client import RpcRunner

log = logging.getLogger("herd.masterd")
audit_log = logging.getLogger("herd.audit")

#: the unix-socket peer of the request being served (uid, pid), None for in-process callers
_peer: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "masterd_peer", default=None)


def peer_credentials(sock: socket.socket | None) -> tuple[int, int] | None:
    """(uid, pid) of a unix socket's peer, from the kernel (SO_PEERCRED): what a client can
    not make up."""
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid, uid, _gid = struct.unpack("3i", raw)
    return uid, pid


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def origin_for(peer: tuple[int, int] | None, on_behalf: dict[str, Any] | None) -> audit.Origin:
    """Who submits: the socket's peer, or the RAPI user it submits for. Only root or
    masterd's own user (the RAPI daemon) may submit on behalf of somebody else."""
    if peer is None:
        base = audit.Origin(via="local", user=user_name(os.getuid()), pid=os.getpid())
    else:
        base = audit.Origin(via="cli", user=user_name(peer[0]), uid=peer[0], pid=peer[1])
    if on_behalf is None:
        return base
    if not isinstance(on_behalf, dict) or not isinstance(on_behalf.get("user"), str) \
            or not isinstance(on_behalf.get("address", ""), str):
        raise errors.ParameterError("bad request: on_behalf must be {user, address} strings")
    if peer is not None and peer[0] not in (0, os.getuid()):
        raise errors.ParameterError(f"bad request: uid {peer[0]} may not submit on behalf of "
                                    "another user (only root or masterd's user may)")
    return audit.Origin(via="rapi", user=on_behalf["user"], address=on_behalf.get("address"),
                        uid=None if peer is None else peer[0],
                        pid=None if peer is None else peer[1])

Handler = Callable[..., Awaitable[Any]]


def _field_names(fields: Any) -> list[str] | None:
    """A query's ``fields`` argument: None (every field) or a list of names."""
    if fields is None:
        return None
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise errors.ParameterError(f"bad request: fields must be a list of field names, "
                                    f"not {fields!r}"[:200])
    return fields

#: Exit code of masterd when this node is not (or no longer) the master: not a failure.
EXIT_NOT_MASTER = 11
#: How long a submit waits for its job to reach etcd before answering anyway.
SUBMIT_FLUSH_WAIT = 20.0


class NotMaster(errors.OpPrereqError):
    code = "NotMaster"


#: Answers with more rows than this are encoded off the event loop (see encode_answer).
BIG_ANSWER_ROWS = 500


async def encode_answer(answer: dict[str, Any]) -> bytes:
    """The answer's line. A long list (every instance of a big cluster) is encoded on a
    worker thread, in pieces, so that the event loop, which runs the jobs and renews the
    master lease, is never held for the whole encoding: at 20,000 instances four clients
    listing in a loop kept it busy past the lease's margin and masterd gave up the role. A
    row changed by a job meanwhile (rows may share dicts with the config) makes the thread's
    json.dumps fail: then it is encoded here, at once."""
    result = answer.get("result")
    if isinstance(result, list) and len(result) > BIG_ANSWER_ROWS:
        try:
            return await asyncio.to_thread(proto.encode_in_pieces, answer)
        except RuntimeError:  # "dictionary changed size during iteration"
            pass
    return proto.encode(answer)


class MasterDaemon:
    def __init__(self, p: paths.HerdPaths) -> None:
        self.paths = p
        facts = read_facts(p)
        if facts is None:  # not a master of anything: exit 11, which systemd does not restart
            raise NotMaster(
                f"no cluster facts at {p.cluster_facts_file}: is this node part of a cluster? "
                "(run 'gnt-cluster init' first)")
        self.facts = facts
        # refuses a damaged queue with one line naming the file and the way out
        self.queue = JobQueue(p.queue_db, had_history=int(facts.get("serial_no", 1)) > 1)
        redacted = self.queue.redact(all_secret_fields(), redact_input)
        if redacted:
            log.info("removed secrets kept in the input of %d old job(s)", redacted)
        self.rpc = RpcRunner(p, int(facts.get("noded_port") or NODED_PORT))
        self.replicator = Replicator(p, self.rpc)
        self.etcd: EtcdClient | None = None
        self.lease: MasterLease | None = None
        #: job ids from the cluster's counter (herd.jobs.ids), once this node is master
        self.job_ids: JobIds | None = None
        self.replica: JobReplica | None = None
        self.config: EtcdConfigStore
        self.ctx: MasterContext
        self.executor: JobExecutor
        self._stop = asyncio.Event()
        self._lost_reason: str | None = None
        #: client connections being served (ended before the queue closes)
        self._clients: set[asyncio.Task[None]] = set()
        self._inflight = 0
        #: renews the master lease (herd.etcd.election), from the election on
        self._keeper: KeeperThread | None = None
        self.handlers: dict[str, Handler] = {
            "ping": self.h_ping,
            "submit_job": self.h_submit_job,
            "submit_many": self.h_submit_many,
            "query_jobs": self.h_query_jobs,
            "wait_for_job_change": self.h_wait_for_job_change,
            "cancel_job": self.h_cancel_job,
            "archive_job": self.h_archive_job,
            "autoarchive": self.h_autoarchive,
            "purge_archive": self.h_purge_archive,
            "query_instances": self.h_query_instances,
            "query_nodes": self.h_query_nodes,
            "query_cluster": self.h_query_cluster,
            "query_os": self.h_query_os,
            "query_volumes": self.h_query_volumes,
            "query_locks": self.h_query_locks,
            "node_command": self.h_node_command,
            "node_copyfile": self.h_node_copyfile,
            "query_groups": self.h_query_groups,
            "query_networks": self.h_query_networks,
            "query_tags": self.h_query_tags,
            "query_metrics": self.h_query_metrics,
            "query_quotas": self.h_query_quotas,
            "query_usage": self.h_query_usage,
            "plan_rebalance": self.h_plan_rebalance,
        }
        #: finished jobs by opcode, for /metrics
        self.job_stats = JobStats()
        #: quota checks and the queuing of the job they allow happen one job at a time
        self._quota_lock = asyncio.Lock()
        #: query_instances and query_nodes: shared, kept, computed in pieces (lists.py)
        self.lists = ListAnswers(lambda: self.ctx, release_free_memory)

    async def _write_facts(self, cfg: Any) -> None:
        write_facts(self.paths, cfg)

    # -- handlers -----------------------------------------------------------------------------
    async def h_ping(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "master": self.config.data.master.name}

    async def _submit_from_job(self, ops: list[dict[str, Any]]) -> int:
        """A job submitted by a running job (change-group's moves): its opcodes carry the
        submitting job's reason trail, so it keeps that job's origin (who asked)."""
        return await self._submit(ops, stamped=True)

    async def _submit(self, ops: list[dict[str, Any]],
                      on_behalf: dict[str, Any] | None = None, *,
                      stamped: bool = False) -> int:
        if not stamped and isinstance(ops, list) and all(isinstance(op, dict) for op in ops):
            ops = audit.stamp(ops, origin_for(_peer.get(), on_behalf))
            if on_behalf is not None and not self._is_admin(on_behalf):
                from herd.logic import host_paths

                refused = host_paths.refusal(ops, self.config.data.cluster.user_image_dirs)
                if refused:
                    raise errors.OpPrereqError(refused)
                if self.config.data.cluster.access_quotas:
                    async with self._quota_lock:  # check and queue as one step
                        ops = self._within_quota(ops, on_behalf)
                        return await self._enqueue(ops)
        return await self._enqueue(ops)

    def _is_admin(self, on_behalf: dict[str, Any]) -> bool:
        """Whether the RAPI or web user a job is submitted for is an admin on / (grants and
        the users file's role, herd.objects.access): admins are not limited by quotas or
        the host-path rule."""
        cluster = self.config.data.cluster
        user = str(on_behalf.get("user"))
        base = on_behalf.get("base_role")
        who = access.Principal(user, access.groups_of(user, cluster.access_groups),
                               base if isinstance(base, str) else None)
        grants = access.parse_grants(cluster.access_grants)
        return access.role_on(who, access.CLUSTER, grants) == "admin"

    def _within_quota(self, ops: list[dict[str, Any]],
                      on_behalf: dict[str, Any]) -> list[dict[str, Any]]:
        """The job's opcodes (a creation by a limited user owned by that user), or
        OpPrereqError with herd.logic.quota's one-line refusal (for a user who is not an
        admin)."""
        from herd.logic import quota

        cfg = self.config.data
        cluster = cfg.cluster
        user = str(on_behalf.get("user"))
        groups = access.groups_of(user, cluster.access_groups)
        quotas = cluster.access_quotas
        ops = quota.creation_owner_tags(ops, user,
                                        quota.limited_subjects(user, groups, quotas))
        demands = quota.job_demands(cfg, ops)
        if not demands:
            return ops
        used = quota.usage_by_owner(cfg)
        for job in self.queue.pending():
            waiting = [op.input for op in job.ops if op.status not in ("success", "error",
                                                                      "canceled")]
            for owner, more in quota.job_demands(cfg, waiting).items():
                used[owner] = used.get(owner, quota.ZERO) + more
        message = quota.refusal(quotas, used, demands)
        if message:
            raise errors.OpPrereqError(message)
        return ops

    async def _enqueue(self, ops: list[dict[str, Any]]) -> int:
        if self.job_ids is None:  # tests without etcd: the queue numbers jobs
            return self.executor.submit(ops)
        job_id = await self.executor.enqueue(ops, self.job_ids.take)
        if self.replica is None:
            return job_id
        # the id is returned once the job is in etcd: it survives this master
        flushed = asyncio.ensure_future(self.replica.flush())
        stopped = asyncio.ensure_future(self._stop.wait())
        done, _ = await asyncio.wait({flushed, stopped}, timeout=SUBMIT_FLUSH_WAIT,
                                     return_when=asyncio.FIRST_COMPLETED)
        for waiter in (flushed, stopped):
            waiter.cancel()
        if self._lost_reason is not None:
            self._withdraw(job_id)
            raise NotMaster(f"this node lost the master role ({self._lost_reason}); the job "
                            "was not accepted: submit it to the new master")
        if flushed not in done:
            log.warning("job %s is queued here but not yet in etcd", job_id)
        return job_id

    def _withdraw(self, job_id: int) -> None:
        """A job whose submit failed (the master role was lost before it reached etcd): mark
        it failed here, so that this node never runs it later."""
        listener, self.queue.listener = self.queue.listener, None
        try:
            job = self.queue.get(job_id, with_log=False)
            now = time.time()
            for op in job.ops:
                op.status, op.end_ts = "error", now
                op.result = ["JobLost", ["not accepted: the master role was lost"]]
            job.status, job.end_ts = "error", now
            self.queue.save(job)
        finally:
            self.queue.listener = listener

    async def h_submit_job(self, ops: list[dict[str, Any]],
                           on_behalf: dict[str, Any] | None = None) -> int:
        return await self._submit(ops, on_behalf)

    async def h_submit_many(self, jobs: list[list[dict[str, Any]]],
                            on_behalf: dict[str, Any] | None = None) -> list[list[Any]]:
        out: list[list[Any]] = []
        for ops in jobs:
            try:
                out.append([True, await self._submit(ops, on_behalf)])
            except errors.HerdError as exc:
                out.append([False, exc.message])
        return out

    async def h_query_jobs(self, ids: list[int] | None = None,
                           archived: bool = False) -> list[dict[str, Any]]:
        if ids:
            out = []
            for job_id in ids:
                try:
                    out.append(self.queue.get(int(job_id)).to_dict())
                except errors.NotFoundError:
                    out.append(None)
            return out
        return [j.to_dict() for j in self.queue.list(include_archived=archived)]

    async def h_wait_for_job_change(self, job_id: int, prev_status: str | None,
                                    prev_serial: int, timeout: float = 30.0,
                                    until_final: bool = False) -> Any:
        self.queue.get(job_id, with_log=False)  # raises NotFoundError
        return await self.executor.wait_for_change(job_id, prev_status, prev_serial,
                                                   min(timeout, 60.0), bool(until_final))

    async def h_cancel_job(self, job_id: int) -> list[Any]:
        return list(self.executor.cancel(job_id))

    async def h_archive_job(self, job_id: int) -> bool:
        return self.queue.archive(job_id)

    async def h_autoarchive(self, age: float) -> int:
        return self.queue.archive_older_than(age)

    async def h_purge_archive(self, age: float) -> int:
        if not isinstance(age, int | float) or age < 0:
            raise errors.ParameterError(f"invalid age {age!r}: expected seconds >= 0")
        return self.queue.purge_archived_older_than(float(age))

    async def h_query_instances(self, names: list[str] | None = None, live: bool = True,
                                fields: list[str] | None = None) -> list[dict[str, Any]]:
        return await query.query_instances(self.ctx, names, live, _field_names(fields))

    async def h_query_nodes(self, names: list[str] | None = None, live: bool = True,
                            fields: list[str] | None = None) -> list[dict[str, Any]]:
        return await query.query_nodes(self.ctx, names, live, _field_names(fields))

    async def h_query_cluster(self) -> dict[str, Any]:
        return query.cluster_info(self.ctx)

    def _job_done(self, job: Any) -> None:
        data = job.to_dict()
        audit_log.info("%s", audit.audit_line(data))
        self.job_stats.job_done(data)

    async def h_query_metrics(self) -> dict[str, Any]:
        """Counts only masterd has (herd.rapi.metrics renders them): finished jobs, and
        what the etcd member that answers says of the cluster's store."""
        out: dict[str, Any] = {"jobs": self.job_stats.to_dict(), "etcd": None,
                               "usage": await self._instance_usage()}
        if self.etcd is not None:
            try:
                status = await asyncio.wait_for(self.etcd.status(), 2.0)
                members = await asyncio.wait_for(self.etcd.member_list(), 2.0)
            except (EtcdError, TimeoutError, OSError) as exc:
                out["etcd"] = {"error": str(exc)}
            else:
                out["etcd"] = {"db_size": status.db_size, "db_size_in_use":
                               status.db_size_in_use, "has_leader": bool(status.leader),
                               "raft_term": status.raft_term, "members": len(members),
                               "learners": sum(1 for m in members if m.is_learner)}
        return out

    async def _instance_usage(self) -> dict[str, list[dict[str, Any]]]:
        """Each online node's guest counters (node name -> rows); a node that does not
        answer within a few seconds is left out of this scrape."""
        nodes = [n for n in self.config.data.nodes.values() if not n.offline]

        async def one(node: Any) -> tuple[str, list[dict[str, Any]]]:
            try:
                return node.name, await asyncio.wait_for(
                    self.ctx.rpc.node(node).instance_usage(), 5.0)
            except (errors.HerdError, TimeoutError, OSError):
                return node.name, []

        return dict(await asyncio.gather(*(one(n) for n in nodes)))

    async def h_query_volumes(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        return await query.query_volumes(self.ctx, names)

    async def h_query_os(self) -> dict[str, Any]:
        return await query.query_os(self.ctx)

    async def h_query_groups(self, names: list[str] | None = None,
                             fields: list[str] | None = None) -> list[dict[str, Any]]:
        from herd.logic import querydata

        return querydata.query_groups(self.ctx, names, _field_names(fields))

    async def h_query_networks(self, names: list[str] | None = None,
                               fields: list[str] | None = None) -> list[dict[str, Any]]:
        from herd.logic import network

        return network.query_networks(self.ctx.config.data, names, _field_names(fields))

    async def h_query_quotas(self, subjects: list[str] | None = None) -> list[dict[str, Any]]:
        """Each subject's limits and usage (configured sizes of what it owns): those with a
        quota, plus any asked for by name."""
        from herd.logic import quota

        return quota.report(self.config.data, subjects)

    async def h_query_usage(self, instance: str | None = None,
                            node: str | None = None) -> dict[str, Any]:
        """The last hour's graphs of an instance (asked of its primary node) or of a node
        (herd.node.usage_history); nothing is stored on the way."""
        cfg = self.config.data
        if instance is not None:
            inst = cfg.find_instance(instance)
            if inst is None:
                raise errors.NotFoundError(f"instance '{instance}' does not exist")
            target, name = cfg.nodes[inst.primary_node], inst.name
        else:
            found = cfg.find_node(str(node))
            if found is None:
                raise errors.NotFoundError(f"node '{node}' does not exist")
            target, name = found, None
        answer = await self.ctx.rpc.node(target).usage_history(name)
        return {**answer, "node": target.name}

    async def h_plan_rebalance(self, group: str | None = None,
                               **options: Any) -> list[dict[str, Any]]:
        """gnt-cluster rebalance's plan (a query: the moves are submitted as jobs after)."""
        from herd.logic import rebalance

        return await rebalance.plan(self.ctx, group, **options)

    async def h_query_tags(self, kind: str, name: str | None = None) -> list[str]:
        from herd.logic import querydata

        return querydata.query_tags(self.ctx, kind, name)

    async def h_query_locks(self) -> list[Any]:
        return self.ctx.locks.held()

    def _target_nodes(self, names: list[str] | None) -> list[Any]:
        cfg = self.config.data
        nodes = [cfg.get_node(n) for n in names] if names else \
            sorted(cfg.nodes.values(), key=lambda n: n.name)
        return [n for n in nodes if not n.offline]

    async def h_node_command(self, command: str, nodes: list[str] | None = None,
                             timeout: float = 300) -> list[dict[str, Any]]:
        async def one(node: Any) -> dict[str, Any]:
            try:
                result = await self.rpc.node(node).run_command(command, timeout)
            except errors.HerdError as exc:
                result = {"exit_code": None, "output": f"error: {exc.message}\n"}
            return {"node": node.name, **result}
        return list(await asyncio.gather(*(one(n) for n in self._target_nodes(nodes))))

    async def h_node_copyfile(self, path: str, content: str, mode: int,
                              nodes: list[str] | None = None) -> list[dict[str, Any]]:
        master = self.config.data.master.name
        targets = [n for n in self._target_nodes(nodes) if n.name != master]

        async def one(node: Any) -> dict[str, Any]:
            try:
                await self.rpc.node(node).file_upload(path, content, mode)
            except errors.HerdError as exc:
                return {"node": node.name, "error": exc.message}
            return {"node": node.name, "error": None}
        return list(await asyncio.gather(*(one(n) for n in targets)))

    # -- socket server ------------------------------------------------------------------------
    async def handle_client(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
            task.add_done_callback(self._clients.discard)
        _peer.set(peer_credentials(writer.get_extra_info("socket")))  # this task's context
        try:
            while line := await reader.readline():
                answer = await self.dispatch(line)
                writer.write(answer if isinstance(answer, bytes) else await encode_answer(answer))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def dispatch(self, line: bytes) -> dict[str, Any] | bytes:
        """The answer to one request line: a dict, or the encoded line of a list query."""
        self._inflight += 1
        try:
            return await self._dispatch(line)
        finally:
            self._inflight -= 1

    async def _dispatch(self, line: bytes) -> dict[str, Any] | bytes:
        try:
            request = proto.decode(line)
            if self._lost_reason is not None:
                raise NotMaster(f"this node lost the master role ({self._lost_reason}); "
                                "ask the new master")
            method = request.get("method")
            if method in LIST_METHODS:
                return await self.lists.answer(method, request.get("args") or {},
                                               request.get("etag"))
            handler = self.handlers.get(method)
            if handler is None:
                raise errors.ParameterError(f"unknown request {request.get('method')!r}")
            return {"ok": True, "result": await handler(**(request.get("args") or {}))}
        except errors.HerdError as exc:
            return {"ok": False, "error": exc.to_dict()}
        except (ValueError, TypeError, AttributeError) as exc:
            return {"ok": False, "error": errors.ParameterError(f"bad request: {exc}").to_dict()}
        except Exception as exc:
            log.exception("request failed")
            return {"ok": False, "error": errors.HerdError(f"{type(exc).__name__}: {exc}")
                    .to_dict()}

    # -- the master role ----------------------------------------------------------------------
    async def take_role(self, me: str) -> None:
        """Win the etcd election and load the config from etcd (importing config.data once,
        on a new or upgraded cluster); raise NotMaster if another node holds the role."""
        urls = client_urls_from_facts(self.facts, me)
        if not urls:
            raise errors.ConfigurationError("the cluster facts name no master candidate with an "
                                            "etcd member")
        self.etcd = EtcdClient.for_node(self.paths, urls)
        await etcd_wait_ready(self.etcd)
        own = read_spec(self.paths)
        self.lease = MasterLease(self.etcd, me, self.paths.run_dir / "master-term.json",
                                 own_client_url=own.client_url if own else None)
        holder = await self.lease.campaign()
        if holder is not None:
            facts = dict(self.facts, master_node=holder)
            if self.facts.get("master_node") != holder:
                write_facts_dict(self.paths, facts)
            raise NotMaster(f"{holder} holds the master role; not starting masterd on {me}")
        # renew from now on: loading a big config takes seconds, longer than the lease
        # (from a thread of its own: this loop may be busy with a long answer for seconds)
        self._keeper = KeeperThread(self.lease, lambda: EtcdClient.for_node(self.paths, urls),
                                    self.lose_role)
        self._keeper.start()
        try:
            store = await EtcdConfigStore.load(self.etcd, self.lease.guard)
        except NotImported:
            store = await self._import(me)
        if self._lost_reason is not None:
            raise NotMaster(f"lost the master role while loading the config: "
                            f"{self._lost_reason}")
        store.on_lost = self.lose_role
        self.job_ids = JobIds(self.etcd, self.lease.guard, self.queue.max_id)
        self.job_ids.on_lost = self.lose_role
        # the cluster's copy of the job queue: take it, then keep it current
        self.replica = JobReplica(self.etcd, self.lease.guard)
        self.replica.on_lost = self.lose_role
        self.replica.start()
        counts = await self.replica.restore(self.queue, me)
        log.info("job queue: %s", ", ".join(f"{v} {k}" for k, v in counts.items()))
        self.queue.listener = self.replica
        cfg = store.data
        node = cfg.find_node(me)
        if node is None:
            await self.lease.resign()
            raise NotMaster(f"this node ({me}) is not in the cluster configuration")
        if cfg.cluster.master_node != node.uuid:
            # this node won the election after the old master went away: record it
            log.info("taking over the master role from %s",
                     cfg.nodes[cfg.cluster.master_node].name
                     if cfg.cluster.master_node in cfg.nodes else "?")
            cfg.cluster.master_node = node.uuid
            node.master_candidate = True
            cfg.cluster.touch()
            await store.save()
        self.attach(store)
        # the config just loaded lives as long as masterd: keep the cyclic collector from
        # scanning its objects again and again (at 20,000 instances each full collection
        # stalled the event loop for a noticeable time); refcounting still frees them
        gc.freeze()
        release_free_memory()

    def attach(self, store: Any) -> None:
        """Serve ``store`` (an EtcdConfigStore; tests give a file-backed ConfigStore)."""
        self.config = store
        self.ctx = MasterContext(paths=self.paths, config=store, locks=LockManager(),
                                 rpc=self.rpc, replicator=self.replicator)
        self.executor = JobExecutor(self.queue, self.ctx)
        self.executor.on_done = self._job_done
        self.ctx.submit_job = self._submit_from_job
        store.add_listener(self._write_facts)
        store.add_listener(self.replicator.on_save)

    async def _import(self, me: str) -> EtcdConfigStore:
        """First start on etcd: move config.data in, keep the file as a backup."""
        assert self.etcd is not None and self.lease is not None
        path = self.paths.config_file
        if not path.exists():
            raise errors.ConfigurationError(
                "etcd holds no cluster configuration and there is no config.data to import "
                f"at {path}")
        data = (await asyncio.to_thread(ConfigStore.load, path)).data
        if data.master.name != me:
            raise NotMaster(f"config.data names {data.master.name} as master, not {me}; the "
                            "configuration is imported into etcd by the master")
        await import_config(self.etcd, data, self.lease.guard)
        backup = path.with_name(path.name + ".pre-etcd")
        path.replace(backup)
        log.info("configuration (serial %d) imported into etcd; the old file is kept as %s",
                 data.serial_no, backup)
        return await EtcdConfigStore.load(self.etcd, self.lease.guard)

    def _upgrade_rapi_certificate(self, cluster: Cluster) -> None:
        """Clusters made before certificate roles: their RAPI certificate opened node RPC; it
        is replaced once (and logged), and the config push after this takes it to the
        candidates. Skipped for a certificate already found fine (see
        :func:`herd.rpc.tls.rapi_certificate_checked`: the check loads ``cryptography``)."""
        if tls.rapi_certificate_checked(self.paths):
            return
        from herd.logic import crypto

        crypto.upgrade_rapi_certificate(self.paths, cluster)
        try:
            tls.remember_rapi_certificate_checked(self.paths)
        except (OSError, ValueError) as exc:
            log.warning("cannot remember the checked RAPI certificate: %s", exc)

    async def lose_role(self, reason: str) -> None:
        """The lease is gone or a guarded write was refused: stop serving at once, drop the
        master IP and RAPI, before another node can be elected."""
        if self._lost_reason is not None:
            return
        self._lost_reason = reason
        log.error("lost the master role: %s; stopping", reason)
        cluster = self.config.data.cluster if hasattr(self, "config") else None
        self.paths.master_socket.unlink(missing_ok=True)  # no new clients
        if cluster is not None:
            await asyncio.to_thread(masterip.deactivate, cluster.master_netdev,
                                    cluster.master_ip, cluster.master_netmask)
        await asyncio.to_thread(daemon_util.stop, self.paths, "rapi", 2.0)
        self._stop.set()

    async def run(self, me: str) -> None:
        install_stop_handlers(self._stop)
        try:
            await self.take_role(me)
        except BaseException:
            if self._keeper is not None:
                self._keeper.cancel()
            await self._close_clients()
            raise
        assert self.lease is not None and self._keeper is not None
        cluster = self.config.data.cluster
        keeper = self._keeper
        await asyncio.to_thread(masterip.activate, cluster.master_netdev, cluster.master_ip,
                                cluster.master_netmask)
        write_facts(self.paths, self.config.data)
        self.executor.recover(await self.executor.recover_created())
        self._upgrade_rapi_certificate(cluster)
        # bring every node up to date with who the master is
        asyncio.get_running_loop().create_task(self.replicator.push(self.config.data))
        sock = self.paths.master_socket
        sock.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(self.handle_client, path=str(sock),
                                                 limit=proto.MAX_LINE)
        os.chmod(sock, 0o660)
        log.info("masterd serving on %s", sock)
        maintenance = asyncio.get_running_loop().create_task(self._etcd_maintenance())
        tidy = asyncio.get_running_loop().create_task(self.lists.tidy())
        async with server:
            await self._stop.wait()
        log.info("masterd stopping")
        maintenance.cancel()
        tidy.cancel()
        keeper.cancel()
        await asyncio.to_thread(keeper.join, 2.0)
        # requests being answered (a submit told that the role was lost) get their answer
        deadline = time.monotonic() + 2.0
        while self._inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self.executor.shutdown()
        if self.replica is not None and self._lost_reason is None:
            await self.replica.stop()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        await self.lists.close()
        await self.replicator.close()
        if self._lost_reason is None:
            # a stop, not a loss: keep the term (a restart adopts it, see election) but let
            # the address go with the daemon
            await asyncio.to_thread(masterip.deactivate, cluster.master_netdev,
                                    cluster.master_ip, cluster.master_netmask)
        await self._close_clients()
        self.queue.close()
        sock.unlink(missing_ok=True)
        if self._lost_reason is not None:
            raise NotMaster(f"lost the master role: {self._lost_reason}")

    async def _etcd_maintenance(self) -> None:
        """Now and then, give back the disk space etcd keeps after a peak (see
        herd.etcd.maintenance: one member at a time, never stalling the master)."""
        assert self.etcd is not None and self.lease is not None
        while True:
            await asyncio.sleep(etcd_maintenance.EVERY)
            try:
                await etcd_maintenance.defragment_where_wasted(self.etcd,
                                                               self.lease.own_client_url)
            except EtcdError as exc:
                log.warning("etcd maintenance: %s", exc.message)

    async def _close_clients(self) -> None:
        await self.rpc.close()
        if self.etcd is not None:
            await self.etcd.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="herd-masterd", description=__doc__)
    parser.add_argument("-d", "--debug", action="store_true")
    parser.add_argument("--no-voting", action="store_true",
                        help="accepted for compatibility: the etcd election decides who is "
                             "master (see gnt-cluster master-failover --no-voting)")
    args = parser.parse_args()
    p = paths.current()
    setup_logging(p.daemon_log("masterd"), args.debug)
    add_log_file("herd.audit", p.daemon_log("audit"))
    try:
        with pid_file(p.pid_file("masterd"), "herd-masterd"):
            daemon = MasterDaemon(p)
            me = (p.data_dir / "node-name").read_text().strip()
            asyncio.run(daemon.run(me))
    except NotMaster as exc:
        log.warning("%s", exc.message)
        print(f"herd-masterd: {exc.message}", file=sys.stderr)
        raise SystemExit(EXIT_NOT_MASTER) from None
    except errors.HerdError as exc:
        log.error("%s", exc.message)
        raise SystemExit(f"herd-masterd: {exc.message}") from None


if __name__ == "__main__":
    main()
