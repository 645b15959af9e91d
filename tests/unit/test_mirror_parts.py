"""Mirror building blocks that need no daemon: model, QMP arguments, peer listing, files."""

from __future__ import annotations

import asyncio
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from herd.errors import StorageError
from herd.paths import HerdPaths
from herd.storage.mirror import MirrorDisk, MirrorManager, MirrorStatus, graph, peer, quickack
from herd.storage.mirror.daemon import MAX_SOCKET_PATH, DaemonFiles
from herd.storage.mirror.records import Runtime
from herd.storage.mirror.states import in_sync
from herd.storage.mirror.tcp_table import parse

DISK = MirrorDisk(uuid="0f8e2c1a-1111-2222-3333-444455556666", index=0, size=8,
                  relpath="inst1/0f8e2c1a.drbd.disk0", port=11003,
                  local_ip="203.0.113.1", peer_ip="203.0.113.2")


def test_models_roundtrip() -> None:
    assert MirrorDisk.from_dict({**DISK.to_dict(), "extra": 1}) == DISK
    st = MirrorStatus(role="primary", connected=True, in_sync=True, degraded=False,
                      generation="g", vm_uri="nbd+unix:///x?socket=/s")
    assert MirrorStatus.from_dict(json.loads(json.dumps(st.to_dict()))) == st
    assert DISK.size_bytes == 8 * 1024 * 1024


def test_mirror_job_arguments() -> None:
    job = graph.mirror_job("full", 10 * 2**30)
    assert job["copy-mode"] == "write-blocking" and job["on-target-error"] == "stop"
    assert job["granularity"] == 4096
    assert graph.granularity(2**40) == 65536  # 1 TiB: the map stays at 2 MiB
    # a job with nothing to copy starts in the guest's pause: a small buffer starts fast
    assert job["buf-size"] == graph.BUF_SIZE
    assert graph.mirror_job("none", 10 * 2**30)["buf-size"] == graph.NONE_BUF_SIZE < job["buf-size"]
    with pytest.raises(AssertionError):
        graph.mirror_job("dirty", 1)


def test_secondary_export_is_writethrough_and_carries_generation() -> None:
    exp = graph.repl_export("u.tok", {"current": "abc", "history": []})
    assert exp["writethrough"] is True and exp["writable"] is True
    assert json.loads(exp["description"])["current"] == "abc"
    node = graph.nbd_node("peer1", "203.0.113.2", 11003, "u.tok")
    assert node["reconnect-delay"] == graph.RECONNECT_DELAY and node["server"]["port"] == "11003"
    dead = graph.dead_node("dead1", 4096)
    assert {r["iotype"] for r in dead["inject-error"]} == {"write", "write-zeroes", "discard"}


def test_parse_qemu_nbd_list() -> None:
    text = ("exports available: 2\n export: 'other'\n  size:  1\n"
            " export: 'u.tok'\n  description: {\"current\":\"abc\",\"history\":[]}\n"
            "  size:  8388608\n")
    assert peer.parse_list(text, "u", "h:1") == ("u.tok", {"current": "abc", "history": []})
    with pytest.raises(peer.PeerUnreachable):
        peer.parse_list(text, "nope", "h:1")


def test_socket_paths_fit(tmp_path: Path) -> None:
    deep = Path("/var/lib/herd-lab") / ("x" * 20) / "node12" / "var/run/herd/mirror"
    files = DaemonFiles.for_disk(deep, DISK.uuid)
    assert len(str(files.sock)) <= MAX_SOCKET_PATH and len(str(files.qmp)) <= MAX_SOCKET_PATH
    assert files.key != DISK.uuid  # fell back to the short hash
    assert DaemonFiles.for_disk(Path("/var/run/herd/mirror"), DISK.uuid).key == DISK.uuid


