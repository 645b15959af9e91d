"""herd-join-token: print this node's one-time join token (run on the node to be added).

Starts noded in join mode if it is not running, so that ``gnt-node add --join-token TOKEN NODE``
on the master can reach it. Ganeti uses root SSH for this step; Herd needs neither SSH nor
a shared password, only this token copied by the admin.

The token alone goes to standard output (so ``T=$(herd-join-token)`` works); when it expires
goes to standard error. It works for one add attempt and for one hour unless ``--ttl`` gives
another lifetime (which makes a new token: the previous one stops working).
"""

from __future__ import annotations

import argparse
import sys
import time

from herd import errors, paths
from herd.daemons import util as daemon_util
from herd.rpc.join import MAX_WRONG_PROOFS, format_utc, issue_join_token

PROG = "herd-join-token"


def parse_ttl(text: str) -> int:
    """Ganeti's time spec (seconds, or with a suffix s, m, h, d, w), as ``--ttl`` takes it."""
    from herd.cli.gnt_cluster import parse_timespec

    return parse_timespec(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--ttl", default=None, metavar="DURATION",
                        help="make a new token that works this long (e.g. 30m, 2h; default 1h "
                             "for a new token, at most 7d)")
    return parser


def main(argv: list[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    p = paths.current()
    if p.node_cert.exists():
        print(f"{PROG}: this node already belongs to a cluster "
              f"(certificate {p.node_cert})", file=sys.stderr)
        return 1
    try:
        ttl = parse_ttl(opts.ttl) if opts.ttl is not None else None
        token = issue_join_token(p, ttl)
    except errors.HerdError as exc:
        print(f"{PROG}: error: {exc.message}", file=sys.stderr)
        return 1
    try:
        port = daemon_util.noded_port(p)
        daemon_util.start(p, "noded", port)
        daemon_util.wait_ready(p, "noded", port)
    except RuntimeError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    left = max(0, int(token.expires - time.time()))
    print(token.text)
    print(f"{PROG}: valid until {format_utc(token.expires)} (for {left // 60} min {left % 60} s)"
          f"; one 'gnt-node add' spends it, as do {MAX_WRONG_PROOFS} wrong tries",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
