"""The node's block-device layer (herd/storage/blockdev) and the storage RPCs on it.

File, none and (without a storage daemon) mirror devices run in a temporary root; the LVM
device runs on a loop-file PV in loop mode (slow, root only), as tests/integration/test_lvm.py
sets it up. The old ``disks_*``/``mirror_*`` argument shapes (doc/issue11-plan.md 1.2, 1.5) are
translated to DeviceSpecs here, shape by shape.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd.errors import ParameterError, StorageError
from herd.node.service import NodeService
from herd.paths import HerdPaths
from herd.rpc import legacy_storage
from herd.storage.blockdev import BlockDevice, DeviceFactory, DeviceSpec
from herd.storage.blockdev.mirror import to_mirror_disk
from herd.storage.mirror import MirrorDisk

MIB = 1024 * 1024
UUID = "3f2c1e6a-5b7d-4a2b-9c1d-6e1f00000001"
REL = f"inst1/{UUID}.file.disk0"
DRBD_REL = f"inst1/{UUID}.drbd.disk0"
MIRROR = {"uuid": UUID, "index": 0, "size": 8, "relpath": DRBD_REL, "port": 11003,
          "local_ip": "203.0.113.1", "peer_ip": "203.0.113.2"}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def file_spec(rel: str = REL, size: int = 4, uuid: str = UUID) -> DeviceSpec:
    return DeviceSpec(uuid=uuid, kind="file", size_mib=size, name=rel, index=0, path=rel)


# -- specs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [
    file_spec(),
    DeviceSpec(uuid=UUID, kind="lvm", size_mib=8, name=f"{UUID}_plain", vg="herdvg",
               lv=f"{UUID}_plain"),
    DeviceSpec(uuid=UUID, kind="none", size_mib=0),
    DeviceSpec(uuid=UUID, kind="mirror", size_mib=8, index=1, port=11003,
               local_ip="203.0.113.1", peer_ip="203.0.113.2", meta=f"mirror-meta/{UUID}.gen",
               data=DeviceSpec(uuid=UUID, kind="lvm", size_mib=8, vg="herdvg",
                               lv=f"{UUID}_drbd")),
])
def test_spec_round_trips_through_json(spec: DeviceSpec) -> None:
    wire = json.loads(json.dumps(spec.to_dict()))
    assert DeviceSpec.from_dict(wire) == spec
    assert None not in wire.values()  # only the fields of its kind travel
    assert DeviceSpec.from_dict({**wire, "from_a_newer_master": 1}) == spec


@pytest.mark.parametrize(("wire", "message"), [
    ({"uuid": "u", "kind": "tape", "size_mib": 1}, "invalid device kind 'tape'"),
    ({"uuid": "u", "kind": "file", "size_mib": 1}, "lacks path"),
    ({"uuid": "u", "kind": "lvm", "size_mib": 1, "vg": "v"}, "lacks lv"),
    ({"uuid": "u", "kind": "mirror", "size_mib": 1, "port": 1}, "lacks data"),
    ({"uuid": "u", "kind": "mirror", "size_mib": 1, "port": 1,
      "data": {"uuid": "u", "kind": "none", "size_mib": 1}}, "only a mirror has a data"),
    ({"uuid": "u", "kind": "file", "size_mib": 1, "path": "p",
      "data": {"uuid": "u", "kind": "file", "size_mib": 1, "path": "q"}}, "only a mirror"),
    ({"uuid": "u", "kind": "file", "size_mib": "x", "path": "p"}, "invalid device spec"),
    ({"uuid": "u", "kind": "file", "size_mib": -1, "path": "p"}, "invalid size"),
    ({"kind": "file", "size_mib": 1, "path": "p"}, "invalid device spec"),
    ("file", "a JSON object"),
])
def test_bad_specs_are_refused_with_the_reason(wire: Any, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        DeviceSpec.from_dict(wire)


# -- old argument shapes --------------------------------------------------------------------------
def test_file_disk_dict_translates() -> None:
    disk = {"index": 0, "template": "file", "logical_id": ["loop", REL], "size": 4,
            "mode": "rw", "uuid": UUID, "name": None}
    assert legacy_storage.from_disk_dict(disk) == file_spec()
    older = {k: v for k, v in disk.items() if k != "template"} | {"dev_type": "file"}
    assert legacy_storage.from_disk_dict(older) == file_spec()


def test_drbd_disk_dict_translates_with_and_without_its_mirror() -> None:
    disk = {"index": 0, "template": "drbd", "logical_id": ["n1", "n2", 11003, DRBD_REL],
            "size": 8, "mode": "rw", "uuid": UUID, "name": None}
    bare = legacy_storage.from_disk_dict(disk)  # query/disks_check: no addresses
    assert (bare.kind, bare.port, bare.size_mib, bare.local_ip) == ("mirror", 11003, 8, None)
    assert bare.data == file_spec(DRBD_REL, 8)
    full = legacy_storage.from_disk_dict({**disk, "mirror": MIRROR})  # instance_spec's
    assert full == legacy_storage.from_mirror_disk(MIRROR)
    assert (full.local_ip, full.peer_ip, full.meta) == ("203.0.113.1", "203.0.113.2", None)


def test_mirror_disk_dict_gives_back_the_same_mirror_disk() -> None:
    """A running storage daemon's runtime file holds MirrorDisk.to_dict(): a translated spec
    must give exactly that back, or the new noded would not adopt the old one's daemons."""
    spec = legacy_storage.from_mirror_disk(MIRROR)
    assert spec.data == file_spec(DRBD_REL, 8)
    disk = to_mirror_disk(spec)
    assert disk == MirrorDisk.from_dict(MIRROR) and disk.to_dict() == MIRROR
    lv_backed = DeviceSpec.from_dict({
        **spec.to_dict(), "meta": f"mirror-meta/{UUID}.gen", "name": f"{UUID}_drbd",
        "data": {"uuid": UUID, "kind": "lvm", "size_mib": 8, "vg": "herdvg",
                 "lv": f"{UUID}_drbd"}})
    md = to_mirror_disk(lv_backed)
    assert md.relpath == f"{UUID}_drbd" and md.data == lv_backed.data.to_dict()  # type: ignore
    assert legacy_storage.from_mirror_disk(md.to_dict()) == lv_backed


