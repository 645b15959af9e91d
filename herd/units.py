"""Sizes as Ganeti writes them: a number with an optional unit, counted in MiB.

``512`` and ``512M`` are 512 MiB, ``10G`` is 10240 MiB, ``1.5T`` is 1572864 MiB. Ganeti rounds
every size up to a whole multiple of 4 MiB (``125`` is 128); Herd does the same so that sizes
match between the two.
"""

from __future__ import annotations

import math
import re

from herd.errors import ParameterError

_UNITS = {"": 1, "m": 1, "mb": 1, "mib": 1, "g": 1024, "gb": 1024, "gib": 1024,
          "t": 1024 * 1024, "tb": 1024 * 1024, "tib": 1024 * 1024}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")


def parse_size(value: str | int | float, what: str = "size") -> int:
    """Return ``value`` in MiB; raise ParameterError naming the bad value otherwise."""
    if isinstance(value, bool):
        raise ParameterError(f"invalid {what} {value!r}: expected a number with unit M, G or T")
    if isinstance(value, int | float):
        if value < 0:
            raise ParameterError(f"invalid {what} {value!r}: must not be negative")
        return _round(float(value))
    m = _SIZE_RE.match(str(value))
    if not m or m.group(2).lower() not in _UNITS:
        raise ParameterError(
            f"invalid {what} '{value}': expected a number with an optional unit M, G or T"
        )
    return _round(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _round(mib: float) -> int:
    whole = math.ceil(mib)
    if whole % 4:
        whole += 4 - whole % 4
    return whole


def format_size(mib: int | float, units: str = "h") -> str:
    """Format MiB like Ganeti's ``--units``: h (human), m, g or t."""
    units = units.lower()
    if units == "m" or (units == "h" and mib < 1024):
        return f"{int(mib)}" + ("M" if units == "h" else "")
    if units == "g" or (units == "h" and mib < 1024 * 1024):
        return f"{mib / 1024:.1f}" + ("G" if units == "h" else "")
    if units in ("t", "h"):
        return f"{mib / (1024 * 1024):.1f}" + ("T" if units == "h" else "")
    raise ParameterError(f"invalid units '{units}': allowed are h, m, g, t")
