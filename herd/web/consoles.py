"""Consoles in the browser: one-time tickets and the relay to the primary node's noded.

Flow: the console page POSTs for a ticket (CSRF-checked like every form; the user needs the
``console`` action, the user role, on the instance), opens a WebSocket on the same origin and
sends the ticket as its first message (not in the URL, where proxies and access logs would keep
it). The server has already checked the ``Origin`` and the session cookie; the ticket must then
be unexpired (:data:`TICKET_SECONDS`), unused, and issued to this session's user for this
instance and this kind of console. herd-rapi then relays bytes to noded on the instance's
primary node over the node RPC's mutual TLS (``/console/NAME`` or ``/vnc/NAME``, the endpoints
``gnt-instance console`` uses): no websockify, no extra port.

When noded's side ends while the browser stays (a migration moved the guest, noded restarted),
the serial relay asks masterd again where the instance runs and reattaches there; the noded
fan-out's replay buffer fills the screen again. A VNC stream cannot be resumed mid-protocol, so
its relay ends and the page starts a new RFB session with a new ticket.

Tickets are secrets: only their SHA-256 is kept, and they are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("herd.web.console")

TICKET_SECONDS = 30.0
#: Unredeemed tickets kept at most (the oldest go first): a ticket is asked for by a click.
MAX_TICKETS = 4096
KINDS = ("serial", "vnc")
#: How long the serial relay keeps looking for the instance after noded's side closed (a
#: migration's switch-over, a noded restart).
REATTACH_SECONDS = 60.0
#: Close codes sent to the browser (4000-4999 are the application's).
CLOSE_REFUSED = 4403
CLOSE_GONE = 4404
CLOSE_UNREACHABLE = 4502


@dataclass(frozen=True)
class Ticket:
    user: str
    instance: str
    kind: str
    expires: float


class TicketError(Exception):
    """Why a ticket was refused (safe to show: it never contains the ticket)."""


class TicketBook:
    """Outstanding console tickets, by their SHA-256. Pure: the caller passes the time."""

    def __init__(self, lifetime: float = TICKET_SECONDS, limit: int = MAX_TICKETS) -> None:
        self.lifetime = lifetime
        self.limit = limit
        self._tickets: dict[str, Ticket] = {}

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def issue(self, user: str, instance: str, kind: str, now: float) -> str:
        """A new ticket for ``user`` to open ``instance``'s ``kind`` console once."""
        if kind not in KINDS:
            raise TicketError(f"invalid console kind {kind!r}: allowed are {', '.join(KINDS)}")
        self._expire(now)
        while len(self._tickets) >= self.limit:
            self._tickets.pop(next(iter(self._tickets)))
        token = secrets.token_urlsafe(32)
        self._tickets[self._key(token)] = Ticket(user, instance, kind, now + self.lifetime)
        return token

    def redeem(self, token: str, user: str, instance: str, kind: str, now: float) -> Ticket:
        """The ticket if it opens this console for this user now; it is used up either way
        (a ticket tried against the wrong console is as good as leaked)."""
        ticket = self._tickets.pop(self._key(token), None) if token else None
        if ticket is None:
            raise TicketError("unknown or already used console ticket")
        if now > ticket.expires:
            raise TicketError("the console ticket expired: reload the page")
        if ticket.user != user:
            raise TicketError("the console ticket was issued to another user")
        if ticket.instance != instance or ticket.kind != kind:
            raise TicketError("the console ticket is for another console")
        return ticket

    def _expire(self, now: float) -> None:
        for key in [k for k, t in self._tickets.items() if now > t.expires]:
            del self._tickets[key]

    def __len__(self) -> int:
        return len(self._tickets)


def origin_matches(origin: str | None, host: str) -> bool:
    """A WebSocket must come from a page of this server: browsers always send ``Origin`` on
    a WebSocket handshake, and it is not covered by SameSite cookies or CORS, so a missing or
    foreign one is refused (cross-site WebSocket hijacking)."""
    return bool(origin) and bool(host) and origin == f"https://{host}"


