"""Migration QMP sequences of Kvm against a scripted QEMU, and the fake hypervisor's protocol.

The real thing runs in tests/integration/test_kvm_migration.py (slow); here every branch
(success, non-live, failure, timeout + cancel, abort after completion, target finish) is
pinned in milliseconds by replacing the QMP call with a small state machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from herd.errors import HypervisorError
from herd.hypervisor import kvm as kvm_mod
from herd.hypervisor.base import DiskSpec, InstanceSpec
from herd.hypervisor.fake import FakeHypervisor
from herd.hypervisor.kvm import Kvm, migration, params
from herd.hypervisor.kvm.detect import KvmProbe
from herd.hypervisor.kvm.runtime import RuntimeRecord, read_record, write_record
from herd.paths import HerdPaths


class ScriptedQemu:
    """Answers QMP like QEMU would during a migration; ``script`` is the status sequence
    query-migrate reports after 'migrate' (the last one repeats)."""

    def __init__(self, runstate: str = "running", script: list[str] | None = None,
                 status: str | None = None) -> None:
        self.runstate = runstate
        self.script = list(script or ["active", "completed"])
        self.status = status
        self.calls: list[tuple[str, dict[str, Any] | None]] = []
        self.capabilities: dict[str, bool] = {}
        #: MIGRATION events QEMU would send to a listening client (see _install)
        self.events: asyncio.Queue[dict[str, Any]] | None = None

    async def execute(self, sock: Path, command: str, arguments: dict[str, Any] | None = None,
                      *, timeout: float = 5.0) -> Any:
        self.calls.append((command, arguments))
        if command == "query-status":
            return {"status": self.runstate}
        if command == "query-migrate-capabilities":
            return [{"capability": k, "state": v} for k, v in self.capabilities.items()]
        if command == "migrate-set-capabilities":
            self.capabilities.update({c["capability"]: c["state"]
                                      for c in (arguments or {})["capabilities"]})
            return {}
        if command == "query-migrate":
            if self.status is None:
                return {}
            if self.status not in migration.FINAL_STATES and self.script:
                self.status = self.script.pop(0) if len(self.script) > 1 else self.script[0]
                if self.status == "completed" and self.runstate == "running":
                    self.runstate = "postmigrate"
            info: dict[str, Any] = {"status": self.status, "total-time": 120, "downtime": 9,
                                    "ram": {"transferred": 5 << 20, "total": 128 << 20}}
            if self.status == "failed":
                info["error-desc"] = "Connection reset by peer"
            return info
        if command == "migrate":
            self.status = "setup"
        elif command == "stop":
            self.runstate = "paused"
        elif command == "cont":
            self.runstate = "running"
        elif command == "migrate_cancel":
            self.script = ["cancelled"]
            self.status = "cancelling"
        return {}

    def commands(self) -> list[str]:
        return [c for c, _ in self.calls if not c.startswith("query-")]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Kvm, Any]:
    paths = HerdPaths(tmp_path)
    paths.ensure()
    kvm = Kvm(paths)
    ended: list[int] = []

    async def terminate(pid: int, grace: float = 1.0) -> None:
        ended.append(pid)

    async def wait_gone(pid: int, timeout: float, interval: float = 0.05) -> bool:
        return True

    monkeypatch.setattr(kvm_mod, "is_our_qemu", lambda pid, files, uuid: True)
    monkeypatch.setattr(kvm_mod.process, "terminate", terminate)
    monkeypatch.setattr(kvm_mod.process, "wait_gone", wait_gone)
    monkeypatch.setattr(migration, "POLL_INTERVAL", 0.001)
    kvm._probe = KvmProbe(kvm_usable=False, kvm_reason="test", qemu_version="7.2.22")
    return kvm, ended


def _install(monkeypatch: pytest.MonkeyPatch, qemu: ScriptedQemu) -> ScriptedQemu:
    monkeypatch.setattr(kvm_mod.qmp, "execute", qemu.execute)

    @contextlib.asynccontextmanager
    async def connected(sock: Path, *, timeout: float = 5.0) -> AsyncIterator[Any]:
        async def run(command: str, arguments: dict[str, Any] | None = None) -> Any:
            return await qemu.execute(sock, command, arguments)
        yield run

    @contextlib.asynccontextmanager
    async def listening(sock: Path, names: tuple[str, ...], *,
                        timeout: float = 5.0) -> AsyncIterator[Any]:
        qemu.events = asyncio.Queue()
        async with connected(sock) as run:
            yield run, qemu.events

    monkeypatch.setattr(kvm_mod.qmp, "connected", connected)
    monkeypatch.setattr(kvm_mod.qmp, "listening", listening)
    return qemu


def _record(kvm: Kvm, hv: dict[str, Any] | None = None,
            migration_state: dict[str, Any] | None = None, accel: str = "kvm") -> RuntimeRecord:
    spec = InstanceSpec(name="vm", uuid="12345678-aaaa-bbbb-cccc-1234567890ab", memory=128,
                        vcpus=1, hvparams=hv or {})
    record = RuntimeRecord(spec=spec, pid=os.getpid(), accel=accel, started=0.0, argv=[],
                           migration=migration_state)
    write_record(kvm._files("vm").runtime, record)
    return record


def _runtime(kvm: Kvm) -> RuntimeRecord | None:
    return read_record(kvm._files("vm").runtime)


def test_the_end_is_seen_by_qemus_event_not_by_a_later_poll(
        env: tuple[Kvm, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Near the end the source waits on one connection for QEMU's MIGRATION event: the end
    is seen as QEMU announces it (no poll interval in the guest's pause), and QEMU's own
    time of the event bounds when it finished."""
    kvm, _ = env
    qemu = _install(monkeypatch, ScriptedQemu(script=["active"]))
    _record(kvm)
    monkeypatch.setattr(migration, "FAST_POLL", 10.0)  # a poll would come far too late
    ended_at = time.time() + 0.05

    async def scenario() -> dict[str, Any]:
        async def qemu_ends() -> None:
            while qemu.events is None:
                await asyncio.sleep(0.005)
            await asyncio.sleep(ended_at - time.time())
            qemu.script = ["completed"]
            await qemu.events.put({"event": "MIGRATION", "data": {"status": "device"}})
            await qemu.events.put({"event": "MIGRATION", "data": {"status": "completed"},
                                   "timestamp": {"seconds": int(ended_at),
                                                 "microseconds": int(ended_at % 1 * 1e6)}})

        ending = asyncio.create_task(qemu_ends())
        began = time.monotonic()
        stats = await kvm.migrate("vm", "203.0.113.2", 8102)
        await ending
        assert time.monotonic() - began < migration.HOLD
        return stats

    stats = asyncio.run(scenario())
    assert stats["status"] == "completed"
    assert abs(stats["completed_after"] - ended_at) < 1e-5
    assert stats["completed_after"] <= stats["completed_by"] < ended_at + 0.2


