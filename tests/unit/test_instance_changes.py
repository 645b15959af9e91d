"""grow-disk, rename, reinstall: the pure decisions, then the logical units on the in-process
cluster (fake hypervisor, real node services, real busybox OS scripts, files on disk).

The lab (tests/lab/test_instance_changes.py) shows the same on real guests: a running guest
seeing its grown disk, mirrored copies growing on both nodes, a running QEMU renamed.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd import errors
from herd.logic.instance_grow import grow_path, grow_target, space_refusal
from herd.logic.instance_reinstall import new_osparams
from herd.logic.instance_rename import answer_means_in_use, check_flags
from herd.logic.templates.base import DiskTemplate, grow_order
from herd.objects import Disk, Instance
from herd.objects.disk_ids import FileId, LvId
from tests.harness import InProcessCluster, create_op, node_name, scratch_root
from tests.waiting import wait_until

N1, N2, N3 = node_name(1), node_name(2), node_name(3)
INST = "inst1.example.com"
OS = "busybox+default"


# -- pure decisions ------------------------------------------------------------------------
def test_grow_target_is_ganetis_amount_or_absolute_size_and_never_shrinks() -> None:
    assert grow_target(0, 1024, 512, False) == 1536
    assert grow_target(0, 1024, 2048, True) == 2048
    assert grow_target(0, 1024, 1024, True) == 1024  # already that size: nothing to do
    with pytest.raises(errors.OpPrereqError, match=r"requested size 512M of disk 1 is smaller "
                                                   r"than its current size 1\.0G"):
        grow_target(1, 1024, 512, True)
    for bad in (-4, "1G", True, 1.5):
        with pytest.raises(errors.ParameterError, match="invalid amount"):
            grow_target(0, 1024, bad, False)  # type: ignore[arg-type]


def test_space_refusal_names_node_place_and_figures() -> None:
    info = {"vg_name": "xenvg", "vg_free": 100, "file_storage_free": 5000}
    assert space_refusal("n1", "vg", 100, info) is None
    assert space_refusal("n1", "vg", 101, info) == (
        "not enough free space in the volume group xenvg on node n1: needed 101 MiB, "
        "available 100 MiB")
    assert space_refusal("n1", "file", 6000, info) == (
        "not enough free space in the file storage directory on node n1: needed 6000 MiB, "
        "available 5000 MiB")
    assert "not usable: gone" in str(space_refusal("n1", "vg", 1, {"vg_error": "gone"}))
    assert space_refusal("n1", "vg", 0, {"vg_error": "gone"}) is None  # nothing to take
    assert space_refusal("n1", "file", 10, {}) is None  # a node that does not report it


def test_grow_visits_secondaries_first_and_counts_space_by_volume_kind() -> None:
    inst = Instance(name="i", primary_node="p", disk_template="drbd")
    lv = Disk(size=10, dev_type="plain", nodes=["p"], logical_id=LvId("vg", "u_plain"))
    mirrored = Disk(size=10, dev_type="drbd", nodes=["p", "s"])
    inst.disks = [lv, mirrored]
    assert grow_order(inst, mirrored) == ["s", "p"]
    assert DiskTemplate.grow_space(inst, 0, 8) == {"p": ("vg", 8)}
    inst.disks[0] = Disk(size=10, dev_type="file", nodes=["p"],
                         logical_id=FileId("loop", "u.file"))
    assert DiskTemplate.grow_space(inst, 0, 8) == {"p": ("file", 8)}


def test_rename_checks_are_ganetis() -> None:
    check_flags(True, True)
    check_flags(False, False)
    with pytest.raises(errors.ParameterError, match="needs the name check"):
        check_flags(False, True)
    # TcpPing: connected or refused means a live host; silence means the address is free
    assert answer_means_in_use(None) and answer_means_in_use(errno.ECONNREFUSED)
    assert not answer_means_in_use(errno.ETIMEDOUT)
    assert not answer_means_in_use(errno.EHOSTUNREACH)


def test_reinstall_osparams_merge_clear_and_remove() -> None:
    assert new_osparams({"a": "1"}, {"b": "2"}, clear=False, remove=None) == {"a": "1", "b": "2"}
    assert new_osparams({"a": "1"}, {"b": "2"}, clear=True, remove=None) == {"b": "2"}
    assert new_osparams({"a": "1", "b": "2"}, None, clear=False, remove=["a"]) == {"b": "2"}
    with pytest.raises(errors.ParameterError, match="cannot remove OS parameter 'z'"):
        new_osparams({"a": "1"}, None, clear=False, remove=["z"])


# -- logical units -------------------------------------------------------------------------
@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[InProcessCluster]:
    with scratch_root(tmp_path) as root, InProcessCluster(
            root, nodes=3, disk_templates=("file", "diskless", "drbd")) as c:
        yield c


def op(op_id: str, **fields: Any) -> dict[str, Any]:
    return {"OP_ID": op_id, "instance_name": INST, **fields}


def disk_path(cluster: InProcessCluster, node: str, index: int = 0) -> Path:
    files = [f for f in cluster.nodes[node].disk_files() if not f.endswith(".gen")]
    inst = cluster.config.find_instance(INST) or cluster.config.instances[
        next(iter(cluster.config.instances))]
    rel = inst.disks[index].logical_id.file_path()
    assert rel in files
    return cluster.nodes[node].paths.file_storage_dir / rel


def header(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(4096).rstrip(b"\0")


def test_grow_disk_of_a_running_guest(cluster: InProcessCluster) -> None:
    outcome = cluster.run(create_op(INST, node=N2, start=True))
    assert outcome.status == "success", outcome.log
    path = disk_path(cluster, N2)
    serial = cluster.saved_config().serial_no

    refused = [
        (op("OP_INSTANCE_GROW_DISK", disk=0, amount=32, absolute=True), "smaller than"),
        (op("OP_INSTANCE_GROW_DISK", disk=1, amount=32), "invalid disk index 1"),
        (op("OP_INSTANCE_GROW_DISK", disk=0, amount=64 * 1024 * 1024),
         "not enough free space in the file storage directory on node"),
    ]
    for request, message in refused:
        failed = cluster.run(request)
        assert failed.status == "error" and message in failed.error[1], failed.log
    assert cluster.saved_config().serial_no == serial and os.path.getsize(path) == 64 << 20

    done = cluster.run(op("OP_INSTANCE_GROW_DISK", disk=0, amount=32))
    assert done.status == "success", done.log
    assert os.path.getsize(path) == 96 << 20
    assert cluster.saved_config().find_instance(INST).disks[0].size == 96
    guest = cluster.running(N2)[INST]
    hv = cluster.wait(cluster.nodes[N2].service.hypervisor("fake").instance_info(INST))
    assert guest["state"] == "running" and hv is not None
    fake = cluster.nodes[N2].service.hypervisor("fake")._load()[INST]  # what QMP would be told
    assert fake["disk_sizes"] == {"0": 96 << 20}
    again = cluster.run(op("OP_INSTANCE_GROW_DISK", disk=0, amount=96, absolute=True))
    assert again.status == "success" and any("nothing to grow" in m for m in again.log)


def test_grow_disk_of_a_mirror_grows_both_copies_while_stopped(
        cluster: InProcessCluster) -> None:
    outcome = cluster.run(create_op(INST, node=N2, template="drbd", snode=N3, start=True))
    assert outcome.status == "success", outcome.log
    refused = cluster.run(op("OP_INSTANCE_GROW_DISK", disk=0, amount=64))
    assert refused.status == "error" and "stop it first" in refused.error[1]
    assert cluster.run(op("OP_INSTANCE_SHUTDOWN")).status == "success"
    cluster.fail_once(N2, "blockdev_grow")  # the primary: the secondary has grown already
    failed = cluster.run(op("OP_INSTANCE_GROW_DISK", disk=0, amount=64))
    assert failed.status == "error"
    assert cluster.saved_config().find_instance(INST).disks[0].size == 64  # no lie
    for node in (N2, N3):  # the secondary's copy was cut back: one length for both
        assert os.path.getsize(disk_path(cluster, node)) == 64 << 20
    cluster.clear_calls()
    done = cluster.run(op("OP_INSTANCE_GROW_DISK", disk=0, amount=64))
    assert done.status == "success", done.log
    assert sorted(n for n, m in cluster.all_calls() if m == "blockdev_grow") == [N2, N3]
    order = [m.split(" on ")[1].split(" ")[0] for m in done.log if "growing disk 0 on" in m]
    assert order == [N3, N2]  # the secondary first: a primary never outgrows its mirror
    for node in (N2, N3):
        assert os.path.getsize(disk_path(cluster, node)) == 128 << 20
    assert cluster.saved_config().find_instance(INST).disks[0].size == 128
    assert cluster.run(op("OP_INSTANCE_STARTUP")).status == "success"


def test_grow_path_picks_the_way_a_disk_grows() -> None:
    # the file template grows its volumes under a running guest or not
    assert grow_path(True, True, None) == "volumes" and grow_path(False, True, None) == "volumes"
    # a mirror: stopped with its daemons down; running its own way, unless its QEMU cannot
    assert grow_path(False, False, "old QEMU") == "stopped"
    assert grow_path(True, False, None) == "running"
    assert grow_path(True, False, "old QEMU") == "refused"


def test_grow_disk_of_a_running_mirror_grows_both_copies_under_the_paused_guest(
        cluster: InProcessCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The job's steps (the harness's mirror manager: real data files, no storage daemons;
    the lab runs the real ones): the guest is paused, the primary holds its mirror, both
    copies grow, secondary first, and are served again, the guest is resumed and told; a
    failure of the primary's step serves both copies at the old size again, and the config
    keeps the old size."""
    from herd.hypervisor.kvm import Kvm

    outcome = cluster.run(create_op(INST, node=N2, template="drbd", snode=N3, start=True))
    assert outcome.status == "success", outcome.log
    refused = cluster.run(op("OP_INSTANCE_GROW_DISK", disk=0, amount=32))
    assert refused.status == "error" and "QEMU >= 10.0.0 only (the primary node has " \
        "unknown): stop it first" in refused.error[1], refused.error
    facts = Kvm.node_facts  # what node_info reports, on every node
    monkeypatch.setattr(Kvm, "node_facts", lambda self: {**facts(self), "qemu_version": "10.0.2"})

    def mirror_states() -> list[dict[str, Any]]:
        ctx = cluster.ctx
        from herd.logic import drbd

        inst = cluster.config.find_instance(INST)
        return cluster.wait(drbd.status(ctx, inst))

    wait_until("the mirror in sync", lambda: mirror_states()[0]["in_sync"], 60, 0.2)
    net = cluster.nodes[N3].service.mirror.net  # the secondary away: not in sync
    listening = dict(net.listening)
    net.listening.clear()
    cluster.clear_calls()
    refused = cluster.run(op("OP_INSTANCE_GROW_DISK", disk=0, amount=32))
    assert refused.status == "error" and "is not in sync with" in refused.error[1]
    assert not {"instance_pause", "blockdev_grow_hold"} & {m for _, m in cluster.all_calls()}
    net.listening.update(listening)
    cluster.fail_once(N2, "blockdev_grow_hold")  # refused before it changed anything
    failed = cluster.run(op("OP_INSTANCE_GROW_DISK", disk=0, amount=32))
    assert failed.status == "error" and not [m for m in failed.log if "WARNING" in m]
    assert cluster.running(N2)[INST]["state"] == "running"

    cluster.fail_once(N2, "blockdev_grow_serve")  # the primary's step: N3 has grown already
    failed = cluster.run(op("OP_INSTANCE_GROW_DISK", disk=0, amount=32))
    assert failed.status == "error", failed.log
    assert cluster.saved_config().find_instance(INST).disks[0].size == 64  # no lie
    for node in (N2, N3):  # served again at the old size, both
        assert os.path.getsize(disk_path(cluster, node)) == 64 << 20
    assert cluster.running(N2)[INST]["state"] == "running"  # resumed
    state = mirror_states()[0]
    assert state["role"] == "primary" and state["connected"], state

    done = cluster.run(op("OP_INSTANCE_GROW_DISK", disk=0, amount=32))
    assert done.status == "success", done.log
    log = "\n".join(done.log)
    assert "pausing the guest" in log and "resuming the guest" in log, log
    order = [m.split(" on ")[1].split(" ")[0] for m in done.log if "growing disk 0 on" in m]
    assert order == [N3, N2]
    for node in (N2, N3):
        assert os.path.getsize(disk_path(cluster, node)) == 96 << 20
    assert cluster.saved_config().find_instance(INST).disks[0].size == 96
    assert cluster.running(N2)[INST]["state"] == "running"
    fake = cluster.nodes[N2].service.hypervisor("fake")._load()[INST]
    assert fake["disk_sizes"] == {"0": 96 << 20}
    state = mirror_states()[0]
    assert state["role"] == "primary" and state["in_sync"], state


