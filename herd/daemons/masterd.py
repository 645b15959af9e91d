"""herd-masterd: the job queue, the config authority and the local client socket.

At start it loads the config (refusing to run on a node that is not the master), opens the queue,
fails the jobs that were running at the last stop, and serves clients on a unix socket.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from herd import errors, paths
from herd.config.facts import write_facts
from herd.config.store import ConfigStore
from herd.daemons.common import install_stop_handlers, pid_file, setup_logging
from herd.jobs.executor import JobExecutor
from herd.jobs.locking import LockManager
from herd.jobs.queue import JobQueue
from herd.logic import query
from herd.logic.base import MasterContext
from herd.objects import ConfigData
from herd.rpc import master_protocol as proto
from herd.rpc.client import RpcRunner

log = logging.getLogger("herd.masterd")

Handler = Callable[..., Awaitable[Any]]


class MasterDaemon:
    def __init__(self, p: paths.HerdPaths) -> None:
        self.paths = p
        self.config = ConfigStore.load(p.config_file)
        self.queue = JobQueue(p.queue_db)
        self.rpc = RpcRunner(p, self.config.data.cluster.noded_port)
        self.ctx = MasterContext(paths=p, config=self.config, locks=LockManager(), rpc=self.rpc)
        self.executor = JobExecutor(self.queue, self.ctx)
        self.config.add_listener(self._write_facts)
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
            "query_locks": self.h_query_locks,
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

    async def h_query_os(self) -> dict[str, Any]:
        return await query.query_os(self.ctx)

    async def h_query_locks(self) -> list[Any]:
        return self.ctx.locks.held()

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

    async def run(self) -> None:
        stop = asyncio.Event()
        install_stop_handlers(stop)
        self.executor.recover()
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
        await self.rpc.close()
        self.queue.close()
        sock.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="herd-masterd", description=__doc__)
    parser.add_argument("-d", "--debug", action="store_true")
    args = parser.parse_args()
    p = paths.current()
    setup_logging(p.daemon_log("masterd"), args.debug)
    try:
        with pid_file(p.pid_file("masterd"), "herd-masterd"):
            daemon = MasterDaemon(p)
            me = (p.data_dir / "node-name").read_text().strip()
            if daemon.config.data.master.name != me:
                raise SystemExit(f"this node ({me}) is not the master "
                                 f"({daemon.config.data.master.name}); not starting masterd")
            asyncio.run(daemon.run())
    except errors.HerdError as exc:
        raise SystemExit(f"herd-masterd: {exc.message}") from None


if __name__ == "__main__":
    main()
