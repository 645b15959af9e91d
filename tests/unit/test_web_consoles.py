"""Consoles in the browser: the ticket rules (herd.web.consoles, pure), where a console is
relayed from, noded's fan-out with its replay buffer (herd.node.console_hub) over a real unix
socket standing for QEMU's serial chardev, and the relay's reattach to a new primary after
its noded side closed (two real websocket servers standing for the old and new primary's
noded)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from herd.node.console_hub import ConsoleHubs, ReplayBuffer, serve_viewer
from herd.web import consoles
from herd.web.consoles import Placement, TicketBook, TicketError, origin_matches, placement

# -- tickets ---------------------------------------------------------------------------------


def test_ticket_opens_its_console_once() -> None:
    book = TicketBook()
    t = book.issue("alice", "vm1", "serial", now=100.0)
    assert len(t) >= 40 and t not in repr(book.__dict__)  # only its hash is kept
    ticket = book.redeem(t, "alice", "vm1", "serial", now=129.0)
    assert (ticket.user, ticket.instance, ticket.kind) == ("alice", "vm1", "serial")
    with pytest.raises(TicketError, match="already used"):
        book.redeem(t, "alice", "vm1", "serial", now=129.5)


@pytest.mark.parametrize(("user", "instance", "kind", "now", "why"), [
    ("alice", "vm2", "serial", 101.0, "another console"),
    ("alice", "vm1", "vnc", 101.0, "another console"),
    ("bob", "vm1", "serial", 101.0, "another user"),
    ("alice", "vm1", "serial", 130.5, "expired"),
])
def test_ticket_refused_and_used_up(user: str, instance: str, kind: str, now: float,
                                    why: str) -> None:
    book = TicketBook()
    t = book.issue("alice", "vm1", "serial", now=100.0)
    with pytest.raises(TicketError, match=why) as refused:
        book.redeem(t, user, instance, kind, now)
    assert t not in str(refused.value)  # the message never holds the secret
    with pytest.raises(TicketError, match="already used"):  # tried once: gone
        book.redeem(t, "alice", "vm1", "serial", 101.0)


def test_ticket_kinds_expiry_and_limit() -> None:
    book = TicketBook(lifetime=30, limit=3)
    with pytest.raises(TicketError, match="invalid console kind 'rdp': allowed are serial, vnc"):
        book.issue("alice", "vm1", "rdp", now=0)
    with pytest.raises(TicketError, match="unknown"):
        book.redeem("", "alice", "vm1", "serial", now=0)
    old = book.issue("alice", "vm1", "serial", now=0)
    book.issue("alice", "vm1", "serial", now=40)  # expires the first
    assert len(book) == 1
    with pytest.raises(TicketError, match="unknown"):
        book.redeem(old, "alice", "vm1", "serial", now=41)
    tickets = [book.issue("alice", f"vm{i}", "serial", now=50) for i in range(4)]
    assert len(book) == 3  # the oldest went first
    book.redeem(tickets[-1], "alice", "vm3", "serial", now=51)


def test_websocket_origin_must_be_this_server() -> None:
    assert origin_matches("https://master:5080", "master:5080")
    assert not origin_matches(None, "master:5080")
    assert not origin_matches("", "master:5080")
    assert not origin_matches("https://evil.example:5080", "master:5080")
    assert not origin_matches("http://master:5080", "master:5080")  # only over TLS


def test_placement_of_a_console() -> None:
    nodes = {"n1": {"name": "n1", "pip": "192.0.2.1"}}
    row = {"name": "vm1", "oper_state": True, "pnode": "n1", "network_port": None}
    assert placement(row, nodes, "serial") == Placement("n1", "192.0.2.1")
    assert "no VNC console" in placement(row, nodes, "vnc").problem
    assert placement({**row, "network_port": 11000}, nodes, "vnc").address == "192.0.2.1"
    assert "not running" in placement({**row, "oper_state": False}, nodes, "serial").problem
    assert "no longer exists" in placement(None, nodes, "serial").problem
    assert "primary node n2 is unknown" in placement({**row, "pnode": "n2"}, nodes,
                                                     "serial").problem


# -- noded's fan-out -------------------------------------------------------------------------


def test_replay_buffer_keeps_the_last_bytes_from_a_line_start() -> None:
    buf = ReplayBuffer(limit=16)
    buf.add(b"0123456789")
    assert buf.snapshot() == b"0123456789"
    buf.add(b"ab\ncdefghij")  # 21 bytes: cut to 16, then to the next line
    assert buf.snapshot() == b"cdefghij"
    buf.add(b"x" * 40)  # no newline near the cut: exactly the last 16
    assert buf.snapshot() == b"x" * 16
    with pytest.raises(ValueError, match="must be positive"):
        ReplayBuffer(0)


class FakeGuest:
    """A unix socket server standing for QEMU's serial chardev: one client at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.received = b""
        self.clients = 0
        self.writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._client, path=str(self.path))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        self.clients += 1
        self.writer = writer
        self.connected.set()
        while data := await reader.read(100):
            self.received += data
        self.writer = None

    async def say(self, data: bytes) -> None:
        await self.connected.wait()
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()


