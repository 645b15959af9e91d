"""Output of the ``gnt-*`` commands: Ganeti's list tables, Herd's ``--json``, and ``info`` text.

Scripts parse Ganeti's output, so the table follows Ganeti's rules exactly (see ganeti(7) and
the LIST section of gnt-instance(8)):

* no separator: columns joined by one space and padded, numbers and sizes right-aligned, text
  left-aligned; the last column is not padded when left-aligned (no trailing blanks);
* a separator: values joined by it, no padding (the header line too, unless --no-headers);
* sizes (MiB) use ``--units``; without it they are human-readable ("1.0G") in aligned output but
  plain MiB numbers when a separator is given, so scripts can parse them;
* booleans print as Y/N, lists comma-joined, None as "-" (Ganeti's "unavailable"); the other
  special states are the strings :data:`NODATA`, :data:`OFFLINE` and :data:`UNKNOWN`.

``info`` output is YAML, like Ganeti's since 2.7, written by a small writer so that the layout is
Ganeti's (``- Instance name: x`` then indented keys, in the caller's order) while every scalar is
quoted whenever plain YAML would read it back differently.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence

from herd.units import format_size

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing costs each gnt-* command ~2 ms at start
    from typing import Any

#: Ganeti's special field states (terse form).
UNAVAIL = "-"   # the field makes no sense for this object (e.g. memory of a stopped instance)
NODATA = "?"    # the node should have answered but did not
OFFLINE = "*"   # the node is offline, so it was not asked
UNKNOWN = "??"  # no such field

_INDENT = "  "


# --- tables -------------------------------------------------------------------------------------

def format_value(value: Any) -> str:
    """Format one non-size cell the way Ganeti's list commands do."""
    if value is None:
        return UNAVAIL
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value) if isinstance(value, set | frozenset) else value
        return ",".join(format_value(item) for item in items)
    return str(value)


def format_time(value: Any) -> Any:
    """A timestamp cell as Ganeti's list commands print one (``%Y-%m-%d %H:%M:%S``, local
    time); anything that is not a number (None, "?") is left to :func:`format_value`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    return value


def default_units(units: str | None, separator: str | None) -> str:
    """Ganeti's choice when --units is not given: MiB numbers with a separator, else human."""
    if units:
        return units
    return "m" if separator else "h"


def format_table(
    fields: Sequence[str],
    headers: Mapping[str, str],
    rows: Sequence[Sequence[Any]],
    *,
    separator: str | None,
    header: bool,
    units: str | None,
    unit_fields: set[str] | frozenset[str],
    numeric_fields: set[str] | frozenset[str],
) -> list[str]:
    """Return the lines of a Ganeti list table (header line first unless ``header`` is False).

    ``headers`` maps field names to titles (a missing title falls back to the field name);
    values of ``unit_fields`` are MiB and are formatted per ``units``; a size cell that is not a
    number (e.g. None or "?") is printed like any other cell.
    """
    unit = default_units(units, separator)
    right = [f in numeric_fields or f in unit_fields for f in fields]
    table: list[list[str]] = []
    if header:
        table.append([headers.get(f, f) for f in fields])
    for row in rows:
        if len(row) != len(fields):
            raise ValueError(f"row has {len(row)} values for {len(fields)} fields")
        table.append([_cell(value, field in unit_fields, unit)
                      for field, value in zip(fields, row, strict=True)])
    if separator is not None:
        return [separator.join(line) for line in table]
    widths = [max((len(line[i]) for line in table), default=0) for i in range(len(fields))]
    if fields and not right[-1]:
        widths[-1] = 0
    return [
        " ".join(cell.rjust(w) if r else cell.ljust(w)
                 for cell, w, r in zip(line, widths, right, strict=True))
        for line in table
    ]


def _cell(value: Any, is_size: bool, unit: str) -> str:
    if is_size and isinstance(value, int | float) and not isinstance(value, bool):
        return format_size(value, unit)
    return format_value(value)


def format_json(fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Herd's ``--json``: a list of objects keyed by field name, values raw (sizes in MiB)."""
    objects = [dict(zip(fields, row, strict=True)) for row in rows]
    return json.dumps(objects, indent=2, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    return str(value)


# --- info ---------------------------------------------------------------------------------------

def format_info(data: Any) -> str:
    """Render ``data`` (mappings in their own order, lists, tuples, scalars) as Ganeti-style YAML.

    Mappings become ``key: value`` lines, nested containers are indented by two spaces, list
    items start with ``- ``, tuples of scalars are written inline as ``[a, b]``, None is left
    empty, empty containers are ``[]``/``{}``. No trailing newline (print() adds one).
    The text always satisfies ``yaml.safe_load(format_info(x)) == x`` for JSON-like data.
    """
    if _is_inline(data):
        return _inline(data)
    return "\n".join(_block(data))


def _is_inline(value: Any) -> bool:
    if isinstance(value, Mapping | list | tuple):
        if not value:
            return True
        return isinstance(value, tuple) and all(_is_scalar(item) for item in value)
    return True


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, Mapping | list | tuple)


def _inline(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list | tuple):
        plain = "[" + ", ".join(_scalar(item) for item in value) + "]"
        if _loads_as(plain, list(value)):
            return plain
        return "[" + ", ".join(_quoted(item) for item in value) + "]"
    return _scalar(value)


def _block(value: Mapping[Any, Any] | Sequence[Any]) -> list[str]:
    """Lines of a non-empty container, unindented."""
    lines: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            label = _key(key)
            if _is_inline(item):
                lines.append(f"{label}: {_inline(item)}".rstrip())
            else:
                lines.append(f"{label}:")
                lines.extend(_INDENT + line for line in _block(item))
        return lines
    for item in value:
        if _is_inline(item):
            lines.append(f"- {_inline(item)}".rstrip())
        else:
            sub = _block(item)
            lines.append(f"- {sub[0]}")
            lines.extend(_INDENT + line for line in sub[1:])
    return lines


def _scalar(value: Any) -> str:
    """A scalar as plain YAML when that reads back to the same value, else double-quoted."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int | float):
        text = repr(value)
        return text if _loads_as(text, value) else _quoted(value)
    text = str(value)
    plain_ok = (text and text == text.strip() and text.isprintable()
                and _loads_as(text, text))
    return text if plain_ok else _quoted(text)


def _key(key: Any) -> str:
    text = _scalar(key)
    if text and _loads_as(f"{text}: 0", {key: 0}):
        return text
    return _quoted(key)


def _quoted(value: Any) -> str:
    # A JSON string is a valid YAML double-quoted scalar; numbers and booleans stay JSON.
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    return json.dumps(str(value), ensure_ascii=False)


def _loads_as(text: str, expected: Any) -> bool:
    import yaml  # here: list commands never need it, and it costs ~25 ms to import

    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    return type(loaded) is type(expected) and loaded == expected
