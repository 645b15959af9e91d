"""A QMP session survives a monitor that drops the first connection (busy with another client)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from herd.errors import StorageError
from herd.storage.mirror.qmp import session

GREETING = {"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7},
                                "package": ""}, "capabilities": []}}


async def serve(sock: Path, drop_first: int, event_first: int = 0) -> asyncio.AbstractServer:
    """A minimal QMP monitor: closes the first ``drop_first`` connections before greeting;
    sends an event before the greeting to the ``event_first`` after them (as QEMU's monitor
    can to a client that connects as an event is raised)."""
    seen = 0

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal seen
        seen += 1
        if seen <= drop_first:
            writer.close()
            return
        if seen <= drop_first + event_first:
            event = {"event": "MIGRATION", "data": {"status": "active"},
                     "timestamp": {"seconds": 1, "microseconds": 2}}
            writer.write(json.dumps(event).encode() + b"\r\n")
        writer.write(json.dumps(GREETING).encode() + b"\r\n")
        buf, decoder = "", json.JSONDecoder()
        while chunk := await reader.read(4096):  # QMP is a stream of JSON objects
            buf += chunk.decode()
            while buf.strip():
                try:
                    req, end = decoder.raw_decode(buf.lstrip())
                except ValueError:
                    break
                buf = buf.lstrip()[end:]
                answer: object = {"status": "running", "running": True} \
                    if req["execute"] == "query-status" else {}
                reply = {"return": answer, **({"id": req["id"]} if "id" in req else {})}
                writer.write(json.dumps(reply).encode() + b"\r\n")
                await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(client, path=str(sock))


def test_a_dropped_first_connection_is_tried_again(tmp_path: Path) -> None:
    async def main() -> object:
        server = await serve(tmp_path / "m.qmp", drop_first=2)
        async with server, session(tmp_path / "m.qmp", timeout=5) as q:
            return await q.cmd("query-status")

    assert asyncio.run(main()) == {"status": "running", "running": True}


def test_a_missing_daemon_fails_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        async with session(tmp_path / "none.qmp", timeout=5):
            pass

    start = time.monotonic()
    with pytest.raises(StorageError, match="cannot connect to storage daemon"):
        asyncio.run(main())
    assert time.monotonic() - start < 2  # no retries when there is no daemon at all


def test_qemu_connections_survive_an_event_before_the_greeting(tmp_path: Path) -> None:
    """The kvm hypervisor's QMP: an event that reaches a new connection before its greeting
    (QEMU's monitor raising one as the client connects) costs a new try, not the command."""
    from herd.hypervisor.kvm import qmp as kvm_qmp

    async def main() -> tuple[object, object]:
        server = await serve(tmp_path / "vm.qmp", drop_first=0, event_first=2)
        async with server:
            one = await kvm_qmp.execute(tmp_path / "vm.qmp", "query-status", timeout=5)
            async with kvm_qmp.connected(tmp_path / "vm.qmp", timeout=5) as run:
                two = await run("query-status")
            return one, two

    assert asyncio.run(main()) == ({"status": "running", "running": True},) * 2