def test_without_the_events_capability_the_end_is_polled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A migration an older noded started has no MIGRATION events: the held connection polls
    (else it would wait for an event that never comes until the hold ends)."""
    qemu = _install(monkeypatch, ScriptedQemu(script=["active"] * 5 + ["completed"]))
    qemu.status = "active"
    began = time.monotonic()
    info = asyncio.run(migration.wait(Path("/nonexistent"), 5.0, 128))
    assert info["status"] == "completed" and time.monotonic() - began < migration.HOLD
    assert "query-migrate-capabilities" in [c for c, _ in qemu.calls]


def test_live_success_then_finish_source(env: tuple[Kvm, Any],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    kvm, _ = env
    qemu = _install(monkeypatch, ScriptedQemu())
    _record(kvm)
    stats = asyncio.run(kvm.migrate("vm", "203.0.113.2", 8102))
    assert qemu.commands() == ["migrate-set-parameters", "migrate-set-capabilities", "migrate"]
    assert qemu.calls[2:5] == [("migrate-set-parameters",
                                {"max-bandwidth": 128 << 20, "downtime-limit": 30}),
                               ("migrate-set-capabilities",
                                {"capabilities": [{"capability": "events", "state": True}]}),
                               ("migrate", {"uri": "tcp:203.0.113.2:8102"})]
    assert stats["status"] == "completed" and stats["live"]
    assert stats["total_time_ms"] == 120 and stats["downtime_ms"] == 9
    assert stats["transferred_bytes"] == 5 << 20
    # wall-clock bounds of QEMU's end: after the last poll that saw it under way was sent
    assert 0 < stats["completed_after"] <= stats["completed_by"]
    record = _runtime(kvm)
    assert record is not None and record.migration is not None
    assert record.migration["role"] == "source" and record.migration["status"] == "completed"
    assert asyncio.run(kvm.instance_info("vm")).migration == "source"  # type: ignore[union-attr]

    asyncio.run(kvm.finish_migration_source("vm"))
    assert qemu.commands()[-1] == "quit" and _runtime(kvm) is None


def test_hvparams_and_arguments_set_the_limits(env: tuple[Kvm, Any],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    kvm, _ = env
    qemu = _install(monkeypatch, ScriptedQemu())
    _record(kvm, {"migration_bandwidth": 100, "migration_downtime": 50})
    asyncio.run(kvm.migrate("vm", "2001:db8::2", 9000))
    assert ("migrate-set-parameters", {"max-bandwidth": 100 << 20, "downtime-limit": 50}) \
        in qemu.calls
    assert ("migrate", {"uri": "tcp:[2001:db8::2]:9000"}) in qemu.calls
    asyncio.run(kvm.finish_migration_source("vm"))
    qemu = _install(monkeypatch, ScriptedQemu())
    _record(kvm, {"migration_bandwidth": 100})
    asyncio.run(kvm.migrate("vm", "h", 1, bandwidth_mibps=7, downtime_ms=300))
    assert ("migrate-set-parameters", {"max-bandwidth": 7 << 20, "downtime-limit": 300}) \
        in qemu.calls


def test_the_next_step_runs_as_soon_as_qemu_completed_and_only_then(
        env: tuple[Kvm, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """``then`` (the disks' hand-over) runs with the figures once QEMU completed, beside the
    record's update, and may add to them; after a failed migration it does not run."""
    kvm, _ = env
    seen: list[dict[str, Any]] = []

    async def then(stats: dict[str, Any]) -> None:
        seen.append(dict(stats))
        stats["handed_over_ms"] = 3

    _install(monkeypatch, ScriptedQemu())
    _record(kvm)
    stats = asyncio.run(kvm.migrate("vm", "203.0.113.2", 8102, then=then))
    assert [s["status"] for s in seen] == ["completed"] and stats["handed_over_ms"] == 3
    record = _runtime(kvm)
    assert record is not None and (record.migration or {}).get("status") == "completed"
    seen.clear()
    _install(monkeypatch, ScriptedQemu(script=["active", "failed"]))
    _record(kvm)
    with pytest.raises(HypervisorError):
        asyncio.run(kvm.migrate("vm", "203.0.113.2", 8102, then=then))
    assert seen == []


def test_non_live_failure_resumes_the_guest(env: tuple[Kvm, Any],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    kvm, _ = env
    qemu = _install(monkeypatch, ScriptedQemu(script=["active", "failed"]))
    _record(kvm)
    with pytest.raises(HypervisorError, match="failed: Connection reset by peer; the "
                                              "instance stays on this node"):
        asyncio.run(kvm.migrate("vm", "203.0.113.2", 8102, live=False))
    assert qemu.commands() == ["migrate-set-parameters", "migrate-set-capabilities", "stop",
                               "migrate", "cont"]
    assert qemu.runstate == "running"
    record = _runtime(kvm)
    assert record is not None and record.migration is None


def test_tcg_on_old_qemu_migrates_non_live(env: tuple[Kvm, Any],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    kvm, _ = env
    qemu = _install(monkeypatch, ScriptedQemu())
    _record(kvm, accel="tcg")
    stats = asyncio.run(kvm.migrate("vm", "h", 1))
    assert "stop" in qemu.commands() and not stats["live"] and stats["live_requested"]
    asyncio.run(kvm.finish_migration_source("vm"))
    kvm._probe = KvmProbe(kvm_usable=False, kvm_reason="test", qemu_version="9.0.2")
    qemu = _install(monkeypatch, ScriptedQemu())
    _record(kvm, accel="tcg")
    assert asyncio.run(kvm.migrate("vm", "h", 1))["live"] and "stop" not in qemu.commands()
    assert migration.live_is_safe("kvm", "7.2.22")
    assert not migration.live_is_safe("tcg", "8.2.1") and not migration.live_is_safe("tcg", "")


def test_non_live_reports_the_whole_pause_as_downtime(env: tuple[Kvm, Any],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    kvm, _ = env
    _install(monkeypatch, ScriptedQemu())
    _record(kvm)
    stats = asyncio.run(kvm.migrate("vm", "h", 1, live=False))
    assert stats["downtime_ms"] == 120 and stats["qemu_downtime_ms"] == 9


def test_timeout_cancels(env: tuple[Kvm, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    kvm, _ = env
    qemu = _install(monkeypatch, ScriptedQemu(script=["active"]))
    _record(kvm)
    with pytest.raises(HypervisorError, match=r"did not finish within 0.05 s \(5 of 128 MiB "
                                              r"sent, status 'active'\); cancelled"):
        asyncio.run(kvm.migrate("vm", "203.0.113.2", 8102, timeout=0.05))
    assert "migrate_cancel" in qemu.commands() and "cont" not in qemu.commands()
    assert qemu.runstate == "running"


def test_paused_guest_is_not_resumed_after_failure(env: tuple[Kvm, Any],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    kvm, _ = env
    qemu = _install(monkeypatch, ScriptedQemu(runstate="paused", script=["failed"]))
    _record(kvm)
    with pytest.raises(HypervisorError):
        asyncio.run(kvm.migrate("vm", "h", 1, live=False))
    assert "stop" not in qemu.commands() and "cont" not in qemu.commands()


def test_refusals(env: tuple[Kvm, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    kvm, _ = env
    qemu = _install(monkeypatch, ScriptedQemu())
    _record(kvm)
    with pytest.raises(HypervisorError, match="not ending vm here"):
        asyncio.run(kvm.finish_migration_source("vm"))  # guest still runs here
    assert "quit" not in qemu.commands()
    _install(monkeypatch, ScriptedQemu(status="active"))
    with pytest.raises(HypervisorError, match="migration status 'active'"):
        asyncio.run(kvm.migrate("vm", "h", 1))
    _record(kvm, migration_state={"role": "target"})
    with pytest.raises(HypervisorError, match="incoming migration"):
        asyncio.run(kvm.migrate("vm", "h", 1))


def test_abort_after_completion_resumes_source(env: tuple[Kvm, Any],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The target failed to take over: the source gets its guest back (Ganeti's
    FinalizeMigrationSource(success=False))."""
    kvm, _ = env
    qemu = _install(monkeypatch, ScriptedQemu())
    _record(kvm)
    asyncio.run(kvm.migrate("vm", "h", 1))
    assert qemu.runstate == "postmigrate"
    asyncio.run(kvm.abort_migration("vm"))
    assert qemu.commands()[-1] == "cont" and qemu.runstate == "running"
    record = _runtime(kvm)
    assert record is not None and record.migration is None
    asyncio.run(kvm.abort_migration("vm"))  # nothing in progress: no-op
    assert qemu.commands().count("cont") == 1


def test_target_finish(env: tuple[Kvm, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    kvm, ended = env
    qemu = _install(monkeypatch, ScriptedQemu(runstate="paused", status="completed"))
    _record(kvm, migration_state={"role": "target"})
    before = time.time()
    resumed = asyncio.run(kvm.finish_migration_target("vm", True))
    assert qemu.commands() == ["cont"]
    assert resumed is not None and before <= resumed <= time.time()  # the pause's end
    record = _runtime(kvm)
    assert record is not None and record.migration is None

    _install(monkeypatch, ScriptedQemu(runstate="paused", status="failed"))
    _record(kvm, migration_state={"role": "target"})
    with pytest.raises(HypervisorError, match="'failed'"):
        asyncio.run(kvm.finish_migration_target("vm", True))

    asyncio.run(kvm.finish_migration_target("vm", False))
    assert ended == [os.getpid()] and _runtime(kvm) is None
    _record(kvm, migration_state={"role": "target"})
    asyncio.run(kvm.abort_migration("vm"))
    assert ended == [os.getpid()] * 2 and _runtime(kvm) is None


def test_poll_interval_is_short_only_near_the_end() -> None:
    fast, slow = migration.FAST_POLL, migration.POLL_INTERVAL
    mib = 1 << 20

    def active(remaining_mib: int) -> dict[str, Any]:
        return {"status": "active", "ram": {"remaining": remaining_mib * mib}}

    # 32 MiB/s: what is left takes more than NEAR_END (0.3 s) above 9.6 MiB
    assert migration.poll_interval(active(100), 32) == slow
    assert migration.poll_interval(active(9), 32) == fast
    assert migration.poll_interval(active(0), 32) == fast
    assert migration.poll_interval(active(30), 128) == fast  # 0.23 s at 128 MiB/s
    # QEMU's stop-and-copy and after: the guest is paused, poll short
    for status in ("device", "pre-switchover", "cancelling"):
        assert migration.poll_interval({"status": status}, 32) == fast
    # not sending yet; an unknown bandwidth cannot tell how near the end is
    assert migration.poll_interval({"status": "setup"}, 32) == slow
    assert migration.poll_interval({}, 32) == slow
    assert migration.poll_interval(active(100), None) == fast


def test_nbd_disks_pass_the_startable_check(tmp_path: Path) -> None:
    kvm = Kvm(HerdPaths(tmp_path))
    hv = params.fill({})
    spec = InstanceSpec(name="vm", uuid="12345678-aaaa-bbbb-cccc-1234567890ab", memory=128,
                        vcpus=1, hvparams={},
                        disks=[DiskSpec(0, "nbd+unix:///d?socket=/nonexistent/q.sock"),
                               DiskSpec(1, "nbd://203.0.113.1/d")])
    kvm._check_startable(spec, hv)
    spec.disks.append(DiskSpec(2, "nbd+unix:///d"))
    with pytest.raises(HypervisorError, match="socket"):
        kvm._check_startable(spec, hv)
    spec.disks[2] = DiskSpec(2, str(tmp_path / "missing.img"))
    with pytest.raises(HypervisorError, match="not found"):
        kvm._check_startable(spec, hv)


def test_helpers() -> None:
    assert migration.uri("198.51.100.2", 8102) == "tcp:198.51.100.2:8102"
    assert migration.uri("::1", 1) == "tcp:[::1]:1"
    assert migration.timeout_for(128, 32) == migration.TIMEOUT_BASE + 16
    assert migration.timeout_for(65536, 32) > 8000
    assert migration.stats({})["status"] == "" and migration.stats({})["downtime_ms"] == 0


def test_fake_hypervisor_protocol(tmp_path: Path) -> None:
    async def body() -> None:
        src = FakeHypervisor(HerdPaths(tmp_path / "a"))
        dst = FakeHypervisor(HerdPaths(tmp_path / "b"))
        spec = InstanceSpec(name="vm", uuid="u", memory=64, vcpus=1, hvparams={})
        await src.start(spec)
        info = await dst.accept_migration(spec, 8102, "203.0.113.2")
        assert info.state == "paused" and info.migration == "target"
        with pytest.raises(HypervisorError):
            await src.finish_migration_source("vm")  # not migrated yet
        stats = await src.migrate("vm", "203.0.113.2", 8102, live=False)
        assert stats["status"] == "completed" and not stats["live"]
        with pytest.raises(HypervisorError):
            await src.migrate("vm", "203.0.113.2", 8102)
        await dst.finish_migration_target("vm", True)
        await src.finish_migration_source("vm")
        assert await src.list_instances() == []
        moved = await dst.instance_info("vm")
        assert moved is not None and moved.state == "running" and moved.migration is None
        # and back, failing: the target goes, the source keeps the guest running
        await src.accept_migration(spec, 8102, "203.0.113.1")
        await dst.migrate("vm", "203.0.113.1", 8102)
        await src.finish_migration_target("vm", False)
        await dst.abort_migration("vm")
        assert await src.list_instances() == []
        back = await dst.instance_info("vm")
        assert back is not None and back.state == "running" and back.migration is None
    asyncio.run(body())