def test_in_sync_definition() -> None:
    job = {"ready": True, "paused": False, "io-status": "ok", "offset": 5, "len": 5}
    assert in_sync(job, Runtime())
    for change in ({"ready": False}, {"paused": True}, {"io-status": "failed"},
                   {"offset": 4}):
        assert not in_sync({**job, **change}, Runtime())
    row = "   0: 017100CB:2AF8 027100CB:9C40 01 00000000:00000000 00:0 00000000 0 0 1"
    assert parse("header\n" + row)[0].local == ("203.0.113.1", 11000)


def test_create_generation_remove(tmp_path: Path) -> None:
    mgr = MirrorManager(HerdPaths(tmp_path))

    async def scenario() -> None:
        await mgr.create(DISK)
        with pytest.raises(StorageError, match="already exists"):
            await mgr.create(DISK)
        path = mgr.backing_file(DISK)
        assert path.stat().st_size == DISK.size_bytes and path.stat().st_blocks == 0
        gen = mgr.generation(DISK)
        assert gen["fresh"] and not gen["dirty_map_valid"] and not gen["running"]
        st = await mgr.status(DISK)
        assert st.role == "down" and st.generation == gen["current"]
        assert await mgr.list_active() == []
        await mgr.remove(DISK)
        assert not path.exists() and not path.parent.exists()
        assert not mgr.run_dir.exists() or list(mgr.run_dir.iterdir()) == []

    asyncio.run(scenario())
    bad = MirrorDisk.from_dict({**DISK.to_dict(), "relpath": "../../etc/x"})
    with pytest.raises(StorageError, match="escapes"):
        mgr.backing_file(bad)


def test_the_local_node_takes_a_new_size_by_resize_or_by_reopen() -> None:
    # a file: QEMU resizes its node (the file has that length already)
    assert graph.resize_local(Path("/d/f"), block=False, size=96 << 20) == (
        "block_resize", {"node-name": "local", "size": 96 << 20})
    # a block device: its raw node's fixed size changes by a reopen restating everything
    command, args = graph.resize_local(Path("/dev/vg/lv"), block=True, size=96 << 20)
    opened = graph.local_node(Path("/dev/vg/lv"), block=True, size=96 << 20)
    assert command == "blockdev-reopen"
    assert args == {"options": [{**opened, "file": "local-dev"}]}
    assert args["options"][0]["size"] == 96 << 20


def test_the_job_after_a_grow_copies_nothing_only_to_the_same_export() -> None:
    from herd.storage.mirror.manager import grow_job_sync

    assert grow_job_sync("u.tok1", "u.tok1") == "none"
    assert grow_job_sync("u.tok2", "u.tok1") == "full"  # the peer's copy changed meanwhile
    assert grow_job_sync("u.tok1", None) == "full"


async def _fake_nbd_server(replies: list[tuple[int, bytes]],
                           greeting: bytes | None = None) -> tuple[asyncio.Server, int, list]:
    """An NBD server that answers NBD_OPT_LIST with ``replies`` ((type, data) each); what the
    client sent (flags, options) goes into the returned list."""
    seen: list = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting if greeting is not None else
                     peer.NBD_MAGIC + peer.IHAVEOPT + struct.pack(">H", 3))
        await writer.drain()
        try:
            seen.append(struct.unpack(">I", await reader.readexactly(4))[0])
            while True:
                _magic, option, length = struct.unpack(">8sII", await reader.readexactly(16))
                await reader.readexactly(length)
                seen.append(option)
                if option == peer.OPT_ABORT:
                    break
                for kind, data in replies:
                    writer.write(struct.pack(">QIII", peer.REPLY_MAGIC, option, kind, len(data))
                                 + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], seen


def _server_reply(name: str, description: str) -> tuple[int, bytes]:
    raw = name.encode()
    return peer.REP_SERVER, struct.pack(">I", len(raw)) + raw + description.encode()


