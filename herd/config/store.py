"""ConfigStore: the one place that loads and saves the cluster configuration.

The master owns the authoritative copy in memory and writes it atomically on every change;
listeners (replication to master candidates, cluster facts) run after each save so that a job
reports success only once its change is on disk everywhere it must be. The file is written 0600.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from herd.config.shape import config_problem, damaged_config_message
from herd.errors import ConfigurationError
from herd.fileutil import atomic_write_json
from herd.objects import ConfigData

SaveListener = Callable[[ConfigData], Awaitable[None]]


class ConfigStore:
    def __init__(self, path: Path, data: ConfigData) -> None:
        self.path = path
        self.data = data
        self._listeners: list[SaveListener] = []
        #: bumped by every save and after every opcode (see note_change)
        self.generation = 0

    @classmethod
    def load(cls, path: Path) -> ConfigStore:
        """Read the config; refuse a damaged one with one line naming the file and the way
        out (see herd.config.shape). The file is made 0600 if an older version left it
        readable by others."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ConfigurationError(
                f"no cluster configuration at {path}: is this node part of a cluster? "
                "(run 'gnt-cluster init' first)") from None
        except OSError as exc:
            raise ConfigurationError(f"cannot read cluster configuration {path}: {exc}") from None
        _make_private(path)
        try:
            raw = json.loads(text)
        except ValueError as exc:
            problem = "the file is empty" if not text.strip() else f"not JSON: {exc}"
            raise ConfigurationError(damaged_config_message(path, problem)) from None
        problem = config_problem(raw)
        if problem is None:
            try:
                return cls(path, ConfigData.from_dict(raw))
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
        raise ConfigurationError(damaged_config_message(path, problem))

    @classmethod
    def create(cls, path: Path, data: ConfigData) -> ConfigStore:
        store = cls(path, data)
        store.write()
        return store

    def add_listener(self, listener: SaveListener) -> None:
        self._listeners.append(listener)

    def note_change(self) -> None:
        """The in-memory config may differ from what the last query saw: answers kept for
        the old generation are not served again (herd.rpc.answer_cache). Called at the start
        and the end of every save (a refused one restores objects without a new serial) and
        after every opcode (one that changed objects but failed before saving)."""
        self.generation += 1

    def write(self) -> None:
        self.data.mtime = time.time()
        atomic_write_json(self.path, self.data.to_dict())

    async def save(self) -> None:
        """Persist a change: bump the document serial, write atomically, notify listeners."""
        self.note_change()
        try:
            self.data.serial_no += 1
            self.write()
        finally:
            self.note_change()
        for listener in self._listeners:
            await listener(self.data)


def _make_private(path: Path) -> None:
    """Make the config readable by root only (older versions left it readable by all)."""
    try:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
    except OSError:
        pass  # a read-only copy is still worth reading
