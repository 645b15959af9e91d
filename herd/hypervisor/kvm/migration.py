"""The QMP sequences of a live migration, apart from the Kvm class that owns processes and files.

Ganeti's kvm semantics: the target QEMU listens on the target node's address and the migration
port, the source is told ``migration_bandwidth`` (MiB/s) and ``migration_downtime`` (ms) and
sends its RAM and device state over plain TCP. Disks are never copied: each node's QEMU opens
the disk through its own storage (an NBD export of the mirrored template), so only RAM and
device state travel. Unlike Ganeti the target stays paused after the transfer (``-S``) until
the caller says ``cont``, so storage can be switched over while no side runs the guest.

QEMU serves one QMP client at a time, so progress is polled with short connections (never one
held open for the whole migration): noded's other calls to the same QEMU still get through.
Only near the end, where every millisecond until the end is seen is a millisecond of the
guest's pause, one connection is held (at most :data:`HOLD`) and QEMU's ``MIGRATION`` event
tells the end the moment it happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from herd import qemu_features
from herd.errors import HypervisorError
from herd.hypervisor.kvm import qmp

#: Seconds between query-migrate polls while much memory is left to send. Every poll is a new
#: QMP connection (~2 ms of QEMU's and noded's time).
POLL_INTERVAL = 0.05
#: Seconds between polls near the end (see :func:`poll_interval`): the guest is paused from
#: QEMU's final stop until the hand-over after the poll that sees it completed, so a 50 ms
#: poll alone added 25 ms to the pause on average, up to 50. A poll costs ~1 ms of CPU, and
#: the near end lasts at most NEAR_END.
FAST_POLL = 0.002
#: "Near the end": what is left would take at most this many seconds at the bandwidth limit.
NEAR_END = 0.3
#: Seconds one connection is held near the end, waiting for QEMU's MIGRATION event (other
#: QMP callers of this QEMU wait meanwhile); then polls go on and a new hold begins.
HOLD = 0.5
#: Fixed part of the migration timeout (connect, setup, device state, slow start).
TIMEOUT_BASE = 30.0
#: The timeout allows this many full passes over the RAM at the bandwidth limit.
TIMEOUT_PASSES = 4
#: Seconds to wait for QEMU to settle after migrate_cancel.
CANCEL_TIMEOUT = 15.0
#: query-migrate states after which nothing more happens.
FINAL_STATES = ("completed", "failed", "cancelled")


def live_is_safe(accel: str, qemu_version: str) -> bool:
    """Whether a live migration keeps guest memory intact with this acceleration and QEMU
    (the rule and its reason: :func:`herd.qemu_features.migration_plan`)."""
    return qemu_features.migration_plan(accel, qemu_version, True).live


def uri(host: str, port: int) -> str:
    """QEMU's migration URI for a TCP address (IPv6 in brackets)."""
    return f"tcp:[{host}]:{port}" if ":" in host else f"tcp:{host}:{port}"


def timeout_for(memory_mib: int, bandwidth_mibps: int) -> float:
    """Seconds a migration may take: a few passes over the RAM at the bandwidth limit."""
    return TIMEOUT_BASE + TIMEOUT_PASSES * memory_mib / max(1, bandwidth_mibps)


def stats(info: dict[str, Any], *, paused_throughout: bool = False) -> dict[str, Any]:
    """The figures of a query-migrate answer, in Herd's names (missing ones are 0).

    QEMU's ``downtime`` counts only its own final stop-and-copy; after a non-live migration
    (``paused_throughout``) the guest was paused for the whole transfer, so that is reported.
    """
    ram = info.get("ram") or {}
    total = int(info.get("total-time", 0))
    return {
        "status": info.get("status", ""),
        "total_time_ms": total,
        "downtime_ms": total if paused_throughout else int(info.get("downtime", 0)),
        "qemu_downtime_ms": int(info.get("downtime", 0)),
        "setup_time_ms": int(info.get("setup-time", 0)),
        "transferred_bytes": int(ram.get("transferred", 0)),
        "ram_total_bytes": int(ram.get("total", 0)),
        "ram_remaining_bytes": int(ram.get("remaining", 0)),
        "ram_normal_pages": int(ram.get("normal", 0)),
        "ram_zero_pages": int(ram.get("duplicate", 0)),
        "dirty_sync_count": int(ram.get("dirty-sync-count", 0)),
        "mbps": float(ram.get("mbps", 0.0)),
        "disk_transferred_bytes": int((info.get("disk") or {}).get("transferred", 0)),
    }


async def query(sock: Path) -> dict[str, Any]:
    result = await qmp.execute(sock, "query-migrate")
    return result if isinstance(result, dict) else {}


async def listen(sock: Path, host: str, port: int) -> None:
    """Target: start listening for the incoming state (QEMU was started '-incoming defer')."""
    await qmp.execute(sock, "migrate-incoming", {"uri": uri(host, port)})


async def start(sock: Path, host: str, port: int, *, bandwidth_mibps: int, downtime_ms: int,
                stop_first: bool) -> None:
    """Source: set the limits, pause the guest if non-live, and start sending (asynchronous)."""
    await qmp.execute(sock, "migrate-set-parameters",
                      {"max-bandwidth": bandwidth_mibps << 20, "downtime-limit": downtime_ms})
    # the MIGRATION event on each status change: the end is seen when it happens (wait)
    await qmp.execute(sock, "migrate-set-capabilities",
                      {"capabilities": [{"capability": "events", "state": True}]})
    if stop_first:
        await qmp.execute(sock, "stop")
    # No 'blk'/'inc': disks stay where they are (each side has its own NBD export).
    await qmp.execute(sock, "migrate", {"uri": uri(host, port)})


