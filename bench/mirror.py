"""Mirrored disks: replicated vs local write throughput, full-sync speed, partial-resync time,
with the data in a file and in an LV side by side.

Everything is measured in one run, side by side, on a two-node herd-lab (network namespaces,
secondary network between them): the writer is ``qemu-img bench`` (part of QEMU; fio is not
needed) talking NBD to a qemu-storage-daemon, as a VM does. "local" is the same daemon and NBD
path without a mirror, its data node built by the very function that builds a mirror's
(:func:`herd.storage.mirror.graph.local_node`), so both have the same cache and flush semantics
(the file template's I/O path through a QSD); "replicated" is the ``drbd`` template's primary,
every write completed on both nodes (write-blocking mirror to the secondary's export).

What keeps the ratios stable enough to decide (they swung 0.39-1.57 before):

- every data file is preallocated by writing it once (:func:`preallocate_file`), the local one
  and both copies of a mirror alike, so no run pays the filesystem's block allocation and
  another not; an LV is allocated by nature;
- every data node is opened with O_DIRECT (Herd's own choice, ``local_node``): the page cache
  is out of the path on both sides, nothing is left dirty by one workload for the next;
- fixed CPU pinning, one core per node as if they were two machines: node1's storage daemon
  (the primary's, and the local one) and the writer (its "guest") on CPU 0, node2's daemon on
  CPU 1 (``taskset -a`` on each daemon once started, ``taskset -c`` for the writer; threads
  made later inherit it);
- every write carries data (``--pattern``): zeros would go to the peer as WRITE_ZEROES;
- each workload runs ``--runs`` times (3), local, ceiling and the mirrors one after the other
  in each round, so slow drift of the machine hits all alike; the tables print the median and
  the spread (min-max) of each figure, each ratio taken within its round, and the load
  average before and after (other work on the machine shows there).

Both nodes' data sit on this machine's one disk, so a replicated write costs it twice the
bytes of a local one. The "ceiling" column measures what that leaves: two local writers at
once, one per node and CPU (the figure is the first one's). A replicated/local ratio near the
ceiling's is as good as this machine allows; on separate machines the ceiling is 1.

Run as root: ``python bench/mirror.py`` (under ``flock /tmp/herd-heavy.lock`` on shared machines).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from herd.lab.cluster import Lab, lab_cluster
from herd.storage.mirror import graph

MiB = 1024 * 1024
PY = sys.executable
#: What every write carries: qemu-img bench writes zeros by default, which a mirror that
#: detects zeros sends as WRITE_ZEROES without payload (a guest's data is not zeros).
PATTERN = "--pattern=165"
#: node1's CPU (its daemons and the writer) and node2's.
CPU_PRIMARY, CPU_OTHER = 0, 1
#: Run inside the primary node: reconnect, then poll the status every 10 ms until in sync,
#: so that the resync time is the daemon's, not a Python start per poll.
RESYNC = """
import asyncio, json, sys, time
from herd import paths
from herd.storage.mirror import MirrorManager
from herd.storage.mirror.__main__ import parse_disk, _vg
async def main():
    mgr = MirrorManager(paths.current())
    mgr.devices.resolve_vg = lambda vg: _vg(mgr.paths, vg)
    disk = parse_disk(json.loads(sys.argv[1]))
    t0 = time.monotonic()
    await mgr.reconnect(disk)
    t1 = time.monotonic()
    while True:
        await mgr.observe(disk)
        st = await mgr.status(disk)
        if st.in_sync or time.monotonic() - t1 > 600:
            break
        await asyncio.sleep(0.01)
    t2 = time.monotonic()
    print(json.dumps({"reconnect": t1 - t0, "copy": t2 - t1, "in_sync": st.in_sync,
                      "copied": st.copied_bytes}))