def test_other_templates_and_malformed_ids() -> None:
    none = legacy_storage.from_disk_dict({"template": "diskless", "uuid": "u", "size": 0})
    assert none.kind == "none"
    with pytest.raises(ParameterError, match="template 'sharedfile' has no volume"):
        legacy_storage.from_disk_dict({"template": "sharedfile", "logical_id": ["vg", "lv"],
                                       "uuid": "u", "size": 1})
    plain = legacy_storage.from_disk_dict({"template": "plain", "logical_id": ["vg", "lv"],
                                           "uuid": "u", "size": 1, "index": 0})
    assert (plain.kind, plain.vg, plain.lv, plain.size_mib) == ("lvm", "vg", "lv", 1)
    lv_drbd = legacy_storage.from_disk_dict({
        "template": "drbd", "logical_id": ["p", "s", 11000, ["vg", "u_drbd"], "mirror-meta/u.gen"],
        "uuid": "u", "size": 4})
    assert lv_drbd.data is not None and (lv_drbd.data.kind, lv_drbd.data.lv, lv_drbd.meta) == \
        ("lvm", "u_drbd", "mirror-meta/u.gen")
    with pytest.raises(ParameterError, match="malformed file disk"):
        legacy_storage.from_disk_dict({"template": "file", "logical_id": ["loop"],
                                       "uuid": "u", "size": 1})
    with pytest.raises(ParameterError, match="malformed mirrored disk"):
        legacy_storage.from_mirror_disk({"uuid": "u", "size": 1})
    with pytest.raises(StorageError, match="template 'drbd'"):
        legacy_storage.for_disks_create([{"template": "drbd", "uuid": "u"}])
    assert legacy_storage.for_disks_remove([{"template": "drbd", "uuid": "u"}]) == []
    assert legacy_storage.for_disks_check([{"template": "sharedfile"}, none.to_dict()]) == \
        [None, None]