@dataclass(frozen=True)
class Placement:
    """Where the instance's console is now: its primary node's address, or why none."""

    node: str | None
    address: str | None
    problem: str = ""


def placement(row: dict[str, Any] | None, nodes: dict[str, dict[str, Any]], kind: str
              ) -> Placement:
    """Pure: the node to relay ``kind`` console of the instance ``row`` through."""
    if row is None:
        return Placement(None, None, "the instance no longer exists")
    if not row.get("oper_state"):
        return Placement(None, None, f"instance {row.get('name')} is not running")
    if kind == "vnc" and not row.get("network_port"):
        return Placement(None, None, f"instance {row.get('name')} has no VNC console")
    pnode = row.get("pnode")
    node = nodes.get(str(pnode))
    if node is None or not node.get("pip"):
        return Placement(None, None, f"primary node {pnode} is unknown")
    return Placement(str(pnode), str(node["pip"]), "")


#: connects to noded: (address, path) -> an open websockets client connection
Connector = Callable[[str, str], Awaitable[Any]]
#: asks masterd where the instance's console is
Locator = Callable[[], Awaitable[Placement]]


async def relay(browser: Any, kind: str, name: str, locate: Locator, connect: Connector,
                who: str, reattach_seconds: float = REATTACH_SECONDS) -> str:
    """Relay one browser WebSocket (accepted, ticket checked) to noded; returns why it ended.

    The serial relay reattaches (to the new primary after a migration) when noded's side
    closes; the browser's going away ends everything."""
    from websockets.exceptions import ConnectionClosed

    path = f"/{'console' if kind == 'serial' else 'vnc'}/{name}"
    browser_gone = asyncio.Event()
    inbox: asyncio.Queue[bytes] = asyncio.Queue(256)

    async def from_browser() -> None:
        try:
            while True:
                message = await browser.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes")
                if data is None:
                    data = (message.get("text") or "").encode()
                await inbox.put(data)
        finally:
            browser_gone.set()

    reader = asyncio.create_task(from_browser())
    deadline: float | None = None
    last_node: str | None = None
    try:
        while not browser_gone.is_set():
            where = await locate()
            if where.address is None:
                if deadline is None or time.monotonic() > deadline:
                    return where.problem
                await asyncio.sleep(0.5)
                continue
            try:
                noded = await connect(where.address, path)
            except Exception as exc:  # refused upgrade (not running there yet), TLS, network
                log.info("console of %s: noded on %s refused: %s", name, where.node, exc)
                if kind != "serial" or deadline is None:
                    deadline = time.monotonic() + reattach_seconds
                if time.monotonic() > deadline or kind != "serial":
                    return f"cannot reach the console on {where.node}"
                await asyncio.sleep(0.5)
                continue
            if last_node is not None and where.node != last_node:
                await browser.send_bytes(f"\r\n[herd: console of {name} now on {where.node}]"
                                         "\r\n".encode())
            log.info("%s console of %s opened by %s via %s", kind, name, who, where.node)
            last_node = where.node
            deadline = None
            ended = await _pump(browser, noded, inbox, browser_gone, ConnectionClosed)
            if ended == "browser":
                return "viewer left"
            if kind != "serial":
                return "the VNC connection ended"
            deadline = time.monotonic() + reattach_seconds
        return "viewer left"
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader


async def _pump(browser: Any, noded: Any, inbox: asyncio.Queue[bytes],
                browser_gone: asyncio.Event, closed: type[Exception]) -> str:
    """Bytes both ways until one side ends: "browser" or "noded"."""

    async def down() -> None:
        with contextlib.suppress(closed):
            async for message in noded:
                await browser.send_bytes(message if isinstance(message, bytes)
                                         else message.encode())

    async def up() -> None:
        while True:
            data = await inbox.get()
            await noded.send(data)

    tasks = [asyncio.create_task(down()), asyncio.create_task(up()),
             asyncio.create_task(browser_gone.wait())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await noded.close()
    return "browser" if browser_gone.is_set() or tasks[2] in done else "noded"