asyncio.run(main())
"""


class Disk:
    """One mirrored disk between node1 and node2, its data in a file or (``vg``) in an LV."""

    def __init__(self, lab: Lab, uuid: str, size: int, port: int, vg: str | None = None) -> None:
        self.lab, self.uuid, self.size, self.port, self.vg = lab, uuid, size, port, vg
        self.relpath = f"{uuid}.drbd"

    def spec(self, node: str) -> dict[str, Any]:
        other = "node2" if node == "node1" else "node1"
        out: dict[str, Any] = {
            "uuid": self.uuid, "index": 0, "size": self.size, "relpath": self.relpath,
            "port": self.port, "local_ip": self.lab.node(node).secondary_ip,
            "peer_ip": self.lab.node(other).secondary_ip}
        if self.vg:  # as the drbd template makes new disks on a cluster with a VG
            lv = f"{self.uuid}_drbd"
            out["relpath"] = f"{self.vg}/{lv}"
            out["data"] = {"uuid": self.uuid, "kind": "lvm", "size_mib": self.size,
                           "name": f"{self.vg}/{lv}", "index": 0, "vg": self.vg, "lv": lv}
            out["meta"] = f"mirror-meta/{self.uuid}.gen"
        return out

    def call(self, node: str, op: str, *args: str) -> Any:
        proc = self.lab.run(node, PY, "-m", "herd.storage.mirror", op,
                            json.dumps(self.spec(node)), *args, timeout=600)
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    def pid(self, node: str) -> int:
        return int((self.lab.node(node).paths.run_dir / f"mirror/{self.uuid}.pid").read_text())

    def pin(self, node: str) -> None:
        pin(self.lab, node, self.pid(node), CPU_PRIMARY if node == "node1" else CPU_OTHER)

    def create(self, preallocate: bool = True) -> None:
        """Both copies, the files preallocated (an LV is allocated by nature)."""
        for node in ("node1", "node2"):
            self.call(node, "create")
            if preallocate and not self.vg:
                preallocate_file(self.lab, node,
                                 self.lab.node(node).paths.file_storage_dir / self.relpath,
                                 self.size)

    def start_pair(self, sync: str) -> tuple[dict[str, Any], float]:
        """Secondary, then primary with ``sync``; (status in sync, seconds to get there)."""
        self.call("node2", "start-secondary")
        self.pin("node2")
        start = time.monotonic()
        self.call("node1", "start-primary", sync)
        self.pin("node1")
        st = self.call("node1", "wait-sync", "900")
        secs = time.monotonic() - start
        assert st["in_sync"], st
        rec = self.call("node1", "sync-record")
        self.call("node2", "mark-synced", json.dumps(rec), rec["export"])
        return st, secs

    def stop_remove(self) -> None:
        for node in ("node1", "node2"):
            self.call(node, "stop")
        for node in ("node1", "node2"):
            self.call(node, "remove")


def preallocate_file(lab: Lab, node: str, path: Path, size: int) -> None:
    """Every block of the file written once (zeros, O_DIRECT). Not ``fallocate``: its extents
    stay "unwritten" until a first write converts them, a journal commit that the
    secondary's flush after each replicated write then waits for (random 4 KiB writes at
    queue depth 16: 0.16 of local on fallocated files, 0.30 on written ones, same code)."""
    lab.run(node, "dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={size}",
            "oflag=direct", "conv=notrunc", timeout=600)


def pin(lab: Lab, node: str, pid: int, cpu: int) -> None:
    lab.run(node, "taskset", "-a", "-p", "-c", str(cpu), str(pid))


def img_bench(lab: Lab, node: str, uri: str, *, size: str, step: int, count: int,
              depth: int, offset: int = 0) -> float:
    """MiB/s written by ``qemu-img bench`` (queue depth ``depth``), pinned to node1's CPU."""
    out = lab.run(node, "taskset", "-c", str(CPU_PRIMARY), "qemu-img", "bench", "-w", "-f", "raw",
                  "-t", "none", PATTERN, "-c", str(count), "-d", str(depth), "-s", size,
                  "-S", str(step), "-o", str(offset), uri, timeout=600).stdout
    secs = float(re.search(r"Run completed in ([\d.]+) seconds", out).group(1))
    return count * parse_size(size) / MiB / secs


def img_bench_pair(lab: Lab, jobs: list[tuple[str, str, int]], *, size: str, step: int,
                   count: int, depth: int) -> list[float]:
    """MiB/s of each of several ``qemu-img bench`` run at the same time, each (node, uri,
    cpu) pinned to its CPU."""
    procs = [subprocess.Popen(lab.argv(node, "taskset", "-c", str(cpu), "qemu-img", "bench",
                                       "-w", "-f", "raw", "-t", "none", PATTERN, "-c",
                                       str(count), "-d", str(depth), "-s", size, "-S",
                                       str(step), uri),
                              env=lab.env(node), stdout=subprocess.PIPE, text=True)
             for node, uri, cpu in jobs]
    out = [p.communicate(timeout=600)[0] for p in procs]
    secs = [float(re.search(r"Run completed in ([\d.]+) seconds", o).group(1)) for o in out]
    return [count * parse_size(size) / MiB / t for t in secs]


def parse_size(s: str) -> int:
    units = {"k": 1024, "M": MiB}
    return int(s[:-1]) * units[s[-1]] if s[-1] in units else int(s)


def storage_daemon(lab: Lab, node: str, cpu: int, pidfile: Path, *args: str) -> int:
    """A qemu-storage-daemon in ``node`` with ``args``, pinned to ``cpu``: its pid."""
    lab.run(node, "qemu-storage-daemon", "--daemonize", "--pidfile", str(pidfile), *args)
    pid = int(pidfile.read_text())
    pin(lab, node, pid, cpu)
    return pid


