"""The watcher's memory: restart counting, giving up, and the pause."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from herd import errors
from herd.cli.gnt_cluster import parse_timespec
from herd.paths import HerdPaths
from herd.watcher import state


def test_restart_count_gives_up_after_five_and_resets_when_running(tmp_path: Path) -> None:
    p = HerdPaths(tmp_path)
    st = state.WatcherState.load(p)
    for attempt in range(1, state.MAX_RESTARTS + 1):
        assert st.may_restart("a")
        assert st.attempted("a") == attempt
    assert not st.may_restart("a")
    st.save(p)
    again = state.WatcherState.load(p)  # survives between runs
    assert not again.may_restart("a")
    again.seen_running("a")
    assert again.may_restart("a")
    again.attempted("gone")
    again.forget_except({"a"})
    assert "gone" not in again.restarts


def test_pause_until_and_resume(tmp_path: Path) -> None:
    p = HerdPaths(tmp_path)
    assert state.paused_until(p) is None
    until = state.pause(p, 3600)
    assert abs(until - (time.time() + 3600)) < 5
    assert state.paused_until(p) == pytest.approx(until, abs=1)
    assert state.paused_until(p, now=until + 1) is None  # a pause ends by itself
    assert state.resume(p) and state.paused_until(p) is None
    assert not state.resume(p)


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("30s", 30), ("5m", 300),
                                               ("1h", 3600), ("2d", 172800), ("1w", 604800)])
def test_timespec(text: str, seconds: int) -> None:
    assert parse_timespec(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "soon", "-5m", "0", "1.5h", "3y"])
def test_bad_timespec_names_the_value(text: str) -> None:
    with pytest.raises(errors.ParameterError, match=f"invalid duration '{text}'"):
        parse_timespec(text)
