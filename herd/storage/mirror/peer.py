"""Reading the peer's generation before attaching to it.

A secondary publishes a summary of its generation record in the description of its NBD export,
so that the primary can check it over the very connection it is about to replicate to, without
any other channel between the nodes. The list is read with NBD's option haggling
(``NBD_OPT_LIST``, whose replies from QEMU carry each export's description) in-process: the
new primary of a live migration probes while the guest is paused, and running ``qemu-nbd
--list`` for it cost a process start (5-10 ms, more on a busy node). ``qemu-nbd --list``
remains the fallback if a server answers in a way this reader does not know.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from typing import Any

from herd.errors import StorageError

PROBE_TIMEOUT = 5.0
# NBD protocol constants (doc/proto.md of the NBD project)
NBD_MAGIC = b"NBDMAGIC"
IHAVEOPT = b"IHAVEOPT"
REPLY_MAGIC = 0x3E889045565A9
FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2
OPT_ABORT = 2
OPT_LIST = 3
REP_ACK = 1
REP_SERVER = 2
REP_ERROR_BIT = 1 << 31
MAX_REPLY = 1 << 20


class ProtocolSurprise(StorageError):
    """The server spoke, but not as expected here (the ``qemu-nbd --list`` fallback decides)."""


class PeerUnreachable(StorageError):
    """The peer's NBD export cannot be listed (node down, partitioned, no storage daemon)."""


async def probe(host: str, port: int, uuid: str,
                timeout: float = PROBE_TIMEOUT) -> tuple[str, dict[str, Any]]:
    """(export name, generation summary) of disk ``uuid``'s export at ``host:port``."""
    try:
        async with asyncio.timeout(timeout):
            exports = await list_exports(host, port)
    except TimeoutError:
        raise PeerUnreachable(f"peer {host}:{port} did not answer within {timeout:g} s") from None
    except ProtocolSurprise:
        return await probe_with_qemu_nbd(host, port, uuid, timeout)
    except (OSError, asyncio.IncompleteReadError) as exc:
        raise PeerUnreachable(f"peer {host}:{port} unreachable: {exc}") from None
    return pick(exports, uuid, f"{host}:{port}")


async def list_exports(host: str, port: int) -> list[tuple[str, str]]:
    """(name, description) of every export of the NBD server at ``host:port``."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = await reader.readexactly(18)
        if head[:8] != NBD_MAGIC or head[8:16] != IHAVEOPT:
            raise ProtocolSurprise("not a newstyle NBD server")
        (server_flags,) = struct.unpack(">H", head[16:18])
        if not server_flags & FLAG_FIXED_NEWSTYLE:
            raise ProtocolSurprise("NBD server without fixed newstyle negotiation")
        writer.write(struct.pack(">I", FLAG_FIXED_NEWSTYLE | (server_flags & FLAG_NO_ZEROES)))
        writer.write(IHAVEOPT + struct.pack(">II", OPT_LIST, 0))
        await writer.drain()
        exports = []
        while True:
            magic, option, kind, length = struct.unpack(">QIII", await reader.readexactly(20))
            if magic != REPLY_MAGIC or option != OPT_LIST or length > MAX_REPLY:
                raise ProtocolSurprise("unexpected NBD option reply")
            data = await reader.readexactly(length)
            if kind == REP_ACK:
                break
            if kind & REP_ERROR_BIT:
                raise ProtocolSurprise(f"NBD_OPT_LIST refused (reply type {kind:#x})")
            if kind != REP_SERVER or length < 4:
                raise ProtocolSurprise(f"unexpected NBD list reply type {kind:#x}")
            (name_len,) = struct.unpack(">I", data[:4])
            if name_len > length - 4:
                raise ProtocolSurprise("NBD list reply shorter than its name")
            exports.append((data[4:4 + name_len].decode(errors="replace"),
                            data[4 + name_len:].decode(errors="replace")))
        writer.write(IHAVEOPT + struct.pack(">II", OPT_ABORT, 0))  # polite end; no wait
        with contextlib.suppress(OSError):
            await writer.drain()
        return exports
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def pick(exports: list[tuple[str, str]], uuid: str, where: str) -> tuple[str, dict[str, Any]]:
    """Disk ``uuid``'s replication export: named ``uuid.TOKEN``, its description the
    generation summary (JSON)."""
    for name, description in exports:
        if not name.startswith(f"{uuid}."):
            continue
        try:
            data = json.loads(description)
        except ValueError:
            continue
        if isinstance(data, dict) and "current" in data:
            return name, data
    raise PeerUnreachable(f"peer {where} has no mirror export of disk {uuid}")


async def probe_with_qemu_nbd(host: str, port: int, uuid: str,
                              timeout: float = PROBE_TIMEOUT) -> tuple[str, dict[str, Any]]:
    """:func:`probe` by ``qemu-nbd --list`` (which reads NBD_OPT_LIST/INFO replies)."""
    argv = ["qemu-nbd", "--list", "-b", host, "-p", str(port)]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
    except OSError as exc:
        raise StorageError(f"cannot run qemu-nbd: {exc}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise PeerUnreachable(f"peer {host}:{port} did not answer within {timeout:g} s") from None
    if proc.returncode != 0:
        raise PeerUnreachable(f"peer {host}:{port} unreachable: "
                              f"{err.decode(errors='replace').strip()[-200:]}")
    return parse_list(out.decode(errors="replace"), uuid, f"{host}:{port}")


def export_name(uuid: str, generation: str) -> str:
    """The replication export's name carries the generation it was published with: a primary's
    NBD client reconnecting on its own can then only reach the copy it was attached to, never a
    copy that changed generation meanwhile (that one is checked by :func:`probe` first)."""
    return f"{uuid}.{generation}"


def parse_list(text: str, uuid: str, where: str) -> tuple[str, dict[str, Any]]:
    """Pick disk ``uuid``'s replication export out of ``qemu-nbd --list`` output."""
    current = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("export: "):
            current = stripped[len("export: "):].strip("'")
        elif (stripped.startswith("description: ") and current
              and current.startswith(f"{uuid}.")):
            try:
                data = json.loads(stripped[len("description: "):])
            except ValueError:
                continue
            if isinstance(data, dict) and "current" in data:
                return current, data
    raise PeerUnreachable(f"peer {where} has no mirror export of disk {uuid}")