def local_qsd(lab: Lab, node: str, size: int, cpu: int) -> tuple[int, str]:
    """A storage daemon serving a preallocated file in ``node`` as a mirror's primary serves
    its local copy (the same ``local_node``), pinned to ``cpu``: (pid, NBD URI)."""
    run = lab.node(node).paths.run_dir
    image, sock, pidfile = run / "local.img", run / "local.sock", run / "local.pid"
    preallocate_file(lab, node, image, size)
    pid = storage_daemon(
        lab, node, cpu, pidfile, "--blockdev", json.dumps(graph.local_node(image)),
        "--nbd-server", f"addr.type=unix,addr.path={sock}",
        "--export", f"type=nbd,id=vm,node-name={graph.LOCAL},name=local,writable=on")
    return pid, f"nbd+unix:///local?socket={sock}"


#: 4 KiB writes scattered over the whole disk: a step of 4 KiB times a prime.
RAND_STEP = 4096 * 7919
#: The workloads, as ``qemu-img bench`` arguments (each measured the same way everywhere).
WORKLOADS: dict[str, dict[str, Any]] = {
    "seq 1 MiB qd16": {"size": "1M", "step": MiB, "count": 512, "depth": 16},
    "rand 4 KiB qd16": {"size": "4k", "step": RAND_STEP, "count": 20000, "depth": 16},
    "rand 4 KiB qd1": {"size": "4k", "step": RAND_STEP, "count": 3000, "depth": 1},
}


def ceiling(lab: Lab, uris: list[tuple[str, str, int]]) -> dict[str, float]:
    """Each node's local writer at the same time (one per CPU), the first one's MiB/s: what
    is left of the machine for one copy when the other copy is written too. Both nodes'
    data sit on this machine's one disk, so a replicated write costs it twice the local
    bytes; in a real cluster each node has its own."""
    return {name: img_bench_pair(lab, uris, **args)[0] for name, args in WORKLOADS.items()}


def workloads(lab: Lab, node: str, uri: str) -> dict[str, float]:
    return {name: img_bench(lab, node, uri, **args) for name, args in WORKLOADS.items()}


def partial_resync(lab: Lab, d: Disk, uri: str) -> dict[str, Any]:
    """Secondary away while 32 MiB change in scattered 4 KiB writes, then back: how long the
    primary's reconnect takes and then the copy until in sync."""
    os.kill(d.pid("node2"), signal.SIGKILL)
    lab.run("node1", "qemu-img", "bench", "-w", "-f", "raw", PATTERN, "-c", "1", "-s", "4k",
            uri, timeout=120)  # absorbs the reconnect delay: the job pauses
    lab.run("node1", "qemu-img", "bench", "-w", "-f", "raw", PATTERN, "-c", "8192", "-d",
            "16", "-s", "4k", "-S", str(RAND_STEP), "-o", "1048576", uri, timeout=300)
    d.call("node2", "start-secondary")
    d.pin("node2")
    out = lab.run("node1", PY, "-c", RESYNC, json.dumps(d.spec("node1")), timeout=900).stdout
    r = json.loads(out)
    rec = d.call("node1", "sync-record")
    d.call("node2", "mark-synced", json.dumps(rec), rec["export"])
    return r


def identical(lab: Lab, d: Disk, uri: str) -> bool:
    """Both copies read through their daemons: the primary's export and the secondary's."""
    secondary_uri = d.call("node2", "status")["vm_uri"]
    return lab.run("node1", "qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", uri,
                   secondary_uri, check=False, timeout=600).returncode == 0


def tx_bytes(lab: Lab, node: str) -> int:
    return int(lab.run(node, "cat", "/sys/class/net/eth1/statistics/tx_bytes").stdout)


def empty_full_sync(lab: Lab, size: int, port: int, vg: str | None) -> dict[str, Any]:
    """A new, empty disk of ``size`` MiB synced in full: seconds, and bytes on the wire."""
    d = Disk(lab, f"e{port}", size, port, vg)
    d.create(preallocate=False)  # as Herd creates them
    before = tx_bytes(lab, "node1")
    _st, secs = d.start_pair("full")
    wire = tx_bytes(lab, "node1") - before
    d.stop_remove()
    return {"secs": secs, "wire": wire}