def test_probe_reads_the_export_list_in_process() -> None:
    async def run() -> None:
        summary = json.dumps({"current": "abc", "history": ["old"]})
        server, port, seen = await _fake_nbd_server(
            [_server_reply("u", ""), _server_reply("other.x", summary),
             _server_reply("u.tok", summary), (peer.REP_ACK, b"")])
        async with server:
            assert await peer.probe("127.0.0.1", port, "u") == \
                ("u.tok", {"current": "abc", "history": ["old"]})
            with pytest.raises(peer.PeerUnreachable, match="no mirror export of disk nope"):
                await peer.probe("127.0.0.1", port, "nope")
        # fixed newstyle + no zeroes; one list, then a polite abort
        assert seen[:3] == [3, peer.OPT_LIST, peer.OPT_ABORT]

    asyncio.run(run())


def test_probe_falls_back_to_qemu_nbd_on_a_surprise(monkeypatch: pytest.MonkeyPatch) -> None:
    called: list[int] = []

    async def fallback(host: str, port: int, uuid: str, timeout: float = 5.0) -> Any:
        called.append(port)
        return "u.tok", {"current": "abc"}

    monkeypatch.setattr(peer, "probe_with_qemu_nbd", fallback)

    async def run() -> None:
        refused = (peer.REP_ERROR_BIT | 1, b"")  # NBD_REP_ERR_UNSUP
        oldstyle = b"NBDMAGIC" + bytes.fromhex("0000420281861253") + bytes(8)  # + size
        for replies, greeting in (([refused], None), ([], oldstyle)):
            server, port, _ = await _fake_nbd_server(replies, greeting)
            async with server:
                assert await peer.probe("127.0.0.1", port, "u") == ("u.tok", {"current": "abc"})
        assert len(called) == 2
        # nobody listening: unreachable, no fallback
        server, port, _ = await _fake_nbd_server([])
        server.close()
        await server.wait_closed()
        with pytest.raises(peer.PeerUnreachable, match="unreachable"):
            await peer.probe("127.0.0.1", port, "u")
        assert len(called) == 2

    asyncio.run(run())


def test_the_local_copy_bypasses_the_page_cache_where_it_can(tmp_path: Path) -> None:
    # O_DIRECT with native AIO: a completed write reached the node's disk layer
    node = graph.local_node(Path("/srv/f"))
    assert node["cache"] == {"direct": True, "no-flush": False} and node["aio"] == "native"
    dev = graph.local_node(Path("/dev/loop7"), block=True, size=6 << 20)
    assert dev["cache"]["direct"] and dev["file"]["cache"]["direct"]
    assert dev["file"]["aio"] == "native"
    # a filesystem that refuses O_DIRECT (tmpfs): the page cache and QEMU's thread pool, as
    # native AIO needs O_DIRECT
    buffered = graph.local_node(Path("/srv/f"), direct=False)
    assert buffered["cache"]["direct"] is False and buffered["aio"] == "threads"
    # a reopen restates the mode the node was opened with
    _, args = graph.resize_local(Path("/dev/vg/lv"), block=True, size=8 << 20, direct=False)
    assert args["options"][0]["cache"]["direct"] is False
    assert graph.direct_io_works(tmp_path / "missing") is False
    (tmp_path / "f").write_bytes(b"\0" * 4096)
    assert graph.direct_io_works(tmp_path / "f") in (True, False)  # asks, never raises


def test_the_target_is_a_quorum_of_one_that_sends_zeros_as_write_zeroes() -> None:
    node = graph.target_node("peer3")
    assert node["driver"] == "quorum" and node["node-name"] == graph.TARGET
    assert node["children"] == ["peer3"] and node["vote-threshold"] == 1
    assert node["detect-zeroes"] == "unmap" and node["discard"] == "unmap"
    assert graph.quorum_child(0) == "children.0"
    assert graph.raw_target_node("peer3") == {"driver": "raw", "node-name": graph.TARGET,
                                              "file": "peer3"}


class _Monitor:
    """Records the commands a storage daemon's monitor gets; fails the ones named."""

    def __init__(self, fail: tuple[str, ...] = ()) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail = fail

    async def cmd(self, command: str, arguments: dict[str, Any] | None = None,
                  **_: Any) -> Any:
        from herd.storage.mirror.qmp import QmpCommandError

        self.calls.append((command, arguments))
        if command in self.fail:
            raise QmpCommandError(f"{command} failed", "no")
        return {}


