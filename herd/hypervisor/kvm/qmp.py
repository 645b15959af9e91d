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

from herd.errors import HypervisorError

#: Seconds allowed for connect + one command.
DEFAULT_TIMEOUT = 5.0

# qemu.qmp logs every protocol step at INFO/DEBUG; keep noded's log readable.
logging.getLogger("qemu.qmp").setLevel(logging.WARNING)


async def execute(socket: Path, command: str, arguments: dict[str, Any] | None = None,
                  *, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Run one QMP command and return its result; HypervisorError if QEMU does not answer."""
    client = QMPClient(socket.stem)
    try:
        async with _answered(f"QMP command '{command}' on {socket}", timeout):
            await client.connect(str(socket))
            return await client.execute(command, arguments)
    finally:
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
    client = QMPClient(socket.stem)

    async def run(command: str, arguments: dict[str, Any] | None = None) -> Any:
        async with _answered(f"QMP command '{command}' on {socket}", timeout):
            return await client.execute(command, arguments)

    try:
        async with _answered(f"QMP connection to {socket}", timeout):
            await client.connect(str(socket))
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
