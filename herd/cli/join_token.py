"""herd-join-token: print this node's one-time join token (run on the node to be added).

Starts noded in join mode if it is not running, so that ``gnt-node add --join-token TOKEN NODE``
on the master can reach it. Ganeti uses root SSH for this step; Herd needs neither SSH nor
a shared password, only this token copied by the admin.
"""

from __future__ import annotations

import sys

from herd import paths
from herd.daemons import util as daemon_util
from herd.rpc.join import ensure_join_material


def main() -> int:
    p = paths.current()
    if p.node_cert.exists():
        print("herd-join-token: this node already belongs to a cluster "
              f"(certificate {p.node_cert})", file=sys.stderr)
        return 1
    token = ensure_join_material(p)
    try:
        port = daemon_util.noded_port(p)
        daemon_util.start(p, "noded", port)
        daemon_util.wait_ready(p, "noded", port)
    except RuntimeError as exc:
        print(f"herd-join-token: {exc}", file=sys.stderr)
        return 1
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