def test_a_peer_swap_keeps_the_job_by_trading_the_quorum_child(tmp_path: Path) -> None:
    mgr = MirrorManager(HerdPaths(tmp_path))
    q = _Monitor()
    done = asyncio.run(mgr._swap_peer(q, DISK, "u.tok", 3, "peer2", 1))  # type: ignore[arg-type]
    assert done == (True, "peer3", "nbd", 2)
    names = [c for c, _ in q.calls]
    assert names == ["blockdev-add", "x-blockdev-change", "x-blockdev-change", "blockdev-del"]
    assert q.calls[1][1] == {"parent": graph.TARGET, "node": "peer3"}
    assert q.calls[2][1] == {"parent": graph.TARGET, "child": "children.1"}
    assert q.calls[3][1]["node-name"] == "peer2"
    # no flush on the way: no blockdev-reopen
    assert "blockdev-reopen" not in names
    # a raw target of a daemon started before: reopened; refused (the old client is gone):
    # not swapped, the new node deleted, the caller syncs fully
    q = _Monitor(fail=("blockdev-reopen",))
    done = asyncio.run(mgr._swap_peer(q, DISK, "u.tok", 3, "peer2", None))  # type: ignore[arg-type]
    assert done == (False, "peer2", "nbd", None)
    assert q.calls[1] == ("blockdev-reopen", {"options": [graph.raw_target_node("peer3")]})
    assert q.calls[-1][0] == "blockdev-del" and q.calls[-1][1]["node-name"] == "peer3"


class _Jobs:
    """A storage daemon's monitor as far as resuming a paused job goes: the job stays paused
    (a request fails again at once) until the NBD client's reconnect thread has connected."""

    def __init__(self, connect_after_resumes: int) -> None:
        self.paused, self.resumes, self.connect_after = True, 0, connect_after_resumes

    def linked(self) -> bool:
        return self.resumes >= self.connect_after

    async def cmd(self, command: str, arguments: dict[str, Any] | None = None,
                  **_: Any) -> Any:
        if command == "query-block-jobs":
            return [{"device": graph.JOB, "paused": self.paused}]
        assert command == "block-job-resume", command
        self.resumes += 1
        self.paused = not self.linked()
        return {}


def test_a_reconnect_resumes_until_the_job_runs_connected(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    from herd.storage.mirror import manager

    mgr = MirrorManager(HerdPaths(tmp_path))
    monkeypatch.setattr(manager, "RESUME_POLL", 0.001)
    jobs = _Jobs(connect_after_resumes=3)
    monkeypatch.setattr(manager, "_has_link", lambda *_: jobs.linked())
    asyncio.run(mgr._resume(jobs, DISK))  # type: ignore[arg-type]
    assert jobs.resumes == 3 and not jobs.paused
    # never connected: an error once the timeout is over, not a job reported running
    jobs = _Jobs(connect_after_resumes=10**9)
    with pytest.raises(StorageError, match="keeps failing"):
        asyncio.run(mgr._resume(jobs, DISK, timeout=0.05))  # type: ignore[arg-type]


def test_the_replication_route_takes_an_unpaced_congestion_control_only_instead_of_bbr(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # BBR paces with a timer re-armed per send (a hypervisor exit per re-arm on a VM): the
    # route to the peer says CUBIC; an admin's other choice is left alone
    assert quickack.route_metrics("bbr") == {"quickack": 1, "cc_algo": "cubic"}
    for other in ("cubic", "dctcp", "reno", None):
        assert quickack.route_metrics(other) == {"quickack": 1}
    # the namespace's default as the kernel shows it
    sysctl = tmp_path / "tcp_congestion_control"
    monkeypatch.setattr(quickack, "DEFAULT_CC", sysctl)
    assert quickack.default_cc() is None
    sysctl.write_text("bbr\n")
    assert quickack.default_cc() == "bbr"