def test_rename_stopped_runs_the_os_script_and_running_keeps_the_guest(
        cluster: InProcessCluster) -> None:
    outcome = cluster.run(create_op(INST, node=N2, os_type=OS, no_install=False,
                                    nics=[{}]))
    assert outcome.status == "success", outcome.log
    before = cluster.saved_config().find_instance(INST)
    uuid, macs = before.uuid, [n.mac for n in before.nics]
    path = disk_path(cluster, N2)
    assert b"instance=" + INST.encode() in header(path)

    new = "renamed.example.com"
    with pytest.raises(errors.ParameterError, match="invalid instance name 'bad_name!'"):
        cluster.run(op("OP_INSTANCE_RENAME", new_name="bad_name!"))  # refused at submission
    unresolved = cluster.run(op("OP_INSTANCE_RENAME", new_name="nosuch.invalid"))
    assert unresolved.status == "error" and "does not resolve" in unresolved.error[1]
    assert cluster.saved_config().find_instance(INST) is not None

    done = cluster.run(op("OP_INSTANCE_RENAME", new_name=new, name_check=False))
    assert done.status == "success" and done.result == new, done.log
    inst = cluster.saved_config().find_instance(new)
    assert inst.uuid == uuid and [n.mac for n in inst.nics] == macs
    assert cluster.saved_config().find_instance(INST) is None
    assert b"instance=" + new.encode() in header(path)  # the OS rename script ran

    start = cluster.run({"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": new})
    assert start.status == "success", start.log
    back = cluster.run({"OP_ID": "OP_INSTANCE_RENAME", "instance_name": new,
                        "new_name": INST, "name_check": False})
    assert back.status == "success", back.log
    assert any("rename script was not run" in m for m in back.log)
    assert list(cluster.running(N2)) == [INST]  # the same guest, under the old name again
    assert cluster.saved_config().find_instance(INST).admin_state == "up"
    assert b"instance=" + new.encode() in header(path)  # untouched while running


