"""Mirrored disks: replicated vs local write throughput, full-sync speed, partial-resync time,
with the data in a file and in an LV side by side.

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
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from herd.lab.cluster import Lab, lab_cluster

MiB = 1024 * 1024
PY = sys.executable


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


def measure(lab: Lab, size: int, port: int, vg: str | None) -> dict[str, Any]:
    """Full sync, replicated throughput and a partial resync of one mirrored disk."""
    d = Disk(lab, f"b{port}", size, port, vg)
    d.call("node1", "create")
    d.call("node2", "create")
    # half the disk written while the peer is away (the same way for files and LVs)
    written = size // 2
    st = d.call("node1", "start-primary", "none", "degraded")
    lab.run("node1", "qemu-img", "bench", "-w", "-f", "raw", "-c", str(written), "-d", "16",
            "-s", "1M", "-S", str(MiB), st["vm_uri"], timeout=600)
    d.call("node1", "stop")
    d.call("node2", "start-secondary")
    start = time.monotonic()
    d.call("node1", "start-primary", "full")
    st = d.call("node1", "wait-sync", "600")
    full_secs = time.monotonic() - start
    assert st["in_sync"], st
    rec = d.call("node1", "sync-record")
    d.call("node2", "mark-synced", json.dumps(rec), rec["export"])
    replicated = workloads(lab, "node1", st["vm_uri"], size)

    # partial resync: secondary away while 32 MiB (4 KiB writes, scattered) change
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
    # both copies read through their daemons: the primary's export and the secondary's
    secondary_uri = d.call("node2", "status")["vm_uri"]
    identical = lab.run("node1", "qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", uri,
                        secondary_uri, check=False, timeout=600).returncode == 0
    d.call("node1", "stop")
    d.call("node2", "stop")
    d.call("node1", "remove")
    d.call("node2", "remove")
    return {"replicated": replicated, "written": written, "full_secs": full_secs,
            "changed": changed, "copied": st["copied_bytes"], "resync_secs": resync_secs,
            "in_sync": st["in_sync"], "identical": identical}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="disk size in MiB")
    args = ap.parse_args()
    size = args.size
    vg = "herdvg"
    with lab_cluster(2, start_daemons=False, vg=vg, vg_size_mib=size + 64) as lab:
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
        image.unlink()
        on_file = measure(lab, size, 11000, None)
        on_lvm = measure(lab, size, 11001, vg)

    print(f"mirrored disk benchmark ({size} MiB disk, 2-node lab, qemu-img bench over NBD; "
          "data in a file or in an LV, measured one after the other in this run)")
    print(f"{'workload':<18}{'local MiB/s':>13}{'file mirror':>13}{'ratio':>7}"
          f"{'LV mirror':>12}{'ratio':>7}")
    for name in local:
        f, v = on_file["replicated"][name], on_lvm["replicated"][name]
        print(f"{name:<18}{local[name]:>13.1f}{f:>13.1f}{f / local[name]:>7.2f}"
              f"{v:>12.1f}{v / local[name]:>7.2f}")
    for label, r in (("file", on_file), ("LV", on_lvm)):
        print(f"{label:>4} full sync: {r['written']} MiB of data in a {size} MiB disk in "
              f"{r['full_secs']:.1f} s = {size / r['full_secs']:.0f} MiB/s of disk")
        print(f"{label:>4} partial resync: {r['changed'] / MiB:.0f} MiB changed in 4 KiB writes"
              f" -> {r['copied'] / MiB:.1f} MiB copied in {r['resync_secs']:.1f} s "
              f"(in sync: {r['in_sync']}, copies identical: {r['identical']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
