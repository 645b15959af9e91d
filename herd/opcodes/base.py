"""Opcode base: a typed, validated description of one operation.

Opcodes travel as JSON dicts with Ganeti's ``OP_ID`` key and field names, so that job listings
and RAPI show them the way Ganeti does. :func:`from_dict` checks every field against the
opcode's type hints and rejects unknown fields with one clear line.

Some fields carry secrets (a node's join token). Such a field is declared with
:func:`secret_field`; :meth:`OpCode.to_dict` replaces its value by :data:`REDACTED`, so the
secret never reaches the job queue, job listings, RAPI answers or logs. The executor keeps the
real value beside the job in memory (:meth:`OpCode.secrets`, :meth:`OpCode.restore_secrets`);
a job whose secret was lost with a masterd restart fails instead of running without it.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, ClassVar, Self

from herd import names
from herd.errors import ParameterError

_REGISTRY: dict[str, type[OpCode]] = {}

#: What a secret field's value is replaced by wherever an opcode is stored or shown.
REDACTED = "<redacted>"


def secret_field(**kwargs: Any) -> Any:
    """A dataclass field whose value must never be stored or shown (see the module doc).

    ``repr=False`` keeps it out of tracebacks and debug logs that print the opcode.
    """
    return dataclasses.field(repr=False, metadata={"secret": True}, **kwargs)


@functools.cache
def _shape_of(cls: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]:
    """An opcode class's resolved type hints and fields, worked out once per class: resolving
    hints costs about 2 ms, paid twice per job before this was cached."""
    return typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls)}


#: Ganeti's opcode priorities (OP_PRIO_HIGHEST .. OP_PRIO_LOWEST): the job queue orders by
#: them and stores them in an SQLite INTEGER, so anything else is refused at submit.
PRIORITY_HIGHEST = -20
PRIORITY_LOWEST = 19


@dataclasses.dataclass(kw_only=True)
class OpCode:
    OP_ID: ClassVar[str] = ""
    #: Field whose value names the opcode in job summaries, e.g. INSTANCE_STARTUP(name).
    SUMMARY_FIELD: ClassVar[str | None] = None

    dry_run: bool = False
    debug_level: int = 0
    priority: int = 0
    depends: list[Any] | None = None
    comment: str | None = None
    reason: list[Any] = dataclasses.field(default_factory=list)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.OP_ID:
            _REGISTRY[cls.OP_ID] = cls

    @classmethod
    def secret_fields(cls) -> tuple[str, ...]:
        """Names of the fields declared with :func:`secret_field`."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("secret"))

    def to_dict(self) -> dict[str, Any]:
        """The opcode as stored and shown: secret values replaced by :data:`REDACTED`."""
        out: dict[str, Any] = {"OP_ID": self.OP_ID}
        out.update(dataclasses.asdict(self))
        for name in self.secret_fields():
            if out.get(name) is not None:
                out[name] = REDACTED
        return out

    def secrets(self) -> dict[str, Any]:
        """The secret values this opcode holds (given ones only), to keep in memory."""
        return {name: getattr(self, name) for name in self.secret_fields()
                if getattr(self, name) is not None and getattr(self, name) != REDACTED}

    def missing_secrets(self) -> list[str]:
        """Secret fields that hold only the placeholder (the opcode came from storage)."""
        return [name for name in self.secret_fields() if getattr(self, name) == REDACTED]

    def restore_secrets(self, kept: dict[str, Any]) -> list[str]:
        """Put kept secret values back; return the names still missing afterwards."""
        for name in self.missing_secrets():
            if name in kept:
                setattr(self, name, kept[name])
        return self.missing_secrets()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        hints, fields = _shape_of(cls)
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "OP_ID":
                continue
            if key not in fields:
                known = ", ".join(sorted(fields))
                raise ParameterError(
                    f"unknown parameter '{key}' for {cls.OP_ID}; known: {known}")
            kwargs[key] = _check_type(cls.OP_ID, key, value, hints[key],
                                      secret=bool(fields[key].metadata.get("secret")))
        missing = [name for name, f in fields.items()
                   if name not in kwargs and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ParameterError(f"{cls.OP_ID} requires parameter(s): {', '.join(missing)}")
        priority = kwargs.get("priority", 0)
        if not PRIORITY_HIGHEST <= priority <= PRIORITY_LOWEST:
            raise ParameterError(f"invalid priority {priority} for {cls.OP_ID}: allowed are "
                                 f"{PRIORITY_HIGHEST} (highest) to {PRIORITY_LOWEST} (lowest)")
        return cls(**kwargs)

    def summary(self) -> str:
        name = self.OP_ID.removeprefix("OP_")
        if self.SUMMARY_FIELD:
            return f"{name}({getattr(self, self.SUMMARY_FIELD)})"
        return name


def _check_type(op_id: str, key: str, value: Any, hint: Any, secret: bool = False) -> Any:
    """Accept ``value`` if it matches ``hint`` (basic JSON types, Optional, list, dict).

    The error names a bad value, except a secret one: the answer would show it.
    """
    if _matches(value, hint):
        # JSON gives ints for floats sometimes; normalise
        if hint is float and isinstance(value, int):
            return float(value)
        return value
    shown = f"of type {type(value).__name__} (not shown: secret)" if secret else repr(value)
    raise ParameterError(
        f"parameter '{key}' of {op_id} has invalid value {shown}: expected {_describe(hint)}")


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (inner,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_matches(v, inner) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def opcode_from_dict(data: dict[str, Any]) -> OpCode:
    op_id = data.get("OP_ID") if isinstance(data, dict) else None
    cls = _REGISTRY.get(str(op_id))
    if cls is None:
        known = ", ".join(sorted(_REGISTRY))
        raise ParameterError(f"unknown opcode {op_id!r}; known: {known}")
    op = cls.from_dict(data)  # types first, so that a name that is no string says so
    names.check_opcode_fields(cls.OP_ID, data)
    return op


def redact_input(data: dict[str, Any]) -> dict[str, Any]:
    """A stored opcode input with its secret values replaced (for inputs stored before
    secrets were redacted at submit; unknown opcodes are returned unchanged)."""
    cls = _REGISTRY.get(str(data.get("OP_ID"))) if isinstance(data, dict) else None
    if cls is None:
        return data
    out = dict(data)
    for name in cls.secret_fields():
        if out.get(name) is not None:
            out[name] = REDACTED
    return out


def all_secret_fields() -> set[str]:
    """Every field name that is secret in some opcode (to find stored inputs holding one)."""
    return {name for cls in _REGISTRY.values() for name in cls.secret_fields()}
