"""The client side of ``gnt-instance console``: a terminal on a guest's serial port.

The node daemon relays the serial console over a websocket (mutual TLS, as all node RPC), so the
same path serves the CLI on any master and, later, the web UI. Ctrl+] detaches, as in telnet and
virsh; end of input detaches too, so scripts can pipe commands in.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import termios
import tty

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from herd import errors, paths
from herd.rpc import tls

DETACH = b"\x1d"  # Ctrl+]


async def _relay(uri: str) -> None:
    ctx = tls.client_context(paths.current())
    loop = asyncio.get_running_loop()
    try:
        ws = await connect(uri, ssl=ctx, max_size=None, ping_interval=None)
    except Exception as exc:  # websockets raises several types for a refused upgrade
        raise errors.RpcError(f"cannot attach to the console: {exc}") from None
    stdin_fd = sys.stdin.fileno()
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    def on_input() -> None:
        data = os.read(stdin_fd, 4096)
        queue.put_nowait(data)

    loop.add_reader(stdin_fd, on_input)

    async def from_guest() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                data = message if isinstance(message, bytes) else message.encode()
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()

    async def to_guest() -> None:
        while True:
            data = await queue.get()
            if not data:
                return  # end of input
            if DETACH in data:
                before = data.split(DETACH, 1)[0]
                if before:
                    await ws.send(before)
                return
            await ws.send(data)

    tasks = [asyncio.create_task(from_guest()), asyncio.create_task(to_guest())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        loop.remove_reader(stdin_fd)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ws.close()


def attach(instance: str, address: str, port: int) -> int:
    uri = f"wss://{address}:{port}/console/{instance}"
    is_tty = sys.stdin.isatty()
    saved = termios.tcgetattr(sys.stdin.fileno()) if is_tty else None
    if is_tty:
        print(f"Connected to the console of {instance}; press Ctrl+] to detach.\r")
        tty.setraw(sys.stdin.fileno())
    try:
        asyncio.run(_relay(uri))
    finally:
        if saved is not None:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
            print()
    return 0
