"""Real (TCG) guests on NBD disks, and live migration between two lab nodes.

Why these tests exist: the mirrored template gives each VM its disk over NBD from a storage
daemon, and moves VMs between nodes with QEMU's live migration while the guest writes. Both
must lose no acknowledged write: the test guest in writer mode prints ``HERD_ACK seq=N`` once
record N is durable, so its serial output (split over the logs of every QEMU the guest ran in)
must be one gapless sequence and the disk must hold every acknowledged record.

The Kvm object must run inside a node's network namespace (taps, listening addresses), so each
node gets an *agent*: this file run as ``python test_kvm_migration.py --agent`` inside the node,
taking one JSON request per line (like noded's RPC would) and answering one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from herd.hypervisor.base import DiskSpec, InstanceSpec, NicSpec
from herd.hypervisor.kvm import migration
from herd.hypervisor.kvm.detect import qemu_version
from herd.lab import guest_records
from herd.network.tap import tap_name

REPO = Path(__file__).resolve().parents[2]
GUEST = REPO / "build/test-guest"
LIVE_SAFE = migration.live_is_safe("tcg", qemu_version())
MEMORY = 128
MIGRATION_PORT = 8102
NBD_PORT = 10809
ACK = re.compile(rb"HERD_ACK seq=(\d+)")


# -- the agent (runs inside a lab node) -------------------------------------------------------
async def _agent_op(kvm: Any, op: str, a: dict[str, Any]) -> Any:
    if op == "start":
        return (await kvm.start(InstanceSpec.from_dict(a["spec"]))).to_dict()
    if op == "accept":
        info = await kvm.accept_migration(InstanceSpec.from_dict(a["spec"]), a["port"],
                                          a["listen"])
        return info.to_dict()
    if op == "migrate":
        return await kvm.migrate(a["name"], a["target"], a["port"], **a.get("kw", {}))
    if op == "finish_source":
        return await kvm.finish_migration_source(a["name"])
    if op == "finish_target":
        return await kvm.finish_migration_target(a["name"], a["success"])
    if op == "abort":
        return await kvm.abort_migration(a["name"])
    if op == "info":
        info = await kvm.instance_info(a["name"])
        return None if info is None else info.to_dict()
    if op == "stop":
        return await kvm.stop(a["name"], 0)
    raise ValueError(f"unknown op {op}")


async def _agent() -> None:
    from herd.errors import HerdError
    from herd.hypervisor.kvm import Kvm
    from herd.paths import current

    kvm = Kvm(current())
    while line := await asyncio.to_thread(sys.stdin.readline):
        req = json.loads(line)
        t0 = time.monotonic()
        try:
            reply: dict[str, Any] = {"ok": await _agent_op(kvm, req["op"], req["args"])}
        except HerdError as exc:
            reply = {"error": str(exc)}
        reply["seconds"] = time.monotonic() - t0
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


class Agent:
    """The test's handle on one node's agent process."""

    def __init__(self, lab: Any, node: str) -> None:
        self.node = node
        self.proc = lab.popen(node, sys.executable, __file__, "--agent")

    def call(self, op: str, timeout: float = 120, **args: Any) -> Any:
        reply = self.request(op, timeout, **args)
        if "error" in reply:
            raise AssertionError(f"{self.node} {op}: {reply['error']}")
        return reply["ok"]

    def request(self, op: str, timeout: float = 120, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps({"op": op, "args": args}) + "\n").encode())
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            err = b""
            if self.proc.poll() is not None and self.proc.stderr is not None:
                err = self.proc.stderr.read()
            raise AssertionError(f"{self.node} agent: no answer to {op} within {timeout} s "
                                 f"{err.decode(errors='replace')[-2000:]}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- helpers ---------------------------------------------------------------------------------
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None
                       or shutil.which("qemu-storage-daemon") is None,
                       reason="QEMU and qemu-storage-daemon needed"),
    pytest.mark.skipif(not (GUEST / "vmlinuz").exists(),
                       reason="test guest not built (tools/build-test-guest)"),
]


def _spec(name: str, disk: str, nics: list[NicSpec] | None = None, **hv: Any) -> InstanceSpec:
    return InstanceSpec(
        name=name, uuid=str(uuid.uuid4()), memory=MEMORY, vcpus=1,
        hvparams={"kvm_flag": "disabled", "kernel_path": str(GUEST / "vmlinuz"),
                  "initrd_path": str(GUEST / "initrd.img"), "root_path": "",
                  "kernel_args": "quiet herd.mode=writer", "serial_speed": 115200, **hv},
        disks=[DiskSpec(0, disk)], nics=nics or [])


def _make_disk(path: Path, name: str, size_mib: int = 64) -> None:
    with open(path, "wb") as f:
        f.write(guest_records.format_header(name, "busybox", int(time.time())))
        f.truncate(size_mib << 20)


def _qsd_argv(image: Path, sock: Path, tcp: str | None = None) -> list[str]:
    addr = (f"addr.type=inet,addr.host={tcp},addr.port={NBD_PORT}" if tcp
            else f"addr.type=unix,addr.path={sock}")
    return ["qemu-storage-daemon",
            "--blockdev", f"driver=file,filename={image},node-name=f",
            "--nbd-server", addr,
            "--export", "type=nbd,id=e,node-name=f,name=disk0,writable=on"]


def _acks(data: bytes) -> list[int]:
    return [int(m) for m in ACK.findall(data)]


def _wait_acks(log: Path, minimum: int, timeout: float, offset: int = 0) -> list[int]:
    """Wait until the log (from ``offset``) shows at least ``minimum`` ACKs; all of them."""
    deadline = time.monotonic() + timeout
    while True:
        data = log.read_bytes()[offset:] if log.exists() else b""
        acks = _acks(data)
        if len(acks) >= minimum:
            return acks
        if b"HERD_ERROR" in data or time.monotonic() > deadline:
            raise AssertionError(f"{len(acks)} ACKs in {log} after {timeout} s:\n"
                                 f"{data.decode(errors='replace')[-1500:]}")
        time.sleep(0.1)


def _assert_gapless(acks: list[int]) -> None:
    assert acks, "no ACKs at all"
    assert acks == list(range(acks[0], acks[0] + len(acks))), \
        f"ACK sequence has gaps or repeats: {acks[:5]} ... {acks[-5:]}"


# -- test 1: NBD disk over a unix socket, storage daemon restarted under a writing guest ----
def test_nbd_unix_disk_survives_storage_daemon_restart(tmp_path: Path) -> None:
    from herd.hypervisor.kvm import Kvm
    from herd.paths import HerdPaths

    image, sock = tmp_path / "disk0.img", tmp_path / "nbd.sock"
    _make_disk(image, "nbd1")
    qsd = subprocess.Popen(_qsd_argv(image, sock), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    paths = HerdPaths(tmp_path / "root")
    paths.ensure()
    kvm = Kvm(paths)
    log = paths.instance_run_dir / "nbd1.serial.log"

    async def body() -> None:
        nonlocal qsd
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        info = await kvm.start(_spec("nbd1", f"nbd+unix:///disk0?socket={sock}"))
        assert info.state == "running"
        acks = await asyncio.to_thread(_wait_acks, log, 10, 60)
        # Restart the storage daemon: guest I/O stalls (reconnect-delay), then goes on.
        qsd.send_signal(signal.SIGTERM)
        qsd.wait(10)
        await asyncio.sleep(1.0)
        before = len(_acks(log.read_bytes()))
        qsd = subprocess.Popen(_qsd_argv(image, sock), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
        acks = await asyncio.to_thread(_wait_acks, log, before + 10, 60)
        assert (await kvm.instance_info("nbd1")) is not None
        await kvm.stop("nbd1", 0)
        _assert_gapless(acks)
        assert acks[0] == 1 and b"HERD_ERROR" not in log.read_bytes()
        scan = guest_records.read_records(image)
        assert scan.ok and scan.last >= acks[-1], scan

    try:
        asyncio.run(body())
    finally:
        asyncio.run(kvm.stop("nbd1", 0))
        qsd.terminate()
        qsd.wait(10)


# -- test 2: live migration node1 -> node2 -> node1 while writing ----------------------------
@pytest.fixture(scope="module")
def lab() -> Any:
    if os.geteuid() != 0 or shutil.which("socat") is None:
        pytest.skip("needs root (network namespaces) and socat")
    from herd.lab.cluster import lab_cluster

    with lab_cluster(2, start_daemons=False) as lab:
        yield lab


def test_live_migration_round_trip_and_aborts(lab: Any, capsys: Any) -> None:
    n1, n2 = lab.node("node1"), lab.node("node2")
    image, sock = n1.root / "disk0.img", n1.root / "nbd.sock"
    _make_disk(image, "mig1")
    # One storage daemon on node1: node1's VM uses its unix socket, node2's VM reaches the
    # same export over node1's secondary address (socat forwards TCP to the unix socket).
    qsd = lab.popen("node1", *_qsd_argv(image, sock))
    fwd = lab.popen("node1", "socat",
                    f"TCP-LISTEN:{NBD_PORT},bind={n1.secondary_ip},fork,reuseaddr",
                    f"UNIX-CONNECT:{sock}")
    a1, a2 = Agent(lab, "node1"), Agent(lab, "node2")
    nic = [NicSpec(0, "aa:00:00:4e:00:01", "bridged", "br0")]
    spec1 = _spec("mig1", f"nbd+unix:///disk0?socket={sock}", nic)
    spec2 = InstanceSpec.from_dict({**spec1.to_dict(), "disks": [
        {"index": 0, "path": f"nbd://{n1.secondary_ip}:{NBD_PORT}/disk0", "mode": "rw"}]})
    log1 = n1.paths.instance_run_dir / "mig1.serial.log"
    log2 = n2.paths.instance_run_dir / "mig1.serial.log"
    figures: list[dict[str, Any]] = []

    tap = tap_name(spec1.uuid, 0)

    def tap_master(node: str) -> str | None:
        out = lab.run(node, "ip", "-j", "-d", "link", "show", tap, check=False)
        return json.loads(out.stdout)[0].get("master") if out.returncode == 0 else None

    def migrate(src: Agent, dst: Agent, dst_ip: str, spec: InstanceSpec,
                **kw: Any) -> dict[str, Any]:
        info = dst.call("accept", spec=spec.to_dict(), port=MIGRATION_PORT, listen=dst_ip)
        assert info["state"] == "paused" and info["migration"] == "target"
        assert tap_master(dst.node) == "br0" and tap_master(src.node) == "br0"
        stats = src.call("migrate", name="mig1", target=dst_ip, port=MIGRATION_PORT, kw=kw)
        t0 = time.monotonic()
        dst.call("finish_target", name="mig1", success=True)
        resumed_after = time.monotonic() - t0
        src.call("finish_source", name="mig1")
        assert tap_master(src.node) is None and tap_master(dst.node) == "br0"
        runtime = lab.node(dst.node).paths.instance_run_dir / "mig1.runtime.json"
        assert f"mac={nic[0].mac}" in " ".join(json.loads(runtime.read_text())["argv"])
        stats["cont_after_ms"] = int(resumed_after * 1000)
        figures.append(stats)
        assert src.call("info", name="mig1") is None
        moved = dst.call("info", name="mig1")
        assert moved["state"] == "running" and moved["migration"] is None
        return stats

    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        a1.call("start", spec=spec1.to_dict())
        seg1 = _wait_acks(log1, 5, 60)

        # node1 -> node2, live, over the secondary network, hvparam defaults (128 MiB/s, 30 ms)
        s1 = migrate(a1, a2, n2.secondary_ip, spec2)
        assert s1["status"] == "completed" and s1["bandwidth_mibps"] == 128
        # QEMU < 9.0 loses dirty pages in live TCG migrations: Kvm migrates non-live then.
        assert s1["live_requested"] and s1["live"] == LIVE_SAFE
        assert s1["transferred_bytes"] < MEMORY << 20 and s1["disk_transferred_bytes"] == 0
        assert s1["total_time_ms"] > 0 and s1["downtime_ms"] > 0
        assert not (n1.paths.instance_run_dir / "mig1.runtime.json").exists()
        split1 = log1.stat().st_size
        acks2 = _wait_acks(log2, 5, 60)
        assert acks2[0] > seg1[0]

        # node2 -> node1, live, over the primary network, explicit limits
        s2 = migrate(a2, a1, n1.primary_ip, spec1, bandwidth_mibps=256, downtime_ms=100)
        assert s2["status"] == "completed" and s2["bandwidth_mibps"] == 256
        _wait_acks(log1, 5, 60, offset=split1)

        # Unreachable target: a clear error, and the guest goes on writing on node1.
        t0 = time.monotonic()
        reply = a1.request("migrate", name="mig1", target="203.0.113.99",
                           port=MIGRATION_PORT)
        took = time.monotonic() - t0
        assert "error" in reply and "203.0.113.99" in reply["error"], reply
        assert "stays on this node" in reply["error"], reply
        # A target that accepts but is too slow: timeout, migrate_cancel, target killed.
        a2.call("accept", spec=spec2.to_dict(), port=MIGRATION_PORT, listen=n2.secondary_ip)
        # A second target on the port now listening: QEMU's bind error, nothing left over.
        other = InstanceSpec.from_dict({**spec2.to_dict(), "name": "mig2",
                                        "uuid": str(uuid.uuid4()), "nics": []})
        busy = a2.request("accept", spec=other.to_dict(), port=MIGRATION_PORT,
                          listen=n2.secondary_ip)
        assert "error" in busy and "in use" in busy["error"], busy
        assert a2.call("info", name="mig2") is None
        slow = a1.request("migrate", name="mig1", target=n2.secondary_ip,
                          port=MIGRATION_PORT, kw={"bandwidth_mibps": 1, "timeout": 2})
        assert "error" in slow and "did not finish within 2 s" in slow["error"], slow
        a2.call("finish_target", name="mig1", success=False)
        assert a2.call("info", name="mig1") is None
        info = a1.call("info", name="mig1")
        assert info["state"] == "running" and info["migration"] is None
        before = len(_acks(log1.read_bytes()[split1:]))
        _wait_acks(log1, before + 5, 60, offset=split1)

        # node1 -> node2 once more, non-live (Ganeti's --non-live: paused for the transfer)
        split2 = log2.stat().st_size
        s3 = migrate(a1, a2, n2.secondary_ip, spec2, live=False, bandwidth_mibps=512)
        assert s3["status"] == "completed" and not s3["live"]
        _wait_acks(log2, 5, 60, offset=split2)

        a2.call("stop", name="mig1")
        stream = (log1.read_bytes()[:split1] + log2.read_bytes()[:split2]
                  + log1.read_bytes()[split1:] + log2.read_bytes()[split2:])
        acks = _acks(stream)
        _assert_gapless(acks)
        assert acks[0] == 1 and stream.count(b"HERD_WRITER start=") == 1
        assert b"HERD_ERROR" not in stream
        qsd.send_signal(signal.SIGTERM)
        qsd.wait(10)
        scan = guest_records.read_records(image)
        assert scan.ok and scan.last >= acks[-1], scan
        with capsys.disabled():
            for f in figures:
                print(f"\nmigration {f['target']} live={f['live']}: total "
                      f"{f['total_time_ms']} ms, downtime {f['downtime_ms']} ms "
                      f"(+{f['cont_after_ms']} ms to cont), "
                      f"{f['transferred_bytes'] >> 10} KiB sent, wall {f['wall_time_ms']} ms")
            print(f"unreachable target failed after {took:.1f} s: {reply['error']}")
            print(f"slow target: {slow['error']}")
            print(f"busy port: {busy['error']}")
            print(f"{len(acks)} records acknowledged, disk last={scan.last}")
    finally:
        for agent in (a1, a2):
            try:
                agent.request("stop", 30, name="mig1")
            finally:
                agent.close()
        for proc in (fwd, qsd):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__" and sys.argv[1:] == ["--agent"]:
    asyncio.run(_agent())
