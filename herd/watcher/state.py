"""The watcher's memory between runs: restart attempts per instance, and the pause.

Two small files in the data directory, as Ganeti keeps them: ``watcher.data`` (JSON, replaced
atomically) and ``watcher.pause`` (the end of the pause, seconds since the epoch).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd.fileutil import atomic_write, atomic_write_json
from herd.paths import HerdPaths

#: Restarts in a row after which the watcher leaves an instance alone (Ganeti's MAXTRIES).
MAX_RESTARTS = 5


@dataclass
class RestartRecord:
    count: int = 0
    last: float = 0.0


@dataclass
class WatcherState:
    restarts: dict[str, RestartRecord] = field(default_factory=dict)

    @classmethod
    def load(cls, paths: HerdPaths) -> WatcherState:
        try:
            data: dict[str, Any] = json.loads(_data_file(paths).read_text())
        except (OSError, ValueError):
            return cls()
        return cls({name: RestartRecord(int(r.get("count", 0)), float(r.get("last", 0)))
                    for name, r in (data.get("restarts") or {}).items()})

    def save(self, paths: HerdPaths) -> None:
        atomic_write_json(_data_file(paths), {"restarts": {
            name: {"count": r.count, "last": r.last} for name, r in self.restarts.items()}})

    def may_restart(self, name: str) -> bool:
        return self.restarts.get(name, RestartRecord()).count < MAX_RESTARTS

    def attempted(self, name: str) -> int:
        rec = self.restarts.setdefault(name, RestartRecord())
        rec.count += 1
        rec.last = time.time()
        return rec.count

    def seen_running(self, name: str) -> None:
        self.restarts.pop(name, None)

    def forget_except(self, names: set[str]) -> None:
        """Drop records of instances that no longer exist."""
        for name in set(self.restarts) - names:
            del self.restarts[name]


def _data_file(paths: HerdPaths) -> Path:
    return paths.data_dir / "watcher.data"


def pause_file(paths: HerdPaths) -> Path:
    return paths.data_dir / "watcher.pause"


def paused_until(paths: HerdPaths, now: float | None = None) -> float | None:
    """The end of the current pause, or None when the watcher is not paused."""
    try:
        until = float(pause_file(paths).read_text().strip())
    except (OSError, ValueError):
        return None
    return until if until > (time.time() if now is None else now) else None


def pause(paths: HerdPaths, seconds: float) -> float:
    until = time.time() + seconds
    atomic_write(pause_file(paths), f"{until:.0f}\n")
    return until


def resume(paths: HerdPaths) -> bool:
    """End the pause; True if there was one."""
    was = paused_until(paths) is not None
    pause_file(paths).unlink(missing_ok=True)
    return was