# -- devices ------------------------------------------------------------------------------------
def test_file_device_lifecycle(tmp_path: Path) -> None:
    factory = DeviceFactory(HerdPaths(tmp_path))
    dev = factory.device(file_spec())
    assert isinstance(dev, BlockDevice)
    path = HerdPaths(tmp_path).file_storage_dir / REL

    async def scenario() -> None:
        info = await dev.info()
        assert (info.exists, info.size_bytes, info.path) == (False, None, str(path))
        with pytest.raises(StorageError, match="does not exist"):
            await dev.assemble()
        await dev.create()
        with pytest.raises(StorageError, match="already exists"):
            await dev.create()
        assert path.stat().st_blocks == 0  # sparse
        info = await dev.info()
        assert (info.exists, info.size_mib, info.active) == (True, 4, True)
        assert (await dev.assemble()).path == str(path) == await dev.local_path()
        assert await dev.vm_path() == str(path) and await dev.sync_status() is None
        with pytest.raises(StorageError, match="invalid role"):
            await dev.assemble("tertiary")
        await dev.grow(6)
        await dev.grow(6)  # a target: a retry does not grow twice
        await dev.grow(2)  # never shrinks
        assert path.stat().st_size == 6 * MIB
        await dev.shutdown()
        assert path.exists()  # shutdown keeps the data
        await dev.remove()
        await dev.remove()  # idempotent
        assert not path.exists() and not path.parent.exists()

    run(scenario())
    with pytest.raises(StorageError, match="invalid file disk path"):
        run(factory.device(file_spec("../etc/passwd")).create())


def test_none_device_does_nothing(tmp_path: Path) -> None:
    dev = DeviceFactory(HerdPaths(tmp_path)).device({"uuid": "u", "kind": "none",
                                                     "size_mib": 0})

    async def scenario() -> None:
        await dev.create()
        await dev.grow(10)
        await dev.shutdown()
        assert (await dev.info()).exists
        with pytest.raises(StorageError, match="no local path"):
            await dev.local_path()
        with pytest.raises(StorageError, match="no data"):
            await dev.assemble()
        await dev.remove()

    run(scenario())
    assert list(tmp_path.iterdir()) == []


def test_create_all_makes_all_or_none(tmp_path: Path) -> None:
    factory = DeviceFactory(HerdPaths(tmp_path))
    base = HerdPaths(tmp_path).file_storage_dir
    taken = file_spec("i/taken", uuid="u2")
    run(factory.device(taken).create())
    with pytest.raises(StorageError, match="already exists"):
        run(factory.create_all([file_spec("i/new", uuid="u1"), taken]))
    assert not (base / "i/new").exists() and (base / "i/taken").exists()
    infos = run(factory.info_many([file_spec("i/new", uuid="u1"), taken,
                                   DeviceSpec(uuid="u3", kind="none", size_mib=0)]))
    assert [(i.uuid, i.exists) for i in infos] == [("u1", False), ("u2", True), ("u3", True)]


def test_mirror_device_create_and_remove_without_a_daemon(tmp_path: Path) -> None:
    """A mirror's data volume is made and removed through the device interface, with the
    generation record beside a file backing (the layout of mirrors made so far)."""
    factory = DeviceFactory(HerdPaths(tmp_path))
    spec = legacy_storage.from_mirror_disk(MIRROR)
    dev = factory.device(spec)
    path = HerdPaths(tmp_path).file_storage_dir / DRBD_REL

    async def scenario() -> None:
        await dev.create()
        assert path.stat().st_size == 8 * MIB and path.stat().st_mode & 0o777 == 0o600
        assert path.with_name(path.name + ".gen").exists()
        with pytest.raises(StorageError, match="already exists"):
            await dev.create()
        info = await dev.info()
        assert (info.kind, info.exists, info.size_mib, info.path) == ("mirror", True, 8,
                                                                      str(path))
        assert await dev.local_path() == str(path)
        with pytest.raises(StorageError, match="not active as primary"):
            await dev.vm_path()
        assert (await dev.sync_status() or {})["role"] == "down"
        await dev.remove()
        await dev.remove()
        assert not path.exists() and not path.parent.exists()

    run(scenario())


