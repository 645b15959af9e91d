"""herd-lab: build, break and remove a multi-node Herd cluster on one machine.

A thin command over :class:`herd.lab.cluster.Lab`; every invocation reloads the lab's state
file, so commands given from different shells act on the same lab.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from herd.lab.cluster import Lab, LabError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="herd-lab", description=__doc__)
    parser.add_argument("--name", default="lab", help="lab name (default: lab)")
    sub = parser.add_subparsers(dest="action", required=True)
    up = sub.add_parser("up", help="build the lab's nodes and start their noded")
    up.add_argument("--nodes", type=int, required=True)
    up.add_argument("--no-daemons", action="store_true", help="do not start noded")
    up.add_argument("--vg", default=None, metavar="VG",
                    help="give every node its own PV (a loop file) with volume group VG")
    up.add_argument("--vg-size", dest="vg_size", type=int, default=1024, metavar="MIB",
                    help="size of each node's PV in MiB (sparse; default 1024)")
    sub.add_parser("down", help="remove everything the lab made (idempotent)")
    sub.add_parser("status", help="the lab as JSON")
    ex = sub.add_parser("exec", help="run a command as NODE: herd-lab exec NODE -- CMD...")
    ex.add_argument("node")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    crash = sub.add_parser("crash", help="power cut: kill -9 all of NODE, unplug its links")
    crash.add_argument("node")
    start = sub.add_parser("start", help="power on: plug NODE's links, start its daemons")
    start.add_argument("node")
    start.add_argument("--no-daemons", action="store_true")
    part = sub.add_parser("partition", help="cut traffic between nodes A and B")
    part.add_argument("a")
    part.add_argument("b")
    sub.add_parser("heal", help="remove every partition")
    return parser


def _exec(lab: Lab, node: str, command: list[str]) -> int:
    """Become the command (exec), so that exit codes, signals and terminals pass straight on."""
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise LabError("exec needs a command: herd-lab exec NODE -- CMD...")
    info = lab.node(node)
    os.execvpe("ip", lab.argv(info, *command), lab.env(info))
    return 127  # not reached


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.action == "up":
            lab = Lab(args.name)
            began = time.monotonic()
            lab.up(args.nodes, start_daemons=not args.no_daemons, vg=args.vg,
                   vg_size_mib=args.vg_size)
            print(f"lab {args.name}: {args.nodes} nodes up in {time.monotonic() - began:.1f} s")
        elif args.action == "down":
            Lab(args.name).down()
        else:
            lab = Lab.load(args.name)
            if args.action == "status":
                print(json.dumps(lab.status(), indent=1))
            elif args.action == "exec":
                return _exec(lab, args.node, args.command)
            elif args.action == "crash":
                lab.crash(args.node)
            elif args.action == "start":
                lab.start(args.node, start_daemons=not args.no_daemons)
            elif args.action == "partition":
                lab.partition(args.a, args.b)
            elif args.action == "heal":
                lab.heal()
    except LabError as exc:
        print(f"herd-lab: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `herd-lab status | head`: the reader has what it wanted
        # stdout is flushed again at exit and would fail again: point it at /dev/null
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
