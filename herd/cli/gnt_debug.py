"""gnt-debug: debugging aids (Ganeti's ``delay`` submits a job that only sleeps)."""

from __future__ import annotations

import sys
from typing import Any

from herd.cli.common import command_main, submit_or_run
from herd.cli.options import JOB_OPTIONS, HerdArgumentParser, add_common_options

PROG = "gnt-debug"


def cmd_delay(opts: Any) -> int:
    submit_or_run(opts, [{"OP_ID": "OP_TEST_DELAY", "duration": opts.duration,
                          "on_master": True, "repeat": opts.repeat}])
    return 0


def build_parser() -> HerdArgumentParser:
    parser = HerdArgumentParser(prog=PROG, description="Debugging aids")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    delay = sub.add_parser("delay", help="submit a job that sleeps DURATION seconds")
    delay.add_argument("duration", type=float)
    delay.add_argument("-r", "--repeat", type=int, default=0)
    delay.add_argument("--no-master", dest="on_master", action="store_false")
    add_common_options(delay, *JOB_OPTIONS)
    delay.set_defaults(func=cmd_delay)
    return parser


def main(argv: list[str] | None = None) -> int:
    return command_main(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
