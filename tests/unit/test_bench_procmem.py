"""bench/procmem.py's "together" figure, which issue 17's memory goal is reported with: each
physical page counted once however many processes of the group map it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
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


@ROOT_ONLY
def test_one_process_together_is_its_resident_set() -> None:
    me = os.getpid()
    together, rss = procmem.together_mib([me]), procmem.rss_mib(me)
    assert rss * 0.9 < together <= rss * 1.05


@ROOT_ONLY
def test_pages_two_processes_share_are_counted_once() -> None:
    """Two interpreters share libpython's and libc's pages: together they hold less than the
    sum of their resident sets, and more than either alone; a process named twice adds
    nothing."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        me = os.getpid()
        assert procmem.together_mib([me, me]) == pytest.approx(procmem.together_mib([me]),
                                                               rel=0.02)
        alone = [procmem.together_mib([me]), procmem.together_mib([child.pid])]
        both = procmem.together_mib([me, child.pid])
        assert max(alone) < both < sum(alone)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)


def test_a_missing_process_gives_nan_not_a_figure() -> None:
    assert procmem.together_mib([None]) != procmem.together_mib([None])  # NaN
    assert procmem.rss_mib(None) != procmem.rss_mib(None)