def test_reinstall_rewrites_the_disk_and_is_refused_while_running(
        cluster: InProcessCluster) -> None:
    outcome = cluster.run(create_op(INST, node=N2, os_type=OS, no_install=False, start=True))
    assert outcome.status == "success", outcome.log
    path = disk_path(cluster, N2)
    with open(path, "r+b") as handle:  # the guest's data after the header area
        handle.seek(1 << 20)
        handle.write(b"MARKER")
    refused = cluster.run(op("OP_INSTANCE_REINSTALL"))
    assert refused.status == "error" and "is running, cannot reinstall" in refused.error[1]
    assert cluster.run(op("OP_INSTANCE_SHUTDOWN")).status == "success"

    bad = cluster.run(op("OP_INSTANCE_REINSTALL", os_type="nosuchos"))
    assert bad.status == "error" and "OS 'nosuchos' not found" in bad.error[1]
    bad = cluster.run(op("OP_INSTANCE_REINSTALL", osparams={"bogus": "1"}))
    assert bad.status == "error" and "bogus" in bad.error[1]

    done = cluster.run(op("OP_INSTANCE_REINSTALL", os_type="busybox+writer",
                          osparams={"banner": "hello"}))
    assert done.status == "success", done.log
    text = header(path)
    with open(path, "rb") as handle:
        handle.seek(1 << 20)
        assert handle.read(6) == bytes(6)  # the guest's data is gone
    assert b"variant=writer" in text and b"banner=hello" in text
    inst = cluster.saved_config().find_instance(INST)
    assert inst.os == "busybox+writer" and inst.osparams == {"banner": "hello"}


