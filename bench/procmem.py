"""How much memory processes keep resident, three ways, for the benchmarks that report it
(bench/at_rest.py, bench/scale.py, bench/jobs.py, bench/config_save.py).

- ``VmRSS`` (:func:`rss_mib`): every page a process maps, a page shared with other processes
  (libpython, libcrypto) counted in each of them: summed over several processes, the strict
  and overstated figure.
- ``Pss`` (:func:`pss_mib`): each shared page divided among the processes mapping it. Summed
  over a group it understates what the group needs whenever processes outside it share the
  same pages (the benchmark's own Python processes map the same libpython), and the figure
  moves with whatever else runs.
- **Together** (:func:`together_mib`): the distinct physical pages the processes of a group
  hold resident, each counted once however many of them map it: what "these processes use
  together" means, and the same whatever else runs. Read from ``/proc/PID/pagemap``, whose
  page frame numbers only root sees (else NaN).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

PAGE = 4096
#: pagemap entry: bit 63 "present in RAM", bits 0-54 the page frame number.
_PRESENT = 1 << 63
_PFN_MASK = (1 << 55) - 1


def proc_kib(pid: int | None, path: str, field: str) -> float:
    """One ``field:`` of /proc/PID/``path`` in KiB (NaN when the process is gone)."""
    if pid is None:
        return float("nan")
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def rss_mib(pid: int | None) -> float:
    return proc_kib(pid, "status", "VmRSS") / 1024


def pss_mib(pid: int | None) -> float:
    return proc_kib(pid, "smaps_rollup", "Pss") / 1024


def resident_frames(pid: int) -> set[int]:
    """The page frame numbers of the pages ``pid`` has resident (root only: without
    CAP_SYS_ADMIN pagemap shows every frame as 0, and this raises PermissionError). Only
    the mappings smaps shows with resident pages are read: a Go program reserves gigabytes
    of address space it never touches."""
    ranges: list[tuple[int, int]] = []
    current = (0, 0)
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(None, 1)[0] if line else ""
        if "-" in head and not head.endswith(":"):
            start, end = head.split("-")
            current = (int(start, 16), int(end, 16))
        elif head == "Rss:" and int(line.split()[1]) > 0:
            ranges.append(current)
    frames: set[int] = set()
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for start, end in ranges:
            pagemap.seek(start // PAGE * 8)
            data = pagemap.read((end - start) // PAGE * 8)
            frames.update(entry & _PFN_MASK for (entry,) in struct.iter_unpack("<Q", data)
                          if entry & _PRESENT)
    if frames == {0}:
        raise PermissionError("pagemap hides page frame numbers (not root)")
    return frames


def together_mib(pids: Iterable[int | None]) -> float:
    """MiB of distinct physical pages the processes hold resident (see the module doc);
    NaN if one of them is gone or the frames cannot be read."""
    frames: set[int] = set()
    try:
        for pid in pids:
            if pid is None:
                return float("nan")
            frames |= resident_frames(pid)
    except (OSError, ValueError):
        return float("nan")
    return len(frames) * PAGE / 2**20
