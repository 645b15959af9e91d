"""Where a replicated write's time and CPU go on this machine (issue 13's throughput goals):
the same writer and workloads as ``bench/mirror.py``, over four data paths side by side, with
each CPU's busy share during the random 4 KiB queue-depth-16 run.

- ``local``: node1's storage daemon writing its own file (bench/mirror.py's "local");
- ``peer only``: the writer straight to node2's export over the replication link (no local
  copy): what the link and the peer alone allow, the upper bound of any replicated path here;
- ``parallel``: node1's daemon writing both copies at once (QEMU's ``quorum`` driver, vote
  threshold 2: a write completes when both copies have it; reads from the local one), as
  DRBD does. Herd does not use this graph (a peer failure would fail the guest's writes
  instead of starting a dirty map); it shows what overlapping the two writes would change;
- ``mirror``: Herd's drbd template as it is (write-blocking mirror job: the local write, then
  the peer's), built by Herd's own mirror daemon as bench/mirror.py builds it.

Everything as in bench/mirror.py: two-node herd-lab, preallocated files, O_DIRECT, node1's
daemon and the writer on CPU 0, node2's daemon on CPU 1, data that is not zeros, ``--runs``
interleaved rounds, median [min-max]. The CPU figures are /proc/stat's non-idle share of each
CPU over the run (a lab's veth and bridge deliver a frame on the CPU that sent it, so node1's
CPU also carries the peer's receive work: on separate machines each node's NIC does).

Run as root: ``python bench/mirror_paths.py`` (under ``flock /tmp/herd-heavy.lock``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mirror as bm  # bench/mirror.py: the lab, the writer and the workloads

from herd.lab.cluster import Lab, lab_cluster
from herd.storage.mirror import graph

PEER_PORT = 10950


def cpu_busy(run: Callable[[], float]) -> tuple[float, dict[str, float]]:
    """``run()``'s result and each CPU's non-idle share (idle and iowait excluded) meanwhile."""
    def times() -> dict[str, tuple[int, int]]:
        out = {}
        for line in Path("/proc/stat").read_text().splitlines():
            name, *values = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                ticks = [int(v) for v in values]
                out[name] = (sum(ticks) - ticks[3] - ticks[4], sum(ticks))
        return out

    before = times()
    result = run()
    after = times()
    return result, {cpu: (after[cpu][0] - before[cpu][0]) / max(1, after[cpu][1] - before[cpu][1])
                    for cpu in before}


def daemon(lab: Lab, node: str, cpu: int, *args: str) -> int:
    """A storage daemon in ``node`` pinned to ``cpu`` (a pid file of its own): its pid."""
    pidfile = lab.node(node).paths.run_dir / f"paths-{time.monotonic_ns()}.pid"
    return bm.storage_daemon(lab, node, cpu, pidfile, *args)


def peer_export(lab: Lab, size: int, port: int) -> tuple[int, str]:
    """node2's copy exported over the replication link as Herd's secondary exports it
    (writethrough: each write durable there before it completes): (pid, its address)."""
    image = lab.node("node2").paths.run_dir / f"peer{port}.img"
    bm.preallocate_file(lab, "node2", image, size)
    ip = lab.node("node2").secondary_ip
    pid = daemon(lab, "node2", bm.CPU_OTHER, "--blockdev", json.dumps(graph.local_node(image)),
                 "--nbd-server", f"addr.type=inet,addr.host={ip},addr.port={port}",
                 "--export", f"type=nbd,id=peer,node-name={graph.LOCAL},name=peer,"
                             "writable=on,writethrough=on")
    return pid, ip


def parallel_primary(lab: Lab, size: int, peer_ip: str, port: int) -> tuple[int, str]:
    """node1's daemon writing its file and the peer at once (quorum of both, threshold 2)."""
    run = lab.node("node1").paths.run_dir
    image, sock = run / "parallel.img", run / "parallel.sock"
    bm.preallocate_file(lab, "node1", image, size)
    peer = {"driver": "nbd", "node-name": "peer", "export": "peer",
            "server": {"type": "inet", "host": peer_ip, "port": str(port)}}
    both = {"driver": "quorum", "node-name": "both", "children": [graph.LOCAL, "peer"],
            "vote-threshold": 2, "read-pattern": "fifo"}
    pid = daemon(lab, "node1", bm.CPU_PRIMARY,
                 "--blockdev", json.dumps(graph.local_node(image)),
                 "--blockdev", json.dumps(peer), "--blockdev", json.dumps(both),
                 "--nbd-server", f"addr.type=unix,addr.path={sock}",
                 "--export", "type=nbd,id=vm,node-name=both,name=vm,writable=on")
    return pid, f"nbd+unix:///vm?socket={sock}"


