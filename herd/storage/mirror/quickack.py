"""Quick ACKs on the replication path: a /32 route with ``quickack 1`` to each mirror peer
(and an unpaced congestion control where the node's default paces).

Why: QEMU 7.2's NBD peers leave Nagle's algorithm on for part of their traffic, so with several
requests in flight a small segment waits for the peer's delayed ACK (up to 40 ms). Measured
here (qemu-img bench, 4 KiB random writes, queue depth 16, NBD over TCP): 7 MiB/s without
quick ACKs, 94 MiB/s with them; replicated through the mirror 11.5 vs 34 MiB/s. The kernel
applies ``quickack`` per route, to the sockets that use it, so both nodes of a mirror add one
for the other's secondary address before they connect or serve (the route is looked up when
the connection is made).

The same route picks the congestion control of the replication connections (``congctl``,
applied to connections made and accepted over it) when the node's default is one that paces
its sends, BBR: without the ``fq`` qdisc TCP paces BBR itself with a per-socket timer, re-armed
on nearly every send, and on a virtual machine each re-arm reprograms the local APIC timer, an
exit to the hypervisor. On the replicated write path that was the largest single cost of the
primary (perf: ~40 % of its CPU under sendmsg, most of it in the timer re-arm). 4 KiB random
writes at queue depth 16 on the 2-node lab, BBR the default, one CPU per node: the primary's
node spent 64 [62-68] us of CPU per replicated write with BBR and 40 [39-41] us with CUBIC
(200,000 writes per run, 3 runs each, alternated); the secondary's, 58 [57-60] vs 57 [56-57]
us, is then the limit (its O_DIRECT+RWF_DSYNC write and disk-cache flush per write).
bench/mirror.py (3 runs of 3 rounds each per variant, alternated in one period, medians of
the runs' medians [min-max]): replicated 58 [55-62] vs 90 [88-93] MiB/s, replicated/local
0.31 [0.30-0.34] vs 0.47 [0.46-0.53] (with 100,000 writes a round instead of 20,000: 0.32
vs 0.48); sequential 1 MiB qd16 0.43 [0.39-0.45] vs 0.45 [0.42-0.47]; a lone writer (qd1)
the same within the spread. CUBIC is Linux's own default and needs no pacing; a mirror link
is a LAN hop, where BBR's model of the path buys nothing. Any other default (an admin's
CUBIC, DCTCP, ...) is left alone.

The route copies what the kernel would use anyway (device, gateway, source address) and is
tagged ``proto 77`` so that an admin can list (``ip route show proto 77``) or flush them; it
is replaced whenever a mirror starts, so it follows changes of the secondary network.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger("herd.mirror.quickack")

#: Routing protocol number marking Herd's routes (unused by iproute2's rt_protos).
PROTO = 77
MAIN_TABLE = 254
RTN_UNICAST = 1
#: Congestion controls that pace their sends (see above), and what the route uses instead.
PACING_CC = frozenset({"bbr"})
UNPACED_CC = "cubic"
#: The default congestion control of this network namespace (per namespace, so each lab
#: node's own).
DEFAULT_CC = Path("/proc/sys/net/ipv4/tcp_congestion_control")


def default_cc() -> str | None:
    """This namespace's default TCP congestion control; None if it can't be read."""
    try:
        return DEFAULT_CC.read_text().strip() or None
    except OSError:
        return None


def route_metrics(default: str | None) -> dict[str, int | str]:
    """The route's metrics: quick ACKs always, and CUBIC instead of a pacing default."""
    metrics: dict[str, int | str] = {"quickack": 1}
    if default in PACING_CC:
        metrics["cc_algo"] = UNPACED_CC
    return metrics


def ensure_quickack(peer_ip: str) -> bool:
    """Route ``peer_ip``/32 as the kernel does now, plus quickack. False (logged) if it can't
    be done: replication then works, only slower."""
    try:
        with IPRoute() as ipr:
            for old in ipr.get_routes(table=MAIN_TABLE):
                if (old["proto"] == PROTO and old["dst_len"] == 32
                        and old.get_attr("RTA_DST") == peer_ip):
                    ipr.route("del", dst=peer_ip, dst_len=32, table=MAIN_TABLE, proto=PROTO)
            got = ipr.route("get", dst=peer_ip)[0]
            if got["type"] != RTN_UNICAST:
                return False  # the peer is this host (local) or unreachable: nothing to tune
            metrics = route_metrics(default_cc())
            spec = {"dst": peer_ip, "dst_len": 32, "oif": got.get_attr("RTA_OIF"),
                    "proto": PROTO, "table": MAIN_TABLE, "metrics": metrics}
            if got.get_attr("RTA_GATEWAY"):
                spec["gateway"] = got.get_attr("RTA_GATEWAY")
            if got.get_attr("RTA_PREFSRC"):
                spec["prefsrc"] = got.get_attr("RTA_PREFSRC")
            try:
                ipr.route("replace", **spec)
            except NetlinkError as exc:
                if "cc_algo" not in metrics:
                    raise
                # a kernel without CUBIC (built as a module that can't load): quick ACKs only
                log.warning("no congctl %s on the route to mirror peer %s: %s",
                            metrics.pop("cc_algo"), peer_ip, exc)
                ipr.route("replace", **spec)
            return True
    except (NetlinkError, OSError, IndexError) as exc:
        log.warning("no quickack route to mirror peer %s (replication will be slower): %s",
                    peer_ip, exc)
        return False

