"""bench/procmem.py's "together" figure, which issue 17's memory goal is reported with: each
physical page counted once however many processes of the group map it."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="pagemap's frame numbers need root")


def _procmem() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "procmem.py"
    spec = importlib.util.spec_from_file_location("bench_procmem", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


procmem = _procmem()


@contextlib.contextmanager
def idle_interpreters(count: int) -> Iterator[list[int]]:
    """Interpreters that have started and wait on their input: their pages do not change
    while they are measured (this test's own process does: reading the frames allocates)."""
    children = [subprocess.Popen([sys.executable, "-c", "import sys\nprint(flush=True)\n"
                                  "sys.stdin.read()"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE) for _ in range(count)]
    try:
        for child in children:
            assert child.stdout is not None
            child.stdout.readline()  # started
        yield [child.pid for child in children]
    finally:
        for child in children:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=30)


@ROOT_ONLY
def test_one_process_together_is_its_resident_set() -> None:
    with idle_interpreters(1) as (pid,):
        together, rss = procmem.together_mib([pid]), procmem.rss_mib(pid)
        assert rss * 0.95 <= together <= rss * 1.05


@ROOT_ONLY
def test_pages_two_processes_share_are_counted_once() -> None:
    """Two interpreters share libpython's and libc's pages: together they hold less than the
    sum of their resident sets, and more than either alone; a process named twice adds
    nothing."""
    with idle_interpreters(2) as (first, second):
        alone = [procmem.together_mib([first]), procmem.together_mib([second])]
        assert procmem.together_mib([first, first]) == pytest.approx(alone[0], abs=0.05)
        both = procmem.together_mib([first, second])
        assert max(alone) < both < sum(alone) - 1  # at least a MiB of libraries shared


def test_a_missing_process_gives_nan_not_a_figure() -> None:
    assert procmem.together_mib([None]) != procmem.together_mib([None])  # NaN
    assert procmem.rss_mib(None) != procmem.rss_mib(None)
