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
    from collections.abc import Iterator
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


_RESULT = '"result":'
_SPACE = " \t\r\n"


def decode_head(line: bytes) -> tuple[dict[str, Any], str | None, int]:
    """An answer without decoding its result: (its other fields, the line's text, where the
    result's JSON starts); when the result is not a list written last (as :func:`answer_line`
    and :func:`encode_in_pieces` write list answers), the whole answer decoded, None, -1.
    :func:`result_batches` then decodes the rows a batch at a time."""
    text = line.decode()
    at = text.find(_RESULT)
    start = at + len(_RESULT)
    if at > 0 and text[start:start + 1] == "[" and text.rstrip(_SPACE).endswith("]}"):
        try:
            head = json.loads(text[:start] + "null}")
        except ValueError:
            head = None  # "result" was inside a string of another field (an error message)
        if isinstance(head, dict):
            head.pop("result", None)
            return head, text, start
    return json.loads(text), None, -1


class ListResult:
    """A list answer's rows, not decoded yet: :meth:`batches` decodes them a batch at a time
    (see :func:`result_batches`)."""

    __slots__ = ("_start", "_text")

    def __init__(self, text: str, start: int) -> None:
        self._text, self._start = text, start

    @property
    def size(self) -> int:
        """Characters of JSON the rows take (about their bytes)."""
        return len(self._text) - self._start

    def batches(self, batch: int = PIECE_ROWS) -> Iterator[list[Any]]:
        return result_batches(self._text, self._start, batch)


def batches_of(result: Any, batch: int = PIECE_ROWS) -> Iterator[list[Any]]:
    """The rows of a list answer's result ``batch`` at a time, whether it came decoded (a
    list) or as a :class:`ListResult`."""
    if isinstance(result, ListResult):
        yield from result.batches(batch)
        return
    for start in range(0, len(result), batch):
        yield result[start:start + batch]


def result_batches(text: str, start: int, batch: int = PIECE_ROWS) -> Iterator[list[Any]]:
    """The rows of the list at ``text[start:]`` (see :func:`decode_head`), ``batch`` at a
    time, each decoded only when it is asked for. A reader that converts and drops each batch
    never holds thousands of decoded rows at once: herd-rapi decoding 20,000 instance rows in
    one piece kept ~40 MiB of Python's small-object pools fragmented for good."""
    scan = json.JSONDecoder().raw_decode
    pos = _skip(text, start + 1)  # past "[" and blanks
    rows: list[Any] = []
    while text[pos] != "]":
        row, pos = scan(text, pos)
        rows.append(row)
        if len(rows) >= batch:
            yield rows
            rows = []
        pos = _skip(text, pos)
        if text[pos] == ",":
            pos = _skip(text, pos + 1)
        elif text[pos] != "]":
            raise ValueError(f"a list answer has {text[pos]!r} at {pos} where ',' or ']' "
                             "belongs")
    if rows:
        yield rows


def _skip(text: str, pos: int) -> int:
    """The first position from ``pos`` that is not a blank."""
    while text[pos] in _SPACE:
        pos += 1
    return pos