async def got_from(viewer: Any) -> bytes | None:
    return await asyncio.wait_for(viewer.queue.get(), 5)


async def wait_for(check: Any, timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.001)


def test_fan_out_to_viewers_with_replay(tmp_path: Path) -> None:
    async def scenario() -> None:
        guest = FakeGuest(tmp_path / "serial")
        await guest.start()
        opened: list[str] = []

        async def opener(name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            opened.append(name)
            return await asyncio.open_unix_connection(str(guest.path))

        hubs = ConsoleHubs(opener, replay_bytes=1024)
        hub, first = await hubs.attach("vm1", "viewer1")
        await guest.say(b"boot line\r\nguest# ")
        assert await got_from(first) == b"boot line\r\nguest# "
        _, second = await hubs.attach("vm1", "viewer2")  # shares the connection
        assert opened == ["vm1"] and guest.clients == 1
        assert await got_from(second) == b"boot line\r\nguest# "  # the replay
        await guest.say(b"more")
        assert await got_from(first) == b"more" and await got_from(second) == b"more"
        await hub.write(b"ls\r")
        await wait_for(lambda: guest.received == b"ls\r")
        # both leave: the connection goes, the replay stays for the next viewer
        hub.remove(first)
        assert not hub.closed
        hub.remove(second)
        assert hub.closed and "vm1" not in hubs.hubs
        hub2, third = await hubs.attach("vm1", "viewer3")
        assert hub2 is not hub and opened == ["vm1", "vm1"]
        assert await got_from(third) == b"boot line\r\nguest# more"
        # the guest goes away: every viewer is ended
        await guest.connected.wait()
        await wait_for(lambda: guest.writer is not None)
        assert guest.writer is not None
        guest.writer.close()
        assert await got_from(third) is None
        assert third.reason == "the guest's console closed"
        guest.server.close()

    asyncio.run(scenario())


def test_slow_viewer_is_dropped_and_serve_viewer_relays(tmp_path: Path) -> None:
    async def scenario() -> None:
        guest = FakeGuest(tmp_path / "serial")
        await guest.start()

        async def opener(name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_unix_connection(str(guest.path))

        hubs = ConsoleHubs(opener)
        hub, stalled = await hubs.attach("vm1", "stalled")
        _, active = await hubs.attach("vm1", "active")
        sent: list[bytes] = []
        typed: asyncio.Queue[bytes | None] = asyncio.Queue()
        typed.put_nowait(b"echo hi\r")

        async def send(data: bytes) -> None:
            sent.append(data)

        relay = asyncio.create_task(serve_viewer(hub, active, send, typed.get))
        i = 0
        while not stalled.closed:  # one chunk at a time, until more than its queue holds
            before = stalled.queue.qsize()
            await guest.say(b"%d\n" % i)
            await wait_for(lambda: stalled.closed or stalled.queue.qsize() > before)  # noqa: B023
            i += 1
        assert i > 500 and stalled.reason == "too slow" and stalled not in hub.viewers
        await wait_for(lambda: b"".join(sent).endswith(b"%d\n" % (i - 1)))
        await wait_for(lambda: guest.received == b"echo hi\r")
        typed.put_nowait(None)  # the viewer leaves
        assert await relay == "viewer left"
        assert hub.closed  # it was the last one
        guest.server.close()

    asyncio.run(scenario())


# -- the relay's reattach after a migration ------------------------------------------------


class Browser:
    """Stands for starlette's WebSocket of the browser (receive, send_bytes)."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.output = b""

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send_bytes(self, data: bytes) -> None:
        self.output += data

    def type(self, data: bytes) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "bytes": data})

    def leave(self) -> None:
        self.inbox.put_nowait({"type": "websocket.disconnect"})


def test_serial_relay_reattaches_to_the_new_primary() -> None:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    async def scenario() -> None:
        got: dict[str, bytes] = {"n1": b"", "n2": b""}
        primary = {"node": "n1"}

        def noded(node: str) -> Any:
            async def handler(ws: Any) -> None:
                assert ws.request.path == "/console/vm1"
                await ws.send(f"screen on {node}\r\n".encode())
                with contextlib.suppress(Exception):
                    async for message in ws:
                        got[node] += message
                        if message == b"migrate\r":
                            primary["node"] = "n2"
                            return  # the source's QEMU is gone: noded closes
            return handler

        async with serve(noded("n1"), "127.0.0.1", 0) as s1, \
                serve(noded("n2"), "127.0.0.1", 0) as s2:
            ports = {"n1": s1.sockets[0].getsockname()[1], "n2": s2.sockets[0].getsockname()[1]}

            async def locate() -> Placement:
                return Placement(primary["node"], primary["node"])

            async def connector(address: str, path: str) -> Any:
                return await connect(f"ws://127.0.0.1:{ports[address]}{path}")

            browser = Browser()
            task = asyncio.create_task(consoles.relay(browser, "serial", "vm1", locate,
                                                      connector, "alice"))
            await wait_for(lambda: b"screen on n1" in browser.output)
            browser.type(b"migrate\r")
            await wait_for(lambda: b"screen on n2" in browser.output)
            assert b"[herd: console of vm1 now on n2]" in browser.output
            browser.type(b"after\r")
            await wait_for(lambda: got["n2"] == b"after\r")
            browser.leave()
            assert await task == "viewer left"
            assert got["n1"] == b"migrate\r"

    asyncio.run(scenario())


def test_relay_ends_when_the_instance_stopped() -> None:
    async def scenario() -> None:
        async def locate() -> Placement:
            return placement({"name": "vm1", "oper_state": False}, {}, "serial")

        async def connector(address: str, path: str) -> Any:
            raise AssertionError("never connects")

        why = await consoles.relay(Browser(), "serial", "vm1", locate, connector, "alice")
        assert why == "instance vm1 is not running"

    asyncio.run(scenario())


# -- the ticket endpoint and the WebSocket's checks, over HTTP (no browser) -------------------


@pytest.fixture
def ui(tmp_path: Path) -> Any:
    from starlette.testclient import TestClient

    from tests.rapi_apps import rapi_app
    from tests.unit import test_web_app as web

    class Master(web.Master):
        async def call(self, method: str, _timeout: float | None = None, **args: Any) -> Any:
            if method == "query_instances":
                return [{**r, "status": "running", "oper_state": True, "network_port": None}
                        for r in await super().call(method, **args)]
            return await super().call(method, **args)

    app, _ = rapi_app(tmp_path, "alice s3cret-pw\nwatcher watchpw read\n", Master())
    return lambda: TestClient(app, base_url="https://herd.test"), web


def ticket(client: Any, web: Any, kind: str = "serial") -> Any:
    return client.post("/ui/instances/vm1/console/ticket", data={"kind": kind},
                       headers={"X-CSRF-Token": web.csrf(client)})


def test_ticket_only_for_the_user_role_and_a_console_that_exists(ui: Any) -> None:
    new_client, web = ui
    client = new_client()
    web.login(client, "watcher", "watchpw")  # a viewer: sees vm1, no console
    answer = ticket(client, web)
    assert answer.status_code == 403 and "ticket" not in answer.json()
    assert client.get("/ui/instances/vm1/console").status_code == 403
    client = new_client()
    web.login(client, "alice")  # the owner: the user role
    answer = ticket(client, web)
    assert answer.status_code == 200 and len(answer.json()["ticket"]) >= 40
    assert ticket(client, web, "vnc").status_code == 409  # vm1 has no VNC port
    assert ticket(client, web, "rdp").status_code == 400
    no_csrf = client.post("/ui/instances/vm1/console/ticket", data={"kind": "serial"})
    assert no_csrf.status_code == 403


def test_websocket_needs_origin_session_and_ticket(ui: Any) -> None:
    from starlette.websockets import WebSocketDisconnect

    new_client, web = ui
    client = new_client()
    path = "/ui/instances/vm1/console/ws/serial"
    good = {"origin": "https://herd.test", "host": "herd.test"}
    with pytest.raises(WebSocketDisconnect) as refused, \
            client.websocket_connect(path, headers=good):  # no session
        pass
    assert refused.value.code == consoles.CLOSE_REFUSED
    web.login(client, "alice")
    # the test client sends no Secure cookie over its ws:// URL: as a browser would on wss://
    cookie = {"cookie": f"herd_session={client.cookies['herd_session']}"}
    good.update(cookie)
    for headers in (cookie, {"origin": "https://evil.test", **cookie}):
        with pytest.raises(WebSocketDisconnect) as refused, \
                client.websocket_connect(path, headers=headers):
            pass
        assert refused.value.code == consoles.CLOSE_REFUSED
    with client.websocket_connect(path, headers=good) as ws:
        ws.send_text("forged-ticket")
        with pytest.raises(WebSocketDisconnect) as refused:
            ws.receive_text()
    assert refused.value.code == consoles.CLOSE_REFUSED
    assert refused.value.reason == "unknown or already used console ticket"