# -- the KVM hypervisor's part (no QEMU: a stand-in process with QEMU's identifying args) ----
def test_kvm_rename_carries_a_running_instance_and_grow_resizes_its_drive(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    import subprocess
    import sys

    from herd.hypervisor import kvm as kvm_mod
    from herd.hypervisor.base import InstanceSpec
    from herd.hypervisor.kvm import Kvm
    from herd.hypervisor.kvm.runtime import InstanceFiles, RuntimeRecord, write_record
    from herd.paths import HerdPaths

    paths = HerdPaths(tmp_path)
    paths.ensure()
    kvm = Kvm(paths)
    kvm.run_dir.mkdir(parents=True, exist_ok=True)
    old, uuid = InstanceFiles(kvm.run_dir, "old"), "0d7c9c5e-1111-2222-3333-444455556666"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                             "-pidfile", str(old.pidfile), "-uuid", uuid])
    try:
        spec = InstanceSpec(name="old", uuid=uuid, memory=64, vcpus=1, hvparams={})
        write_record(old.runtime, RuntimeRecord(spec=spec, pid=proc.pid, accel="tcg",
                                                started=0.0, argv=[]))
        for f in (old.pidfile, old.qmp, old.serial, old.serial_log):
            f.write_text("x")
        other = InstanceFiles(tmp_path / "elsewhere", "old")  # another node's run dir
        assert kvm_mod.is_our_qemu(proc.pid, old, uuid)
        assert not kvm_mod.is_our_qemu(proc.pid, other, uuid)
        assert not kvm_mod.is_our_qemu(proc.pid, old, "another-uuid")

        asyncio.run(kvm.rename("old", "new"))
        new = InstanceFiles(kvm.run_dir, "new")
        assert all(f.exists() for f in (new.pidfile, new.qmp, new.serial, new.serial_log))
        assert not any(f.exists() for f in (old.runtime, old.qmp, old.serial))
        info = asyncio.run(kvm.instance_info("new"))
        assert info is not None and info.pid == proc.pid and info.name == "new"
        assert asyncio.run(kvm.instance_info("old")) is None
        with pytest.raises(errors.HypervisorError, match="not running"):
            asyncio.run(kvm.rename("old", "other"))

        calls: list[tuple[Any, ...]] = []

        async def execute(sock: Path, command: str, arguments: Any = None,
                          *, timeout: float = 5.0) -> Any:
            calls.append((sock.name, command, arguments))
            return {"status": "running"} if command == "query-status" else {}

        monkeypatch.setattr(kvm_mod.qmp, "execute", execute)
        asyncio.run(kvm.grow_disk("new", 0, 96 << 20))
        assert ("new.qmp", "block_resize", {"device": "virtio0", "size": 96 << 20}) in calls

        # a mirrored disk (NBD): one read reconnects its client first, which then knows the
        # export's new size (QEMU refuses to grow an NBD node past what it knows)
        from herd.hypervisor.base import DiskSpec
        from herd.hypervisor.kvm.runtime import read_record

        record = read_record(new.runtime)
        assert record is not None
        disk_uuid = "5e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
        record.spec.disks = [DiskSpec(index=0, path="nbd+unix:///d0?socket=/run/m.sock",
                                      uuid=disk_uuid)]
        write_record(new.runtime, record)
        calls.clear()
        asyncio.run(kvm.grow_disk("new", 0, 128 << 20, disk_uuid))
        assert [c[1:] for c in calls if c[1] != "query-status"] == [
            ("human-monitor-command", {"command-line": 'qemu-io virtio0 "read 0 512"'}),
            ("block_resize", {"device": "virtio0", "size": 128 << 20})]
    finally:
        proc.kill()
        proc.wait()


