"""Common base of configuration objects: identity, serial number and timestamps.

Every object in the config has a uuid, a ``serial_no`` bumped on each change, and ctime/mtime,
as Ganeti's do; RAPI exposes them under the same names. Objects serialise to plain JSON-safe
dicts so that the config file, the node RPC and the job results share one representation.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import uuid as uuidlib
from typing import Any, Self, get_type_hints


def new_uuid() -> str:
    return str(uuidlib.uuid4())


@dataclasses.dataclass
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
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in names:
                continue  # tolerate fields written by a newer version
            nested = nested_of.get(key)
            if nested is not None and isinstance(value, list):
                value = [nested.from_dict(v) for v in value]
            kwargs[key] = value
        return cls(**kwargs)

    def copy(self) -> Self:
        return type(self).from_dict(self.to_dict())


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
