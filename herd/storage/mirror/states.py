"""The mirror's state machine, as pure functions and one table (DESIGN §7).

A mirrored disk on one node is in one of the :class:`State` s below, read from its generation
record, its runtime file, whether its storage daemon lives, and (for a primary) the mirror job
and the replication link. Everything that changes a disk is an :class:`Event`; the manager asks
:func:`transition` before acting, so an event that makes no sense in a state (hand a mirror
that is still syncing over to the peer, mark a primary "synced") is refused with both names
instead of doing something half-right.

Three events are *observed* rather than asked for: the bulk copy of a background-mode job is
done (the job must become write-blocking), the job is in sync (the primary is no longer
degraded), the link or job broke (the primary writes alone from now on: a new generation).
:func:`observe` decides them from one look; noded's supervisor applies them about once a second
and every changing call first (``MirrorManager._settle``), so a status query only reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from herd.errors import StorageError
from herd.storage.mirror.records import Generation, Runtime


class State(StrEnum):
    ABSENT = "absent"          # no generation record: not created on this node
    STOPPED = "stopped"        # no storage daemon; the last one stopped cleanly (or never ran)
    CRASHED = "crashed"        # no storage daemon; the last primary did not stop cleanly
    SECONDARY = "secondary"    # a daemon exports the copy to the peer
    SYNCING = "syncing"        # primary: the job runs and the peer lacks something yet
    SYNCED = "synced"          # primary: every acknowledged write is on the peer
    DEGRADED = "degraded"      # primary: no job, paused, I/O error or no link to the peer
    #: primary: the mirror is held for growing the disk under its (paused) guest: no job and
    #: no exports, both copies equal; not degraded (nothing is written meanwhile)
    GROWING = "growing"


class Event(StrEnum):
    CREATE = "create"
    START_SECONDARY = "start as secondary"
    START_PRIMARY = "start as primary"
    SWITCH = "switch to write-blocking"   # observed: background bulk copy done
    SEEN_SYNCED = "observe in sync"       # observed
    SEEN_BROKEN = "observe broken"        # observed: link, job or I/O gone
    RECONNECT = "reconnect"
    HAND_OVER = "hand over"               # a primary becomes secondary after live migration
    STOP = "stop"
    DIED = "daemon died"                  # observed: the daemon is gone without a stop
    MARK_SYNCED = "mark synced"
    REMOVE = "remove"
    GROW_HOLD = "hold for a grow"         # end the job and the exports, copies equal
    GROW_SERVE = "serve the grown copy"   # exports (and a new job) at the new size


_PRIMARY = (State.SYNCING, State.SYNCED, State.DEGRADED)
_DOWN = (State.STOPPED, State.CRASHED)

#: (state, event) -> the state after it. A pair that is not here is refused.
TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.ABSENT, Event.CREATE): State.STOPPED,
    (State.ABSENT, Event.REMOVE): State.ABSENT,  # remove is idempotent
    (State.ABSENT, Event.STOP): State.ABSENT,
    **{(s, Event.START_SECONDARY): State.SECONDARY for s in (*_DOWN, State.SECONDARY)},
    **{(s, Event.START_PRIMARY): State.SYNCING for s in (*_DOWN, State.SECONDARY)},
    **{(s, Event.START_PRIMARY): s for s in _PRIMARY},  # already primary: answers its status
    **{(s, Event.MARK_SYNCED): s for s in (State.STOPPED, State.SECONDARY)},
    **{(s, Event.STOP): State.STOPPED for s in (*_DOWN, State.SECONDARY, *_PRIMARY)},
    **{(s, Event.REMOVE): State.ABSENT for s in (*_DOWN, State.SECONDARY, *_PRIMARY)},
    **{(s, Event.DIED): State.CRASHED for s in _PRIMARY},
    (State.SECONDARY, Event.DIED): State.STOPPED,
    (State.SYNCING, Event.SWITCH): State.SYNCING,
    (State.SYNCING, Event.SEEN_SYNCED): State.SYNCED,
    (State.DEGRADED, Event.SEEN_SYNCED): State.SYNCED,
    (State.SYNCING, Event.SEEN_BROKEN): State.DEGRADED,
    (State.SYNCED, Event.SEEN_BROKEN): State.DEGRADED,
    **{(s, Event.RECONNECT): State.SYNCING for s in _PRIMARY},
    (State.SYNCED, Event.HAND_OVER): State.SECONDARY,
    (State.SYNCED, Event.GROW_HOLD): State.GROWING,
    (State.GROWING, Event.GROW_SERVE): State.SYNCING,
    (State.SECONDARY, Event.GROW_SERVE): State.SECONDARY,
    (State.GROWING, Event.STOP): State.STOPPED,
    (State.GROWING, Event.REMOVE): State.ABSENT,
    (State.GROWING, Event.DIED): State.CRASHED,
}

_WHY = {
    Event.HAND_OVER: "only a mirror in sync hands over to its peer (the peer would lack writes)",
    Event.MARK_SYNCED: "only a copy that is not primary adopts its primary's generation",
    Event.RECONNECT: "only a primary reconnects to its peer",
    Event.CREATE: "the disk exists on this node already",
    Event.GROW_HOLD: "only a mirror in sync grows under its guest (the peer would miss the "
                     "writes of the grow's moment otherwise); wait for the resync",
    Event.GROW_SERVE: "only a copy held for a grow, or a secondary, serves a grown copy",
}


def transition(state: State, event: Event, what: str = "mirrored disk") -> State:
    """The state after ``event``; StorageError naming both if the table has no such pair."""
    after = TRANSITIONS.get((state, event))
    if after is None:
        why = _WHY.get(event, "not allowed in that state")
        raise StorageError(f"cannot {event} {what}: it is {state} ({why})")
    return after


def in_sync(job: dict[str, Any], rt: Runtime) -> bool:
    """Every acknowledged guest write is on the peer and every new one will be. A job that
    began in background copy mode (QEMU >= 8.2, see :func:`herd.qemu_features.mirror_plan`)
    must have been switched to write-blocking and report ``actively-synced``: in background
    mode "ready" only means the bulk copy is done, while new writes may still wait in its map."""
    if rt.switch_when_ready and (rt.copy_mode != "write-blocking"
                                 or not job.get("actively-synced")):
        return False
    return (bool(job.get("ready")) and not job.get("paused")
            and job.get("io-status", "ok") == "ok" and job.get("offset") == job.get("len"))


def write_in_flight(job: dict[str, Any], rt: Runtime) -> bool:
    """Whether a job that is otherwise in sync lags only by its progress counter. In
    write-blocking mode QEMU counts a guest write into the job's ``len`` when the write
    starts and into ``offset`` when the peer has it, so a look during a write sees
    ``offset < len`` on a mirror that holds every acknowledged write; worth a second look
    before saying "resyncing". Background mode: the gap is real work left."""
    return (in_sync({**job, "offset": job.get("len")}, rt)
            and rt.copy_mode == "write-blocking" and job.get("offset") != job.get("len"))


def switch_due(job: dict[str, Any], rt: Runtime) -> bool:
    """Whether a background-mode job is ready to become write-blocking (its bulk copy done,
    running without error); block-job-change is refused on a job that is not ready."""
    return (rt.copy_mode == "background" and rt.switch_when_ready and bool(job.get("ready"))
            and not job.get("paused") and job.get("io-status", "ok") == "ok")


def broken(job: dict[str, Any] | None, linked: bool) -> bool:
    """The primary cannot reach its peer: no job, a paused one, an I/O error, or no link."""
    return (job is None or not linked or bool(job.get("paused"))
            or job.get("io-status", "ok") != "ok")


def classify(gen: Generation | None, rt: Runtime | None, alive: bool,
             job: dict[str, Any] | None = None, linked: bool = False) -> State:
    """The state of one disk on one node. ``job`` and ``linked`` matter for a primary only:
    its mirror job (QMP ``query-block-jobs``) and whether its TCP link to the peer is up."""
    if gen is None:
        return State.ABSENT
    if not alive or rt is None:
        return State.CRASHED if gen.crashed_primary else State.STOPPED
    if rt.role == "secondary":
        return State.SECONDARY
    if rt.growing:
        return State.GROWING
    if broken(job, linked):
        return State.DEGRADED
    assert job is not None  # not broken
    return State.SYNCED if in_sync(job, rt) else State.SYNCING


@dataclass(frozen=True)
class Observation:
    """What one look at a running primary asks to write (``MirrorManager._settle``)."""

    state: State
    #: block-job-change to write-blocking: the bulk copy is done
    switch: bool = False
    #: a new generation and degraded=True: the primary writes without its peer from now on
    bump: bool = False
    #: degraded=False: in sync again
    recovered: bool = False

    @property
    def changes(self) -> bool:
        return self.switch or self.bump or self.recovered


def observe(gen: Generation, rt: Runtime, job: dict[str, Any] | None,
            linked: bool) -> Observation:
    """The observed events of a running primary and their effects. A switch is decided first
    (the job after it is write-blocking, so in-sync is judged under the new mode next time);
    a bump happens once per degraded episode (``gen.degraded`` says one is under way)."""
    if job is not None and switch_due(job, rt):
        return Observation(State.SYNCING, switch=True)
    state = classify(gen, rt, True, job, linked)
    if state is State.DEGRADED and not gen.degraded:
        return Observation(state, bump=True)
    if state is State.SYNCED and gen.degraded:
        return Observation(state, recovered=True)
    return Observation(state)
