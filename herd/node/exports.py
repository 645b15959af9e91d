"""Instance exports on a node: the export directory, and disk data streamed between nodes.

Why: ``gnt-backup export`` writes an instance to a node's export directory (Ganeti's layout:
``<export dir>/<instance>/config.ini`` plus one dump file per disk), from where an admin may
copy it to another cluster and ``gnt-backup import`` it there. The dump of a disk is what the
instance's OS definition's ``export`` script writes to its stdout, and an import feeds it to
the ``import`` script's stdin, so an OS may compress or filter as it likes.

The disks live on the instance's primary node, the export on any node: the primary streams the
script's output to the export node over the nodes' mutual-TLS HTTPS (``PUT /export-data/``),
and an import's new primary reads it from there (``GET /export-data/``); no temporary copy is
made on either side. The export node writes into a staging directory (``NAME.new``) that only
becomes the export when everything arrived and ``config.ini`` is written (an atomic rename), so
a failed or interrupted export (a full disk, a script error, a lost node) never leaves a partial
export that looks whole, and an older export of the instance stays until the new one replaces
it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from herd import errors
from herd.exportinfo import CONFIG_FILE, EXPORT_DIR, STAGING_SUFFIX, check_name
from herd.paths import HerdPaths

#: Bytes per read of a script's stream and per chunk on the wire.
CHUNK = 1 << 20
#: Seconds a streamed transfer may take at most (a large disk over a slow link).
TRANSFER_TIMEOUT = 6 * 3600.0


def export_dir(paths: HerdPaths) -> Path:
    """The node's export directory (Ganeti's /srv/ganeti/export, under Herd's tree)."""
    return paths.root / EXPORT_DIR


class ExportStore:
    """The exports of one node: list, read, remove, and the staging of a new one."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def final(self, name: str) -> Path:
        return self.base / check_name(name)

    def staging(self, name: str) -> Path:
        return self.base / (check_name(name) + STAGING_SUFFIX)

    def names(self) -> list[str]:
        """Complete exports here: directories with a config.ini (staging ones are not)."""
        try:
            entries = sorted(os.listdir(self.base))
        except FileNotFoundError:
            return []
        return [e for e in entries if not e.endswith(STAGING_SUFFIX) and not
                e.startswith(".") and (self.base / e / CONFIG_FILE).is_file()]

    def config(self, name: str) -> str:
        path = self.final(name) / CONFIG_FILE
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise errors.NotFoundError(f"no export '{name}' here ({path} does not exist)") \
                from None

    def remove(self, name: str) -> bool:
        """Remove the export (and any staging left of it); whether one existed."""
        existed = self.final(name).exists()
        for path in (self.final(name), self.staging(name)):
            shutil.rmtree(path, ignore_errors=True)
        return existed

    def begin(self, name: str) -> None:
        """A fresh staging directory (one left by a dead export is dropped)."""
        staging = self.staging(name)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)

    def abort(self, name: str) -> None:
        shutil.rmtree(self.staging(name), ignore_errors=True)

    def finish(self, name: str, config_text: str) -> None:
        """Write config.ini and make the staging directory the export, replacing an older
        one of the same instance only now (never a moment without a whole export)."""
        staging, final = self.staging(name), self.final(name)
        if not staging.is_dir():
            raise errors.OpExecError(f"export {name}: its staging directory {staging} is gone")
        try:
            tmp = staging / (CONFIG_FILE + ".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(config_text)
                f.flush()
                os.fsync(f.fileno())
            tmp.rename(staging / CONFIG_FILE)
        except OSError as exc:
            raise _write_error(name, CONFIG_FILE, exc) from None
        old = self.base / f".{name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)

    def dump_path(self, name: str, dump: str, *, staging: bool) -> Path:
        if "/" in dump or dump in ("", ".", "..") or dump == CONFIG_FILE:
            raise errors.ParameterError(f"invalid dump file name {dump!r}")
        return (self.staging(name) if staging else self.final(name)) / dump

    async def receive(self, name: str, dump: str, chunks: AsyncIterator[bytes]) -> int:
        """Write one streamed dump into the staging directory; its size. A write that fails
        (a full disk) removes the partial file and raises StorageError naming the cause."""
        path = self.dump_path(name, dump, staging=True)
        if not path.parent.is_dir():
            raise errors.OpExecError(f"export {name} was not begun here (no {path.parent})")
        size = 0
        failure: OSError | None = None
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                async for chunk in chunks:
                    if failure is not None:
                        continue  # read the rest: the sender then gets the answer, not EPIPE
                    try:
                        await asyncio.to_thread(write_all, fd, chunk)
                    except OSError as exc:
                        failure = exc
                        await asyncio.to_thread(os.ftruncate, fd, 0)  # free the space now
                    size += len(chunk)
                if failure is None:
                    await asyncio.to_thread(os.fsync, fd)
            finally:
                os.close(fd)
        except OSError as exc:
            failure = failure or exc
        except BaseException:
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        if failure is not None:
            with contextlib.suppress(OSError):
                path.unlink()
            raise _write_error(name, dump, failure)
        return size


def _write_error(name: str, what: str, exc: OSError) -> errors.StorageError:
    if exc.errno == errno.ENOSPC:
        return errors.StorageError(f"export {name}: no space left for {what} in the export "
                                   "directory")
    return errors.StorageError(f"export {name}: writing {what} failed: {exc.strerror or exc}")


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        done = os.write(fd, view)
        view = view[done:]


async def read_fd(fd: int) -> AsyncIterator[bytes]:
    """The bytes of a pipe's read end until EOF, read off the event loop."""
    while True:
        chunk = await asyncio.to_thread(os.read, fd, CHUNK)
        if not chunk:
            return
        yield chunk


