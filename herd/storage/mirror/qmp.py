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

from qemu.qmp import EventListener, ExecuteError, QMPClient, QMPError

from herd.errors import StorageError

#: Seconds for connect and for each command, unless a caller says otherwise.
DEFAULT_TIMEOUT = 10.0

#: Seconds between two attempts to open a session.
RETRY_DELAY = 0.5

logging.getLogger("qemu.qmp").setLevel(logging.WARNING)
log = logging.getLogger("herd.mirror.qmp")


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

    def events(self, *names: str) -> contextlib.AbstractContextManager[EventListener]:
        """Receive the daemon's events ``names`` from now on, within the ``with`` block
        (``await listener.get()``): to wait for something the daemon announces, such as the
        end of a block job, instead of polling for it."""
        return self._client.listener(names)


async def _connect(socket: Path, timeout: float) -> QMPClient:
    """A negotiated client. The monitor serves one client at a time: a connection made while
    another session ends (or while the daemon's main loop is busy for a moment) may be closed
    before the greeting, so that is tried again until ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        client = QMPClient(socket.name)
        left = deadline - asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(max(left, 0.1)):
                await client.connect(str(socket))
            return client
        except TimeoutError:
            raise StorageError(f"QMP connect to {socket} timed out after {timeout:g} s") \
                from None
        except (QMPError, OSError) as exc:
            cause = getattr(exc, "exc", exc)  # qemu.qmp's ConnectError wraps the reason
            gone = isinstance(cause, FileNotFoundError | ConnectionRefusedError)
            if gone or asyncio.get_running_loop().time() + RETRY_DELAY > deadline:
                raise StorageError(f"cannot connect to storage daemon at {socket}: "
                                   f"{exc}") from None
            log.info("QMP session to %s not established (%s); trying again", socket, exc)
        await asyncio.sleep(RETRY_DELAY)


@contextlib.asynccontextmanager
async def session(socket: Path, *, timeout: float = DEFAULT_TIMEOUT) -> AsyncIterator[QmpSession]:
    """Connect to ``socket``; the session is closed (with its own timeout) on exit."""
    client = await _connect(socket, timeout)
    try:
        yield QmpSession(client, socket)
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await client.disconnect()
