"""The last hour of each guest's and of the node's own use, kept by the node that runs them.

The web manager's graphs (CPU, memory, disk and network I/O of an instance or a node over the
last hour) need history; Herd keeps it where the counters are, as Proxmox keeps its RRD files
on each node: noded reads the same kernel and QEMU counters as ``/metrics`` (herd.hypervisor
.stats) every :data:`INTERVAL` seconds into a ring of one hour per guest and one for the node.
Nothing travels until a page asks: the master then asks the primary node for one history.
Memory: 360 samples of 7 numbers per guest, a few tens of KiB for a node's guests.

History lives in noded's memory only: a noded restart or a migration starts a guest's graphs
afresh on the node that runs it (a gap, said in the page's legend), a price worth not
writing a file every ten seconds per guest.

A query reads the stored samples and adds one fresh reading at its end without storing it, so
asking never changes what the node keeps (queries have no side effects) and a graph has a
current point even just after a guest started.

:func:`rates` (pure) turns counter samples into the series pages draw: CPU in % of one core,
memory in MiB, disk and network in KiB/s; a counter that went backwards (the guest restarted)
leaves a gap instead of a negative spike.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("herd.node.usage")

#: Seconds between two samples, and how many samples make the hour kept.
INTERVAL = 10.0
KEEP = 360
#: The shortest step a rate is computed over (a query's fresh reading right after a sample)
MIN_STEP = 1.0
#: The counters a sample holds besides its time ``t`` (bytes and seconds, as the kernel counts)
COUNTERS = ("cpu_seconds", "disk_rd", "disk_wr", "net_rx", "net_tx")
GAUGES = ("rss_bytes",)
#: The series a page draws: (key, title, unit)
SERIES: tuple[tuple[str, str, str], ...] = (
    ("cpu", "CPU", "%"), ("memory", "Memory", "MiB"), ("disk_read", "Disk read", "KiB/s"),
    ("disk_write", "Disk write", "KiB/s"), ("net_rx", "Network in", "KiB/s"),
    ("net_tx", "Network out", "KiB/s"))
NODE = "node"  # the node's own history key

Sample = dict[str, float]


def guest_sample(t: float, usage: Mapping[str, Any]) -> Sample:
    """One guest's ``instance_usage`` answer (herd.hypervisor) as a flat sample."""
    disks = usage.get("disks") or []
    nics = usage.get("nics") or []
    return {"t": t, "cpu_seconds": float(usage.get("cpu_seconds") or 0.0),
            "rss_bytes": float(usage.get("rss_bytes") or 0.0),
            "disk_rd": float(sum(int(d.get("rd_bytes", 0)) for d in disks)),
            "disk_wr": float(sum(int(d.get("wr_bytes", 0)) for d in disks)),
            "net_rx": float(sum(int(n.get("rx_bytes", 0)) for n in nics)),
            "net_tx": float(sum(int(n.get("tx_bytes", 0)) for n in nics))}


def node_sample(t: float, guests: Iterable[Sample], proc: Path = Path("/proc")) -> Sample:
    """The node's own CPU (busy seconds of all cores, /proc/stat) and memory in use
    (MemTotal - MemAvailable); its disk and network I/O as the sum of its guests' (what the
    admin asks about: what the guests make the node do)."""
    from herd.hypervisor.stats import CLK_TCK

    busy = 0.0
    try:
        first = (proc / "stat").read_text().split("\n", 1)[0].split()
        ticks = [int(v) for v in first[1:]]
        busy = (sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)) / CLK_TCK
    except (OSError, ValueError, IndexError):
        pass
    used = 0.0
    try:
        info = dict(line.split(":", 1) for line in
                    (proc / "meminfo").read_text().splitlines() if ":" in line)
        used = (int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])) * 1024.0
    except (OSError, ValueError, KeyError):
        pass
    guests = list(guests)
    out: Sample = {"t": t, "cpu_seconds": busy, "rss_bytes": used}
    for key in ("disk_rd", "disk_wr", "net_rx", "net_tx"):
        out[key] = sum(g[key] for g in guests)
    return out


def rates(samples: list[Sample]) -> dict[str, list[list[float]]]:
    """The drawable series from consecutive samples: {key: [[t, value], ...]} for
    :data:`SERIES`. Rates need two samples at least :data:`MIN_STEP` apart (a closer one is
    measured from the one before); a counter that went backwards leaves that step out (a
    restart, or the node's guest set changing)."""
    out: dict[str, list[list[float]]] = {key: [] for key, _, _ in SERIES}
    for sample in samples:
        out["memory"].append([sample["t"], round(sample["rss_bytes"] / 2**20, 1)])
    steps = (("cpu", "cpu_seconds", 0.01), ("disk_read", "disk_rd", 1024.0),
             ("disk_write", "disk_wr", 1024.0), ("net_rx", "net_rx", 1024.0),
             ("net_tx", "net_tx", 1024.0))
    before: Sample | None = None
    for after in samples:
        if before is None:
            before = after
            continue
        dt = after["t"] - before["t"]
        if dt < MIN_STEP:
            continue  # too short to tell (CPU time counts in 10 ms ticks): measure from before
        for series, key, scale in steps:
            delta = after[key] - before[key]
            if delta >= 0:
                out[series].append([after["t"], round(delta / dt / scale, 2)])
        before = after
    return out


class UsageHistory:
    """The rings, and the loop that fills them (one task in noded)."""

    def __init__(self, read_guests: Callable[[], Awaitable[list[dict[str, Any]]]],
                 proc: Path = Path("/proc"), keep: int = KEEP,
                 clock: Callable[[], float] = time.time) -> None:
        #: the node service's ``instance_usage``: [{name, hypervisor, cpu_seconds, ...}]
        self.read_guests = read_guests
        self.proc = proc
        self.keep = keep
        self.rings: dict[str, collections.deque[Sample]] = {}
        self.clock = clock

    async def read(self) -> dict[str, Sample]:
        """A fresh reading of every guest and of the node, keyed by instance name and NODE."""
        now = self.clock()
        try:
            guests = await self.read_guests()
        except Exception as exc:  # a hypervisor that cannot answer must not stop the graphs
            log.warning("cannot read the guests' usage: %s", exc)
            guests = []
        out = {str(g["name"]): guest_sample(now, g) for g in guests if g.get("name")}
        out[NODE] = node_sample(now, out.values(), self.proc)
        return out

    def store(self, reading: Mapping[str, Sample]) -> None:
        """Append a reading; the rings of guests that no longer run here are dropped."""
        for key in [k for k in self.rings if k not in reading]:
            del self.rings[key]
        for key, sample in reading.items():
            self.rings.setdefault(key, collections.deque(maxlen=self.keep)).append(sample)

    async def series(self, name: str | None) -> dict[str, Any]:
        """The graphs of instance ``name`` (None: the node), the stored hour plus a fresh
        reading at the end (not stored). ``running`` says whether the guest runs here."""
        key = NODE if name is None else name
        fresh = (await self.read()).get(key)
        samples = list(self.rings.get(key, ()))
        if fresh is not None:
            samples.append(fresh)
        return {"running": fresh is not None, "interval": INTERVAL,
                "since": samples[0]["t"] if samples else None, "series": rates(samples)}

    async def run(self, interval: float = INTERVAL) -> None:
        while True:
            started = time.monotonic()
            try:
                self.store(await self.read())
            except Exception:  # keep sampling: a graph with a gap beats no graph at all
                log.exception("usage sample failed")
            await asyncio.sleep(max(0.5, interval - (time.monotonic() - started)))
