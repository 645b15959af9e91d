"""Disk templates as objects (herd.logic.templates): the registry, the capabilities LUs ask
instead of comparing names, and the file/diskless templates' create, remove, activate and
recreate run on the in-process cluster (tests/harness.py), including their rollbacks and the
node RPCs each LU costs (so a refactoring cannot quietly add round trips).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from herd import errors
from herd.logic import templates
from herd.logic.templates import Claim, NewDisk, by_name, template_of
from herd.objects import Instance
from herd.objects.disk_ids import DrbdId, FileId
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
    for name in ("diskless", "file", "drbd"):
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
    ("drbd", 2, True, True, {"file"}),
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
    assert fdisk.logical_id == FileId("loop", f"new.example.com/{fdisk.uuid}.file.disk0")

    d0, d1 = by_name("drbd").new_disks(cfg, inst, [NewDisk(64), NewDisk(32, "ro")], "p", "s",
                                       claim)
    assert (d0.nodes, d1.nodes, d1.mode) == (["p", "s"], ["p", "s"], "ro")
    assert isinstance(d0.logical_id, DrbdId) and isinstance(d1.logical_id, DrbdId)
    assert d0.logical_id.port != d1.logical_id.port
    assert d1.logical_id.path == f"new.example.com/{d1.uuid}.drbd.disk1"
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
