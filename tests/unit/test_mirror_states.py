"""The mirror's state machine (herd.storage.mirror.states): the table, the classification of
a disk from its records, and what one look at a running primary decides; plus the two manager
calls that act on it without a storage daemon (marking a copy synced, a status that reads)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest

from herd.errors import StorageError
from herd.paths import HerdPaths
from herd.storage.mirror import MirrorDisk, MirrorManager
from herd.storage.mirror.generation import initial
from herd.storage.mirror.records import Generation, Runtime
from herd.storage.mirror.states import (
    TRANSITIONS,
    Event,
    State,
    classify,
    observe,
    transition,
)

DISK = MirrorDisk(uuid="0f3c2a1e-d7a4-4d7e-9e51-2b0b5c1d9a77", index=0, size=4,
                  relpath="vm1/0f3c.drbd.disk0", port=11000, local_ip="192.0.2.1",
                  peer_ip="192.0.2.2")
JOB = {"device": "mirror", "ready": True, "paused": False, "io-status": "ok",
       "offset": 4096, "len": 4096, "actively-synced": True}
PRIMARY = Runtime(role="primary", target="nbd", export="disk.tok1")
BACKGROUND = Runtime(role="primary", target="nbd", copy_mode="background",
                     switch_when_ready=True)


def gen(**changes: Any) -> Generation:
    return Generation.from_dict({**initial(), "fresh": False, **changes})


def test_every_row_of_the_table_is_what_transition_answers() -> None:
    for (state, event), after in TRANSITIONS.items():
        assert transition(state, event) is after


@pytest.mark.parametrize(("state", "event", "words"), [
    (State.SYNCING, Event.HAND_OVER, "only a mirror in sync hands over"),
    (State.DEGRADED, Event.HAND_OVER, "the peer would lack writes"),
    (State.SYNCED, Event.MARK_SYNCED, "only a copy that is not primary"),
    (State.CRASHED, Event.MARK_SYNCED, "only a copy that is not primary"),
    (State.STOPPED, Event.RECONNECT, "only a primary reconnects"),
    (State.SECONDARY, Event.CREATE, "exists on this node already"),
    (State.ABSENT, Event.START_PRIMARY, "not allowed"),
])
def test_a_pair_missing_from_the_table_is_refused_naming_both(state: State, event: Event,
                                                              words: str) -> None:
    assert (state, event) not in TRANSITIONS
    with pytest.raises(StorageError, match=words) as err:
        transition(state, event, "disk 0")
    assert f"cannot {event} disk 0: it is {state}" in str(err.value)


def test_classify_reads_the_records_and_a_primary_s_job_and_link() -> None:
    assert classify(None, None, False) is State.ABSENT
    assert classify(gen(), None, False) is State.STOPPED
    assert classify(gen(role="primary", clean=True), None, False) is State.STOPPED
    assert classify(gen(role="primary", clean=False), None, False) is State.CRASHED
    assert classify(gen(), Runtime(role="primary"), False) is State.STOPPED  # daemon gone
    assert classify(gen(), Runtime(role="secondary"), True) is State.SECONDARY
    assert classify(gen(), PRIMARY, True, JOB, True) is State.SYNCED
    assert classify(gen(), PRIMARY, True, JOB, False) is State.DEGRADED  # link gone
    assert classify(gen(), PRIMARY, True, None, True) is State.DEGRADED  # job gone
    for broken in ({"paused": True}, {"io-status": "failed"}):
        assert classify(gen(), PRIMARY, True, {**JOB, **broken}, True) is State.DEGRADED
    assert classify(gen(), PRIMARY, True, {**JOB, "offset": 1024}, True) is State.SYNCING
    assert classify(gen(), PRIMARY, True, {**JOB, "ready": False}, True) is State.SYNCING
    # a background job is in sync only once switched to write-blocking and actively synced
    assert classify(gen(), BACKGROUND, True, JOB, True) is State.SYNCING


def test_one_look_switches_a_finished_background_copy_first() -> None:
    seen = observe(gen(), BACKGROUND, JOB, True)
    assert seen.switch and not seen.bump and seen.state is State.SYNCING
    assert not observe(gen(), BACKGROUND, {**JOB, "ready": False}, True).changes
    switched = Runtime(role="primary", target="nbd", copy_mode="write-blocking",
                       switch_when_ready=True)
    assert observe(gen(), switched, JOB, True).state is State.SYNCED


def test_a_lost_peer_bumps_once_per_episode_and_recovery_clears_degraded() -> None:
    first = observe(gen(degraded=False), PRIMARY, JOB, False)
    assert first.bump and first.state is State.DEGRADED
    again = observe(gen(degraded=True), PRIMARY, {**JOB, "paused": True}, True)
    assert not again.changes and again.state is State.DEGRADED  # the same episode
    back = observe(gen(degraded=True), PRIMARY, JOB, True)
    assert back.recovered and not back.bump and back.state is State.SYNCED
    assert not observe(gen(degraded=False), PRIMARY, JOB, True).changes  # all well


def test_records_keep_what_they_do_not_know_and_default_what_older_nodeds_left_out() -> None:
    old = {"current": "g1", "history": ["g0"], "role": "secondary", "clean": False,
           "future_field": {"x": 1}}
    g = Generation.from_dict(old)
    assert (g.current, g.history, g.fresh, g.export_token, g.degraded) == (
        "g1", ["g0"], False, None, False)
    assert g.to_dict()["future_field"] == {"x": 1}
    assert {k: v for k, v in g.to_dict().items() if k in old} == old
    rt = Runtime.from_dict({"role": "primary", "disk": DISK.to_dict(), "pid": 42,
                            "target": "nbd", "export": "u.t", "qsd_version": "7.2.22"})
    assert rt.copy_mode == "write-blocking" and not rt.switch_when_ready  # 7.2: no switch
    assert Runtime.from_dict(rt.to_dict()) == rt


def _files_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_marking_a_copy_synced_is_a_compare_and_set_on_its_export(tmp_path: Path) -> None:
    mgr = MirrorManager(HerdPaths(tmp_path))

    async def scenario() -> None:
        await mgr.create(DISK)
        own = mgr.generation(DISK)
        export = mgr._export_name(DISK, own)
        primary = {"current": "p2", "history": ["p0", "p1"]}
        # the job replicated to another copy (this one was recreated since): not adopted
        assert await mgr.mark_synced(DISK, primary, export + "x") is False
        assert mgr.generation(DISK)["current"] == own["current"]
        assert await mgr.mark_synced(DISK, primary, export) is True
        adopted = mgr.generation(DISK)
        assert (adopted["current"], adopted["history"], adopted["fresh"]) == (
            "p2", ["p0", "p1"], False)
        # a status reads: nothing under the node's root changes
        before = _files_digest(tmp_path)
        for _ in range(2):
            assert (await mgr.status(DISK)).role == "down"
        assert _files_digest(tmp_path) == before
        # a copy that was a primary and crashed never adopts a generation
        mgr._gen(DISK).update(role="primary", clean=False)
        with pytest.raises(StorageError, match=r"cannot mark synced .* it is crashed"):
            await mgr.mark_synced(DISK, primary, export)

    asyncio.run(scenario())


# -- growing under a running guest ---------------------------------------------------------
def test_a_primary_held_for_a_grow_is_growing_and_no_look_bumps_it() -> None:
    held = Runtime(role="primary", target=None, export="disk.tok1", growing=True)
    # no job and no link: a primary that is not held would be degraded (and bumped)
    assert classify(gen(), held, True, None, False) is State.GROWING
    seen = observe(gen(), held, None, False)
    assert seen.state is State.GROWING and not seen.changes
    assert observe(gen(), PRIMARY, None, False).bump  # not held


def test_grow_events_follow_the_table() -> None:
    assert transition(State.SYNCED, Event.GROW_HOLD) is State.GROWING
    assert transition(State.GROWING, Event.GROW_SERVE) is State.SYNCING
    assert transition(State.SECONDARY, Event.GROW_SERVE) is State.SECONDARY
    for state in (State.SYNCING, State.DEGRADED, State.STOPPED):
        with pytest.raises(StorageError, match="only a mirror in sync grows under its guest"):
            transition(state, Event.GROW_HOLD)
    for state in (State.SYNCED, State.STOPPED):  # a job runs, or no daemon
        with pytest.raises(StorageError, match="only a copy held for a grow"):
            transition(state, Event.GROW_SERVE)
    # a reconnect would add a job beside the held one's missing exports: refused
    with pytest.raises(StorageError, match="cannot reconnect"):
        transition(State.GROWING, Event.RECONNECT)
    assert transition(State.GROWING, Event.STOP) is State.STOPPED
