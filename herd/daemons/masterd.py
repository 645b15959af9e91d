"""herd-masterd: the job queue, the config authority and the local client socket.

At start it loads the config (refusing to run on a node that is not the master), opens the queue,
fails the jobs that were running at the last stop, and serves clients on a unix socket. A damaged
config or queue stops it with one line that names the file and the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from herd import errors, paths
from herd.config import vote
from herd.config.facts import facts_from_config, write_facts
from herd.config.replication import Replicator
from herd.config.store import ConfigStore
from herd.daemons.common import install_stop_handlers, pid_file, setup_logging
from herd.jobs.executor import JobExecutor
from herd.jobs.locking import LockManager
from herd.jobs.queue import JobQueue
from herd.logic import crypto, query
from herd.logic.base import MasterContext
from herd.network import masterip
from herd.node.cluster_files import ClusterFiles
from herd.objects import ConfigData
from herd.opcodes.base import all_secret_fields, redact_input
from herd.rpc import master_protocol as proto
from herd.rpc.client import RpcRunner

log = logging.getLogger("herd.masterd")

Handler = Callable[..., Awaitable[Any]]
#: Exit code of masterd when this node is not (or no longer) the master: not a failure.
EXIT_NOT_MASTER = 11


class NotMaster(errors.OpPrereqError):
    code = "NotMaster"


class MasterDaemon:
    def __init__(self, p: paths.HerdPaths) -> None:
        self.paths = p
        # both refuse damaged files with one line naming the file and the way out
        self.config = ConfigStore.load(p.config_file)
        self.queue = JobQueue(p.queue_db, had_history=self.config.data.serial_no > 1)
        redacted = self.queue.redact(all_secret_fields(), redact_input)
        if redacted:
            log.info("removed secrets kept in the input of %d old job(s)", redacted)
        self.rpc = RpcRunner(p, self.config.data.cluster.noded_port)
        self.replicator = Replicator(p, self.rpc)
        self.ctx = MasterContext(paths=p, config=self.config, locks=LockManager(), rpc=self.rpc,
                                 replicator=self.replicator)
        self.executor = JobExecutor(self.queue, self.ctx)
        self.config.add_listener(self._write_facts)
        self.config.add_listener(self.replicator.on_save)
        self.handlers: dict[str, Handler] = {
            "ping": self.h_ping,
            "submit_job": self.h_submit_job,
            "submit_many": self.h_submit_many,
            "query_jobs": self.h_query_jobs,
            "wait_for_job_change": self.h_wait_for_job_change,
            "cancel_job": self.h_cancel_job,
            "archive_job": self.h_archive_job,
            "autoarchive": self.h_autoarchive,
            "query_instances": self.h_query_instances,
            "query_nodes": self.h_query_nodes,
            "query_cluster": self.h_query_cluster,
            "query_os": self.h_query_os,
            "query_volumes": self.h_query_volumes,
            "query_locks": self.h_query_locks,
            "node_command": self.h_node_command,
            "node_copyfile": self.h_node_copyfile,
            "query_groups": self.h_query_groups,
            "query_tags": self.h_query_tags,
        }

    async def _write_facts(self, cfg: ConfigData) -> None:
        write_facts(self.paths, cfg)

    # -- handlers -----------------------------------------------------------------------------
    async def h_ping(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "master": self.config.data.master.name}

    async def h_submit_job(self, ops: list[dict[str, Any]]) -> int:
        return self.executor.submit(ops)

    async def h_submit_many(self, jobs: list[list[dict[str, Any]]]) -> list[list[Any]]:
        out: list[list[Any]] = []
        for ops in jobs:
            try:
                out.append([True, self.executor.submit(ops)])
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
                                    prev_serial: int, timeout: float = 30.0) -> Any:
        self.queue.get(job_id, with_log=False)  # raises NotFoundError
        return await self.executor.wait_for_change(job_id, prev_status, prev_serial,
                                                   min(timeout, 60.0))

    async def h_cancel_job(self, job_id: int) -> list[Any]:
        return list(self.executor.cancel(job_id))

    async def h_archive_job(self, job_id: int) -> bool:
        return self.queue.archive(job_id)

    async def h_autoarchive(self, age: float) -> int:
        return self.queue.archive_older_than(age)

    async def h_query_instances(self, names: list[str] | None = None,
                                live: bool = True) -> list[dict[str, Any]]:
        return await query.query_instances(self.ctx, names, live)

    async def h_query_nodes(self, names: list[str] | None = None,
                            live: bool = True) -> list[dict[str, Any]]:
        return await query.query_nodes(self.ctx, names, live)

    async def h_query_cluster(self) -> dict[str, Any]:
        return query.cluster_info(self.ctx)

    async def h_query_volumes(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        return await query.query_volumes(self.ctx, names)

    async def h_query_os(self) -> dict[str, Any]:
        return await query.query_os(self.ctx)

    async def h_query_groups(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        from herd.logic import querydata

        return querydata.query_groups(self.ctx, names)

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
        try:
            while line := await reader.readline():
                answer = await self.dispatch(line)
                writer.write(proto.encode(answer))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            request = proto.decode(line)
            handler = self.handlers.get(request.get("method"))
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

    async def confirm_master(self, me: str, no_voting: bool) -> None:
        """Refuse to run if another node took over while this one was away (see vote)."""
        cfg = self.config.data
        if cfg.master.name != me:
            raise NotMaster(f"this node ({me}) is not the master ({cfg.master.name}); "
                            "not starting masterd")
        if no_voting or len(cfg.nodes) == 1:
            return
        votes = await vote.collect(self.rpc, cfg, me)
        problem = vote.check_still_master(cfg, me, votes)
        if problem is None:
            return
        best = vote.newest(votes)
        if best is not None and best.answer and best.answer["config_serial"] > cfg.serial_no:
            # step down for good: take the newer config, so this node knows the new master
            newer = await self.rpc.node(cfg.get_node(best.node)).config_download()
            if newer:
                data = ConfigData.from_dict(newer)
                ClusterFiles(self.paths).config_upload(newer, facts_from_config(data),
                                                       force=True)
        await asyncio.to_thread(masterip.deactivate, cfg.cluster.master_netdev,
                                cfg.cluster.master_ip, cfg.cluster.master_netmask)
        raise NotMaster(f"not starting masterd on {me}: {problem}")

    async def run(self, me: str, no_voting: bool = False) -> None:
        stop = asyncio.Event()
        install_stop_handlers(stop)
        try:
            await self.confirm_master(me, no_voting)
        except BaseException:
            await self.rpc.close()
            raise
        cluster = self.config.data.cluster
        await asyncio.to_thread(masterip.activate, cluster.master_netdev, cluster.master_ip,
                                cluster.master_netmask)
        self.executor.recover(await self.executor.recover_created())
        # clusters made before certificate roles: their RAPI certificate opened node RPC;
        # replaced once (and logged), then the push below takes it to the candidates
        crypto.upgrade_rapi_certificate(self.paths, cluster)
        # bring every node up to date with the config this master starts from
        asyncio.get_running_loop().create_task(self.replicator.push(self.config.data))
        sock = self.paths.master_socket
        sock.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(self.handle_client, path=str(sock),
                                                 limit=proto.MAX_LINE)
        os.chmod(sock, 0o660)
        log.info("masterd serving on %s", sock)
        async with server:
            await stop.wait()
        log.info("masterd stopping")
        await self.executor.shutdown()
        await self.replicator.close()
        await asyncio.to_thread(masterip.deactivate, cluster.master_netdev, cluster.master_ip,
                                cluster.master_netmask)
        await self.rpc.close()
        self.queue.close()
        sock.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="herd-masterd", description=__doc__)
    parser.add_argument("-d", "--debug", action="store_true")
    parser.add_argument("--no-voting", action="store_true",
                        help="start without asking the other nodes (most of them are gone)")
    args = parser.parse_args()
    p = paths.current()
    setup_logging(p.daemon_log("masterd"), args.debug)
    try:
        with pid_file(p.pid_file("masterd"), "herd-masterd"):
            daemon = MasterDaemon(p)
            me = (p.data_dir / "node-name").read_text().strip()
            asyncio.run(daemon.run(me, args.no_voting))
    except NotMaster as exc:
        log.warning("%s", exc.message)
        print(f"herd-masterd: {exc.message}", file=sys.stderr)
        raise SystemExit(EXIT_NOT_MASTER) from None
    except errors.HerdError as exc:
        log.error("%s", exc.message)
        raise SystemExit(f"herd-masterd: {exc.message}") from None


if __name__ == "__main__":
    main()
