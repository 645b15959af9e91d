"""Copying a volume's data from one node to another (``gnt-instance move``).

The source node serves the (stopped) volume as a read-only NBD export, the way a mirror's
secondary serves its copy (herd.storage.mirror): ``qemu-nbd`` on the node's replication
address, one export named after the disk's uuid. The target node pulls it with ``qemu-img
convert`` into its own new volume and flushes it to stable storage. Read-only on the source
means that a wrong peer or a stray client can never change the data being moved; pulling on
the target means the side that must end with a durable copy runs the copy and sees its result.

The export lives until the master ends it (``blockdev_unexport``), which it always does, also
when the copy failed; a node restart ends it too (the qemu-nbd runs in no unit of its own and
its pid file under the run directory lets a later unexport find it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from pathlib import Path

from herd import errors
from herd.fileutil import pid_alive

#: Tries to start the export when the port picked was taken in between by someone else.
PORT_TRIES = 3
#: Seconds qemu-nbd may take to start serving.
START_TIMEOUT = 15.0


def export_name(uuid: str) -> str:
    """The NBD export of disk ``uuid``'s data during a move (distinct from a mirror's
    ``<uuid>.<generation>`` replication export)."""
    return f"move-{uuid}"


def nbd_uri(host: str, port: int, uuid: str) -> str:
    """Where the target reads disk ``uuid`` from (an IPv6 address goes in brackets)."""
    shown = f"[{host}]" if ":" in host else host
    return f"nbd://{shown}:{port}/{export_name(uuid)}"


def _free_port(address: str) -> int:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


class Exports:
    """The read-only NBD exports of one node, by disk uuid (pid files under ``run_dir``)."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / "exports"

    def _pid_file(self, uuid: str) -> Path:
        return self.dir / f"{uuid}.pid"

    async def start(self, uuid: str, path: str, address: str) -> int:
        """Serve ``path`` read-only as disk ``uuid``'s export on ``address``; its port."""
        await self.stop(uuid)  # a leftover of an earlier attempt
        self.dir.mkdir(parents=True, exist_ok=True)
        last = ""
        for _ in range(PORT_TRIES):
            port = await asyncio.to_thread(_free_port, address)
            # --fork: the parent exits once the server listens, so the port is ready when
            # it returns; --persistent: a reconnecting client finds it still there
            proc = await asyncio.create_subprocess_exec(
                "qemu-nbd", "--fork", "--pid-file", str(self._pid_file(uuid)), "--read-only",
                "--format", "raw", "--persistent", "--shared", "4", "--bind", address,
                "--port", str(port), "--export-name", export_name(uuid), path,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE)
            try:
                _, err = await asyncio.wait_for(proc.communicate(), START_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                await self.stop(uuid)
                raise errors.StorageError(f"qemu-nbd did not start serving {path} within "
                                          f"{START_TIMEOUT:g} s") from None
            if proc.returncode == 0:
                return port
            last = err.decode(errors="replace").strip()[-300:]
            if "in use" not in last:
                break
        raise errors.StorageError(f"cannot export {path} on {address}: {last}")

    async def stop(self, uuid: str) -> bool:
        """End disk ``uuid``'s export if it runs (idempotent); whether one ran."""
        pid_file = self._pid_file(uuid)
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return False
        if not _is_qemu_nbd(pid):
            pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not pid_alive(pid):
                break
            await asyncio.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
        return True


def _is_qemu_nbd(pid: int) -> bool:
    """Whether ``pid`` still is a qemu-nbd (a pid file may outlive its process and the pid
    be reused: never signal a stranger)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and os.path.basename(cmdline[0].decode(errors="replace")) == "qemu-nbd"


async def fetch(uri: str, path: str) -> None:
    """Copy the export at ``uri`` into the local volume ``path`` (which exists, at least as
    large), then flush it to stable storage: the source's copy is removed after this."""
    proc = await asyncio.create_subprocess_exec(
        "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", "-S", "4k", uri, path,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise errors.StorageError(f"copying {uri} to {path} failed: "
                                  f"{out.decode(errors='replace').strip()[-300:]}")
    await asyncio.to_thread(_fsync, path)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