# -- noded's RPCs -------------------------------------------------------------------------------
def test_blockdev_rpcs_and_their_old_names(tmp_path: Path) -> None:
    service = NodeService(HerdPaths(tmp_path))
    base = HerdPaths(tmp_path).file_storage_dir
    old = {"index": 0, "template": "file", "logical_id": ["loop", REL], "size": 4,
           "mode": "rw", "uuid": UUID, "name": None}
    drbd = {"index": 1, "template": "drbd", "logical_id": ["n1", "n2", 11003, DRBD_REL],
            "size": 8, "mode": "rw", "uuid": "u-drbd", "name": None}
    new = file_spec("x/new.file", 2, "u-new").to_dict()

    async def scenario() -> None:
        assert (await service.ping())["rpc"] >= 2  # blockdev_* since protocol 2
        assert await service.disks_create([old]) == [str(base / REL)]
        made = await service.blockdev_create([new])
        assert [(m["uuid"], m["exists"], m["size_mib"]) for m in made] == [("u-new", True, 2)]
        await service.mirror_create([{**MIRROR, "uuid": "u-drbd"}])
        checked = await service.disks_check([old, drbd, {"template": "plain", "uuid": "p"}])
        assert checked == [
            {"uuid": UUID, "exists": True, "size": 4, "path": str(base / REL)},
            {"uuid": "u-drbd", "exists": True, "size": 8, "path": str(base / DRBD_REL)},
            {"uuid": "p", "exists": False, "size": None, "path": None}]
        infos = await service.blockdev_info([new, legacy_storage.from_disk_dict(old).to_dict()])
        assert [i["exists"] for i in infos] == [True, True]
        listing = await service.blockdev_list()
        assert listing["files"] == sorted([REL, "x/new.file", DRBD_REL, DRBD_REL + ".gen"])
        assert listing["lvs"] == [] and listing["mirror_daemons"] == []
        assert await service.storage_list() == {"files": listing["files"],
                                                "mirror_daemons": []}
        with pytest.raises(StorageError, match="already exists"):
            await service.blockdev_create([file_spec("x/other", 1, "u-o").to_dict(), new])
        assert not (base / "x/other").exists()
        await service.disks_remove([old, drbd])  # drbd disks go with mirror_remove
        await service.blockdev_remove([new, new])
        assert (await service.blockdev_list())["files"] == sorted([DRBD_REL, DRBD_REL + ".gen"])
        await service.mirror_remove([{**MIRROR, "uuid": "u-drbd"}])
        assert (await service.blockdev_list())["files"] == []

    run(scenario())


def test_checking_mirrored_disks_does_not_load_the_mirror_manager(tmp_path: Path) -> None:
    """noded's memory: a query about drbd disks looks at their data volumes only."""
    code = ("import asyncio, sys\n"
            "from herd.node.service import NodeService\n"
            "from pathlib import Path\n"
            "from herd.paths import HerdPaths\n"
            f"s = NodeService(HerdPaths(Path({str(tmp_path)!r})))\n"
            "d = {'template': 'drbd', 'logical_id': ['a', 'b', 1, 'i/x'], 'uuid': 'u',"
            " 'size': 1}\n"
            "asyncio.run(s.disks_check([d]))\n"
            "heavy = {'herd.storage.mirror.manager', 'herd.storage.mirror.qmp',"
            " 'herd.storage.lvm'}\n"
            "print(sorted(heavy & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_new_methods_are_served_and_have_client_calls() -> None:
    from herd.rpc.client import NodeClient
    from herd.rpc.server import RPC_METHODS

    for name in ("blockdev_create", "blockdev_remove", "blockdev_info", "blockdev_list"):
        assert name in RPC_METHODS and hasattr(NodeClient, name)


# -- LVM in loop mode -----------------------------------------------------------------------------
@pytest.fixture
def loop_vg(tmp_path: Path) -> Iterator[Any]:
    """An LvmNode on a 64 MiB loop-file PV with VG herdvg, in loop activation (the PV and any
    loop device left over it are detached by exact name afterwards)."""
    if os.geteuid() != 0 or shutil.which("lvm") is None or shutil.which("losetup") is None:
        pytest.skip("needs root, lvm2 and losetup")
    from herd.storage.lvm import MODE_LOOP, ActivationMode, LvmNode

    image = tmp_path / "pv.img"
    with open(image, "wb") as handle:
        handle.truncate(64 * MIB)
    device = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True,
                            text=True, check=True).stdout.strip()
    try:
        node = LvmNode("herdvg", [device], tmp_path / "etc/lvm",
                       activation=ActivationMode(MODE_LOOP, "forced by the test"))
        node.create_vg()
        yield node
    finally:
        out = subprocess.run(["losetup", "-n", "-O", "NAME", "-j", device],
                             capture_output=True, text=True, check=False).stdout
        for leftover in out.split():
            subprocess.run(["losetup", "-d", leftover], check=False)
        subprocess.run(["losetup", "-d", device], check=False)


