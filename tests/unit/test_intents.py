"""Intent records (what a job creates, written before it does), recovery after a dead masterd,
and the orphan-volume rules of gnt-cluster verify.

Recovery runs against the real node service (noded's starlette app, in process over httpx's
ASGI transport, without TLS) on a temporary HERD_ROOT: the disk files are real files.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from herd.jobs import queue as q
from herd.jobs.executor import LOST_MESSAGE, JobExecutor
from herd.logic import intents, orphans
from herd.logic.intents import FILE, MIRROR, Intent, IntentJournal, Item
from herd.node.service import NodeService
from herd.objects import Disk, Instance, Node
from herd.paths import HerdPaths
from herd.rpc.client import NodeClient
from herd.rpc.server import build_app
from herd.storage.file import FileStorage, volume_name
from tests.unit.test_jobs import delay, make_context


def file_item(node: str, inst: str, uuid: str, index: int = 0) -> Item:
    rel = volume_name(uuid, "file")
    return Item(node, FILE, {"index": index, "template": "file", "logical_id": ["loop", rel],
                             "size": 1, "mode": "rw", "uuid": uuid, "name": None})


def add_instance(cfg: Any, name: str, node: str, disk_uuid: str) -> Instance:
    disk = Disk(size=1, dev_type="file", nodes=[node],
                logical_id=["loop", volume_name(disk_uuid, "file")])
    disk.uuid = disk_uuid
    inst = Instance(name=name, primary_node=node, disk_template="file", disks=[disk])
    cfg.instances[inst.uuid] = inst
    return inst


# -- the pure plan ---------------------------------------------------------------------------
def test_plan_removes_what_the_config_does_not_own(tmp_path: Path) -> None:
    cfg = make_context(tmp_path).config.data
    node = next(iter(cfg.nodes))
    owner = add_instance(cfg, "keep", node, "d-owned")
    intent = Intent("dead", "inst-uuid-dead",
                    [file_item(node, "dead", "d1"), file_item(node, "dead", "d2", 1),
                     Item(node, FILE, file_item(node, "keep", "d-owned").disk),
                     file_item("gone-node", "dead", "d3")])
    plan = intents.plan_cleanup(intent, cfg)
    assert [i.relpath for i in plan.remove] == ["d1.file", "d2.file"]
    assert any("d-owned.file" in k and "an instance owns it" in k for k in plan.kept)
    assert any("the node left the cluster" in k for k in plan.kept)
    # the creation was committed: nothing at all is removed
    committed = Intent("keep", owner.uuid, [file_item(node, "keep", "d-owned")])
    assert intents.plan_cleanup(committed, cfg).remove == []


def test_plan_keeps_items_on_offline_nodes(tmp_path: Path) -> None:
    cfg = make_context(tmp_path).config.data
    node = next(iter(cfg.nodes.values()))
    node.offline = True
    plan = intents.plan_cleanup(Intent("x", "u", [file_item(node.uuid, "x", "d")]), cfg)
    assert plan.remove == [] and "offline" in plan.kept[0]


def test_mirror_items_name_their_backing_file() -> None:
    item = Item("n", MIRROR, {"uuid": "d", "relpath": "i/d.drbd.disk0", "index": 0})
    assert item.relpath == "i/d.drbd.disk0"
    assert item.describe() == "mirrored disk i/d.drbd.disk0 on n"


# -- the journal -----------------------------------------------------------------------------
def test_journal_survives_a_new_process_and_forgets_done_records(tmp_path: Path) -> None:
    journal = IntentJournal(tmp_path / "intents")
    token = intents.CURRENT_JOB.set(17)
    try:
        first = Intent("a", "ua", [file_item("n", "a", "d1")])
        journal.record(first)
    finally:
        intents.CURRENT_JOB.reset(token)
    second = Intent("b", "ub", [file_item("n", "b", "d2")], created=first.created + 1)
    journal.record(second)
    assert {i.key for i in intents.live_intents()} >= {first.key, second.key}
    assert intents.in_flight([first]) == {("n", "d1.file")}
    assert oct((tmp_path / "intents" / f"{first.key}.json").stat().st_mode & 0o777) == "0o600"
    loaded = IntentJournal(tmp_path / "intents").load()  # as a restarted masterd reads it
    assert [i.to_dict() for i in loaded] == [first.to_dict(), second.to_dict()]
    assert loaded[0].job_id == 17 and loaded[1].job_id is None
    journal.done(first)
    journal.release(second)
    assert [i.key for i in journal.load()] == [second.key]  # released stays for recovery
    assert not {first.key, second.key} & {i.key for i in intents.live_intents()}


def test_unreadable_record_is_set_aside(tmp_path: Path) -> None:
    journal = IntentJournal(tmp_path / "intents")
    journal.directory.mkdir()
    (journal.directory / "broken.json").write_text("{not json")
    assert journal.load() == []
    assert (journal.directory / "broken.bad").exists()


# -- recovery against the real node service --------------------------------------------------
class AsgiRpc:
    """RpcRunner's interface over noded's app in process (no TLS, no sockets)."""

    def __init__(self, service: NodeService) -> None:
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(service)))

    def node(self, node: Node) -> NodeClient:
        return NodeClient(self.http, node.name, "node.invalid", 1811)


def test_recovery_removes_a_dead_jobs_disks_before_failing_it(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    node = next(iter(ctx.config.data.nodes))
    storage = FileStorage(HerdPaths(tmp_path))
    owner = add_instance(ctx.config.data, "keep", node, "d-owned")
    storage.create(volume_name("d-owned", "file"), 1)
    queue = q.JobQueue(ctx.paths.queue_db)
    job_id = queue.submit([delay(10)])
    job = queue.get(job_id)
    job.status, job.ops[0].status = q.RUNNING, q.RUNNING
    queue.save(job)
    # the job recorded its intent, created one disk of two, and masterd died
    journal = IntentJournal.for_master(ctx.paths.data_dir)
    dead = Intent("dead", "dead-uuid", [file_item(node, "dead", "d1"),
                                       file_item(node, "dead", "d2", 1)], job_id=job_id)
    journal.record(dead)
    committed = Intent("keep", owner.uuid, [file_item(node, "keep", "d-owned")])
    journal.record(committed)
    storage.create(dead.items[0].relpath, 1)
    queue.close()

    async def main() -> None:
        ctx.rpc = AsgiRpc(NodeService(HerdPaths(tmp_path)))  # type: ignore[assignment]
        queue2 = q.JobQueue(ctx.paths.queue_db)
        executor = JobExecutor(queue2, ctx)
        try:
            executor.recover(await executor.recover_created())
            lost = queue2.get(job_id).to_dict()
        finally:
            await executor.shutdown()
            queue2.close()
            await ctx.rpc.http.aclose()  # type: ignore[attr-defined]
        assert lost["status"] == "error"
        messages = [m for _, _, _, m in lost["oplog"][0]]
        assert messages[0] == ("recovery: removed disk file d1.file on "
                               "node1.example.com, made for instance dead before masterd "
                               "stopped")
        assert messages[-1] == f"Error: {LOST_MESSAGE}"

    asyncio.run(asyncio.wait_for(main(), 10))
    base = HerdPaths(tmp_path).file_storage_dir
    assert not (base / "dead").exists(), "the dead job's disk (or its directory) is left"
    assert (base / "d-owned.file").exists(), "an owned disk was removed"
    assert journal.load() == [], "records of handled jobs must be gone"


def test_removing_a_disk_ends_the_os_script_writing_it(tmp_path: Path) -> None:
    """A dead job's OS create script would otherwise write the disk again after removal."""
    paths = HerdPaths(tmp_path)
    osdir = paths.os_dir / "slow"
    osdir.mkdir(parents=True)
    (osdir / "ganeti_api_version").write_text("20\n")
    (osdir / "parameters.list").write_text("")
    for script in ("create", "import", "export", "rename", "verify"):
        (osdir / script).write_text("#!/bin/sh\nsleep 30\n")
        (osdir / script).chmod(0o755)
    service = NodeService(paths)
    disk = file_item("n", "inst", "d1").disk

    async def main() -> None:
        await service.disks_create([disk])
        spec = {"name": "inst", "disks": [disk], "nics": [], "hvparams": {}}
        script = asyncio.ensure_future(service.os_run("create", "slow", spec, {}))
        deadline = time.monotonic() + 5
        while "d1" not in service._os_scripts:  # keyed by disk uuid
            assert not script.done(), script.exception()
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await service.disks_remove([disk])
        assert time.monotonic() - started < 10
        with pytest.raises(Exception, match="was ended: its disks are being removed"):
            await script

    asyncio.run(asyncio.wait_for(main(), 20))
    assert not os.path.exists(paths.file_storage_dir / "d1.file")


