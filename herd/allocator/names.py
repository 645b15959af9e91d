"""Allocator names and parameters: the part the gnt-* commands need, light enough to import
at every command's start (no config objects)."""

from __future__ import annotations

import re
from typing import Any

from herd import errors

#: Herd's built-in allocator (herd.allocator.builtin): the default when the admin names none.
BUILTIN = "herd"
#: Ganeti's shortcut for "the cluster's default allocator" (``-I .``).
DEFAULT_SHORTCUT = "."
#: Ganeti's EXT_PLUGIN_MASK: an allocator is a name in the search path, never a path.
NAME_RE = re.compile(r"^[a-zA-Z0-9_-]+$")


def parse_params(text: str) -> dict[str, Any]:
    """``--default-iallocator-params`` (``key=value,flag``) as stored: a bare key is None."""
    out: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not NAME_RE.match(key):
            raise errors.ParameterError(f"invalid allocator parameter '{item}': expected "
                                        "KEY=VALUE or KEY (letters, digits, '_', '-')")
        out[key] = value.strip() if sep else None
    return out