@pytest.mark.slow
def test_lvm_device_lifecycle_in_loop_mode(tmp_path: Path, loop_vg: Any) -> None:
    factory = DeviceFactory(HerdPaths(tmp_path / "root"), [loop_vg])
    specs = [DeviceSpec(uuid=f"d{i}", kind="lvm", size_mib=6, vg="herdvg", lv=f"d{i}_plain")
             for i in range(3)]
    devs = [factory.device(s) for s in specs]
    lvs_runs = []
    real_lvm = loop_vg.lvm

    def counting(tool: str, *args: Any) -> str:
        lvs_runs.append(tool)
        return str(real_lvm(tool, *args))

    async def scenario() -> None:
        await factory.create_all(specs[:2])
        with pytest.raises(StorageError, match="already exists"):
            await devs[0].create()
        loop_vg.lvm = counting
        infos = await factory.info_many(specs)
        loop_vg.lvm = real_lvm
        assert lvs_runs.count("lvs") == 1  # three devices, one lvs
        assert [(i.exists, i.size_mib, i.active) for i in infos] == [
            (True, 8, False), (True, 8, False), (False, None, False)]  # 4 MiB extents
        path = (await devs[1].assemble()).path
        assert path.startswith("/dev/loop") and await devs[1].local_path() == path
        assert (await devs[1].info()).path == path
        await devs[1].grow(12)  # the last LV: loop mode grows into the extents after it
        await devs[1].grow(12)
        assert (await devs[1].info()).size_mib == 12
        listing = await factory.list_all()
        assert [(lv["lv"], lv["tags"], lv["active"]) for lv in listing["lvs"]] == [
            ("d0_plain", ["herd.disk"], False), ("d1_plain", ["herd.disk"], True)]
        await devs[1].shutdown()
        assert not (await devs[1].info()).active
        await factory.remove_all(specs)  # the third never existed: idempotent
        assert (await factory.list_all())["lvs"] == []

    run(scenario())


def test_lvm_device_on_a_node_without_the_vg(tmp_path: Path) -> None:
    dev = DeviceFactory(HerdPaths(tmp_path)).device(
        DeviceSpec(uuid="u", kind="lvm", size_mib=1, vg="herdvg", lv="u_plain"))
    with pytest.raises(StorageError, match="volume group herdvg is not configured"):
        run(dev.create())


