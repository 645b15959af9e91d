"""The QMP sequences of a live migration, apart from the Kvm class that owns processes and files.

Ganeti's kvm semantics: the target QEMU listens on the target node's address and the migration
port, the source is told ``migration_bandwidth`` (MiB/s) and ``migration_downtime`` (ms) and
sends its RAM and device state over plain TCP. Disks are never copied: each node's QEMU opens
the disk through its own storage (an NBD export of the mirrored template), so only RAM and
device state travel. Unlike Ganeti the target stays paused after the transfer (``-S``) until
the caller says ``cont``, so storage can be switched over while no side runs the guest.

QEMU serves one QMP client at a time, so progress is polled with short connections (never one
held open for the whole migration): noded's other calls to the same QEMU still get through.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from herd import qemu_features
from herd.errors import HypervisorError
from herd.hypervisor.kvm import qmp

#: Seconds between query-migrate polls. Every poll is a new QMP connection (~2 ms); short
#: enough that the end of a migration is seen quickly, since the guest waits for it.
POLL_INTERVAL = 0.05
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
    if stop_first:
        await qmp.execute(sock, "stop")
    # No 'blk'/'inc': disks stay where they are (each side has its own NBD export).
    await qmp.execute(sock, "migrate", {"uri": uri(host, port)})


async def wait(sock: Path, timeout: float) -> dict[str, Any]:
    """Poll query-migrate until a final state or ``timeout``; the last answer.

    Returns the last (non-final) answer on timeout; the caller cancels.
    """
    deadline = time.monotonic() + timeout
    while True:
        info = await query(sock)
        if info.get("status") in FINAL_STATES or time.monotonic() >= deadline:
            return info
        await asyncio.sleep(POLL_INTERVAL)


async def cancel(sock: Path) -> dict[str, Any]:
    """Source: migrate_cancel and wait until QEMU has settled; the final query-migrate answer.

    The answer may still say 'completed' if the transfer finished just before the cancel.
    """
    info = await query(sock)
    if info.get("status") in (*FINAL_STATES, None):
        return info
    await qmp.execute(sock, "migrate_cancel")
    return await wait(sock, CANCEL_TIMEOUT)


async def wait_incoming_done(sock: Path, timeout: float) -> str:
    """Target: wait until the incoming state is loaded; QEMU's run state then.

    The source reports 'completed' once everything is sent; the target may still be
    loading the last bytes for a moment (run state 'inmigrate').
    """
    deadline = time.monotonic() + timeout
    while True:
        status = await qmp.query_status(sock)
        if status != "inmigrate":
            return status
        if time.monotonic() >= deadline:
            raise HypervisorError(
                f"incoming migration not finished after {timeout:g} s (QEMU still 'inmigrate')")
        await asyncio.sleep(POLL_INTERVAL)
