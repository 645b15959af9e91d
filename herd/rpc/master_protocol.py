"""The local protocol between clients (gnt-* commands, RAPI) and masterd.

A unix socket; one JSON object per line each way. Request: ``{"method": str, "args": {...}}``;
answer: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {"code", "message"}}``.
Kept this small on purpose: the socket's file permissions are the access control.
"""

from __future__ import annotations

import json
from typing import Any

MAX_LINE = 64 * 1024 * 1024


def encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode() + b"\n"


def decode(line: bytes) -> Any:
    return json.loads(line)
