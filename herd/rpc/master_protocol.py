"""The local protocol between clients (gnt-* commands, RAPI) and masterd.

A unix socket; one JSON object per line each way. Request: ``{"method": str, "args": {...}}``;
answer: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {"code", "message"}}``.
Kept this small on purpose: the socket's file permissions are the access control.

The list queries (``query_instances``, ``query_nodes``) also answer an ``etag`` (masterd
keeps the answer, herd.rpc.answer_cache); a request that gives ``"etag"`` beside ``"args"``
is answered ``{"ok": true, "etag": ..., "same": true}`` without the result when that etag is
still the answer, so a client that kept it (RAPI) is spared decoding megabytes again.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing costs each gnt-* command ~2 ms at start
    from typing import Any

MAX_LINE = 64 * 1024 * 1024


def encode(obj: Any) -> bytes:
    return encode_json(obj).encode() + b"\n"


#: Rows per json.dumps call when a long answer is encoded in pieces (see encode_in_pieces).
PIECE_ROWS = 200


def encode_in_pieces(answer: dict[str, Any]) -> bytes:
    """:func:`encode` of an answer whose result is a long list, one json.dumps per
    :data:`PIECE_ROWS` rows. The same JSON; meant for a worker thread: one json.dumps holds
    the GIL until it is done (a second or more for 20,000 instance rows), while between the
    pieces the event loop gets its turn."""
    rows = answer["result"]
    head = encode_json({k: v for k, v in answer.items() if k != "result"})
    parts = [encode_json(rows[start:start + PIECE_ROWS])[1:-1]
             for start in range(0, len(rows), PIECE_ROWS)]
    body = ",".join(p for p in parts if p)
    return f'{head[:-1]}{"," if len(head) > 2 else ""}"result":[{body}]}}\n'.encode()


def encode_json(value: Any) -> str:
    """``value`` as compact JSON text (as :func:`encode` writes it)."""
    return json.dumps(value, separators=(",", ":"), default=str)


def answer_line(result_json: str, etag: str | None = None) -> bytes:
    """The line of a successful answer whose result is already JSON text."""
    head = f'{{"ok":true,"etag":{json.dumps(etag)},' if etag else '{"ok":true,'
    return f'{head}"result":{result_json}}}\n'.encode()


def same_line(etag: str) -> bytes:
    """The answer to a request whose etag is still the answer."""
    return encode({"ok": True, "etag": etag, "same": True})


def decode(line: bytes) -> Any:
    return json.loads(line)
