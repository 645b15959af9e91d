"""herd-rapi's connections to masterd: the same line-delimited JSON as the CLI's, asynchronous,
kept open in a small pool so that concurrent requests do not wait for each other.

masterd answers one request at a time per connection, so each call borrows a connection for
its round trip; long polls (job waits) borrow one for their duration.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from herd import errors
from herd.rpc import master_protocol as proto


class MasterUnavailable(errors.RpcError):
    code = "MasterUnavailable"


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class MasterPool:
    def __init__(self, socket_path: Path, max_idle: int = 32, timeout: float = 120.0) -> None:
        self.socket_path = socket_path
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

    async def call(self, method: str, _timeout: float | None = None, **args: Any) -> Any:
        conn = self._idle.pop() if self._idle else await self._connect()
        try:
            conn.writer.write(proto.encode({"method": method, "args": args}))
            await conn.writer.drain()
            line = await asyncio.wait_for(conn.reader.readline(), _timeout or self.timeout)
            if not line:
                raise ConnectionError("masterd closed the connection")
        except (OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError) as exc:
            conn.close()
            raise MasterUnavailable(f"Master seems to be unreachable: {exc}") from None
        except BaseException:
            conn.close()
            raise
        if len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            conn.close()
        answer = proto.decode(line)
        if not answer.get("ok"):
            raise errors.from_dict(answer.get("error") or {})
        return answer.get("result")

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
