"""What a node reports about itself: memory, CPUs, storage, hypervisor capabilities."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from herd import paths
from herd.storage.file import FileStorage


def meminfo() -> dict[str, int]:
    """/proc/meminfo in MiB."""
    out: dict[str, int] = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            out[key] = int(parts[0]) // 1024
    return out


def cpu_sockets() -> int:
    ids = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("physical id"):
                ids.add(line.split(":")[1].strip())
    except OSError:
        pass
    return max(1, len(ids))


def node_facts(storage: FileStorage, hv_facts: dict[str, Any],
               instances_memory: int) -> dict[str, Any]:
    mem = meminfo()
    total = mem.get("MemTotal", 0)
    free = mem.get("MemAvailable", mem.get("MemFree", 0))
    if "memory_total" in hv_facts:  # a simulated node (the fake hypervisor's tests)
        total = int(hv_facts["memory_total"])
        free = max(0, total - int(hv_facts.get("memory_node", 0)) - instances_memory)
    return {
        "memory_total": total,
        "memory_free": free,
        # memory used by the node itself (Ganeti's mnode): all used memory minus the guests'
        "memory_dom0": max(0, total - free - instances_memory),
        "memory_instances": instances_memory,
        "cpu_total": int(hv_facts.get("cpu_total") or os.cpu_count() or 1),
        "cpu_sockets": cpu_sockets(),
        "storage_total": storage.total_mib(),
        "storage_free": storage.free_mib(),
        "kernel": platform.release(),
        "hypervisor": hv_facts,
        "tcp_retries2": tcp_retries2(),
        "rapi_users_mode": file_mode(paths.current().rapi_users_file),
    }


def file_mode(path: Path) -> int | None:
    """The permission bits of ``path``, or None when it does not exist."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return None


def users_file_problem(mode: int | None) -> str | None:
    """What is wrong with the RAPI users file's mode (it holds passwords, some in clear
    text): anything beyond the owner's read and write bits; None when the mode is right or the
    file is missing (no users: nothing to leak)."""
    if mode is None or not mode & 0o077:
        return None
    who = " and ".join(w for w, bits in (("its group", 0o070), ("others", 0o007))
                       if mode & bits)
    return f"mode {mode:04o} lets {who} read or change the passwords in it"


#: The highest net.ipv4.tcp_retries2 a node with mirrored disks should have (~12.6 s before
#: TCP gives up on a silent peer). The mirror's link watchdog in noded normally cuts a silent
#: replication link after ~1.5 s; this bounds the stall when noded itself is down.
MAX_TCP_RETRIES2 = 5


def tcp_retries2() -> int | None:
    """This network namespace's net.ipv4.tcp_retries2 (Linux's default is 15: ~15 minutes)."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_retries2").read_text())
    except (OSError, ValueError):
        return None
