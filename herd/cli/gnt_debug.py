"""gnt-debug: debugging aids (Ganeti's ``delay`` submits a job that only sleeps; ``dump-config``
prints the configuration as etcd holds it, read through this node's certificate, also while
no masterd runs)."""

from __future__ import annotations

import json
import sys
import time

from herd.cli.common import command_main, submit_or_run
from herd.cli.options import JOB_OPTIONS, HerdArgumentParser, add_common_options

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing costs each gnt-* command ~2 ms at start
    from typing import Any

PROG = "gnt-debug"


def cmd_delay(opts: Any) -> int:
    submit_or_run(opts, [{"OP_ID": "OP_TEST_DELAY", "duration": opts.duration,
                          "on_master": True, "on_nodes": opts.nodes or [],
                          "repeat": opts.repeat}])
    return 0


def cmd_dump_config(opts: Any) -> int:
    import asyncio  # here: gnt-debug delay, the trivial job, does not need it

    from herd import errors, paths
    from herd.config.etcdstore import read_document
    from herd.config.facts import node_name, read_facts
    from herd.etcd.client import EtcdClient, EtcdError
    from herd.etcd.election import MASTER_KEY
    from herd.etcd.members import client_urls_from_facts

    p = paths.current()
    urls = client_urls_from_facts(read_facts(p) or {}, node_name(p))
    if not urls:
        raise errors.OpPrereqError("this node knows no etcd member (no cluster facts)")

    async def read() -> Any:
        deadline = time.monotonic() + opts.timeout
        async with EtcdClient.for_node(p, urls, timeout=opts.timeout) as client:
            while True:
                try:
                    if opts.master:
                        kv = await client.get(MASTER_KEY)
                        return kv.value.decode() if kv is not None else None
                    return await read_document(client)
                except EtcdError:
                    # a member starting (noded just started), a leader changing: a read
                    # is safe to repeat
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.3)

    result = asyncio.run(read())
    print(result if opts.master else json.dumps(result, indent=1, sort_keys=True))
    return 0


def build_parser() -> HerdArgumentParser:
    parser = HerdArgumentParser(prog=PROG, description="Debugging aids")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    delay = sub.add_parser("delay", help="submit a job that sleeps DURATION seconds")
    delay.add_argument("duration", type=float)
    delay.add_argument("-r", "--repeat", type=int, default=0)
    delay.add_argument("--no-master", dest="on_master", action="store_false")
    delay.add_argument("-n", "--node", dest="nodes", action="append", metavar="NODE",
                       help="hold this node's lock while sleeping (repeatable)")
    add_common_options(delay, *JOB_OPTIONS)
    delay.set_defaults(func=cmd_delay)
    dump = sub.add_parser("dump-config", help="print the configuration stored in etcd")
    dump.add_argument("--master", action="store_true",
                      help="print only the node holding the master election")
    dump.add_argument("--timeout", type=float, default=30.0,
                      help="how long to wait for etcd to answer (seconds)")
    dump.set_defaults(func=cmd_dump_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    return command_main(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