def poll_interval(info: dict[str, Any], bandwidth_mibps: int | None) -> float:
    """Seconds until the next query-migrate: short once the end is near (the last pass or
    QEMU's stop-and-copy, when every millisecond until the poll sees 'completed' is a
    millisecond of guest pause), long while most of the memory is still to be sent.

    Near means: QEMU has left the bulk phase ('device', 'pre-switchover', ...), or what
    remains would take at most :data:`NEAR_END` seconds at the bandwidth limit (zero pages go
    faster, so this errs on the side of polling early). Unknown bandwidth: always short."""
    status = info.get("status")
    if status in ("setup", None, "none"):
        return POLL_INTERVAL  # not sending yet
    if status != "active" or not bandwidth_mibps:
        return FAST_POLL
    remaining = int((info.get("ram") or {}).get("remaining", 0) or 0)
    return FAST_POLL if remaining <= NEAR_END * (bandwidth_mibps << 20) else POLL_INTERVAL


async def wait(sock: Path, timeout: float, bandwidth_mibps: int | None = None,
               *, stamps: dict[str, float] | None = None) -> dict[str, Any]:
    """Poll query-migrate until a final state or ``timeout``; the last answer.

    Returns the last (non-final) answer on timeout; the caller cancels. Near the end (see
    :func:`poll_interval`) it waits on one held connection for the end instead
    (:func:`_watch_end`). ``stamps`` receives wall-clock times bracketing the end:
    ``final_after`` (QEMU's time of its event, else sending the last poll that still saw
    the migration under way) and ``final_by`` (when the end was seen), so that the caller can
    bound when QEMU finished (nodes of one lab share the clock).
    """
    deadline = time.monotonic() + timeout
    sent = time.time()
    while True:
        before = time.time()
        info = await query(sock)
        if info.get("status") in FINAL_STATES or time.monotonic() >= deadline:
            if stamps is not None:
                stamps.update(final_after=sent, final_by=time.time())
            return info
        sent = before
        interval = poll_interval(info, bandwidth_mibps)
        if interval > FAST_POLL:
            await asyncio.sleep(interval)
            continue
        ended = await _watch_end(sock, min(deadline, time.monotonic() + HOLD), stamps)
        if ended is not None:
            return ended


async def _watch_end(sock: Path, until: float,
                     stamps: dict[str, float] | None) -> dict[str, Any] | None:
    """Near the end, on one connection until ``until`` (monotonic): the final query-migrate
    answer as soon as QEMU's MIGRATION event says the migration ended (a poll every
    :data:`FAST_POLL` where the ``events`` capability is off: a migration an older noded
    started), None at ``until`` (the caller polls on, other QMP callers get their turn).

    A poll sees the end only at its next look and each look through a new connection took
    2-9 ms of a busy node; the event arrives within a fraction of a millisecond."""
    async with qmp.listening(sock, ("MIGRATION",)) as (run, events):
        caps = await run("query-migrate-capabilities")
        evented = any(c.get("capability") == "events" and c.get("state")
                      for c in caps if isinstance(c, dict))
        while True:
            sent = time.time()
            info = await run("query-migrate")
            info = info if isinstance(info, dict) else {}
            if info.get("status") in FINAL_STATES:
                if stamps is not None:
                    stamps.update(final_after=sent, final_by=time.time())
                return info
            left = until - time.monotonic()
            if left <= 0:
                return None
            if not evented:
                await asyncio.sleep(FAST_POLL)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    while True:  # until an event says the migration ended
                        event = await events.get()
                        if (event.get("data") or {}).get("status") in FINAL_STATES:
                            break
                seen = time.time()
                info = await run("query-migrate")  # the figures of the end
                info = info if isinstance(info, dict) else {}
                if info.get("status") in FINAL_STATES:
                    if stamps is not None:
                        stamps.update(final_after=min(_event_time(event) or sent, seen),
                                      final_by=seen)
                    return info


def _event_time(event: dict[str, Any]) -> float | None:
    """QEMU's wall-clock time of an event (its ``timestamp``), None if it has none."""
    stamp = event.get("timestamp") or {}
    try:
        return float(stamp["seconds"]) + float(stamp["microseconds"]) / 1e6
    except (KeyError, TypeError, ValueError):
        return None


async def cancel(sock: Path) -> dict[str, Any]:
    """Source: migrate_cancel and wait until QEMU has settled; the final query-migrate answer.

    The answer may still say 'completed' if the transfer finished just before the cancel.
    """
    info = await query(sock)
    if info.get("status") in (*FINAL_STATES, None):
        return info
    await qmp.execute(sock, "migrate_cancel")
    return await wait(sock, CANCEL_TIMEOUT)


async def wait_incoming_done(run: qmp.Run, timeout: float) -> str:
    """Target: wait until the incoming state is loaded; QEMU's run state then. ``run``: a
    command on an open connection (:func:`qmp.connected`).

    The source reports 'completed' once everything is sent; the target may still be
    loading the last bytes for a moment (run state 'inmigrate').
    """
    deadline = time.monotonic() + timeout
    while True:
        result = await run("query-status")
        status = str(result.get("status", "")) if isinstance(result, dict) else ""
        if status != "inmigrate":
            return status
        if time.monotonic() >= deadline:
            raise HypervisorError(
                f"incoming migration not finished after {timeout:g} s (QEMU still 'inmigrate')")
        await asyncio.sleep(FAST_POLL)  # the guest is paused until this returns
