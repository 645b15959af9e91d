"""herd-rapi's connections to masterd: the same line-delimited JSON as the CLI's, asynchronous,
kept open in a small pool so that concurrent requests do not wait for each other.

masterd answers one request at a time per connection, so each call borrows a connection for
its round trip; long polls (job waits) borrow one for their duration.

A pooled connection outlives the masterd that accepted it: after a restart, the first request
on it used to fail with 502 "Connection lost". So a connection whose peer has closed is dropped
before use, and a call that fails on a pooled connection is tried once more on a fresh one when
that cannot do anything twice (:func:`may_retry`): always when the request could not be written
(masterd acts only on a whole line, and a dead peer never read it), and after a lost answer
only for methods that change nothing. A submit whose answer was lost is not repeated: it may
have been queued, and a second copy would run the operation twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from herd import errors
from herd.rpc import master_protocol as proto

#: Answers longer than this (bytes) are decoded in a worker thread.
BIG_ANSWER = 256 * 1024


class MasterUnavailable(errors.RpcError):
    code = "MasterUnavailable"


#: masterd methods that change nothing: asking again after a lost answer is harmless.
READ_ONLY_METHODS = frozenset({
    "ping", "query_jobs", "wait_for_job_change", "query_instances", "query_nodes",
    "query_cluster", "query_os", "query_volumes", "query_locks", "query_groups", "query_tags",
    "query_networks",
    "query_metrics",
})

#: Where a round trip failed: before the whole request was written, or after.
NOT_SENT = "not-sent"
NO_ANSWER = "no-answer"


def may_retry(method: str, failed: str, pooled: bool) -> bool:
    """Whether a call that failed ``failed`` may be tried again on a fresh connection.

    Only a pooled connection can be stale; a fresh one that fails means masterd is down, and
    asking again would only double the wait. An unwritten request never reached masterd; a
    written one may have, so only a read-only method is asked again."""
    if not pooled:
        return False
    return failed == NOT_SENT or method in READ_ONLY_METHODS


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def usable(self) -> bool:
        """False once masterd closed its end (seen as EOF while the connection sat idle)."""
        return not (self.writer.is_closing() or self.reader.at_eof()
                    or self.reader.exception() is not None)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class _RoundTripError(Exception):
    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(str(cause) or type(cause).__name__)
        self.stage = stage


class MasterPool:
    def __init__(self, socket_path: Path, max_idle: int = 32, timeout: float = 120.0,
                 on_big_answer: Callable[[int], None] | None = None) -> None:
        self.socket_path = socket_path
        #: told the size of each answer big enough to leave megabytes of freed heap behind
        #: once it is used and dropped (herd-rapi counts them for its next heap release)
        self.on_big_answer = on_big_answer
        self.max_idle = max_idle
        self.timeout = timeout
        self._idle: list[_Conn] = []

    async def _connect(self) -> _Conn:
        try:
            reader, writer = await asyncio.open_unix_connection(
                str(self.socket_path), limit=proto.MAX_LINE)
        except OSError as exc:
            raise MasterUnavailable(f"Can't connect to master daemon: {exc}") from None
        return _Conn(reader, writer)

    def _pooled(self) -> _Conn | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    async def _round_trip(self, conn: _Conn, request: bytes, timeout: float) -> bytes:
        try:
            conn.writer.write(request)
            await conn.writer.drain()
        except (OSError, ConnectionError) as exc:
            raise _RoundTripError(NOT_SENT, exc) from None
        try:
            line = await asyncio.wait_for(conn.reader.readline(), timeout)
        except TimeoutError:
            raise  # masterd is busy, not gone: asking again would only wait longer
        except (OSError, ConnectionError, asyncio.IncompleteReadError) as exc:
            raise _RoundTripError(NO_ANSWER, exc) from None
        except ValueError:  # the answer is longer than the stream's limit
            raise MasterUnavailable(f"masterd's answer is longer than {proto.MAX_LINE} "
                                    "bytes") from None
        if not line:
            raise _RoundTripError(NO_ANSWER, ConnectionError("masterd closed the connection"))
        return line

    async def call(self, method: str, _timeout: float | None = None, **args: Any) -> Any:
        answer = await self._answer(method, _timeout, None, args)
        return answer.get("result")

    async def call_kept(self, method: str, etag: str | None,
                        **args: Any) -> tuple[str | None, Any, bool]:
        """A list query answered with an etag (herd.daemons.lists): (etag, result, same);
        ``same`` (and no result) when ``etag``, given back, is still the answer. The result's
        rows are left undecoded (a ``master_protocol.ListResult``: decode them with
        ``batches_of``), so that a caller converting them never holds them all decoded."""
        answer = await self._answer(method, None, etag, args, lazy_rows=True)
        if answer.get("same"):
            return etag, None, True
        return answer.get("etag"), answer.get("result"), False

    async def _answer(self, method: str, _timeout: float | None, etag: str | None,
                      args: dict[str, Any], lazy_rows: bool = False) -> dict[str, Any]:
        message: dict[str, Any] = {"method": method, "args": args}
        if etag is not None:
            message["etag"] = etag
        request = proto.encode(message)
        conn = self._pooled()
        pooled = conn is not None
        while True:
            if conn is None:
                conn = await self._connect()
            try:
                line = await self._round_trip(conn, request, _timeout or self.timeout)
            except _RoundTripError as exc:
                conn.close()
                if may_retry(method, exc.stage, pooled):
                    conn, pooled = None, False
                    continue
                if exc.stage == NO_ANSWER and method not in READ_ONLY_METHODS:
                    raise MasterUnavailable(
                        f"Master seems to be unreachable: {exc}; the request may or may not "
                        "have been carried out (look at /2/jobs)") from None
                raise MasterUnavailable(f"Master seems to be unreachable: {exc}") from None
            except TimeoutError:
                conn.close()
                raise MasterUnavailable("Master seems to be unreachable: no answer in "
                                        f"{_timeout or self.timeout:.0f} s") from None
            except BaseException:
                conn.close()
                raise
            break
        if len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            conn.close()
        # a bulk answer (megabytes of rows) is decoded off the event loop, as masterd
        # encoded it: other RAPI requests go on meanwhile
        decode = _decode_lazily if lazy_rows else proto.decode
        if len(line) > BIG_ANSWER:
            if self.on_big_answer is not None:
                self.on_big_answer(len(line))
            answer = await asyncio.to_thread(decode, line)
        else:
            answer = decode(line)
        if not answer.get("ok"):
            raise errors.from_dict(answer.get("error") or {})
        return answer  # type: ignore[no-any-return]

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


def _decode_lazily(line: bytes) -> dict[str, Any]:
    """An answer with a list result left for ``batches_of`` (see MasterPool.call_kept)."""
    head, text, start = proto.decode_head(line)
    if text is not None:
        head["result"] = proto.ListResult(text, start)
    return head
