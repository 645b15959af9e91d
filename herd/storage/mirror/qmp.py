"""QMP to a qemu-storage-daemon: short sessions, every step under a timeout.

A QSD monitor serves one client at a time and noded may restart at any moment, so nothing holds
a connection: a :class:`QmpSession` lives for one operation (a few commands) and is closed at
once. A wedged daemon becomes a StorageError naming the command, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from qemu.qmp import ExecuteError, QMPClient, QMPError

from herd.errors import StorageError

#: Seconds for connect and for each command, unless a caller says otherwise.
DEFAULT_TIMEOUT = 10.0

logging.getLogger("qemu.qmp").setLevel(logging.WARNING)


class QmpCommandError(StorageError):
    """The daemon answered a command with an error (as opposed to not answering)."""

    code = "StorageError"

    def __init__(self, message: str, desc: str) -> None:
        super().__init__(message)
        self.desc = desc


class QmpSession:
    def __init__(self, client: QMPClient, socket: Path) -> None:
        self._client = client
        self._socket = socket

    async def cmd(self, command: str, arguments: dict[str, Any] | None = None, *,
                  timeout: float = DEFAULT_TIMEOUT) -> Any:
        try:
            async with asyncio.timeout(timeout):
                return await self._client.execute(command, arguments)
        except TimeoutError:
            raise StorageError(f"QMP '{command}' on {self._socket} timed out after "
                               f"{timeout:g} s") from None
        except ExecuteError as exc:
            desc = str(exc)
            raise QmpCommandError(f"QMP '{command}' on {self._socket} failed: {desc}",
                                  desc) from None
        except (QMPError, OSError, EOFError) as exc:
            raise StorageError(f"QMP '{command}' on {self._socket} failed: {exc!r}") from None


@contextlib.asynccontextmanager
async def session(socket: Path, *, timeout: float = DEFAULT_TIMEOUT) -> AsyncIterator[QmpSession]:
    """Connect to ``socket``; the session is closed (with its own timeout) on exit."""
    client = QMPClient(socket.name)
    try:
        async with asyncio.timeout(timeout):
            await client.connect(str(socket))
    except TimeoutError:
        raise StorageError(f"QMP connect to {socket} timed out after {timeout:g} s") from None
    except (QMPError, OSError) as exc:
        raise StorageError(f"cannot connect to storage daemon at {socket}: {exc}") from None
    try:
        yield QmpSession(client, socket)
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await client.disconnect()
