"""herd-rapi's pool of masterd connections, against a real unix-socket server that speaks
masterd's protocol: the first request after a masterd restart succeeds, a request that never
left is sent again on a fresh connection, and a submit whose answer was lost is not doubled."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from herd.rapi.master import NO_ANSWER, NOT_SENT, MasterPool, MasterUnavailable, _Conn, may_retry

#: What the stand-in does with the n-th request on a connection: answer it, or read it and
#: hang up without an answer (as a masterd that dies while it works).
Policy = Callable[[int], str]


class Masterd:
    """A stand-in for masterd on a unix socket: answers every request with ``{"ok": true,
    "result": 7}`` unless the policy says to hang up; records the methods it received."""

    def __init__(self, path: Path, policy: Policy = lambda n: "answer") -> None:
        self.path = path
        self.policy = policy
        self.received: list[str] = []
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> Masterd:
        self.path.unlink(missing_ok=True)
        self.server = await asyncio.start_unix_server(self._serve, str(self.path))
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        count = 0
        while line := await reader.readline():
            self.received.append(json.loads(line)["method"])
            count += 1
            if self.policy(count) != "answer":
                break
            writer.write(b'{"ok": true, "result": 7}\n')
            await writer.drain()
        writer.close()

    async def stop(self) -> None:
        """As masterd exits: the listening socket and every connection close."""
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()
        await asyncio.sleep(0.05)  # let the clients' event loop see the EOF, as in real life


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_retry_decision() -> None:
    assert may_retry("submit_job", NOT_SENT, pooled=True)
    assert not may_retry("submit_job", NO_ANSWER, pooled=True)
    assert may_retry("query_jobs", NO_ANSWER, pooled=True)
    assert not may_retry("query_jobs", NOT_SENT, pooled=False)  # masterd is down: say so


def test_first_request_after_a_masterd_restart_succeeds(tmp_path: Path) -> None:
    sock = tmp_path / "masterd.sock"

    async def scenario() -> None:
        pool = MasterPool(sock, timeout=5)
        first = await Masterd(sock).start()
        assert await pool.call("query_jobs") == 7
        assert await pool.call("query_cluster") == 7
        await first.stop()
        second = await Masterd(sock).start()
        assert await pool.call("query_jobs") == 7
        assert await pool.call("submit_job", ops=[]) == 7
        assert second.received == ["query_jobs", "submit_job"]
        pool.close()
        await second.stop()

    run(scenario())


def test_request_on_a_connection_closed_unnoticed_is_sent_again(tmp_path: Path) -> None:
    """The peer closed, but the event loop has not yet seen it: writing fails, nothing reached
    masterd, so even a submit goes again on a fresh connection, once."""
    sock = tmp_path / "masterd.sock"

    async def scenario() -> None:
        pool = MasterPool(sock, timeout=5)
        fresh = await Masterd(sock).start()
        for method in ("submit_job", "query_jobs"):
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            reader, writer = await asyncio.open_unix_connection(sock=ours)
            pool._idle.append(_Conn(reader, writer))
            theirs.close()  # no await between this and the call: the loop has not seen it
            assert await pool.call(method) == 7
        assert fresh.received == ["submit_job", "query_jobs"]
        pool.close()
        await fresh.stop()

    run(scenario())


def test_a_lost_answer_repeats_a_query_but_never_a_submit(tmp_path: Path) -> None:
    sock = tmp_path / "masterd.sock"

    async def scenario() -> None:
        # each connection answers its first request, then hangs up on the second
        masterd = await Masterd(sock, policy=lambda n: "answer" if n == 1 else "drop").start()
        pool = MasterPool(sock, timeout=5)
        assert await pool.call("query_jobs") == 7
        with pytest.raises(MasterUnavailable, match="may or may not have been carried out"):
            await pool.call("submit_job", ops=[])
        assert masterd.received.count("submit_job") == 1
        assert await pool.call("query_nodes") == 7  # the pool is empty: a fresh connection
        assert await pool.call("query_instances") == 7  # pooled; lost answer; asked again
        assert masterd.received == ["query_jobs", "submit_job", "query_nodes",
                                    "query_instances", "query_instances"]
        pool.close()
        await masterd.stop()

    run(scenario())


def test_big_answers_are_told_to_the_hook_small_ones_not(tmp_path: Path) -> None:
    """herd-rapi's heap release counts the big answers it used and dropped (rapi/app.py)."""
    from herd.rapi.master import BIG_ANSWER

    sock = tmp_path / "master.sock"
    sizes: list[int] = []
    big_line = json.dumps({"ok": True, "result": ["x" * 100] * (BIG_ANSWER // 100)}).encode()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            method = json.loads(line)["method"]
            writer.write((big_line if method == "big" else b'{"ok": true, "result": 7}')
                         + b"\n")
            await writer.drain()
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_unix_server(serve, str(sock))
        pool = MasterPool(sock, timeout=5, on_big_answer=sizes.append)
        assert await pool.call("small") == 7
        assert sizes == []
        assert len(await pool.call("big")) == BIG_ANSWER // 100
        assert sizes == [len(big_line) + 1]
        pool.close()
        server.close()
        await server.wait_closed()

    run(scenario())


def test_masterd_down_is_502_at_once(tmp_path: Path) -> None:
    pool = MasterPool(tmp_path / "nothing.sock", timeout=5)
    with pytest.raises(MasterUnavailable, match="Can't connect"):
        run(pool.call("query_jobs"))
