"""cpu_mask: pin a VM's threads to host CPUs the way Ganeti's kvm does.

'all' means no pinning; one CPU list ('0-1,3') pins the whole QEMU process; one list per vCPU
joined by ':' ('0:1' for two vCPUs) pins each vCPU thread (QMP query-cpus-fast names them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from herd.errors import HypervisorError


def parse_cpus(text: str) -> set[int]:
    """'0-2,5' -> {0, 1, 2, 5}; 'all' -> every CPU this process may use."""
    if text == "all":
        return set(os.sched_getaffinity(0))
    cpus: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def check(mask: str, vcpus: int) -> None:
    """HypervisorError if the mask names CPUs this node lacks or has the wrong vCPU count."""
    if mask == "all":
        return
    parts = mask.split(":")
    if len(parts) > 1 and len(parts) != vcpus:
        raise HypervisorError(
            f"cpu_mask {mask!r} has {len(parts)} entries but the instance has {vcpus} vCPUs")
    available = set(os.sched_getaffinity(0))
    for part in parts:
        missing = parse_cpus(part) - available
        if missing:
            raise HypervisorError(
                f"cpu_mask {mask!r} names CPUs {sorted(missing)} that this node does not have")


def apply(mask: str, pid: int, vcpu_threads: list[dict[str, Any]]) -> None:
    """Pin QEMU ``pid`` (or its vCPU threads, from query-cpus-fast) according to ``mask``."""
    parts = mask.split(":")
    try:
        if len(parts) == 1:
            cpus = parse_cpus(parts[0])
            for task in Path(f"/proc/{pid}/task").iterdir():
                os.sched_setaffinity(int(task.name), cpus)
            return
        for cpu in vcpu_threads:
            os.sched_setaffinity(int(cpu["thread-id"]), parse_cpus(parts[int(cpu["cpu-index"])]))
    except (OSError, KeyError, IndexError, ValueError) as exc:
        raise HypervisorError(f"cannot apply cpu_mask {mask!r} to QEMU {pid}: {exc}") from None
