"""One connection to a guest's serial console, shared by every viewer.

QEMU's serial chardev takes a single client at a time, yet a console is watched from several
places at once (two browsers, ``gnt-instance console`` on the master). noded therefore holds the
one connection and fans the guest's output out to every attached viewer; what any viewer types
goes to the guest. A newly attached viewer first gets the last :data:`REPLAY_BYTES` of output
(the replay buffer), so it sees the prompt or the boot messages it missed instead of a blank
screen. The buffer outlives the connection: a viewer coming back later still sees the last
screen. The connection is closed when the last viewer leaves, so a tool that talks to the
console socket directly (the lab tests do) gets it back.

A viewer that cannot keep up (its queue is full: a stalled browser) is dropped rather than
slowing the guest's console down for everybody.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

#: The output a newly attached viewer is sent first.
REPLAY_BYTES = 64 * 1024
#: Chunks a viewer may have pending before it is dropped.
VIEWER_QUEUE = 512
READ_CHUNK = 4096

Opener = Callable[[str], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class ReplayBuffer:
    """The last ``limit`` bytes of a console's output."""

    def __init__(self, limit: int = REPLAY_BYTES) -> None:
        if limit <= 0:
            raise ValueError(f"replay buffer size {limit} must be positive")
        self.limit = limit
        self._data = bytearray()

    def add(self, data: bytes) -> None:
        self._data += data
        excess = len(self._data) - self.limit
        if excess > 0:
            del self._data[:excess]
            # start at a line when one starts soon: a cut escape sequence or UTF-8 character
            # at the top would show as garbage
            newline = self._data.find(b"\n", 0, 1024)
            if newline >= 0:
                del self._data[:newline + 1]

    def snapshot(self) -> bytes:
        return bytes(self._data)

    def __len__(self) -> int:
        return len(self._data)


class Viewer:
    """One attached client: the hub puts output chunks in its queue; None means the end."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(VIEWER_QUEUE)
        self.closed = False
        #: why the hub ended this viewer ("" while attached or when it left by itself)
        self.reason = ""

    def end(self, reason: str) -> None:
        """Wake the viewer's sender with the end marker, whatever is still queued."""
        if self.closed:
            return
        self.closed = True
        self.reason = reason
        while True:
            try:
                self.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()  # drop old output: the end must get through


class ConsoleHub:
    """The shared console connection of one instance."""

    def __init__(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 replay: ReplayBuffer, on_close: Callable[[ConsoleHub], None]) -> None:
        self.name = name
        self.replay = replay
        self.viewers: set[Viewer] = set()
        self._reader, self._writer = reader, writer
        self._on_close = on_close
        self._write_lock = asyncio.Lock()
        self.closed = False
        self._pump = asyncio.create_task(self._read_guest())

    def add(self, viewer: Viewer) -> None:
        """Attach ``viewer``; its queue starts with the replay buffer."""
        backlog = self.replay.snapshot()
        if backlog:
            viewer.queue.put_nowait(backlog)
        self.viewers.add(viewer)

    def remove(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)
        if not self.viewers:
            self.close("no viewer left")

    async def write(self, data: bytes) -> None:
        """Send a viewer's input to the guest (one writer at a time: no interleaving)."""
        if self.closed:
            return
        async with self._write_lock:
            self._writer.write(data)
            await self._writer.drain()

    def _broadcast(self, data: bytes) -> None:
        self.replay.add(data)
        for viewer in list(self.viewers):
            try:
                viewer.queue.put_nowait(data)
            except asyncio.QueueFull:
                log.warning("console of %s: viewer %s does not keep up, dropped", self.name,
                            viewer.label)
                self.viewers.discard(viewer)
                viewer.end("too slow")

    async def _read_guest(self) -> None:
        reason = "the guest's console closed"
        try:
            while data := await self._reader.read(READ_CHUNK):
                self._broadcast(data)
        except OSError as exc:
            reason = f"the guest's console failed: {exc}"
        finally:
            if not self.closed:
                self.close(reason)

    def close(self, reason: str) -> None:
        """End the connection and every viewer (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for viewer in list(self.viewers):
            viewer.end(reason)
        self.viewers.clear()
        self._writer.close()
        if self._pump is not asyncio.current_task():
            self._pump.cancel()
        self._on_close(self)


class ConsoleHubs:
    """noded's hubs, one per instance with viewers, and the instances' replay buffers."""

    def __init__(self, opener: Opener, replay_bytes: int = REPLAY_BYTES) -> None:
        #: opens the guest's console (raises HerdError or OSError if it cannot)
        self._opener = opener
        self.replay_bytes = replay_bytes
        self.hubs: dict[str, ConsoleHub] = {}
        self.replays: dict[str, ReplayBuffer] = {}
        self._lock = asyncio.Lock()

    async def attach(self, name: str, label: str) -> tuple[ConsoleHub, Viewer]:
        """A new viewer of ``name``'s console, opening the connection for the first one."""
        async with self._lock:
            hub = self.hubs.get(name)
            if hub is None or hub.closed:
                reader, writer = await self._opener(name)
                replay = self.replays.setdefault(name, ReplayBuffer(self.replay_bytes))
                hub = ConsoleHub(name, reader, writer, replay, self._closed)
                self.hubs[name] = hub
            viewer = Viewer(label)
            hub.add(viewer)
            return hub, viewer

    def _closed(self, hub: ConsoleHub) -> None:
        if self.hubs.get(hub.name) is hub:
            del self.hubs[hub.name]

    def forget(self, name: str) -> None:
        """Drop an instance's replay buffer (it stopped or left this node)."""
        self.replays.pop(name, None)

    def close_all(self) -> None:
        for hub in list(self.hubs.values()):
            hub.close("noded stops")


async def serve_viewer(hub: ConsoleHub, viewer: Viewer,
                       send: Callable[[bytes], Awaitable[None]],
                       receive: Callable[[], Awaitable[bytes | None]]) -> str:
    """Relay between one viewer's transport and the hub until either side ends; returns why.

    ``receive`` returns None when the viewer went away."""

    async def to_viewer() -> str:
        while (data := await viewer.queue.get()) is not None:
            await send(data)
        return viewer.reason or "closed"

    async def to_guest() -> str:
        while (data := await receive()) is not None:
            await hub.write(data)
        return "viewer left"

    tasks = [asyncio.create_task(to_viewer()), asyncio.create_task(to_guest())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        first = done.pop()
        reason = "viewer left" if first.exception() is not None else first.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        hub.remove(viewer)
    return reason


__all__ = [
    "REPLAY_BYTES",
    "ConsoleHub",
    "ConsoleHubs",
    "ReplayBuffer",
    "Viewer",
    "serve_viewer",
]
