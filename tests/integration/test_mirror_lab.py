"""Mirrored disks for real: two lab nodes, a qemu-storage-daemon on each, NBD between them.

Each operation runs as ``python -m herd.storage.mirror`` inside the node (its namespace and
HERD_ROOT), the way noded runs MirrorManager; writes go through the primary's NBD export with
``qemu-io``, as a guest's would. One lab for the module, one disk (uuid, port) per test.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd.lab.cluster import Lab, lab_cluster
from herd.storage.mirror import decide_sync

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("qemu-storage-daemon"),
                                 reason="needs root and qemu-storage-daemon")]

MiB = 1024 * 1024
_ports = itertools.count(11000)


class Pair:
    """One mirrored disk between node1 (first primary) and node2."""

    def __init__(self, lab: Lab, name: str, size: int = 64) -> None:
        self.lab, self.uuid, self.size, self.port = lab, name, size, next(_ports)
        self.relpath = f"inst-{name}/{name}.drbd.disk0"

    def disk(self, node: str) -> dict[str, Any]:
        other = "node2" if node == "node1" else "node1"
        return {"uuid": self.uuid, "index": 0, "size": self.size, "relpath": self.relpath,
                "port": self.port, "local_ip": self.lab.node(node).secondary_ip,
                "peer_ip": self.lab.node(other).secondary_ip}

    def call(self, node: str, op: str, *args: str, ok: bool = True) -> Any:
        proc = self.lab.run(node, sys.executable, "-m", "herd.storage.mirror", op,
                            json.dumps(self.disk(node)), *args, check=False, timeout=120)
        result = json.loads(proc.stdout) if proc.stdout.strip() else None
        failed = proc.returncode != 0
        if ok and failed:
            raise AssertionError(f"{node} {op} failed: {proc.stdout} {proc.stderr}")
        if not ok and not failed:
            raise AssertionError(f"{node} {op} succeeded unexpectedly: {proc.stdout}")
        return result

    def file(self, node: str) -> Path:
        return self.lab.node(node).paths.file_storage_dir / self.relpath

    def digest(self, node: str) -> str:
        return hashlib.sha256(self.file(node).read_bytes()).hexdigest()

    def pid(self, node: str) -> int:
        run = self.lab.node(node).paths.run_dir / "mirror"
        return int((run / f"{self.uuid}.pid").read_text())

    def io(self, node: str, uri: str, *cmds: str, timeout: float = 120) -> float:
        """Run qemu-io commands against ``uri`` in ``node``; seconds taken."""
        argv = ["qemu-io", "-f", "raw", uri]
        for c in cmds:
            argv += ["-c", c]
        start = time.monotonic()
        self.lab.run(node, *argv, timeout=timeout)
        return time.monotonic() - start

    def attach(self, primary: str = "node1", secondary: str = "node2") -> dict[str, Any]:
        self.call(secondary, "start-secondary")
        self.call(primary, "start-primary", "auto")
        st = self.call(primary, "wait-sync", "60")
        assert st["in_sync"], st
        rec = self.call(primary, "sync-record")
        assert rec["in_sync"] and rec["export"], rec
        assert self.call(secondary, "mark-synced", json.dumps(rec), rec["export"]) is True
        return st

    def records(self, node: str) -> dict[str, bytes]:
        """The generation record and the runtime file of the disk on ``node``, as bytes."""
        paths = self.lab.node(node).paths
        files = [paths.file_storage_dir / f"{self.relpath}.gen",
                 paths.run_dir / "mirror" / f"{self.uuid}.json"]
        return {f.name: f.read_bytes() for f in files if f.exists()}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with lab_cluster(2, start_daemons=False) as lab:
        yield lab


@pytest.fixture
def pair(lab: Lab, request: pytest.FixtureRequest) -> Iterator[Pair]:
    p = Pair(lab, f"d{next(_ports) % 1000}")
    for node in ("node1", "node2"):
        p.call(node, "create")
    yield p
    for node in ("node1", "node2"):
        p.call(node, "remove", ok=True)


def test_full_sync_replicates_writes_and_flushes_durably(pair: Pair) -> None:
    st = pair.attach()
    assert st["role"] == "primary" and st["connected"] and not st["degraded"]
    assert st["vm_uri"].startswith("nbd+unix:///")
    pair.io("node1", st["vm_uri"], "write -P 0x11 0 4M", "write -P 0x22 10M 1M",
            "write -P 0x33 63M 4k", "flush")
    assert pair.digest("node1") == pair.digest("node2")
    assert pair.call("node1", "list-active") == [pair.uuid]
    sec = pair.call("node2", "status")
    assert sec["role"] == "secondary" and sec["connected"]
    # each side routes to the other with quick ACKs (Nagle + delayed ACK cost 3x at qd16)
    for node, other in (("node1", "node2"), ("node2", "node1")):
        routes = pair.lab.run(node, "ip", "route", "show", "proto", "77").stdout
        assert f"{pair.lab.node(other).secondary_ip} dev eth1" in routes, routes
        assert "quickack 1" in routes, routes
        # and an unpaced congestion control where the namespace's default paces (BBR)
        default = pair.lab.run(node, "sysctl", "-n", "net.ipv4.tcp_congestion_control").stdout
        assert ("congctl cubic" in routes) == (default.strip() == "bbr"), (default, routes)

    # Flush durability: the secondary's storage daemon makes a replicated write durable
    # before acknowledging it (export writethrough), so a guest's flush finds the replica
    # durable: with O_DIRECT and native AIO the write itself carries RWF_DSYNC (the kernel
    # syncs each one, in parallel); a thread-pool daemon (no O_DIRECT) fdatasyncs after it.
    if shutil.which("strace"):
        out = pair.file("node1").parent / "strace.out"
        tracer = subprocess.Popen(["strace", "-f", "-e", "trace=fdatasync,fsync,io_submit",
                                   "-o", str(out), "-p", str(pair.pid("node2"))],
                                  stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)
            pair.io("node1", st["vm_uri"], "write -P 0x44 20M 4k")
            time.sleep(0.5)
        finally:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(10)
        trace = out.read_text()
        synced = [line for line in trace.splitlines()
                  if "fdatasync(" in line or ("IOCB_CMD_PWRITEV" in line and "RWF_DSYNC" in line)]
        assert synced, trace
    pair.call("node1", "stop")
    pair.call("node2", "stop")
    assert decide_sync(pair.call("node1", "generation"), pair.call("node2", "generation")) \
        == "none"
    # restart in sync: no copy at all
    pair.call("node2", "start-secondary")
    st = pair.call("node1", "start-primary", "auto")
    st = pair.call("node1", "wait-sync", "30")
    assert st["in_sync"] and st["copied_bytes"] == 0, st
    pair.call("node1", "stop")
    pair.call("node2", "stop")


def test_secondary_killed_degraded_then_partial_resync(pair: Pair) -> None:
    pair.size = 256
    for node in ("node1", "node2"):
        pair.call(node, "remove")
        pair.call(node, "create")
    st = pair.attach()
    uri = st["vm_uri"]
    pair.io("node1", uri, "write -P 0x01 0 32M")
    gen_before = pair.call("node1", "generation")["current"]
    os.kill(pair.pid("node2"), signal.SIGKILL)
    # the first write waits for the reconnect delay, then the guest goes on locally
    took = pair.io("node1", uri, "write -P 0x02 1M 1M")
    assert took < 30, took
    took = pair.io("node1", uri, "write -P 0x03 100M 3M")
    assert took < 5, took
    # a status only reads: twice, and neither the records nor the generation move
    before = pair.records("node1")
    for _ in range(2):
        st = pair.call("node1", "status")
        assert st["degraded"] and not st["in_sync"] and not st["connected"], st
    assert pair.records("node1") == before and st["generation"] == gen_before
    # the supervisor's look (noded runs it about once a second): a new generation
    assert pair.call("node1", "observe") == "degraded"
    st = pair.call("node1", "status")
    assert st["generation"] != gen_before  # a new generation when the primary went degraded
    assert pair.call("node1", "observe") == "degraded"  # once per episode
    assert pair.call("node1", "status")["generation"] == st["generation"]
    changed = 4 * MiB
    pair.call("node2", "start-secondary")
    st = pair.call("node1", "reconnect")
    st = pair.call("node1", "wait-sync", "60")
    assert st["in_sync"], st
    # only what changed was copied (plus granularity rounding), not the 256 MiB disk
    assert changed <= st["copied_bytes"] <= changed + 2 * MiB, st
    assert pair.digest("node1") == pair.digest("node2")
    pair.call("node1", "stop")
    pair.call("node2", "stop")


def test_partition_stalls_briefly_then_resyncs(pair: Pair, lab: Lab) -> None:
    # The lab keeps net.ipv4.tcp_retries2=5 (TCP alone would give up after ~12.6 s): the link
    # watchdog (which noded runs) must cut the silent connection well before that.
    st = pair.attach()
    uri = st["vm_uri"]
    watch = lab.popen("node1", sys.executable, "-m", "herd.storage.mirror", "watch")
    try:
        pair.io("node1", uri, "write -P 0x06 0 64k")  # connected and quick before
        lab.partition("node1", "node2")
        try:
            took = pair.io("node1", uri, "write -P 0x07 2M 64k")
            later = pair.io("node1", uri, "write -P 0x08 4M 64k")
        finally:
            lab.heal()
    finally:
        watch.terminate()
        _, err = watch.communicate(timeout=10)
    # stall = ~1.4 s of unanswered retransmissions + the NBD client's reconnect delay
    print(f"partition: first write {took:.1f} s, next {later:.2f} s")
    assert b"cutting the replication connection" in err, err[-500:]
    assert took < 4.5, took
    assert later < 1, later
    assert pair.call("node1", "status")["degraded"]
    pair.call("node1", "reconnect")
    st = pair.call("node1", "wait-sync", "60")
    assert st["in_sync"], st
    assert st["copied_bytes"] <= 4 * MiB, st  # only what changed while apart
    assert pair.digest("node1") == pair.digest("node2")
    pair.call("node1", "stop")
    pair.call("node2", "stop")


def test_primary_daemon_crash_means_full_sync_with_progress(pair: Pair) -> None:
    # large enough that a status (a Python start, ~0.3 s) sees the copy under way: with
    # O_DIRECT copies 384 MiB were copied in ~0.6 s, between two looks
    pair.size = 1536
    for node in ("node1", "node2"):
        pair.call(node, "remove")
        pair.call(node, "create")
    pair.attach()
    os.kill(pair.pid("node1"), signal.SIGKILL)
    time.sleep(0.5)
    assert pair.call("node1", "status")["role"] == "down"
    # data the peer never saw: written straight into the (now unowned) primary file
    with open(pair.file("node1"), "r+b") as f:
        for _ in range(12):
            f.write(os.urandom(128 * MiB))
    gen = pair.call("node1", "generation")
    assert not gen["dirty_map_valid"]
    assert decide_sync(gen, pair.call("node2", "generation")) == "full"
    # the supervisor alone (status calls only read) turns a background copy write-blocking
    # once its bulk copy is done (QEMU >= 8.2), so that the mirror comes in sync
    watch = pair.lab.popen("node1", sys.executable, "-m", "herd.storage.mirror", "watch")
    try:
        st = pair.call("node1", "start-primary", "dirty")  # asked for dirty: no map, so full
        seen = [st]
        deadline = time.monotonic() + 300
        while not st["in_sync"] and time.monotonic() < deadline:
            st = pair.call("node1", "status")
            seen.append(st)
    finally:
        watch.terminate()
        watch.communicate(timeout=10)
    assert st["in_sync"], st
    partial = [s for s in seen if s["sync_percent"] is not None and s["sync_percent"] < 100]
    assert partial, seen
    assert any(s["speed_bps"] for s in partial), partial
    assert seen[-1]["total_bytes"] >= 1536 * MiB
    assert pair.digest("node1") == pair.digest("node2")
    pair.call("node1", "stop")
    pair.call("node2", "stop")


def test_degraded_start_then_dirty_resync(pair: Pair) -> None:
    pair.size = 128
    for node in ("node1", "node2"):
        pair.call(node, "remove")
        pair.call(node, "create")
    pair.attach()
    pair.call("node1", "stop")
    pair.call("node2", "stop")
    # node1 is "dead": node2 takes over alone (failover), writes, node1 returns as secondary
    pair.call("node2", "start-primary", "auto", ok=False)
    st = pair.call("node2", "start-primary", "auto", "degraded")
    assert st["degraded"] and not st["connected"]
    pair.io("node2", st["vm_uri"], "write -P 0x09 5M 2M", "write -P 0x0a 70M 1M")
    pair.call("node1", "start-secondary")
    st = pair.call("node2", "reconnect")
    st = pair.call("node2", "wait-sync", "60")
    assert st["in_sync"], st
    assert 3 * MiB <= st["copied_bytes"] <= 5 * MiB, st
    assert pair.digest("node1") == pair.digest("node2")
    pair.call("node2", "stop")
    pair.call("node1", "stop")


def test_split_brain_is_refused_until_one_side_is_discarded(pair: Pair) -> None:
    pair.attach()
    pair.call("node1", "stop")
    pair.call("node2", "stop")
    # both sides write alone (a partition where each thought the other dead)
    for node in ("node1", "node2"):
        st = pair.call(node, "start-primary", "auto", "degraded")
        pair.io(node, st["vm_uri"], f"write -P 0x{int(node[-1]) + 0x30:02x} 0 1M")
        pair.call(node, "stop")
    g1, g2 = pair.call("node1", "generation"), pair.call("node2", "generation")
    assert decide_sync(g1, g2) == "split-brain"
    pair.call("node2", "start-secondary")
    err = pair.call("node1", "start-primary", "auto", ok=False)["error"]
    assert err["code"] == "SplitBrainError"
    assert g1["current"] in err["message"] and g2["current"] in err["message"]
    assert "discard" in err["message"]
    assert pair.call("node1", "status")["role"] == "down"
    # the way out: discard node2's copy, recreate it, full sync from node1
    pair.call("node2", "remove")
    pair.call("node2", "create")
    pair.attach()
    assert pair.digest("node1") == pair.digest("node2")
    pair.call("node1", "stop")
    pair.call("node2", "stop")


def test_live_migration_hand_over_keeps_copies_identical(pair: Pair) -> None:
    st = pair.attach()
    assert pair.call("node2", "status")["vm_uri"].startswith("nbd://")  # incoming VM's export
    pair.io("node1", st["vm_uri"], "write -P 0x61 0 1M")
    # after the guest moved: the old primary ends its mirror and serves the new one
    pair.call("node1", "start-secondary")
    # what the old primary now serves, as its migration answer tells the new one (no probe)
    served = pair.call("node1", "served")
    assert served["export"].startswith(f"{pair.uuid}.") and served["generation"]
    st = pair.call("node2", "start-primary", "none", "-", json.dumps(served))
    assert st["in_sync"] and st["copied_bytes"] == 0, st
    pair.io("node2", st["vm_uri"], "write -P 0x62 2M 1M", "flush")
    assert pair.call("node2", "status")["in_sync"]
    assert pair.digest("node1") == pair.digest("node2")
    pair.call("node2", "stop")
    pair.call("node1", "stop")
    assert pair.call("node1", "generation")["current"] == \
        pair.call("node2", "generation")["current"]
