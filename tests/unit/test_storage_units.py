"""The cluster's volume group and node storage units (issue 11, item 3 without the plain
template): the pure rules (herd/logic/storage_units.py, herd/storage/node_vg.py) and the logical
units on the in-process cluster, whose nodes have no volume group (an empty ``lvm-devices``
file, so no LVM command runs; the real LVM path is the lab's, tests/lab/test_lvm_storage.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from herd import errors
from herd.config.facts import facts_from_config
from herd.logic import storage_units as su
from herd.objects import Cluster, ConfigData, Disk, Instance, Node
from herd.storage import node_vg
from herd.storage.lvm import MIB, parse_vg
from tests.harness import InProcessCluster, node_name, scratch_root

DATA = Path(__file__).parent / "data" / "lvm"
N1, N2 = node_name(1), node_name(2)


# -- pure rules --------------------------------------------------------------------------------
def test_plain_needs_a_volume_group_and_drbd_does_not() -> None:
    assert su.check_enabled_templates(["plain", "drbd"], "herdvg") == ["plain", "drbd"]
    assert su.check_enabled_templates(["drbd", "file"], "") == ["drbd", "file"]
    with pytest.raises(errors.ParameterError,
                       match=r"^disk template\(s\) plain need a volume group: give --vg-name"):
        su.check_enabled_templates(["file", "plain"], "")
    with pytest.raises(errors.ParameterError,
                       match=r"^invalid disk templates rbd: allowed are ") as refused:
        su.check_enabled_templates(["rbd"], "herdvg")
    allowed = str(refused.value.message).split("allowed are ")[1].split(", ")
    assert sorted(allowed) == ["diskless", "drbd", "file", "plain"]  # plain once, in any order


def test_vg_names_and_storage_types_are_checked_with_what_is_allowed() -> None:
    assert su.check_vg_name("") == "" and su.check_vg_name("herdvg") == "herdvg"
    with pytest.raises(errors.OpPrereqError, match="^cannot disable the volume group: disk "
                                                   r"template\(s\) plain are enabled"):
        su.check_vg_disable(["file", "plain"])
    with pytest.raises(errors.ParameterError, match=r"^invalid LVM volume group name 'a b'"):
        su.check_vg_name("a b")
    assert su.check_storage_type(None, "herdvg") == "lvm-vg"
    assert su.check_storage_type(None, "") == "file"
    assert su.check_storage_type("file", "herdvg") == "file"
    with pytest.raises(errors.ParameterError,
                       match=r"^invalid storage type 'lvm-pv' \(a Ganeti type Herd does not "
                             r"have\): allowed are lvm-vg, file$"):
        su.check_storage_type("lvm-pv", "herdvg")
    with pytest.raises(errors.ParameterError, match=r"^unknown storage field.s. bogus: allowed"):
        su.check_storage_fields(["name", "bogus"])


def test_storage_rows_follow_the_fields_in_node_and_name_order() -> None:
    units = {"node2": [{"name": "herdvg", "size": 1020, "used": 20, "free": 1000,
                        "allocatable": True}],
             "node1": [{"name": "herdvg", "size": 1020, "used": 0, "free": 1020,
                        "allocatable": True}]}
    assert su.storage_rows(units, "lvm-vg", ["node", "type", "name", "free"]) == [
        ["node1", "lvm-vg", "herdvg", 1020], ["node2", "lvm-vg", "herdvg", 1000]]
    assert su.storage_rows(units, "lvm-vg", ["node"], name="other") == []


def _config_with_lv_disk() -> tuple[ConfigData, str]:
    node = Node(name=N1, primary_ip="192.0.2.1")
    disk = Disk(size=64, dev_type="file", logical_id=["loop", "i/u.file.disk0"],
                nodes=[node.uuid], uuid="3f2c")
    inst = Instance(name="inst1", primary_node=node.uuid, disk_template="plain",
                    disks=[disk])
    cfg = ConfigData(cluster=Cluster(volume_group_name="herdvg"), nodes={node.uuid: node},
                     instances={inst.uuid: inst})
    return cfg, node.uuid


def test_lvs_of_disks_are_owned_and_others_are_orphans() -> None:
    cfg, node = _config_with_lv_disk()
    owners = su.lv_owners(cfg, node, "herdvg")
    assert owners == {("herdvg", "3f2c_plain"): "inst1"}
    lvs = [{"vg": "herdvg", "lv": "3f2c_plain", "size": 64 * MIB, "pvs": ["/dev/loop7"]},
           {"vg": "herdvg", "lv": "stray", "size": 8 * MIB, "pvs": ["/dev/loop7"]}]
    assert su.lv_volume_rows(N1, lvs, owners) == [
        {"node": N1, "phys": "/dev/loop7", "vg": "herdvg", "name": "3f2c_plain", "size": 64,
         "instance": "inst1"},
        {"node": N1, "phys": "/dev/loop7", "vg": "herdvg", "name": "stray", "size": 8,
         "instance": "-"}]
    assert su.orphan_lvs(lvs, owners) == [
        "volume herdvg/stray is unknown (an LV of 8 MiB no instance owns)"]
    assert su.orphan_lvs(lvs, owners, reserved=["herdvg/st.*"]) == []
    assert len(su.orphan_lvs(lvs, owners, reserved=["stray"])) == 1  # whole VG/LV names only
    assert su.check_reserved_lvs(["herdvg/root", ""]) == ["herdvg/root"]
    with pytest.raises(errors.ParameterError, match=r"^invalid reserved LV pattern '\(': "):
        su.check_reserved_lvs(["("])
    assert su.lv_owners(cfg, "another-node", "herdvg") == {}


def test_an_lv_a_disk_names_is_missing_when_the_node_lacks_it() -> None:
    cfg, node = _config_with_lv_disk()
    disk = next(iter(cfg.instances.values())).disks[0]
    disk.logical_id = SimpleNamespace(vg="herdvg", lv="3f2c_plain")  # as a typed LV id will
    assert su.missing_lvs(cfg, node, [{"vg": "herdvg", "lv": "3f2c_plain"}]) == []
    assert su.missing_lvs(cfg, node, []) == [
        f"instance inst1: disk/0: volume herdvg/3f2c_plain is missing on node {N1}"]
    mirror = SimpleNamespace(data=SimpleNamespace(vg=None, lv="3f2c_drbd"))  # vg: the cluster's
    disk.logical_id = mirror
    assert su.lv_owners(cfg, node, "herdvg")[("herdvg", "3f2c_drbd")] == "inst1"


def test_vg_n_plus_one_asks_room_for_a_new_copy_off_the_instances_nodes() -> None:
    nodes = [Node(name=node_name(i), primary_ip=f"192.0.2.{i}") for i in (1, 2, 3)]
    a, b, c = (n.uuid for n in nodes)
    disk = Disk(size=100, dev_type="drbd", nodes=[a, b], uuid="d1")
    disk.logical_id = SimpleNamespace(data=SimpleNamespace(vg="herdvg", lv="d1_drbd"))
    inst = Instance(name="db", primary_node=a, disk_template="drbd", disks=[disk])
    cfg = ConfigData(cluster=Cluster(volume_group_name="herdvg"),
                     nodes={n.uuid: n for n in nodes}, instances={inst.uuid: inst})
    assert su.vg_n_plus_one(cfg, {a: 0, b: 0, c: 100}) == []  # node3 takes the new copy
    assert su.vg_n_plus_one(cfg, {a: 500, b: 500, c: 99}) == [
        f"node {node_name(i)}: not enough free space in volume group herdvg on the other nodes "
        f"to mirror again the disks of db should it fail (100 MiB needed, {free} MiB free)"
        for i, free in ((1, 599), (2, 599))]  # room only on the node it already uses


def test_the_facts_file_carries_the_volume_group() -> None:
    cfg, node = _config_with_lv_disk()
    cfg.cluster.master_node = node
    assert facts_from_config(cfg)["volume_group_name"] == "herdvg"


def test_node_devices_file_and_pvs_discovery_are_parsed(tmp_path: Path) -> None:
    assert node_vg.parse_devices("# the node's PVs\n/dev/sdb\n\n/dev/sdc  # new\n") == \
        ["/dev/sdb", "/dev/sdc"]
    text = ('{"report": [{"pv": [{"pv_name": "/dev/sdc", "vg_name": "herdvg"}, '
            '{"pv_name": "/dev/sda2", "vg_name": "system"}, '
            '{"pv_name": "/dev/sdb", "vg_name": "herdvg"}]}]}')
    assert node_vg.pvs_of(text, "herdvg") == ["/dev/sdb", "/dev/sdc"]
    vg = parse_vg((DATA / "pvs.json").read_text(), "herdvg")
    assert vg is not None
    summary = node_vg.VgSummary.of(vg, "loop", "no device-mapper").to_dict()
    assert summary == {"vg_name": "herdvg", "vg_size": 60, "vg_free": 4,
                       "pvs": [{"name": "/dev/loop0", "size": 60, "free": 4}],
                       "lvm_activation": {"mode": "loop", "reason": "no device-mapper"}}


# -- logical units on nodes without the volume group -------------------------------------------
@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[InProcessCluster]:
    with scratch_root(tmp_path) as root, InProcessCluster(root, nodes=2) as c:
        for node in c.nodes.values():  # no PV on these nodes: no LVM command runs
            node_vg.write_devices(node.paths, [])
        yield c


def op(op_id: str, **fields: Any) -> dict[str, Any]:
    return {"OP_ID": op_id, **fields}


def test_modify_refuses_a_volume_group_a_node_lacks(cluster: InProcessCluster) -> None:
    refused = cluster.run(op("OP_CLUSTER_SET_PARAMS", vg_name="herdvg"))
    devices = cluster.nodes[N1].paths.data_dir / "lvm-devices"
    assert refused.error == ("OpPrereqError", f"volume group herdvg is not usable on node {N1}: "
                             f"volume group herdvg does not exist on this node (no physical "
                             f"volume listed in {devices})")
    assert cluster.saved_config().cluster.volume_group_name == ""
    plain = cluster.run(op("OP_CLUSTER_SET_PARAMS", enabled_disk_templates=["file", "plain"]))
    assert plain.error == ("ParameterError", "disk template(s) plain need a volume group: "
                           "give --vg-name VG (or leave them out)")


def test_verify_reports_a_node_without_the_volume_group(cluster: InProcessCluster) -> None:
    cfg = cluster.store.data
    cfg.cluster.volume_group_name = "herdvg"  # as if set while the nodes had it
    cluster.wait(cluster.store.save())
    outcome = cluster.run(op("OP_CLUSTER_VERIFY"))
    assert outcome.result is False
    lines = [ln for ln in outcome.log if "volume group herdvg" in ln]
    assert len(lines) == 2 and lines[0].startswith(
        f"  - ERROR: node {N1}: volume group herdvg is not usable: volume group herdvg does "
        "not exist on this node"), lines
    info = cluster.wait(cluster.nodes[N2].service.node_info())
    assert info["vg_name"] == "herdvg" and info["storage_total"] is None
    assert info["file_storage_total"] > 0  # the file storage figures stay
    # the empty string disables LVM again (nothing enabled needs it)
    assert cluster.run(op("OP_CLUSTER_SET_PARAMS", vg_name="")).status == "success"
    assert cluster.run(op("OP_CLUSTER_VERIFY")).result is True


def test_the_device_factory_finds_the_cluster_vg_on_first_use(
        cluster: InProcessCluster) -> None:
    service = cluster.nodes[N2].service
    with pytest.raises(errors.StorageError, match=r"^volume group herdvg is not configured"):
        service.devices.lvm_node("herdvg")  # not the cluster's VG (it has none)
    cfg = cluster.store.data
    cfg.cluster.volume_group_name = "herdvg"
    cluster.wait(cluster.store.save())
    with pytest.raises(errors.StorageError, match=r"^volume group herdvg does not exist on this "
                                                  r"node"):
        service.devices.lvm_node("herdvg")  # the empty devices file
    node_vg.write_devices(cluster.nodes[N2].paths, ["/dev/loop99"])
    assert service.devices.lvm_node("herdvg").devices == ("/dev/loop99",)  # no LVM run yet


def test_query_storage_gives_ganetis_rows_of_file_storage(cluster: InProcessCluster) -> None:
    fields = ["node", "type", "name", "size", "used", "free", "allocatable"]
    outcome = cluster.run(op("OP_NODE_QUERY_STORAGE", nodes=[N2], output_fields=fields))
    ((row,),) = [outcome.result]
    assert row[:3] == [N2, "file", str(cluster.nodes[N2].paths.file_storage_dir)]
    assert all(isinstance(v, int) for v in row[3:6]) and row[3] == row[4] + row[5]
    assert row[6] is True
    assert cluster.run(op("OP_NODE_QUERY_STORAGE", output_fields=["node"],
                          storage_type="lvm-vg")).result == []  # no VG: no units
    bad = cluster.run(op("OP_NODE_QUERY_STORAGE", output_fields=["node"],
                         storage_type="lvm-pv"))
    assert bad.error is not None and bad.error[0] == "ParameterError"