def test_grow_of_a_mirror_over_lvs_zeroes_the_new_extents(tmp_path: Path) -> None:
    """New extents of an LV may hold old bytes, different on each node: the grown tail is
    zeroed on both, so the copies stay equal without a sync (and the LV is left inactive)."""
    with scratch_root(tmp_path) as root, InProcessCluster(
            root, nodes=3, disk_templates=("file", "diskless", "drbd"), vg="xenvg") as c:
        outcome = c.run(create_op(INST, node=N2, template="drbd", snode=N3))
        assert outcome.status == "success", outcome.log
        lvs = {}
        for node in (N2, N3):
            lvm = c.nodes[node].lvm
            (name,) = list(lvm.lvs)
            lvs[node] = (lvm, name)
            with open(lvm._file(name), "r+b") as handle:  # stale bytes past the end
                handle.seek(64 << 20)
                handle.write(b"\xaa" * (1 << 20))
        done = c.run(op("OP_INSTANCE_GROW_DISK", disk=0, amount=32))
        assert done.status == "success", done.log
        for lvm, name in lvs.values():
            assert lvm.lvs[name][0] == 96 << 20 and name not in lvm.active
            with open(lvm._file(name), "rb") as handle:
                handle.seek(64 << 20)
                assert handle.read(32 << 20) == bytes(32 << 20)
