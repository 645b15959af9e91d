"""Common base of configuration objects: identity, serial number and timestamps.

Every object in the config has a uuid, a ``serial_no`` bumped on each change, and ctime/mtime,
as Ganeti's do; RAPI exposes them under the same names. Objects serialise to plain JSON-safe
dicts so that the config file, the node RPC and the job results share one representation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import time
import uuid as uuidlib
from collections.abc import Iterator
from typing import Any, Self, get_type_hints


def new_uuid() -> str:
    return str(uuidlib.uuid4())


@dataclasses.dataclass(slots=True)
class ConfigObject:
    """Base for config objects; subclasses are dataclasses with JSON-safe fields."""

    uuid: str = dataclasses.field(default_factory=new_uuid)
    serial_no: int = 1
    ctime: float = dataclasses.field(default_factory=time.time)
    mtime: float = dataclasses.field(default_factory=time.time)

    def touch(self) -> None:
        """Record a modification: bump the serial number and mtime."""
        self.serial_no += 1
        self.mtime = time.time()

    def to_dict(self) -> dict[str, Any]:
        return self._fields_dict({})

    def _fields_dict(self, given: dict[str, Any]) -> dict[str, Any]:
        """The JSON-safe fields; ``given``: the stored form of fields a subclass derives
        itself (e.g. a disk's id), not converted again."""
        out: dict[str, Any] = {}
        for name in _dict_fields(type(self)):
            if name in given:
                out[name] = given[name]
                continue
            value = getattr(self, name)
            if isinstance(value, list):
                value = [v.to_dict() if isinstance(v, ConfigObject) else v for v in value]
            elif isinstance(value, ConfigObject):
                value = value.to_dict()
            elif isinstance(value, dict):
                value = dict(value)
            out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names, nested_of = _init_fields(cls)
        # fields written by a newer version are dropped (tolerated); one comprehension, as a
        # config of 20,000 instances builds 60,000 objects at every masterd start
        kwargs = {key: value for key, value in data.items() if key in names}
        for key, nested in nested_of.items():
            value = kwargs.get(key)
            if type(value) is list:
                kwargs[key] = [nested.from_dict(v) for v in value]
        return cls(**kwargs)

    def copy(self) -> Self:
        return type(self).from_dict(self.to_dict())


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a config is built: building creates only objects
    that live on, and the collector, run again and again as they pile up, scanned them all
    each time (half of a 20,000-instance load). Reference counting still frees what is
    dropped; the collector runs again afterwards as it would have."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@functools.cache
def _dict_fields(cls: type) -> tuple[str, ...]:
    """The serialised fields of ``cls``, in order (cached: a save walks every object)."""
    return tuple(f.name for f in dataclasses.fields(cls) if not f.name.startswith("_"))


@functools.cache
def _init_fields(cls: type) -> tuple[frozenset[str], dict[str, type[ConfigObject]]]:
    """The init fields of ``cls`` and the config-object class of its list fields. Cached:
    resolving type hints costs far more than building the object, and a config of 20,000
    instances is built at every masterd start (it took 50 s uncached)."""
    hints = get_type_hints(cls)
    names = frozenset(f.name for f in dataclasses.fields(cls) if f.init)
    nested = {name: inner for name in names
              if (inner := _nested_class(hints.get(name))) is not None}
    return names, nested


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints`` of a config class, resolved once."""
    return get_type_hints(cls)


def _nested_class(hint: Any) -> type[ConfigObject] | None:
    args = getattr(hint, "__args__", ())
    if getattr(hint, "__origin__", None) is list and args:
        inner = args[0]
        if isinstance(inner, type) and issubclass(inner, ConfigObject):
            return inner
    return None
