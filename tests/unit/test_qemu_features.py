"""QEMU 7.2 vs 10.0: the version-dependent decisions (migration mode, mirror copy mode), the
version detection they rest on, and the guest pause the migration job reports."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from herd import errors
from herd import qemu_features as qf
from herd.hypervisor.kvm import detect, migration
from herd.logic import live_move
from herd.logic.live_move import _Laps, guest_pause, wall_pause
from herd.paths import HerdPaths
from herd.storage.mirror import daemon, graph, states
from herd.storage.mirror.records import Runtime


def _in_sync(job: dict[str, Any], rt: dict[str, Any]) -> bool:
    return states.in_sync(job, Runtime.from_dict(rt))


def switch_due(job: dict[str, Any], rt: dict[str, Any]) -> bool:
    return states.switch_due(job, Runtime.from_dict(rt))


def write_in_flight(job: dict[str, Any], rt: dict[str, Any]) -> bool:
    return states.write_in_flight(job, Runtime.from_dict(rt))


def test_parse_versions() -> None:
    assert qf.parse("7.2.22") == (7, 2, 22)
    assert qf.parse("10.0.2") == (10, 0, 2)
    assert qf.parse("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)") \
        == (10, 0, 2)
    assert qf.parse("9.0") == (9, 0, 0)
    assert qf.parse("") is None and qf.parse("qemu: not found") is None


def test_features_by_version() -> None:
    old, new = qf.features("7.2.22"), qf.features("10.0.2")
    assert not old.tcg_live_migration and not old.mirror_job_change
    assert new.tcg_live_migration and new.mirror_job_change
    assert not new.keepalive_tuning and qf.features("10.1.0").keepalive_tuning
    assert qf.features("8.2.0").mirror_job_change and not qf.features("8.2.0").tcg_live_migration
    unknown = qf.features("")
    assert unknown.label == "unknown" and not any(
        (unknown.tcg_live_migration, unknown.mirror_job_change, unknown.keepalive_tuning))
    assert new.label == "10.0.2"


@pytest.mark.parametrize(("accel", "version", "live"), [
    ("tcg", "7.2.22", False),   # Debian 12: TCG loses guest writes in a live migration
    ("tcg", "8.2.1", False),
    ("tcg", "", False),         # unknown: the safe choice
    ("tcg", "9.0.0", True),
    ("tcg", "10.0.2", True),    # bookworm-backports / Debian 13
    ("kvm", "7.2.22", True),    # KVM tracks dirty pages itself
    ("kvm", "10.0.2", True),
])
def test_migration_plan(accel: str, version: str, live: bool) -> None:
    plan = qf.migration_plan(accel, version, True)
    assert plan.live is live
    assert bool(plan.note) is (not live)
    assert migration.live_is_safe(accel, version) is live
    assert qf.migration_plan(accel, version, False) == qf.MigrationPlan(live=False)


def test_migration_plan_note_names_the_version() -> None:
    note = qf.migration_plan("tcg", "7.2.22", True).note
    assert "QEMU 7.2.22" in note and "9.0" in note


def test_mirror_plan() -> None:
    assert qf.mirror_plan("7.2.22", "full") == qf.MirrorPlan("write-blocking", False)
    assert qf.mirror_plan("10.0.2", "full") == qf.MirrorPlan("background", True)
    # after a live migration both copies are equal: synchronous from the first write
    assert qf.mirror_plan("10.0.2", "none") == qf.MirrorPlan("write-blocking", False)
    assert qf.mirror_plan("", "full") == qf.MirrorPlan("write-blocking", False)
    assert graph.mirror_job("full", 1 << 30, "background")["copy-mode"] == "background"
    with pytest.raises(AssertionError):
        graph.mirror_job("full", 1 << 30, "active")


def test_background_job_is_in_sync_only_once_switched_and_actively_synced() -> None:
    job = {"ready": True, "paused": False, "io-status": "ok", "offset": 5, "len": 5}
    background = {"copy_mode": "background", "switch_when_ready": True}
    switched = {"copy_mode": "write-blocking", "switch_when_ready": True}
    assert not _in_sync(job, background)  # "ready" in background mode: writes may lag
    assert switch_due(job, background)
    assert not switch_due({**job, "ready": False}, background)
    assert not switch_due({**job, "paused": True}, background)
    assert not switch_due(job, switched) and not switch_due(job, {})
    assert not _in_sync(job, switched)
    assert not _in_sync({**job, "actively-synced": False}, switched)
    assert _in_sync({**job, "actively-synced": True}, switched)
    assert _in_sync(job, {}) and _in_sync(job, {"copy_mode": "write-blocking"})  # 7.2's jobs


def test_a_write_in_flight_is_looked_at_again_and_real_work_left_is_not() -> None:
    busy = {"ready": True, "paused": False, "io-status": "ok", "offset": 4096, "len": 8192}
    assert not _in_sync(busy, {})  # one look says "resyncing (100 % copied)"
    assert write_in_flight(busy, {}) and write_in_flight(busy, {"copy_mode": "write-blocking"})
    assert not write_in_flight({**busy, "offset": 8192}, {})  # in sync: nothing to wait for
    assert not write_in_flight({**busy, "ready": False}, {})  # the bulk copy runs
    assert not write_in_flight({**busy, "paused": True}, {})
    assert not write_in_flight({**busy, "io-status": "failed"}, {})
    background = {"copy_mode": "background", "switch_when_ready": True}
    assert not write_in_flight(busy, background)  # writes wait in the dirty map: real work
    switched = {"copy_mode": "write-blocking", "switch_when_ready": True}
    assert write_in_flight({**busy, "actively-synced": True}, switched)
    assert not write_in_flight({**busy, "actively-synced": False}, switched)


def _fake_binary(path: Path, first_line: str) -> str:
    path.write_text(f"#!/bin/sh\necho '{first_line}'\necho 'Copyright (c) QEMU'\n")
    path.chmod(0o755)
    return str(path)


def test_qsd_version_is_read_once_per_installed_binary(tmp_path: Path) -> None:
    binary = _fake_binary(tmp_path / "qsd",
                          "qemu-storage-daemon version 7.2.22 (Debian 1:7.2+dfsg-7)")
    assert daemon.version(binary) == "7.2.22"
    _fake_binary(tmp_path / "qsd.new",
                 "qemu-storage-daemon version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)")
    os.replace(tmp_path / "qsd.new", binary)  # what a package upgrade does
    assert daemon.version(binary) == "10.0.2"
    assert daemon.version(str(tmp_path / "missing")) == ""


def test_probe_cache_follows_a_qemu_upgrade(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    binary = _fake_binary(tmp_path / "qemu",
                          "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7)")
    probes: list[str] = []

    def fake_probe(binary: str = "", timeout: float = 0) -> tuple[bool, str]:
        probes.append(binary)
        return False, "no /dev/kvm here"

    monkeypatch.setattr(detect, "run_probe", fake_probe)
    paths = HerdPaths(tmp_path / "root")
    assert detect.detect(paths, binary=binary).qemu_version == "7.2.22"
    assert detect.detect(paths, binary=binary).qemu_version == "7.2.22" and len(probes) == 1
    _fake_binary(tmp_path / "qemu.new", "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)")
    os.replace(tmp_path / "qemu.new", binary)
    assert detect.detect(paths, binary=binary).qemu_version == "10.0.2" and len(probes) == 2


def test_guest_pause_adds_the_disk_hand_over() -> None:
    live = {"live": True, "downtime_ms": 12, "total_time_ms": 900}
    assert guest_pause(live, 30.4, 1.2345) == {"handover_ms": 30, "guest_pause_ms": 42,
                                               "migration_ms": 1234}
    non_live = {"live": False, "downtime_ms": 2200, "total_time_ms": 2200}
    assert guest_pause(non_live, 300, 3.0)["guest_pause_ms"] == 2500
    assert guest_pause({}, 5, 0.1)["guest_pause_ms"] == 5


def test_wall_pause_bounds_the_pause_by_the_clock() -> None:
    # QEMU completed between 100.000 and 100.004 after a 12 ms stop-and-copy; resumed at .050
    stats = {"live": True, "downtime_ms": 12, "qemu_downtime_ms": 12,
             "completed_after": 100.000, "completed_by": 100.004}
    assert wall_pause(stats, 100.050) == {"wall_pause_min_ms": 58, "wall_pause_max_ms": 62}
    # nothing claimed without every time (an older noded) or for a non-live move
    assert wall_pause(stats, None) == {}
    assert wall_pause({**stats, "completed_after": None}, 100.05) == {}
    assert wall_pause({**stats, "live": False}, 100.05) == {}


def test_hand_over_laps_name_each_step() -> None:
    async def run() -> dict[str, int]:
        steps: dict[str, int] = {}
        lap = _Laps(steps)
        await asyncio.sleep(0.02)
        lap("source mirror ended")
        end = lap("guest resumed")
        assert end == pytest.approx(asyncio.get_running_loop().time(), abs=0.01)
        return steps

    steps = asyncio.run(run())
    assert list(steps) == ["source mirror ended", "guest resumed"]
    assert steps["source mirror ended"] >= 15 and steps["guest resumed"] < 15


class _Node:
    """Records the node RPCs of a hand-over, in order, into a shared list."""

    def __init__(self, name: str, calls: list[str], fail: str = "") -> None:
        self.name, self.calls, self.fail = name, calls, fail

    def __getattr__(self, rpc: str) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            what = (f"{self.name}.{rpc}" + (":source" if kwargs.get("source") else "")
                    + (f":{kwargs['role']}" if "role" in kwargs else "")
                    + (f":peers={kwargs['peers']}" if "peers" in kwargs else "")
                    + (":degraded" if kwargs.get("allow_degraded") else ""))
            self.calls.append(what)
            fails = self.fail.split("|")  # "NAME*": the call with take_over only
            if what in fails or (f"{what}*" in fails and kwargs.get("take_over")):
                raise errors.HypervisorError("QEMU did not answer")
            if "peers" in kwargs and "old" in fails:  # a node of RPC 4
                raise errors.ParameterError("bad arguments for node RPC "
                                            f"'{rpc}': unexpected keyword argument 'peers'")
            if rpc == "instance_finish_migration" and not kwargs.get("source"):
                return {"resumed_at": 5.0, "mirror_back_ms": 7} if kwargs.get("take_over") \
                    else {"resumed_at": 6.0}
            return [] if rpc == "blockdev_wait_sync" else None
        return call


def _hand_over(monkeypatch: pytest.MonkeyPatch, fail: str = "", source_done: int | None = None,
               steps: dict[str, int] | None = None,
               marks: dict[str, float] | None = None,
               served: list[dict[str, Any]] | None = None) -> tuple[list[str], list[str]]:
    calls: list[str] = []
    notes: list[str] = []
    nodes = {"n1": _Node("n1", calls, fail), "n2": _Node("n2", calls, fail)}

    async def save() -> None:
        calls.append("config saved")

    async def settle_secondary(ctx: Any, inst: Any) -> None:
        return None

    ctx = SimpleNamespace(config=SimpleNamespace(data=None, save=save),
                          rpc=SimpleNamespace(node=lambda n: nodes[n.name]))
    monkeypatch.setattr(live_move.drbd, "mirror_disks", lambda cfg, inst, uuid: [uuid])
    monkeypatch.setattr(live_move.drbd, "settle_secondary", settle_secondary)
    inst = SimpleNamespace(name="vm", disks=[1], swap_primary=lambda: calls.append("swap"))
    src, dst = SimpleNamespace(name="n1", uuid="u1"), SimpleNamespace(name="n2", uuid="u2")
    asyncio.run(live_move.hand_over(ctx, inst, src, dst, notes.append,  # type: ignore[arg-type]
                                    source_done=source_done, steps=steps, marks=marks,
                                    served=served))
    return calls, notes


def test_hand_over_resumes_before_ending_the_old_qemu(monkeypatch: pytest.MonkeyPatch) -> None:
    calls, notes = _hand_over(monkeypatch)
    # one call per node while the guest is paused: the target's turns its disks primary
    # (mirroring back) and resumes
    assert calls == ["n1.blockdev_assemble:secondary", "swap",
                     "n2.instance_finish_migration", "config saved",
                     "n1.instance_finish_migration:source", "n2.blockdev_wait_sync"]
    assert notes == []
    # the guest already runs on the target: an old QEMU that will not end is a warning
    calls, notes = _hand_over(monkeypatch, fail="n1.instance_finish_migration:source")
    assert calls[-1] == "n2.blockdev_wait_sync"
    assert len(notes) == 1 and "old QEMU of vm on n1 was not ended" in notes[0]
    assert "migrate --cleanup vm" in notes[0]


def test_hand_over_after_the_source_turned_secondary_in_its_migration_call(
        monkeypatch: pytest.MonkeyPatch) -> None:
    steps: dict[str, int] = {}
    marks: dict[str, float] = {}
    calls, notes = _hand_over(monkeypatch, source_done=12, steps=steps, marks=marks)
    assert calls[:2] == ["swap", "n2.instance_finish_migration"]  # no call to the source
    assert list(steps) == ["source mirror ended", "mirror back started", "guest resumed"]
    assert steps["source mirror ended"] == 12 and steps["mirror back started"] == 7
    assert marks == {"resumed_at": 5.0} and notes == []


def test_the_target_attaches_to_what_the_source_said_it_serves(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """RPC 5: the source's migration answer says what it serves after its hand-over and
    the target's one call gets it (no probe in the guest's pause); a target of RPC 4
    refuses the argument before doing anything and is asked again without it."""
    served = [{"export": "d.t", "generation": {"current": "g"}}]
    calls, _ = _hand_over(monkeypatch, source_done=12, served=served)
    assert calls[:2] == ["swap", f"n2.instance_finish_migration:peers={served}"]
    calls, _ = _hand_over(monkeypatch, source_done=12, served=served, fail="old")
    assert calls[:3] == ["swap", f"n2.instance_finish_migration:peers={served}",
                         "n2.instance_finish_migration"]
    assert "n2.blockdev_assemble:primary" not in calls  # still one call, not step by step
    calls, _ = _hand_over(monkeypatch, source_done=12)  # a source of RPC 4 said nothing
    assert calls[:2] == ["swap", "n2.instance_finish_migration"]


def test_hand_over_goes_step_by_step_when_the_one_call_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the target's combined call fails: its disks turn primary, then it resumes, one by one
    marks: dict[str, float] = {}
    calls, notes = _hand_over(monkeypatch, fail="n2.instance_finish_migration*", marks=marks)
    assert calls == ["n1.blockdev_assemble:secondary", "swap",
                     "n2.instance_finish_migration", "n2.blockdev_assemble:primary",
                     "n2.instance_finish_migration", "config saved",
                     "n1.instance_finish_migration:source", "n2.blockdev_wait_sync"]
    assert marks == {"resumed_at": 6.0} and notes == []
    # the mirror back cannot start: degraded, with a warning, then the resume
    calls, notes = _hand_over(
        monkeypatch, fail="n2.instance_finish_migration*|n2.blockdev_assemble:primary")
    assert calls[2:6] == ["n2.instance_finish_migration", "n2.blockdev_assemble:primary",
                          "n2.blockdev_assemble:primary:degraded",
                          "n2.instance_finish_migration"]
    assert len(notes) == 1 and "running degraded" in notes[0]


def test_mirrored_disks_grow_under_a_running_guest_from_10_0_only() -> None:
    assert qf.mirror_grow_refusal("10.0.2") is None
    assert qf.mirror_grow_refusal("QEMU emulator version 10.1.0") is None
    assert qf.features("10.0.2").mirror_online_grow and not qf.features("9.2.0").mirror_online_grow
    old = qf.mirror_grow_refusal("7.2.22")
    assert old is not None and "QEMU >= 10.0.0" in old and "has 7.2.22" in old
    assert "has unknown" in (qf.mirror_grow_refusal("") or "")  # not detected: refused
