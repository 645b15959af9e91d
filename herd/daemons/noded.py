"""herd-noded: the node daemon, HTTPS with mutual TLS on the noded port (1811 by default)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging

from herd import paths
from herd.daemons import lazy_websocket_protocol, uvicorn_package
from herd.daemons.common import GRACEFUL_STOP, install_stop_handlers, pid_file, setup_logging
from herd.node.etcd_member import EtcdSupervisor, stop_stale_member
from herd.node.master_watch import MasterWatch
from herd.node.service import NodeService
from herd.rpc.server import build_app, uvicorn_tls_options
from herd.storage.mirror.watchdog import LinkWatchdog

log = logging.getLogger("herd.noded")
#: Seconds an idle connection from the master stays open: longer than the master's own
#: expiry (herd.rpc.client), so that it is the master that drops one, never a connection the
#: master is about to reuse.
KEEP_ALIVE = 75


def default_port(p: paths.HerdPaths) -> int:
    try:
        port = json.loads(p.cluster_facts_file.read_text()).get("noded_port")
        if port is not None:
            return int(port)
    except (OSError, ValueError):
        pass
    # here: herd.objects (~0.75 MiB) for this one constant is not worth keeping resident
    from herd.objects.cluster import NODED_PORT

    return NODED_PORT


async def _observe(service: NodeService, disk: dict[str, object]) -> None:
    """One observation by the node's own mirror manager (its locks are the RPCs' locks)."""
    from herd.storage.mirror.model import MirrorDisk

    await service.mirror.observe(MirrorDisk.from_dict(disk))


def in_cluster(p: paths.HerdPaths) -> bool:
    return p.node_cert.exists() and p.ca_cert.exists()


async def serve(p: paths.HerdPaths, bind: str, port: int) -> None:
    uvicorn = uvicorn_package()  # without its command-line tool (see herd.daemons)
    watchdog = None
    usage = None
    etcd: EtcdSupervisor | None = None
    etcd_task = None
    master_watch = None
    if in_cluster(p):
        service = NodeService(p)
        # the node's etcd member, if it is one (master candidates; see the module)
        etcd = service.etcd = EtcdSupervisor(p)
        etcd_task = asyncio.create_task(etcd.run())
        # a candidate starts masterd when nobody holds the master role (see the module)
        master_watch = asyncio.create_task(MasterWatch(p).run())
        # cuts replication links to a silent peer within seconds, and observes each primary
        # about once a second (status queries only read; see the module)
        watchdog = asyncio.create_task(LinkWatchdog(
            p.run_dir / "mirror", observer=lambda disk: _observe(service, disk)).run())
        # the last hour of the guests' and the node's use, for the web manager's graphs
        usage = asyncio.create_task(service.usage.run())
        app = build_app(service)
        tls_args: dict[str, object] = uvicorn_tls_options(p)  # nodes only, see the module
    else:
        # not in a cluster yet: wait to be joined (see herd.rpc.join; imported only here: it
        # needs cryptography, about 9 MiB that a node of a cluster does not keep resident)
        from herd.rpc.join import build_join_app, ensure_join_material

        ensure_join_material(p)
        stop_stale_member(p)
        app = build_join_app(p)
        tls_args = dict(ssl_certfile=str(p.ssl_dir / "join.pem"),
                        ssl_keyfile=str(p.ssl_dir / "join.key"))
        log.info("no cluster certificate: waiting to join (token: herd-join-token)")
    # keep-alive beyond the master's (60 s, herd.rpc.client): with uvicorn's 5 s the master's
    # connection to a migration's target was gone after a memory copy of more than 5 s, and
    # the call that resumes the guest opened a new mutual-TLS connection inside its pause
    config = uvicorn.Config(
        app, host=bind, port=port, log_level="warning", access_log=False,
        lifespan="off", ws=lazy_websocket_protocol("websockets"), ws_ping_interval=None,
        timeout_keep_alive=KEEP_ALIVE,
        timeout_graceful_shutdown=GRACEFUL_STOP, **tls_args)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    stop = asyncio.Event()
    install_stop_handlers(stop)
    task = asyncio.create_task(server.serve())
    log.info("noded listening on %s:%s", bind, port)
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    if watchdog is not None:
        watchdog.cancel()
    if usage is not None:
        usage.cancel()
    if master_watch is not None:
        master_watch.cancel()
    if etcd is not None and etcd_task is not None:
        await etcd.stop()
        etcd_task.cancel()
    await task


def main() -> None:
    parser = argparse.ArgumentParser(prog="herd-noded", description=__doc__)
    parser.add_argument("-b", "--bind", default="0.0.0.0",
                        help="address to listen on (default: all, as Ganeti's noded)")
    parser.add_argument("-p", "--port", type=int, default=None)
    parser.add_argument("-d", "--debug", action="store_true")
    args = parser.parse_args()
    p = paths.current()
    setup_logging(p.daemon_log("noded"), args.debug)
    with pid_file(p.pid_file("noded"), "herd-noded"):
        asyncio.run(serve(p, args.bind, args.port or default_port(p)))


if __name__ == "__main__":
    main()
