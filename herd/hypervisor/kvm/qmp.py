"""QMP calls to one instance's QEMU: one short-lived connection per call, always with a timeout.

QEMU serves one QMP client at a time on a socket, and noded may restart at any moment, so
holding a connection open would block other callers and leave state behind. A connection costs
a few milliseconds on a local socket; the timeout makes a wedged QEMU an error, not a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from qemu.qmp import EventListener, QMPClient, QMPError
from qemu.qmp.protocol import ConnectError
from qemu.qmp.qmp_client import GreetingError, NegotiationError

from herd.errors import HypervisorError

#: Seconds allowed for connect + one command.
DEFAULT_TIMEOUT = 5.0

# qemu.qmp logs every protocol step at INFO/DEBUG; keep noded's log readable.
logging.getLogger("qemu.qmp").setLevel(logging.WARNING)


#: Tries of a connection whose greeting was not one: QEMU's monitor stays negotiated after a
#: client left until it has processed the next connection, so an event raised in that moment
#: (a MIGRATION status change right after 'migrate', a STOP) can reach the new client before
#: its greeting, which the QMP library refuses. The next try gets a proper greeting.
GREETING_TRIES = 3


async def _connect(socket: Path) -> QMPClient:
    """A negotiated client (the caller bounds the time)."""
    for attempt in range(GREETING_TRIES):
        client = QMPClient(socket.stem)
        try:
            await client.connect(str(socket))
            return client
        except ConnectError as exc:
            with contextlib.suppress(Exception):
                await client.disconnect()
            if not isinstance(exc.exc, GreetingError | NegotiationError) or \
                    attempt + 1 == GREETING_TRIES:
                raise
    raise AssertionError("not reached")


async def execute(socket: Path, command: str, arguments: dict[str, Any] | None = None,
                  *, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Run one QMP command and return its result; HypervisorError if QEMU does not answer."""
    client: QMPClient | None = None
    try:
        async with _answered(f"QMP command '{command}' on {socket}", timeout):
            client = await _connect(socket)
            return await client.execute(command, arguments)
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await client.disconnect()


@contextlib.asynccontextmanager
async def _answered(what: str, timeout: float) -> AsyncIterator[None]:
    """QEMU's silence and the QMP library's errors as the one HypervisorError callers know,
    naming ``what`` was asked (one wording for single commands and open connections)."""
    try:
        async with asyncio.timeout(timeout):
            yield
    except TimeoutError:
        raise HypervisorError(f"{what} timed out after {timeout:g} s") from None
    except (QMPError, OSError) as exc:
        raise HypervisorError(f"{what} failed: {exc}") from None


#: Runs one command on an open connection (see :func:`connected`).
Run = Callable[..., Awaitable[Any]]


@contextlib.asynccontextmanager
async def _open(socket: Path, timeout: float) -> AsyncIterator[tuple[QMPClient, Run]]:
    """A negotiated client and its ``run(command, arguments=None)``, closed on exit."""
    async with _answered(f"QMP connection to {socket}", timeout):
        client = await _connect(socket)

    async def run(command: str, arguments: dict[str, Any] | None = None) -> Any:
        async with _answered(f"QMP command '{command}' on {socket}", timeout):
            return await client.execute(command, arguments)

    try:
        yield client, run
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await client.disconnect()


@contextlib.asynccontextmanager
async def connected(socket: Path, *, timeout: float = DEFAULT_TIMEOUT) -> AsyncIterator[Run]:
    """One connection for a few commands in a row, each with ``timeout``: for steps where
    the guest is paused (the resume after a migration), as every new connection costs a few
    milliseconds. Yields ``run(command, arguments=None)``; keep the block short, QEMU serves
    no other client meanwhile."""
    async with _open(socket, timeout) as (_, run):
        yield run


@contextlib.asynccontextmanager
async def listening(socket: Path, names: tuple[str, ...], *,
                    timeout: float = DEFAULT_TIMEOUT) -> AsyncIterator[tuple[Run, EventListener]]:
    """:func:`connected`, also receiving QEMU's events ``names`` from the moment it is
    connected: for waiting on something QEMU announces (the end of a migration) without
    polling, which costs a command per look and notices the end only at the next look.
    Yields ``(run, events)``; ``await events.get()`` returns the next event (a dict with
    ``event``, ``data`` and QEMU's wall-clock ``timestamp``)."""
    async with _open(socket, timeout) as (client, run):
        with client.listener(names) as events:
            yield run, events


async def query_status(socket: Path, *, timeout: float = DEFAULT_TIMEOUT) -> str:
    """QEMU's run state ('running', 'paused', 'prelaunch', ...)."""
    result = await execute(socket, "query-status", timeout=timeout)
    return str(result.get("status", "")) if isinstance(result, dict) else ""
