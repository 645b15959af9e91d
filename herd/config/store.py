"""ConfigStore: the one place that loads and saves the cluster configuration.

The master owns the authoritative copy in memory and writes it atomically on every change;
listeners (replication to master candidates, cluster facts) run after each save so that a job
reports success only once its change is on disk everywhere it must be.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from herd.errors import ConfigurationError
from herd.fileutil import atomic_write_json
from herd.objects import ConfigData

SaveListener = Callable[[ConfigData], Awaitable[None]]


class ConfigStore:
    def __init__(self, path: Path, data: ConfigData) -> None:
        self.path = path
        self.data = data
        self._listeners: list[SaveListener] = []

    @classmethod
    def load(cls, path: Path) -> ConfigStore:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigurationError(
                f"no cluster configuration at {path}: is this node part of a cluster? "
                "(run 'gnt-cluster init' first)") from None
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read cluster configuration {path}: {exc}") from None
        return cls(path, ConfigData.from_dict(raw))

    @classmethod
    def create(cls, path: Path, data: ConfigData) -> ConfigStore:
        store = cls(path, data)
        store.write()
        return store

    def add_listener(self, listener: SaveListener) -> None:
        self._listeners.append(listener)

    def write(self) -> None:
        self.data.mtime = time.time()
        atomic_write_json(self.path, self.data.to_dict())

    async def save(self) -> None:
        """Persist a change: bump the document serial, write atomically, notify listeners."""
        self.data.serial_no += 1
        self.write()
        for listener in self._listeners:
            await listener(self.data)
