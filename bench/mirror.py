"""Mirrored disks: replicated vs local write throughput, full-sync speed, partial-resync time.

Everything is measured in one run, side by side, on a two-node herd-lab (network namespaces,
secondary network between them): the writer is ``qemu-img bench`` (part of QEMU; fio is not
needed) talking NBD to a qemu-storage-daemon, as a VM does. "local" is the same daemon and NBD
path without a mirror (the ``file`` template's I/O path through a QSD); "replicated" is the
``drbd`` template's primary, every write completed on both nodes (write-blocking mirror, the
secondary flushing each write before acknowledging it; quick-ACK routes between the nodes,
as Herd sets them). Run as root: ``python bench/mirror.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from herd.lab.cluster import Lab, lab_cluster

MiB = 1024 * 1024
PY = sys.executable


class Disk:
    def __init__(self, lab: Lab, uuid: str, size: int, port: int) -> None:
        self.lab, self.uuid, self.size, self.port = lab, uuid, size, port
        self.relpath = f"bench/{uuid}.drbd.disk0"

    def spec(self, node: str) -> dict[str, Any]:
        other = "node2" if node == "node1" else "node1"
        return {"uuid": self.uuid, "index": 0, "size": self.size, "relpath": self.relpath,
                "port": self.port, "local_ip": self.lab.node(node).secondary_ip,
                "peer_ip": self.lab.node(other).secondary_ip}

    def call(self, node: str, op: str, *args: str) -> Any:
        proc = self.lab.run(node, PY, "-m", "herd.storage.mirror", op,
                            json.dumps(self.spec(node)), *args, timeout=600)
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    def file(self, node: str) -> Path:
        return self.lab.node(node).paths.file_storage_dir / self.relpath

    def pid(self, node: str) -> int:
        return int((self.lab.node(node).paths.run_dir / f"mirror/{self.uuid}.pid").read_text())


def img_bench(lab: Lab, node: str, uri: str, *, size: str, step: int, count: int,
              depth: int) -> float:
    """MiB/s written by ``qemu-img bench`` (queue depth ``depth``)."""
    out = lab.run(node, "qemu-img", "bench", "-w", "-f", "raw", "-t", "none", "-c", str(count),
                  "-d", str(depth), "-s", size, "-S", str(step), uri, timeout=600).stdout
    secs = float(re.search(r"Run completed in ([\d.]+) seconds", out).group(1))
    nbytes = count * parse_size(size)
    return nbytes / MiB / secs


def parse_size(s: str) -> int:
    units = {"k": 1024, "M": MiB}
    return int(s[:-1]) * units[s[-1]] if s[-1] in units else int(s)


def local_qsd(lab: Lab, node: str, image: Path, sock: Path, pidfile: Path) -> None:
    lab.run(node, "qemu-storage-daemon", "--daemonize", "--pidfile", str(pidfile),
            "--blockdev", f"driver=file,node-name=local,filename={image},aio=threads",
            "--nbd-server", f"addr.type=unix,addr.path={sock}",
            "--export", "type=nbd,id=vm,node-name=local,name=local,writable=on")


def workloads(lab: Lab, node: str, uri: str, disk_mib: int) -> dict[str, float]:
    # random 4 KiB: a step of 4 KiB times a prime scatters writes over the whole disk
    step = 4096 * 7919
    assert (disk_mib * MiB) % step != 0
    return {
        "seq 1 MiB qd16": img_bench(lab, node, uri, size="1M", step=MiB, count=512, depth=16),
        "rand 4 KiB qd16": img_bench(lab, node, uri, size="4k", step=step, count=20000,
                                     depth=16),
        "rand 4 KiB qd1": img_bench(lab, node, uri, size="4k", step=step, count=3000, depth=1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="disk size in MiB")
    args = ap.parse_args()
    size = args.size
    with lab_cluster(2, start_daemons=False) as lab:
        for node in ("node1", "node2"):
            lab.run(node, "sysctl", "-q", "-w", "net.ipv4.tcp_retries2=3")
        # -- local: the same QSD + NBD path, no mirror ------------------------------------------
        run1 = lab.node("node1").paths.run_dir
        image, sock, pidfile = run1 / "local.img", run1 / "local.sock", run1 / "local.pid"
        with open(image, "wb") as f:
            f.truncate(size * MiB)
        local_qsd(lab, "node1", image, sock, pidfile)
        local = workloads(lab, "node1", f"nbd+unix:///local?socket={sock}", size)
        os.kill(int(pidfile.read_text()), signal.SIGTERM)

        # -- full sync of a written disk ---------------------------------------------------------
        d = Disk(lab, "b1", size, 11000)
        d.call("node1", "create")
        d.call("node2", "create")
        written = size // 2
        subprocess.run(["dd", "if=/dev/urandom", f"of={d.file('node1')}", "bs=1M",
                        f"count={written}", "conv=notrunc,fsync", "status=none"], check=True)
        d.call("node2", "start-secondary")
        start = time.monotonic()
        d.call("node1", "start-primary", "full")
        st = d.call("node1", "wait-sync", "600")
        full_secs = time.monotonic() - start
        assert st["in_sync"], st
        d.call("node2", "mark-synced", json.dumps(d.call("node1", "generation")))

        # -- replicated throughput ---------------------------------------------------------------
        replicated = workloads(lab, "node1", st["vm_uri"], size)

        # -- partial resync: secondary away while 32 MiB (4 KiB writes, scattered) change ------
        os.kill(d.pid("node2"), signal.SIGKILL)
        uri = st["vm_uri"]
        lab.run("node1", "qemu-img", "bench", "-w", "-f", "raw", "-c", "1", "-s", "4k", uri,
                timeout=120)  # absorbs the reconnect delay
        changed = 8192 * 4096
        lab.run("node1", "qemu-img", "bench", "-w", "-f", "raw", "-c", "8192", "-d", "16",
                "-s", "4k", "-S", str(4096 * 7919), "-o", "1048576", uri, timeout=300)
        d.call("node2", "start-secondary")
        start = time.monotonic()
        d.call("node1", "reconnect")
        st = d.call("node1", "wait-sync", "600")
        resync_secs = time.monotonic() - start
        identical = d.file("node1").read_bytes() == d.file("node2").read_bytes()
        d.call("node1", "stop")
        d.call("node2", "stop")

    print(f"mirrored disk benchmark ({size} MiB disk, 2-node lab, qemu-img bench over NBD)")
    print(f"{'workload':<18}{'local MiB/s':>14}{'replicated MiB/s':>19}{'ratio':>8}")
    for name in local:
        print(f"{name:<18}{local[name]:>14.1f}{replicated[name]:>19.1f}"
              f"{replicated[name] / local[name]:>8.2f}")
    print(f"full sync: {written} MiB of data in a {size} MiB disk in {full_secs:.1f} s "
          f"= {size / full_secs:.0f} MiB/s of disk ({written / full_secs:.0f} MiB/s of data)")
    print(f"partial resync: {changed / MiB:.0f} MiB changed in 4 KiB writes -> "
          f"{st['copied_bytes'] / MiB:.1f} MiB copied in {resync_secs:.1f} s "
          f"(in sync: {st['in_sync']}, copies identical: {identical})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
