"""herd-rapi: Ganeti's remote API (RAPI v2) over HTTPS on port 5080, on the master only.

It serves with the cluster's RAPI certificate, authenticates against the users file
(var/lib/herd/rapi/users, Ganeti's format) and submits jobs to masterd. It runs with the
master role: it refuses to start on a node that is not the master, and it exits by itself when
this node stops being the master or when masterd has been gone for a while (so that a cluster
torn down without herd-daemon-util leaves no RAPI behind).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

from herd import paths
from herd.config.facts import is_master
from herd.daemons import lazy_websocket_protocol, uvicorn_package
from herd.daemons.common import (
    GRACEFUL_STOP,
    install_stop_handlers,
    pid_file,
    release_free_memory,
    setup_logging,
)
from herd.fileutil import pid_alive, read_pid
from herd.rapi.app import build_app
from herd.rpc import tls
from herd.rpc.answer_cache import tidy

log = logging.getLogger("herd.rapi")

RAPI_PORT = 5080
#: herd-rapi's exit code when this node is not the master (as herd-masterd's).
EXIT_NOT_MASTER = 11
#: How long masterd may be gone before herd-rapi gives up and exits.
MASTERD_GRACE = 30.0


async def _watch_master(p: paths.HerdPaths, stop: asyncio.Event) -> None:
    gone_since: float | None = None
    while not stop.is_set():
        await asyncio.sleep(2)
        if not is_master(p):
            log.warning("this node is no longer the master: stopping")
            stop.set()
            return
        if pid_alive(read_pid(p.pid_file("masterd"))):
            gone_since = None
            continue
        gone_since = gone_since or time.monotonic()
        if time.monotonic() - gone_since > MASTERD_GRACE:
            log.warning("herd-masterd has not been running for %.0f s: stopping",
                        MASTERD_GRACE)
            stop.set()
            return


async def serve(p: paths.HerdPaths, bind: str, port: int, require_auth: bool) -> None:
    uvicorn = uvicorn_package()  # without its command-line tool (see herd.daemons)
    app = build_app(p, require_auth=require_auth)
    config = uvicorn.Config(
        app, host=bind, port=port, log_level="warning", access_log=False, lifespan="off",
        server_header=False, timeout_keep_alive=15, timeout_graceful_shutdown=GRACEFUL_STOP,
        ws=lazy_websocket_protocol("auto"),  # the web manager's consoles only
        # the certificate on disk at each handshake: renew-crypto needs no restart
        ssl_context_factory=lambda _config, _default: tls.rapi_server_context(p))
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    stop = asyncio.Event()
    install_stop_handlers(stop)
    task = asyncio.create_task(server.serve())
    watcher = asyncio.create_task(_watch_master(p, stop))
    # the kept list bodies: dropped when unused, their heap given back (answer_cache.tidy)
    upkeep = asyncio.create_task(tidy(app.kept, release_free_memory))
    log.info("herd-rapi listening on %s:%s", bind, port)
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    watcher.cancel()
    upkeep.cancel()
    await task
    app.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="herd-rapi", description=__doc__)
    parser.add_argument("-b", "--bind", default="0.0.0.0",
                        help="address to listen on (default: all, as Ganeti's rapi)")
    parser.add_argument("-p", "--port", type=int, default=RAPI_PORT)
    parser.add_argument("-d", "--debug", action="store_true")
    parser.add_argument("--allow-anonymous-read", action="store_true",
                        help="let requests without credentials read (writes always need a "
                             "user with write access)")
    args = parser.parse_args()
    p = paths.current()
    setup_logging(p.daemon_log("rapi"), args.debug)
    if not is_master(p):
        log.warning("this node is not the master: not starting herd-rapi")
        print("herd-rapi: this node is not the master", file=sys.stderr)
        raise SystemExit(EXIT_NOT_MASTER)
    for path in (p.rapi_cert, p.rapi_key):
        if not path.exists():
            raise SystemExit(f"herd-rapi: missing RAPI certificate file {path}")
    with pid_file(p.pid_file("rapi"), "herd-rapi"):
        asyncio.run(serve(p, args.bind, args.port, not args.allow_anonymous_read))


if __name__ == "__main__":
    main()