# -- orphan volumes (verify) -----------------------------------------------------------------
def test_orphan_volumes_are_what_no_instance_owns(tmp_path: Path) -> None:
    cfg = make_context(tmp_path).config.data
    node = next(iter(cfg.nodes))
    add_instance(cfg, "keep", node, "d-owned")
    mirrored = Disk(size=1, dev_type="drbd", nodes=[node, "other"],
                    logical_id=[node, "other", 11000, "m/dm.drbd.disk0"])
    mirrored.uuid = "dm"
    cfg.instances["m"] = Instance(name="m", primary_node=node, disk_template="drbd",
                                  disks=[mirrored])
    expected = orphans.expected_on(cfg, node)
    listing = {"files": ["d-owned.file", "m/dm.drbd.disk0", "m/dm.drbd.disk0.gen",
                         "m/.dm.drbd.disk0.gen.x1y2", "lost/dx.file.disk0",
                         "busy/db.drbd.disk0.gen"],
               "mirror_daemons": [{"key": "dm", "uuid": "dm", "relpath": "m/dm.drbd.disk0",
                                   "pid": 10},
                                  {"key": "dz", "uuid": "dz", "relpath": "z/dz.drbd.disk0",
                                   "pid": 11}]}
    found = orphans.orphan_volumes(expected, listing, {"busy/db.drbd.disk0"})
    assert found == [
        "storage daemon of mirrored disk dz (z/dz.drbd.disk0, pid 11) is unknown",
        "volume lost/dx.file.disk0 is unknown (a disk file no instance owns)",
    ]
    assert orphans.expected_on(cfg, "other").files == {"m/dm.drbd.disk0",
                                                       "m/dm.drbd.disk0.gen"}


def test_device_items_name_their_volume_as_file_items_did() -> None:
    """Templates record DeviceSpecs now; recovery's lines read as before for file disks."""
    from herd.logic.intents import DEVICE
    from herd.storage.blockdev.spec import DeviceSpec

    spec = DeviceSpec(uuid="d1", kind="file", size_mib=8, name="i/d1.file.disk0", index=0,
                      path="i/d1.file.disk0")
    item = Item("n1", DEVICE, spec.to_dict())
    assert item.relpath == "i/d1.file.disk0"
    assert item.describe() == "disk file i/d1.file.disk0 on n1"
    mirror = DeviceSpec(uuid="d2", kind="mirror", size_mib=8, name="i/d2.drbd.disk0", port=1,
                        data=DeviceSpec(uuid="d2", kind="file", size_mib=8,
                                        path="i/d2.drbd.disk0"))
    assert Item("n1", DEVICE, mirror.to_dict()).describe() == \
        "mirrored disk i/d2.drbd.disk0 on n1"