@pytest.mark.slow
def test_mirror_over_an_lv_syncs_the_disk_size_exactly(tmp_path: Path, loop_vg: Any) -> None:
    """drbd over LVM: a primary on a file mirrors into a secondary whose data is an LV larger
    than the disk (whole 4 MiB extents); the secondary's storage daemon sees the disk's exact
    size, the LV receives the data, and stopping releases the LV (loop device detached).
    Both "nodes" are roots of this host talking over 127.0.0.1 (no lab network needed)."""
    if shutil.which("qemu-storage-daemon") is None:
        pytest.skip("needs qemu-storage-daemon")
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    size = 6  # MiB: the LV gets 8
    uuid = "5e1f0c2a-0000-4000-8000-00000000d7bd"
    common = {"uuid": uuid, "kind": "mirror", "size_mib": size, "index": 0, "port": port,
              "local_ip": "127.0.0.1", "peer_ip": "127.0.0.1"}
    prim = DeviceSpec.from_dict({**common, "data": {"uuid": uuid, "kind": "file",
                                                    "size_mib": size, "path": f"i/{uuid}.drbd"}})
    sec = DeviceSpec.from_dict({**common, "name": f"{uuid}_drbd",
                                "meta": f"mirror-meta/{uuid}.gen",
                                "data": {"uuid": uuid, "kind": "lvm", "size_mib": size,
                                         "vg": "herdvg", "lv": f"{uuid}_drbd"}})
    pa, pb = HerdPaths(tmp_path / "a"), HerdPaths(tmp_path / "b")
    fa, fb = DeviceFactory(pa), DeviceFactory(pb, [loop_vg])
    pattern = bytes(range(256)) * (size * MIB // 256)

    async def scenario() -> None:
        await fa.device(prim).create()
        await fb.device(sec).create()
        assert (pb.data_dir / f"mirror-meta/{uuid}.gen").exists()
        assert [lv["lv"] for lv in (await fb.list_all())["lvs"]] == [f"{uuid}_drbd"]
        with open(pa.file_storage_dir / f"i/{uuid}.drbd", "r+b") as handle:
            handle.write(pattern)
        db, da = to_mirror_disk(sec), to_mirror_disk(prim)
        try:
            await fb.mirror.start_secondary(db)
            await fa.mirror.start_primary(da, "full")
            state = await fa.mirror.wait_sync(da, 60)
            assert state.in_sync and state.total_bytes == size * MIB, state
        finally:
            await fa.mirror.stop(da)
            await fb.mirror.stop(db)
        assert not (await fb.device(sec).info()).active  # the LV was released with the daemon
        lv_path = await fb.device(sec).local_path()
        with open(lv_path, "rb") as handle:
            assert handle.read(size * MIB) == pattern
        await fb.device(sec).shutdown()
        await fa.device(prim).remove()
        await fb.device(sec).remove()
        assert (await fb.list_all())["lvs"] == [] and (await fb.list_all())["meta"] == []

    run(scenario())


def test_a_block_device_data_volume_is_cut_to_the_disk_size() -> None:
    from herd.storage.mirror import graph

    plain = graph.local_node(Path("/srv/f"))
    assert plain["driver"] == "file" and "size" not in plain  # files: as always
    node = graph.local_node(Path("/dev/loop7"), block=True, size=6 * MIB)
    assert (node["driver"], node["node-name"], node["size"]) == ("raw", graph.LOCAL, 6 * MIB)
    assert (node["file"]["driver"], node["file"]["filename"]) == ("host_device", "/dev/loop7")


def test_migration_calls_hand_the_disks_over_in_the_same_call(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The source turns its disks secondary in its migration call once QEMU completed (an
    error is told in the answer, never raised: the guest is on the target by then); the
    target turns them primary before it resumes, in one call."""
    service = NodeService(HerdPaths(tmp_path))
    steps: list[str] = []
    fail: dict[str, BaseException] = {}

    class Hv:
        async def migrate(self, name: str, *args: Any, then: Any = None,
                          **kwargs: Any) -> dict[str, Any]:
            steps.append("migrate")
            stats = {"status": "completed"}
            if then is not None:
                await then(stats)  # the moment QEMU completed
            return stats

        async def finish_migration_target(self, name: str, success: bool,
                                          beforehand: Any = None) -> float:
            if beforehand is not None:
                await beforehand()  # what must be done before the resume
            steps.append(f"resume {success}")
            return 12.5

    async def running_on(name: str) -> Hv:
        return Hv()

    async def assemble(devices: list[dict[str, Any]], role: str = "primary",
                       syncs: list[str] | None = None, allow_degraded: bool = False) -> list:
        steps.append(f"{role} {syncs}")
        if role in fail:
            raise fail[role]
        return []

    monkeypatch.setattr(service, "_running_on", running_on)
    monkeypatch.setattr(service, "hypervisor", lambda *a: Hv())
    monkeypatch.setattr(service, "blockdev_assemble", assemble)
    disks = [{"uuid": "d"}]

    stats = run(service.instance_migrate("vm", "192.0.2.2", 8102, True, hand_over=disks))
    assert steps == ["migrate", "secondary None"] and "handed_over_ms" in stats
    assert "hand_over_error" not in stats and stats["served"] is None  # not a mirror spec
    steps.clear()
    assert run(service.instance_migrate("vm", "192.0.2.2", 8102, True)) == \
        {"status": "completed"} and steps == ["migrate"]  # an older master: no hand-over
    for exc in (StorageError("not in sync"), KeyError("bug")):
        fail["secondary"] = exc
        stats = run(service.instance_migrate("vm", "192.0.2.2", 8102, True, hand_over=disks))
        assert "handed_over_ms" not in stats and stats["hand_over_error"] in (
            "not in sync", "KeyError: 'bug'")

    steps.clear()
    answer = run(service.instance_finish_migration("vm", False, True, take_over=disks,
                                                   syncs=["none"]))
    assert steps == ["primary ['none']", "resume True"]
    assert answer["resumed_at"] == 12.5 and "mirror_back_ms" in answer
    steps.clear()
    fail["primary"] = StorageError("peer gone")
    with pytest.raises(StorageError):  # nothing resumes when the mirror back fails
        run(service.instance_finish_migration("vm", False, True, take_over=disks,
                                              syncs=["none"]))
    assert steps == ["primary ['none']"]
