"""What a running guest has used, from the kernel's own counters (for /metrics).

Pure readers over ``/proc`` and ``/sys`` (their roots are parameters, so the tests give them
a directory of their own): CPU time and resident memory of the guest's process, bytes and
packets through each NIC's tap. Disk bytes come from QEMU (query-blockstats) in the
hypervisor, since a mirrored disk's writes travel over NBD, not through the process's block
I/O accounting.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def process_usage(pid: int, proc: Path = Path("/proc")) -> dict[str, float] | None:
    """``cpu_seconds`` (user + system) and ``rss_bytes`` of ``pid``; None if it is gone."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        statm = (proc / str(pid) / "statm").read_text().split()
    except OSError:
        return None
    # the command name may hold blanks and parentheses: the fields start after the last ')'
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return {"cpu_seconds": (utime + stime) / CLK_TCK, "rss_bytes": int(statm[1]) * PAGE_SIZE}


def nic_usage(ifname: str, sys_net: Path = Path("/sys/class/net")) -> dict[str, int] | None:
    """Bytes and packets through a tap, seen from the guest (the tap's rx is the guest's
    tx); None if the interface is gone."""
    base = sys_net / ifname / "statistics"
    out: dict[str, int] = {}
    try:
        for ours, theirs in (("rx_bytes", "tx_bytes"), ("tx_bytes", "rx_bytes"),
                             ("rx_packets", "tx_packets"), ("tx_packets", "rx_packets")):
            out[ours] = int((base / theirs).read_text())
    except (OSError, ValueError):
        return None
    return out


def block_usage(blockstats: Any) -> dict[str, dict[str, int]]:
    """QEMU's query-blockstats answer -> {device: {rd_bytes, wr_bytes, rd_operations,
    wr_operations}} for the guest's disks (devices named by Herd's command line)."""
    out: dict[str, dict[str, int]] = {}
    for entry in blockstats if isinstance(blockstats, list) else []:
        if not isinstance(entry, dict):
            continue
        name = entry.get("device") or entry.get("qdev") or entry.get("node-name")
        stats = entry.get("stats") or {}
        if not name or not isinstance(stats, dict):
            continue
        out[str(name)] = {key: int(stats.get(key, 0)) for key in
                          ("rd_bytes", "wr_bytes", "rd_operations", "wr_operations")}
    return out