def spread(values: list[float], digits: int = 2) -> str:
    """Median [min-max]."""
    return (f"{statistics.median(values):.{digits}f} "
            f"[{min(values):.{digits}f}-{max(values):.{digits}f}]")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="disk size in MiB")
    ap.add_argument("--empty", type=int, default=10240, help="empty disk for the full sync, MiB")
    ap.add_argument("--runs", type=int, default=3, help="rounds of each measurement")
    ap.add_argument("--no-lv", action="store_true", help="file-backed mirror only")
    args = ap.parse_args()
    size, runs = args.size, args.runs
    vg = "herdvg"
    kinds = [("file", None)] + ([] if args.no_lv else [("LV", vg)])
    load_before = os.getloadavg()
    with lab_cluster(2, start_daemons=False, vg=vg,
                     vg_size_mib=size + args.empty + 128) as lab:
        for node in ("node1", "node2"):
            lab.run(node, "sysctl", "-q", "-w", "net.ipv4.tcp_retries2=3")
        local_pid, local_uri = local_qsd(lab, "node1", size, CPU_PRIMARY)
        other_pid, other_uri = local_qsd(lab, "node2", size, CPU_OTHER)

        disks, uris, full = {}, {}, {}
        for i, (label, kind_vg) in enumerate(kinds):
            d = Disk(lab, f"b{11000 + i}", size, 11000 + i, kind_vg)
            d.create()
            # half the disk written while the peer is away, then a full sync
            st = d.call("node1", "start-primary", "none", "degraded")
            lab.run("node1", "qemu-img", "bench", "-w", "-f", "raw", "-t", "none", PATTERN,
                    "-c", str(size // 2), "-d", "16", "-s", "1M", "-S", str(MiB),
                    st["vm_uri"], timeout=600)
            d.call("node1", "stop")
            st, full[label] = d.start_pair("full")
            disks[label], uris[label] = d, st["vm_uri"]

        rounds: list[dict[str, dict[str, float]]] = []
        for _ in range(runs):
            r = {"local": workloads(lab, "node1", local_uri),
                 "ceiling": ceiling(lab, [("node1", local_uri, CPU_PRIMARY),
                                          ("node2", other_uri, CPU_OTHER)])}
            for label, _kv in kinds:
                r[label] = workloads(lab, "node1", uris[label])
            rounds.append(r)
        os.kill(local_pid, signal.SIGTERM)
        os.kill(other_pid, signal.SIGTERM)

        resync: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in kinds}
        same: dict[str, bool] = {}
        for _ in range(runs):
            for label, _kv in kinds:
                resync[label].append(partial_resync(lab, disks[label], uris[label]))
        for label, _kv in kinds:
            same[label] = identical(lab, disks[label], uris[label])
            disks[label].stop_remove()

        empty = {label: [empty_full_sync(lab, args.empty, 11100 + i, kv)
                         for _ in range(runs if kv is None else 1)]
                 for i, (label, kv) in enumerate(kinds) if args.empty}
    load_after = os.getloadavg()

    print(f"mirrored disk benchmark ({size} MiB disk, 2-node lab, qemu-img bench over NBD; "
          f"{runs} rounds, each cell median [min-max]; O_DIRECT on every side, files "
          "preallocated, node1's writer and daemon on CPU 0, node2's daemon on CPU 1)")
    print("MiB/s (local: no mirror; ceiling: one of two local writers at once, one per node, "
          "as both copies share this machine's disk)")
    cols = ["local", "ceiling", *(label for label, _kv in kinds)]
    print(f"{'workload':<17}" + "".join(f"{c:>22}" for c in cols))
    for name in rounds[0]["local"]:
        print(f"{name:<17}" + "".join(f"{spread([r[c][name] for r in rounds], 1):>22}"
                                      for c in cols))
    print("ratio to local (each round's own)")
    print(f"{'workload':<17}" + "".join(f"{c:>22}" for c in cols[1:]))
    for name in rounds[0]["local"]:
        print(f"{name:<17}" + "".join(
            f"{spread([r[c][name] / r['local'][name] for r in rounds]):>22}" for c in cols[1:]))
    for label, _kv in kinds:
        print(f"{label:>4} full sync: {size // 2} MiB of data in a {size} MiB disk in "
              f"{full[label]:.1f} s = {size / full[label]:.0f} MiB/s of disk")
        rs = resync[label]
        print(f"{label:>4} partial resync, 32 MiB changed in 4 KiB writes: reconnect "
              f"{spread([x['reconnect'] for x in rs])} s, then copy "
              f"{spread([x['copy'] for x in rs])} s ({rs[-1]['copied'] / MiB:.1f} MiB copied;"
              f" in sync: {all(x['in_sync'] for x in rs)}, copies identical: {same[label]})")
        e = empty.get(label)
        if e:
            print(f"{label:>4} full sync of an empty {args.empty} MiB disk: "
                  f"{spread([x['secs'] for x in e])} s, "
                  f"{statistics.median(x['wire'] for x in e) / MiB:.1f} MiB on the wire")
    print("load average before " + " ".join(f"{x:.2f}" for x in load_before)
          + ", after " + " ".join(f"{x:.2f}" for x in load_after))
    return 0


if __name__ == "__main__":
    sys.exit(main())