def peer_url(peer: dict[str, Any], name: str, dump: str) -> str:
    """Where another node serves or takes the dump ``dump`` of export ``name``."""
    check_name(name)
    return f"https://{peer['address']}:{int(peer['port'])}/export-data/{name}/{dump}"


async def send_stream(client: httpx.AsyncClient, peer: dict[str, Any], name: str, dump: str,
                      fd: int) -> int:
    """PUT the stream read from ``fd`` to ``peer``'s staging export; the bytes it stored."""
    url = peer_url(peer, name, dump)
    try:
        resp = await client.put(url, content=read_fd(fd),
                                timeout=httpx.Timeout(TRANSFER_TIMEOUT, connect=10.0))
    except httpx.HTTPError as exc:
        raise errors.RpcError(f"sending {dump} of export {name} to node {peer['name']} "
                              f"failed: {type(exc).__name__}: {exc}") from None
    return int(_answer(peer, resp.status_code, resp.content))


@contextlib.asynccontextmanager
async def open_stream(client: httpx.AsyncClient, peer: dict[str, Any], name: str,
                      dump: str) -> AsyncIterator[AsyncIterator[bytes]]:
    """The bytes of dump ``dump`` of export ``name`` on ``peer``, as they arrive."""
    url = peer_url(peer, name, dump)
    try:
        async with client.stream("GET", url, timeout=httpx.Timeout(TRANSFER_TIMEOUT,
                                                                   connect=10.0)) as resp:
            if resp.status_code != 200:
                _answer(peer, resp.status_code, await resp.aread())
            yield resp.aiter_bytes(CHUNK)
    except httpx.HTTPError as exc:
        raise errors.RpcError(f"reading {dump} of export {name} from node {peer['name']} "
                              f"failed: {type(exc).__name__}: {exc}") from None


def _answer(peer: dict[str, Any], status: int, raw: bytes) -> Any:
    """The peer noded's JSON answer ({"ok", "result"|"error"}): its result or its error."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise errors.RpcError(f"node {peer['name']}: invalid answer to an export transfer "
                              f"(HTTP {status})") from None
    if not isinstance(body, dict) or not body.get("ok"):
        raise errors.from_dict((body or {}).get("error") or {})
    return body.get("result")
