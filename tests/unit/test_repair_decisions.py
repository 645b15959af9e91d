"""The decisions of migrate --cleanup and replace-disks -p/-a, without nodes: which QEMU keeps
the guest, and when the secondary's copy may stand in for the primary's."""

from __future__ import annotations

import pytest

from herd import errors
from herd.logic import disk_health, migrate_cleanup
from herd.objects import Instance, Node


def qemu(state: str, role: str | None = None, status: str | None = None) -> dict:
    return {"state": state, "migration_role": role, "migration_status": status}


def pick(a: dict | None, b: dict | None) -> int:
    inst = Instance(name="w1")
    nodes = (Node(name="node2"), Node(name="node3"))
    return migrate_cleanup.choose(inst, nodes, [a, b])


@pytest.mark.parametrize(("source", "target", "kept"), [
    # target QEMU killed mid-way: the source's guest, paused by the failed migration, stays
    (qemu("paused", "source", "failed"), None, 0),
    (qemu("running", "source", "active"), qemu("inmigrate", "target", "active"), 0),
    # QEMU's migration completed, hand-over interrupted: the target got everything
    (qemu("postmigrate", "source", "completed"), qemu("paused", "target", "completed"), 1),
    # the target already runs (resumed before the config was saved)
    (None, qemu("running"), 1),
    # the target died after the transfer, before anything ran there: the source goes on
    (qemu("postmigrate", "source", "completed"), None, 0),
])
def test_cleanup_keeps_the_whole_guest(source: dict | None, target: dict | None,
                                       kept: int) -> None:
    assert pick(source, target) == kept


def test_cleanup_refuses_nowhere_and_twice() -> None:
    with pytest.raises(errors.OpExecError, match="runs on neither"):
        pick(None, qemu("inmigrate", "target", "active"))
    with pytest.raises(errors.OpExecError, match="alive on both"):
        pick(qemu("running"), qemu("running"))


def gen(current: str, *history: str, **flags: bool) -> dict:
    return {"current": current, "history": list(history), **flags}


def copies(pgen: dict | None, sgen: dict | None, sfaults: tuple[str, ...] = ()):
    p = disk_health.CopyState(Node(name="node2"), [], [pgen])
    s = disk_health.CopyState(Node(name="node3"), list(sfaults), [sgen])
    return p, s


@pytest.mark.parametrize(("pgen", "sgen", "faults", "problem"), [
    (gen("b", "a"), gen("b", "a"), (), None),
    (None, gen("b", "a"), (), None),  # the primary's record is lost
    (gen("x", fresh=True), gen("b", "a"), (), None),  # the primary's copy was made again
    (gen("b", "a"), gen("a"), (), "behind"),
    (gen("b", "a"), gen("c", "a"), (), "split brain"),
    (gen("b", "a"), gen("b", "a"), ("disk/0: discarded",), "discarded"),
    (gen("b", "a"), gen("n", fresh=True), (), "never fully copied"),
])
def test_secondary_consistency(pgen: dict | None, sgen: dict, faults: tuple[str, ...],
                               problem: str | None) -> None:
    found = disk_health.secondary_inconsistency(*copies(pgen, sgen, faults))
    assert found is None if problem is None else problem in (found or "")


def test_diverged_copies_only() -> None:
    assert disk_health.diverged(*copies(gen("b", "a"), gen("c", "a"))) == [0]
    assert disk_health.diverged(*copies(gen("b", "a"), gen("a"))) == []
    assert disk_health.diverged(*copies(gen("b", "a"), gen("n", fresh=True))) == []


def test_verify_fails_on_a_mirror_that_does_not_mirror_and_warns_while_it_resyncs() -> None:
    def findings(*states: dict) -> list[tuple[str, str]]:
        return disk_health.mirror_findings("w1", "node1", "node3", list(states))

    healthy = {"role": "primary", "connected": True, "in_sync": True}
    assert findings(healthy, healthy) == []
    [(level, text)] = findings(healthy, {"role": "primary", "connected": False})
    assert level == "ERROR" and text.startswith("instance w1: disk/1 is degraded")
    assert "node3" in text and "verify-disks" in text
    [(level, text)] = findings({"role": "primary", "connected": True, "in_sync": False,
                                "sync_percent": 42.4})
    assert (level, text) == ("WARNING", "instance w1: disk/0 is resyncing to node3 (42 % copied)")
    assert findings({"role": "down"})[0] == (
        "ERROR", "instance w1: disk/0 is not active on its primary node node1 (down)")
    assert findings({"role": "unknown", "error": "node1 unreachable"})[0][0] == "ERROR"


def test_a_first_sync_says_how_far_each_disk_got() -> None:
    from herd.logic.drbd import sync_progress

    states = [{"role": "primary", "in_sync": False, "sync_percent": 42.0, "eta_seconds": 12.4},
              {"role": "primary", "in_sync": True, "sync_percent": 100.0},
              {"role": "primary", "in_sync": False, "sync_percent": 3.5},
              {"role": "down", "in_sync": False}]
    assert sync_progress(states) == [
        "  - device disk/0: 42.00% done, 12 s remaining (estimated)",
        "  - device disk/2:  3.50% done, no time estimate"]
