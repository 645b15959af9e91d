"""The QMP arguments that build a disk's block graph inside its storage daemon.

Kept as pure functions so that the exact sequences are visible and unit-tested in one place.

Primary::

    VM --NBD unix--> [export "vm"] -> mirror-top (filter, from blockdev-mirror) -> local (file)
                                        \\-- job "mirror" (write-blocking) --> target (raw)
                                                       -> peerN (nbd client to peer_ip:port)
Secondary::

    peer's NBD client --TCP--> [export "repl", writethrough] -> local (file)
    incoming migration VM --TCP--> [export "vm"] -> local

A primary without its peer (degraded start) gives the job a target that fails every write
(``deadN``: blkdebug over null-co): the job pauses at once and keeps marking what the peer
lacks in its dirty map; when the peer returns, ``blockdev-reopen`` swaps the target's ``file``
child for a real NBD node and ``block-job-resume`` copies only the map.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

JOB = "mirror"
LOCAL = "local"
TARGET = "target"
FILTER = "mirror-top"
#: Seconds the NBD client holds requests while reconnecting before failing them (then the job
#: pauses and the guest writes on locally). Short: it adds to every stall when the peer is lost
#: (see :mod:`.watchdog`), and a peer that comes back later costs only a dirty-map resync.
RECONNECT_DELAY = 1
#: The mirror's dirty map: one bit per granule. 4 KiB granules make a resync after small
#: scattered writes copy what changed (64 KiB, QEMU's default for NBD targets, copied 339 MiB
#: for 32 MiB of 4 KiB writes); the map stays below MAX_MAP_BITS (2 MiB of RAM) on big disks.
MIN_GRANULARITY = 4096
MAX_MAP_BITS = 16 * 1024 * 1024
#: Copy buffer of the background copy (full sync and resync).
BUF_SIZE = 16 * 1024 * 1024
#: Copy buffer of a job that starts with nothing to copy (a live migration's mirror back, the
#: job after a grow), started while the guest is paused: QEMU touches every granule's page of
#: the buffer when the job starts, and 16 MiB at 4 KiB granules took 8-14 ms of
#: blockdev-mirror (2 MiB: 1-2 ms). The buffer serves only a later resync of this job's dirty
#: map (guest writes go straight to the peer in write-blocking mode): 2 MiB still keeps two
#: 1 MiB copies, or QEMU's 16 small ones, in flight.
NONE_BUF_SIZE = 2 * 1024 * 1024


def local_node(path: Path, *, block: bool = False, size: int | None = None,
               direct: bool = True) -> dict[str, Any]:
    """The local copy. A file as it always was; a block device (an LV) through QEMU's
    ``host_device`` driver under a raw node limited to ``size`` bytes: an LV is rounded up to
    whole extents, and both nodes' copies must be the disk's exact size, byte for byte, or the
    mirror job refuses a target of another length (and a guest would see the extra tail).

    ``direct``: O_DIRECT with Linux native AIO, no page cache (``False`` only where the
    filesystem refuses O_DIRECT, see :func:`direct_io_works`: then the page cache and QEMU's
    thread pool, as before). A completed write has then reached the node's disk layer, as
    DRBD's protocol C means it, instead of sitting in a page cache that a later flush must
    write back (the secondary's writethrough flush costs a disk-cache flush, not a page
    writeback); the guest has its own page cache, so a second one on the host only doubled
    memory and made throughput depend on how full it was (replicated/local ratios swung
    0.39-1.57 between runs with it). Native AIO instead of the thread pool: no hand-over to a
    worker thread per request (random 4 KiB writes at queue depth 16: local +15-30 %,
    replicated +6 %, measured with bench/mirror.py). Flushes still reach the disk
    (``no-flush`` off)."""
    cache = {"direct": direct, "no-flush": False}
    aio = "native" if direct else "threads"  # Linux AIO needs O_DIRECT; threads work anywhere
    if not block:
        return {"driver": "file", "node-name": LOCAL, "filename": str(path), "aio": aio,
                "discard": "unmap", "cache": cache}
    proto = {"driver": "host_device", "node-name": f"{LOCAL}-dev", "filename": str(path),
             "aio": aio, "discard": "unmap", "cache": cache}
    raw: dict[str, Any] = {"driver": "raw", "node-name": LOCAL, "discard": "unmap",
                           "cache": cache, "file": proto}
    if size is not None:
        raw["size"] = size
    return raw


def direct_io_works(path: Path) -> bool:
    """Whether ``path`` opens with O_DIRECT (tmpfs and some FUSE filesystems refuse it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def resize_local(path: Path, *, block: bool, size: int,
                 direct: bool = True) -> tuple[str, dict[str, Any]]:
    """The QMP command that makes the ``local`` node ``size`` bytes long once its volume has
    that size (a grow of a running disk, or its undo): a file's node is resized (QEMU
    truncates the file to the length it already has and takes it); a block device's raw node
    has a fixed ``size`` (:func:`local_node`) and is reopened with the new one, every other
    option restated (a reopen resets what it does not name) and its child by name."""
    if not block:
        return "block_resize", {"node-name": LOCAL, "size": size}
    raw = local_node(path, block=True, size=size, direct=direct)
    return "blockdev-reopen", {"options": [{**raw, "file": raw["file"]["node-name"]}]}


def unix_server(sock: Path) -> dict[str, Any]:
    return {"addr": {"type": "unix", "data": {"path": str(sock)}}}


def tcp_server(host: str, port: int) -> dict[str, Any]:
    return {"addr": {"type": "inet", "data": {"host": host, "port": str(port)}}}


def vm_export(name: str) -> dict[str, Any]:
    return {"type": "nbd", "id": "vm", "node-name": LOCAL, "name": name, "writable": True}


def repl_export(name: str, generation_summary: dict[str, Any]) -> dict[str, Any]:
    """The secondary's export to its primary. ``writethrough``: every write the primary sends
    is flushed to stable storage here before it is acknowledged, so a guest write (and thus a
    guest flush) is durable on the secondary before the guest sees it complete: the mirror's
    filter forwards flushes only to the local file (QEMU's mirror-top flushes its backing only,
    and the job flushes its target only when it first becomes ready), so a guest flush cannot
    reach the peer by itself. Stricter than DRBD's protocol C (which sends the peer the
    guest's flushes instead), and needed for more than double failures: without it a
    secondary that loses power drops acknowledged writes from its disk cache that the
    primary's dirty map (writes made while the peer was away) does not name, and a resync
    would leave its copy silently stale. On O_DIRECT with native AIO (:func:`local_node`) QEMU
    puts RWF_DSYNC on each write, synced by the kernel several at a time, instead of one
    fdatasync after another. Measured (bench/mirror.py, 3 rounds, file copies), replicated /
    local with and without it: random 4 KiB qd16 0.32 vs 0.29, sequential 1 MiB qd16 0.45 vs
    0.43, random 4 KiB qd1 0.31 vs 0.35 (~0.1 ms more per write), partial resync copy 0.57 vs
    0.64 s: the same within the spread, bar the lone writer's latency."""
    return {"type": "nbd", "id": "repl", "node-name": LOCAL, "name": name, "writable": True,
            "writethrough": True,
            "description": json.dumps(generation_summary, separators=(",", ":"))}


def nbd_node(name: str, host: str, port: int, export: str) -> dict[str, Any]:
    return {"driver": "nbd", "node-name": name,
            "server": {"type": "inet", "host": host, "port": str(port), "keep-alive": True},
            "export": export, "reconnect-delay": RECONNECT_DELAY}


def dead_node(name: str, size: int) -> dict[str, Any]:
    """A stand-in peer that fails every write with EIO (for a degraded start). Flushes succeed:
    ``blockdev-reopen`` flushes the target before swapping this child for the real peer."""
    return {"driver": "blkdebug", "node-name": name,
            "inject-error": [{"event": "none", "iotype": io, "errno": 5}
                             for io in ("write", "write-zeroes", "discard")],
            "image": {"driver": "null-co", "node-name": f"{name}-null", "size": size}}


def target_node(child: str) -> dict[str, Any]:
    """The job's target: a quorum of one, the peer's node (vote threshold 1, so a write fails
    when the peer fails it and the job pauses, as before).

    Why a quorum and not a plain raw node over the peer: its child can be swapped while the
    job runs (``x-blockdev-change`` adds the new peer node and drops the old), keeping the
    job and its dirty map, without the flush that ``blockdev-reopen`` of a raw node first
    sends through the old NBD client, which fails while that client is disconnected. So a
    peer that comes back gets a fresh connection at once instead of waiting for the old
    client's own reconnect thread, which QEMU retries 1, 2, 4, 8, then every 16 s (1.3 s of
    the bench's partial resync; up to 16 s after a longer outage). Guests get no discard
    (the VM's drive leaves it off), and quorum forwards none: nothing is lost there.

    ``detect-zeroes``: a buffer of zeros the job copies (or the guest writes) goes to the peer
    as one NBD WRITE_ZEROES, not as data: a full sync of an empty 10 GiB disk on a block
    device (an LV, where QEMU cannot ask what is allocated) sent every byte of it over the
    wire, 10 GiB in 55 s. ``discard: unmap`` lets those zeros be holes on the peer and lets
    the job zero a new target in bulk first."""
    return {"driver": "quorum", "node-name": TARGET, "vote-threshold": 1,
            "read-pattern": "fifo", "children": [child], "discard": "unmap",
            "detect-zeroes": "unmap"}


def quorum_child(slot: int) -> str:
    """The name under which the target holds its peer node: ``children.0`` when made, and
    one more after each swap (QEMU numbers added children on; the old one goes)."""
    return f"children.{slot}"


def raw_target_node(child: str) -> dict[str, Any]:
    """The target as Herd made it before the quorum (a daemon still running from then is
    reconnected the old way, by ``blockdev-reopen``)."""
    return {"driver": "raw", "node-name": TARGET, "file": child}


def granularity(size: int) -> int:
    """Smallest power of two >= 4 KiB that keeps the dirty map of ``size`` bytes small."""
    gran = MIN_GRANULARITY
    while size // gran > MAX_MAP_BITS:
        gran *= 2
    return gran


def mirror_job(sync: str, size: int, copy_mode: str = "write-blocking") -> dict[str, Any]:
    """``copy_mode`` 'background' only where the daemon can switch the job to write-blocking
    later (block-job-change, QEMU >= 8.2; see :func:`herd.qemu_features.mirror_plan`)."""
    assert sync in ("full", "none") and copy_mode in ("write-blocking", "background")
    return {"job-id": JOB, "device": LOCAL, "target": TARGET, "sync": sync,
            "copy-mode": copy_mode, "on-source-error": "stop",
            "on-target-error": "stop", "filter-node-name": FILTER,
            "granularity": granularity(size),
            "buf-size": BUF_SIZE if sync == "full" else NONE_BUF_SIZE,
            "auto-finalize": True, "auto-dismiss": True}


def vm_uri_unix(name: str, sock: Path) -> str:
    return f"nbd+unix:///{name}?socket={sock}"


def vm_uri_tcp(name: str, host: str, port: int) -> str:
    return f"nbd://{host}:{port}/{name}"
