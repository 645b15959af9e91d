"""Disk templates as objects (herd.logic.templates): the registry, the capabilities LUs ask
instead of comparing names, and the file/diskless templates' create, remove, activate and
recreate run on the in-process cluster (tests/harness.py), including their rollbacks and the
node RPCs each LU costs (so a refactoring cannot quietly add round trips).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd import errors
from herd.logic import templates
from herd.logic.templates import Claim, NewDisk, by_name, template_of
from herd.objects import Instance
from herd.objects.disk_ids import DrbdId, FileId, LvId
from herd.opcodes import OpInstanceStartup
from tests.harness import InProcessCluster, create_op, node_name, scratch_root

N1, N2 = node_name(1), node_name(2)
INST = "inst1.example.com"
#: What a storage RPC is called, old and new: a test counts the ones an LU makes.
STORAGE = ("blockdev_", "disks_", "disk_", "mirror_")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[InProcessCluster]:
    with scratch_root(tmp_path) as root, InProcessCluster(root, nodes=2) as c:
        yield c


def storage_calls(cluster: InProcessCluster) -> list[tuple[str, str]]:
    return [(n, m) for n, m in cluster.all_calls() if m.startswith(STORAGE)]


# -- registry and capabilities ------------------------------------------------------------------
def test_each_known_template_has_one_object_named_as_the_config_names_it() -> None:
    for name in ("diskless", "file", "plain", "drbd"):
        assert by_name(name).name == name
        assert template_of(Instance(name="i", disk_template=name)) is by_name(name)


def test_unknown_names_are_refused_with_the_allowed_ones() -> None:
    with pytest.raises(errors.ParameterError, match="invalid disk template 'plainx': allowed"):
        by_name("plainx")
    with pytest.raises(errors.ConfigurationError, match="unknown disk template 'nope'"):
        template_of(Instance(name="i", disk_template="nope"))


@pytest.mark.parametrize(("name", "copies", "secondary", "moves", "converts"), [
    ("diskless", 0, False, False, set()),
    ("file", 1, False, False, {"drbd"}),
    ("plain", 1, False, False, {"drbd"}),
    ("drbd", 2, True, True, {"file", "plain"}),
])
def test_capabilities(name: str, copies: int, secondary: bool, moves: bool,
                      converts: set[str]) -> None:
    t = by_name(name)
    assert (t.copies, t.needs_secondary, t.can_migrate, t.can_failover, t.replaceable,
            set(t.converts_to)) == (copies, secondary, moves, moves, moves, converts)
    # a conversion target is a template of the registry
    assert all(by_name(other) for other in t.converts_to)


def test_disk_count_is_checked_by_the_template() -> None:
    by_name("diskless").check_disk_count(0)
    with pytest.raises(errors.ParameterError, match="the diskless template takes no disks"):
        by_name("diskless").check_disk_count(1)
    with pytest.raises(errors.ParameterError, match="'file' needs at least one disk"):
        by_name("file").check_disk_count(0)


def test_new_disks_get_typed_ids_and_their_nodes(cluster: InProcessCluster) -> None:
    cfg = cluster.config
    inst = Instance(name="new.example.com", primary_node="p")
    claim = Claim(None, object())
    (fdisk,) = by_name("file").new_disks(cfg, inst, [NewDisk(64)], "p", None, claim)
    assert (fdisk.dev_type, fdisk.nodes, fdisk.size) == ("file", ["p"], 64)
    assert fdisk.logical_id == FileId("loop", f"{fdisk.uuid}.file")

    d0, d1 = by_name("drbd").new_disks(cfg, inst, [NewDisk(64), NewDisk(32, "ro")], "p", "s",
                                       claim)
    assert (d0.nodes, d1.nodes, d1.mode) == (["p", "s"], ["p", "s"], "ro")
    assert isinstance(d0.logical_id, DrbdId) and isinstance(d1.logical_id, DrbdId)
    assert d0.logical_id.port != d1.logical_id.port
    assert d1.logical_id.path == f"{d1.uuid}.drbd"
    with pytest.raises(errors.OpPrereqError, match="needs a secondary node"):
        by_name("drbd").new_disks(cfg, inst, [NewDisk(64)], "p", None, claim)


def test_volumes_on_say_what_each_node_keeps(cluster: InProcessCluster) -> None:
    inst = Instance(name="i", primary_node="p", disk_template="drbd")
    claim = Claim(None, object())
    inst.disks = by_name("drbd").new_disks(cluster.config, inst, [NewDisk(8)], "p", "s", claim)
    path = inst.disks[0].logical_id.file_path()
    for node in ("p", "s"):
        volumes = template_of(inst).volumes_on(inst, node)
        assert volumes.files == {path, f"{path}.gen"}
        assert volumes.daemons == {inst.disks[0].uuid}
    assert template_of(inst).volumes_on(inst, "other") == templates.Volumes()


# -- file and diskless on the in-process cluster ------------------------------------------------
def test_file_create_and_remove_cost_one_storage_call_each(cluster: InProcessCluster) -> None:
    cluster.clear_calls()
    assert cluster.run(create_op(INST, node=N2)).status == "success"
    assert storage_calls(cluster) == [(N2, "blockdev_create")]
    (rel,) = cluster.nodes[N2].disk_files()

    cluster.clear_calls()
    assert cluster.run({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": INST}).status == \
        "success"
    assert storage_calls(cluster) == [(N2, "blockdev_remove")]
    assert rel not in cluster.nodes[N2].disk_files()
    assert cluster.saved_config().find_instance(INST) is None


def test_file_create_rolls_back_when_the_node_refuses(cluster: InProcessCluster) -> None:
    cluster.fail_once(N2, "blockdev_create")
    outcome = cluster.run(create_op(INST, node=N2, disks=[{"size": 8}, {"size": 8}]))
    assert outcome.status == "error"
    assert "injected failure of 'blockdev_create'" in outcome.error[1]
    assert cluster.nodes[N2].disk_files() == []
    assert cluster.saved_config().find_instance(INST) is None


def test_remove_failure_keeps_the_instance_unless_ignored(cluster: InProcessCluster) -> None:
    assert cluster.run(create_op(INST, node=N2)).status == "success"
    cluster.fail_once(N2, "blockdev_remove")
    refused = cluster.run({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": INST})
    assert refused.status == "error"
    assert "could not remove disks on node2.example.com" in refused.error[1]
    assert cluster.saved_config().find_instance(INST) is not None

    cluster.fail_once(N2, "blockdev_remove")
    ignored = cluster.run({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": INST,
                           "ignore_failures": True})
    assert ignored.status == "success"
    assert any("ignoring failure" in line for line in ignored.log)
    assert cluster.saved_config().find_instance(INST) is None


def test_file_start_checks_its_disks_in_one_call(cluster: InProcessCluster) -> None:
    assert cluster.run(create_op(INST, node=N2)).status == "success"
    cluster.clear_calls()
    assert cluster.run(OpInstanceStartup(instance_name=INST)).status == "success"
    assert storage_calls(cluster) == [(N2, "blockdev_info")]
    cluster.clear_calls()
    assert cluster.run({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": INST}).status == \
        "success"
    assert storage_calls(cluster) == []  # nothing to deactivate for files


def test_activate_reports_a_missing_file(cluster: InProcessCluster) -> None:
    assert cluster.run(create_op(INST, node=N2)).status == "success"
    (rel,) = cluster.nodes[N2].disk_files()
    (cluster.nodes[N2].paths.file_storage_dir / rel).unlink()
    outcome = cluster.run({"OP_ID": "OP_INSTANCE_ACTIVATE_DISKS", "instance_name": INST})
    assert outcome.error is not None and outcome.error[0] == "OpExecError"
    assert f"disk/0 of {INST} is missing on node {N2}" in outcome.error[1]
    assert not cluster.saved_config().find_instance(INST).disks_active


def test_recreate_makes_only_the_missing_disk(cluster: InProcessCluster) -> None:
    assert cluster.run(create_op(INST, node=N2, disks=[{"size": 8}, {"size": 8}])).status == \
        "success"
    first, second = cluster.nodes[N2].disk_files()
    (cluster.nodes[N2].paths.file_storage_dir / second).unlink()
    cluster.clear_calls()
    outcome = cluster.run({"OP_ID": "OP_INSTANCE_RECREATE_DISKS", "instance_name": INST})
    assert outcome.status == "success", outcome.log
    assert len(outcome.result) == 1
    assert sorted(cluster.nodes[N2].disk_files()) == sorted([first, second])
    assert storage_calls(cluster) == [(N2, "blockdev_info"), (N2, "blockdev_create")]


def test_diskless_costs_no_storage_call(cluster: InProcessCluster) -> None:
    cluster.clear_calls()
    assert cluster.run(create_op(INST, node=N2, template="diskless", start=True)).status == \
        "success"
    assert cluster.run({"OP_ID": "OP_INSTANCE_ACTIVATE_DISKS",
                        "instance_name": INST}).result == []
    assert cluster.run({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": INST}).status == \
        "success"
    assert storage_calls(cluster) == []
    refused = cluster.run(create_op(INST, node=N2, template="diskless",
                                    disks=[{"size": 8}]))
    assert refused.error == ("ParameterError", "the diskless template takes no disks")


# -- drbd on the fake mirror (tests/harness.py FakeMirrorManager) -------------------------------
N3 = node_name(3)


@pytest.fixture
def mirrored(tmp_path: Path) -> Iterator[InProcessCluster]:
    """Three nodes with drbd enabled: node2 primary, node3 secondary, node1 spare (master)."""
    with scratch_root(tmp_path) as root, InProcessCluster(
            root, nodes=3, disk_templates=("file", "diskless", "drbd")) as c:
        yield c


def add_drbd(cluster: InProcessCluster, **extra: object) -> None:
    outcome = cluster.run(create_op(INST, node=N2, template="drbd", snode=N3, **extra))
    assert outcome.status == "success", outcome.log


def nodes_of(cluster: InProcessCluster) -> tuple[str, list[str]]:
    inst = cluster.saved_config().find_instance(INST)
    names = {u: n.name for u, n in cluster.saved_config().nodes.items()}
    return names[inst.primary_node], [names[u] for u in inst.secondary_nodes]


def test_drbd_create_makes_both_copies_and_rolls_back_the_first(
        mirrored: InProcessCluster) -> None:
    mirrored.fail_once(N3, "blockdev_create")
    failed = mirrored.run(create_op(INST, node=N2, template="drbd", snode=N3))
    assert failed.status == "error"
    assert mirrored.nodes[N2].disk_files() == [] and mirrored.nodes[N3].disk_files() == []
    assert mirrored.saved_config().find_instance(INST) is None

    mirrored.clear_calls()
    add_drbd(mirrored)
    assert [m for _, m in storage_calls(mirrored) if m == "blockdev_create"] == \
        ["blockdev_create", "blockdev_create"]
    for node in (N2, N3):
        (data, gen) = mirrored.nodes[node].disk_files()
        assert gen == data + ".gen"
    assert nodes_of(mirrored) == (N2, [N3])


def test_drbd_start_and_failover_move_the_primary(mirrored: InProcessCluster) -> None:
    """(A live migration is not run here: noded finishes a migration on its default
    hypervisor, kvm, not on the fake one; the lab's test_drbd.py migrates.)"""
    add_drbd(mirrored, start=True)
    assert INST in mirrored.running(N2)

    mirrored.clear_calls()
    failover = mirrored.run({"OP_ID": "OP_INSTANCE_FAILOVER", "instance_name": INST})
    assert failover.status == "success", failover.log
    assert nodes_of(mirrored) == (N3, [N2])
    assert INST in mirrored.running(N3) and INST not in mirrored.running(N2)
    assert mirrored.saved_config().find_instance(INST).admin_state == "up"


def test_file_instances_neither_fail_over_nor_migrate(mirrored: InProcessCluster) -> None:
    assert mirrored.run(create_op(INST, node=N2)).status == "success"
    for op_id, what in (("OP_INSTANCE_FAILOVER", "failovers"),
                        ("OP_INSTANCE_MIGRATE", "migrations")):
        outcome = mirrored.run({"OP_ID": op_id, "instance_name": INST})
        assert outcome.error == ("OpPrereqError", f"instance's disk layout 'file' does not "
                                                  f"allow {what}")
    outcome = mirrored.run({"OP_ID": "OP_INSTANCE_REPLACE_DISKS", "instance_name": INST,
                            "mode": "replace_auto"})
    assert outcome.error is not None and "has no second copy to replace" in outcome.error[1]


def test_drbd_new_secondary(mirrored: InProcessCluster) -> None:
    add_drbd(mirrored)
    outcome = mirrored.run({"OP_ID": "OP_INSTANCE_REPLACE_DISKS", "instance_name": INST,
                            "mode": "replace_new_secondary", "remote_node": N1})
    assert outcome.status == "success", outcome.log
    assert nodes_of(mirrored) == (N2, [N1])
    assert mirrored.nodes[N3].disk_files() == []
    assert len(mirrored.nodes[N1].disk_files()) == 2


def test_convert_file_to_drbd_and_back(mirrored: InProcessCluster) -> None:
    assert mirrored.run(create_op(INST, node=N2)).status == "success"
    (file_disk,) = mirrored.nodes[N2].disk_files()

    to_drbd = mirrored.run({"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": INST,
                            "disk_template": "drbd", "remote_node": N3})
    assert to_drbd.status == "success", to_drbd.log
    inst = mirrored.saved_config().find_instance(INST)
    assert inst.disk_template == "drbd" and nodes_of(mirrored) == (N2, [N3])
    assert file_disk not in mirrored.nodes[N2].disk_files()
    assert len(mirrored.nodes[N3].disk_files()) == 2

    to_file = mirrored.run({"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": INST,
                            "disk_template": "file"})
    assert to_file.status == "success", to_file.log
    assert mirrored.saved_config().find_instance(INST).disk_template == "file"
    assert mirrored.nodes[N3].disk_files() == []
    assert len(mirrored.nodes[N2].disk_files()) == 1


def test_convert_to_drbd_rolls_back_when_the_secondary_refuses(
        mirrored: InProcessCluster) -> None:
    assert mirrored.run(create_op(INST, node=N2)).status == "success"
    before = mirrored.nodes[N2].disk_files()
    mirrored.fail_once(N3, "blockdev_create")
    outcome = mirrored.run({"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": INST,
                            "disk_template": "drbd", "remote_node": N3})
    assert outcome.status == "error"
    assert mirrored.saved_config().find_instance(INST).disk_template == "file"
    assert mirrored.nodes[N2].disk_files() == before
    assert mirrored.nodes[N3].disk_files() == []


def test_conversion_refusals_name_what_is_possible(mirrored: InProcessCluster) -> None:
    assert mirrored.run(create_op(INST, node=N2)).status == "success"
    outcome = mirrored.run({"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": INST,
                            "disk_template": "diskless"})
    assert outcome.error == ("OpPrereqError", "converting disk template file to diskless is "
                             "not supported; supported: file to drbd, plain to drbd, drbd to "
                             "file, drbd to plain")
    outcome = mirrored.run({"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": INST,
                            "disk_template": "drbd"})
    assert outcome.error == ("OpPrereqError",
                             "converting to drbd needs the secondary node (-n NODE)")


def test_drbd_remove_and_verify_disks(mirrored: InProcessCluster) -> None:
    add_drbd(mirrored)
    outcome = mirrored.run({"OP_ID": "OP_CLUSTER_VERIFY_DISKS"})
    assert outcome.status == "success", outcome.log
    removed = mirrored.run({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": INST})
    assert removed.status == "success", removed.log
    assert mirrored.nodes[N2].disk_files() == [] and mirrored.nodes[N3].disk_files() == []


def test_queries_only_read_mirrors_and_jobs_mark_the_secondary(
        mirrored: InProcessCluster) -> None:
    """gnt-instance list used to mark secondaries synced (two RPCs that wrote); a query now
    asks the primary's status only, and the jobs that know the mirror is in sync mark the
    secondary in one compare-and-set (verify-disks, run by the watcher, among them)."""
    from herd.logic.query import query_instances

    add_drbd(mirrored, start=True)
    mirrored.clear_calls()
    rows = mirrored.loop.run_until_complete(query_instances(mirrored.ctx, [INST]))
    assert rows and rows[0]["name"] == INST
    assert sorted({m for _, m in storage_calls(mirrored)}) == ["blockdev_sync_status"]
    writers = {"blockdev_mark_synced", "blockdev_sync_record", "blockdev_generation",
               "mirror_mark_synced", "mirror_generation"}
    assert not writers & {m for _, m in mirrored.all_calls()}

    secondary = mirrored.nodes[N3]
    gen_file = next(p for p in secondary.disk_files() if p.endswith(".gen"))
    mirrored.clear_calls()
    outcome = mirrored.run({"OP_ID": "OP_CLUSTER_VERIFY_DISKS"})
    assert outcome.status == "success", outcome.log
    calls = mirrored.all_calls()
    assert (N2, "blockdev_sync_record") in calls and (N3, "blockdev_mark_synced") in calls
    primary = mirrored.nodes[N2]
    pgen = json.loads((primary.paths.file_storage_dir / gen_file).read_text())["current"]
    after = json.loads((secondary.paths.file_storage_dir / gen_file).read_text())["current"]
    assert after == pgen  # adopted the primary's generation


# -- plain, and drbd over LVs (tests/harness.py FakeLvmNode: LVM's rules, no LVM) --------------
VG = "herdvg"
LVM_TEMPLATES = ("file", "diskless", "plain", "drbd")


@pytest.fixture
def lvm(tmp_path: Path) -> Iterator[InProcessCluster]:
    """Three nodes with a VG each (node3's holds only 32 MiB): node2 primary, node1 master."""
    with scratch_root(tmp_path) as root, InProcessCluster(
            root, nodes=3, disk_templates=LVM_TEMPLATES, vg=VG,
            vg_mib={N3: 32}) as c:
        yield c


def lvs(cluster: InProcessCluster, node: str) -> dict[str, bool]:
    """LV name -> active, on ``node``."""
    return {lv.name: lv.path is not None for lv in cluster.nodes[node].lvm.list_lvs()}


def set_template(cluster: InProcessCluster, template: str, snode: str | None = None) -> object:
    op = {"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": INST, "disk_template": template}
    if snode:
        op["remote_node"] = snode
    return cluster.run(op)


def test_plain_needs_the_vg_and_the_template_enabled(tmp_path: Path) -> None:
    with scratch_root(tmp_path) as root, InProcessCluster(
            root, nodes=1, disk_templates=("file", "plain")) as c:
        refused = c.run(create_op(INST, node=N1, template="plain"))
        assert refused.error == ("OpPrereqError", "disk template 'plain' needs the cluster's "
                                 "volume group: set one with 'gnt-cluster modify --vg-name VG'")
    with scratch_root(tmp_path) as root, InProcessCluster(root, nodes=1, vg=VG) as c:
        refused = c.run(create_op(INST, node=N1, template="plain"))
        assert refused.error == ("OpPrereqError", "disk template 'plain' is not enabled in "
                                 "this cluster; enabled: file, diskless")


def test_plain_lifecycle_one_lv_active_only_while_used(lvm: InProcessCluster) -> None:
    lvm.clear_calls()
    added = lvm.run(create_op(INST, node=N2, template="plain", start=True))
    assert added.status == "success", added.log
    inst = lvm.saved_config().find_instance(INST)
    disk = inst.disks[0]
    lv = f"{disk.uuid}_plain"
    assert disk.v1_logical_id(inst.primary_node) == [VG, lv] and disk.nodes == [inst.primary_node]
    assert lvs(lvm, N2) == {lv: True} and lvs(lvm, N1) == {} and lvs(lvm, N3) == {}
    assert storage_calls(lvm) == [(N2, "blockdev_create")]
    assert INST in lvm.running(N2)

    assert lvm.run({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": INST}).status == \
        "success"
    assert lvs(lvm, N2) == {lv: False}  # no loop device kept by a stopped instance
    act = lvm.run({"OP_ID": "OP_INSTANCE_ACTIVATE_DISKS", "instance_name": INST})
    assert act.status == "success" and act.result == [
        [N2, "disk/0", str(lvm.nodes[N2].lvm.dir / lv)]]
    assert lvs(lvm, N2) == {lv: True}
    assert lvm.run({"OP_ID": "OP_INSTANCE_DEACTIVATE_DISKS",
                    "instance_name": INST}).status == "success"
    assert lvs(lvm, N2) == {lv: False}

    lvm.nodes[N2].lvm.remove(lv)  # lost: recreate-disks makes it again
    start = lvm.run({"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": INST})
    assert start.error is not None and "recreate-disks" in start.error[1]
    assert lvm.run({"OP_ID": "OP_INSTANCE_RECREATE_DISKS",
                    "instance_name": INST}).status == "success"
    assert lvs(lvm, N2) == {lv: False}
    assert lvm.run({"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": INST}).status == "success"
    removed = lvm.run({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": INST})
    assert removed.status == "success", removed.log
    assert lvs(lvm, N2) == {}


def test_plain_that_does_not_fit_is_refused_before_anything_is_made(
        lvm: InProcessCluster) -> None:
    lvm.clear_calls()
    refused = lvm.run(create_op(INST, node=N3, template="plain",
                                disks=[{"size": 16}, {"size": 64}]))
    assert refused.error == ("OpPrereqError", "not enough free space in volume group herdvg "
                             f"on node {N3} for the disks of {INST}: needed 80 MiB, available "
                             "32 MiB")
    assert storage_calls(lvm) == [] and lvm.saved_config().find_instance(INST) is None
    # should the room go between check and execute: lvcreate refuses, nothing is left
    lvm.fail_once(N3, "blockdev_create", errors.StorageError(
        'cannot create LV herdvg/x (16 MiB): Volume group "herdvg" has insufficient free '
        "space"), after=True)
    refused = lvm.run(create_op(INST, node=N3, template="plain", disks=[{"size": 16}]))
    assert refused.status == "error" and "insufficient free space" in refused.error[1]
    assert lvs(lvm, N3) == {} and lvm.saved_config().find_instance(INST) is None


def test_new_drbd_disks_keep_their_data_in_lvs(lvm: InProcessCluster) -> None:
    added = lvm.run(create_op(INST, node=N2, template="drbd", snode=N1))
    assert added.status == "success", added.log
    inst = lvm.saved_config().find_instance(INST)
    uuid = inst.disks[0].uuid
    assert inst.disks[0].logical_id == DrbdId(
        inst.disks[0].logical_id.port, data=LvId(VG, f"{uuid}_drbd"),
        meta=f"mirror-meta/{uuid}.gen")
    for node in (N1, N2):
        assert lvs(lvm, node) == {f"{uuid}_drbd": False}
        assert (lvm.nodes[node].paths.data_dir / "mirror-meta" / f"{uuid}.gen").is_file()
        assert lvm.nodes[node].disk_files() == []  # nothing in file storage
    verify = lvm.run({"OP_ID": "OP_CLUSTER_VERIFY"})  # (node3's small VG fails N+1)
    assert not [ln for ln in verify.log if "ERROR" in ln and "N+1" not in ln
                and "mirror again" not in ln], verify.log
    removed = lvm.run({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": INST})
    assert removed.status == "success", removed.log
    for node in (N1, N2):
        assert lvs(lvm, node) == {}
        assert not list((lvm.nodes[node].paths.data_dir / "mirror-meta").glob("*"))


def test_convert_plain_to_drbd_and_back_keeps_the_data(lvm: InProcessCluster) -> None:
    assert lvm.run(create_op(INST, node=N2, template="plain")).status == "success"
    uuid = lvm.saved_config().find_instance(INST).disks[0].uuid
    with open(lvm.nodes[N2].lvm.dir / f"{uuid}_plain", "r+b") as handle:
        handle.write(b"HERD-DATA")

    to_drbd = set_template(lvm, "drbd", N1)
    assert to_drbd.status == "success", to_drbd.log
    assert nodes_of(lvm) == (N2, [N1])
    assert lvs(lvm, N2) == {f"{uuid}_drbd": False} and lvs(lvm, N1) == {f"{uuid}_drbd": False}
    assert (lvm.nodes[N2].lvm.dir / f"{uuid}_drbd").read_bytes()[:9] == b"HERD-DATA"
    failover = lvm.run({"OP_ID": "OP_INSTANCE_FAILOVER", "instance_name": INST})
    assert failover.status == "success", failover.log
    assert nodes_of(lvm) == (N1, [N2])
    # the fake mirror copies no data: write on the new primary as its guest would
    with open(lvm.nodes[N1].lvm.dir / f"{uuid}_drbd", "r+b") as handle:
        handle.write(b"HERD-MORE")

    to_plain = set_template(lvm, "plain")
    assert to_plain.status == "success", to_plain.log
    inst = lvm.saved_config().find_instance(INST)
    assert inst.disk_template == "plain" and inst.disks[0].logical_id == LvId(VG, f"{uuid}_plain")
    assert lvs(lvm, N2) == {}  # the old secondary keeps nothing
    assert lvs(lvm, N1) == {f"{uuid}_plain": False}
    assert (lvm.nodes[N1].lvm.dir / f"{uuid}_plain").read_bytes()[:9] == b"HERD-MORE"
    for node in (N1, N2):
        assert not list((lvm.nodes[node].paths.data_dir / "mirror-meta").glob("*"))


def test_convert_to_drbd_on_a_small_secondary_vg_leaves_it_as_it_was(
        lvm: InProcessCluster) -> None:
    assert lvm.run(create_op(INST, node=N2, template="plain")).status == "success"
    before = lvm.saved_config().find_instance(INST)
    plain_lv = {f"{before.disks[0].uuid}_plain": False}
    refused = set_template(lvm, "drbd", N3)  # node3's VG has 32 MiB, the disk 64
    assert refused.error == ("OpPrereqError", "not enough free space in volume group herdvg "
                             f"on node {N3} for the drbd disks of {INST}: needed 64 MiB, "
                             "available 32 MiB")
    # half-way: the primary made its LV, the secondary's lvcreate fails (its room went)
    lvm.fail_once(N1, "blockdev_create", errors.StorageError(
        'cannot create LV herdvg/x (64 MiB): Volume group "herdvg" has insufficient free '
        "space"))
    outcome = set_template(lvm, "drbd", N1)
    assert outcome.status == "error" and "insufficient free space" in outcome.error[1]
    assert lvm.saved_config().find_instance(INST).to_dict() == before.to_dict()
    assert lvs(lvm, N2) == plain_lv and lvs(lvm, N1) == {} and lvs(lvm, N3) == {}
    for node in (N1, N2, N3):
        assert not list((lvm.nodes[node].paths.data_dir / "mirror-meta").glob("*"))
    # and the conversion then works, with the instance's data
    assert set_template(lvm, "drbd", N1).status == "success"


def test_the_vg_cannot_change_while_drbd_disks_live_in_it(lvm: InProcessCluster) -> None:
    assert lvm.run(create_op(INST, node=N2, template="drbd", snode=N1)).status == "success"
    for vg in ("", "othervg"):
        refused = lvm.run({"OP_ID": "OP_CLUSTER_SET_PARAMS", "vg_name": vg,
                           "enabled_disk_templates": ["drbd", "file"]})
        assert refused.error == ("OpPrereqError", "cannot change the volume group: "
                                 f"instance(s) {INST} keep disks in {VG}")
    assert lvm.saved_config().cluster.volume_group_name == VG