#: The workload during which each CPU's busy share is read.
BUSY_WORKLOAD = "rand 4 KiB qd16"


def measure(lab: Lab, uri: str) -> dict[str, Any]:
    """bench/mirror.py's workloads on ``uri``, with the CPUs' busy shares during one."""
    out: dict[str, Any] = {}
    for name, args in bm.WORKLOADS.items():
        def run(args: dict[str, Any] = args) -> float:
            return bm.img_bench(lab, "node1", uri, **args)
        if name == BUSY_WORKLOAD:
            out[name], out["busy"] = cpu_busy(run)
        else:
            out[name] = run()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="disk size in MiB")
    ap.add_argument("--runs", type=int, default=3, help="rounds")
    args = ap.parse_args()
    load_before = os.getloadavg()
    pids: list[int] = []
    rounds: list[dict[str, dict[str, Any]]] = []
    with lab_cluster(2, start_daemons=False) as lab:
        for node in ("node1", "node2"):
            lab.run(node, "sysctl", "-q", "-w", "net.ipv4.tcp_retries2=3")
        try:
            local_pid, local_uri = bm.local_qsd(lab, "node1", args.size, bm.CPU_PRIMARY)
            pids.append(local_pid)
            only_pid, ip = peer_export(lab, args.size, PEER_PORT)
            both_pid, _ = peer_export(lab, args.size, PEER_PORT + 1)
            pids += [only_pid, both_pid]
            par_pid, par_uri = parallel_primary(lab, args.size, ip, PEER_PORT + 1)
            pids.append(par_pid)
            disk = bm.Disk(lab, "b11000", args.size, 11000)
            disk.create()
            status, _ = disk.start_pair("full")
            paths = {"local": local_uri, "peer only": f"nbd://{ip}:{PEER_PORT}/peer",
                     "parallel": par_uri, "mirror": status["vm_uri"]}
            for _ in range(args.runs):
                rounds.append({name: measure(lab, uri) for name, uri in paths.items()})
            disk.stop_remove()
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGTERM)
    report(rounds, load_before)
    return 0


def report(rounds: list[dict[str, dict[str, Any]]], load_before: tuple[float, ...]) -> None:
    cols = list(rounds[0])
    work = [k for k in rounds[0]["local"] if k != "busy"]
    print(f"replicated write paths ({len(rounds)} rounds, median [min-max]; node1's writer "
          "and daemon on CPU 0, node2's daemon on CPU 1)")
    print("MiB/s")
    print(f"{'workload':<17}" + "".join(f"{c:>24}" for c in cols))
    for name in work:
        print(f"{name:<17}" + "".join(f"{bm.spread([r[c][name] for r in rounds], 1):>24}"
                                      for c in cols))
    print("ratio to local (each round's own)")
    print(f"{'workload':<17}" + "".join(f"{c:>24}" for c in cols[1:]))
    for name in work:
        print(f"{name:<17}" + "".join(
            f"{bm.spread([r[c][name] / r['local'][name] for r in rounds]):>24}"
            for c in cols[1:]))
    print("CPU busy during rand 4 KiB qd16 (cpu0 = node1 and the writer, cpu1 = node2)")
    for cpu in sorted(rounds[0]["local"]["busy"]):
        print(f"{cpu:<17}" + "".join(
            f"{bm.spread([r[c]['busy'][cpu] for r in rounds]):>24}" for c in cols))
    print("load average before " + " ".join(f"{x:.2f}" for x in load_before)
          + ", after " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    sys.exit(main())
