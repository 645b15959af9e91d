"""Reading the peer's generation before attaching to it.

A secondary publishes a summary of its generation record in the description of its NBD export,
so that the primary can check it over the very connection it is about to replicate to, without
any other channel between the nodes (``qemu-nbd --list`` reads NBD_OPT_LIST/INFO replies).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from herd.errors import StorageError

PROBE_TIMEOUT = 5.0


class PeerUnreachable(StorageError):
    """The peer's NBD export cannot be listed (node down, partitioned, no storage daemon)."""


async def probe(host: str, port: int, uuid: str,
                timeout: float = PROBE_TIMEOUT) -> tuple[str, dict[str, Any]]:
    """(export name, generation summary) of disk ``uuid``'s export at ``host:port``."""
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
