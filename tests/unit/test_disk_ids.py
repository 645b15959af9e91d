"""Typed disk ids (herd.objects.disk_ids) and the one source of a disk's nodes.

The stored form stays the v1 lists: ``data/config_v1.json`` was written by the code before
typed ids (commit f38e5f1: file disks, a drbd instance after a failover, one never moved, a
diskless one, and a ``plain`` disk, which later versions parse as an LV id), and must load
and save byte for byte. In memory a drbd id names no node; the stored ``[pnode, snode, ...]``
is derived from ``Instance.primary_node`` and ``Disk.nodes``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from herd.config.shape import config_problem
from herd.logic import drbd, hooks
from herd.objects import ConfigData, Disk, Instance
from herd.objects.disk_ids import (
    FILE_DRIVER,
    DrbdId,
    FileId,
    LvId,
    RawId,
    display,
    parse,
    to_v1,
    v1_nodes,
)

SAMPLE = Path(__file__).parent / "data" / "config_v1.json"
P, S, T = "n-p", "n-s", "n-t"
FILE_V1 = ["loop", "web1/3f2c.file.disk0"]
DRBD_V1 = [P, S, 11000, "db1/3f2c.drbd.disk0"]


def sample_text() -> str:
    return SAMPLE.read_text()


def dumps(data: Any) -> str:
    """As the config store writes (herd.fileutil.atomic_write_json)."""
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


# -- every shape ------------------------------------------------------------------------------
def test_file_ids_parse_to_driver_and_path_and_write_the_same_list() -> None:
    ident = parse("file", FILE_V1)
    assert ident == FileId(driver="loop", path="web1/3f2c.file.disk0")
    assert to_v1(ident) == FILE_V1
    assert ident.file_path() == "web1/3f2c.file.disk0"
    assert ident.hook_vars() == {"DRIVER": "loop", "ID": "web1/3f2c.file.disk0"}
    assert display("file", FILE_V1) == "loop/web1/3f2c.file.disk0"
    assert FILE_DRIVER == "loop"


def test_drbd_ids_hold_no_nodes_and_take_them_when_written() -> None:
    ident = parse("drbd", DRBD_V1)
    assert ident == DrbdId(port=11000, path="db1/3f2c.drbd.disk0")
    assert ident == parse("drbd", [T, P, 11000, "db1/3f2c.drbd.disk0"])  # nodes are not in it
    assert to_v1(ident, P, S) == DRBD_V1
    assert to_v1(ident, S, P) == [S, P, 11000, "db1/3f2c.drbd.disk0"]
    assert ident.file_path() == "db1/3f2c.drbd.disk0"
    assert ident.hook_vars(P, S) == {"PNODE": P, "SNODE": S, "PORT": 11000}
    assert display("drbd", DRBD_V1) == f"{P}/{S}/11000/db1/3f2c.drbd.disk0"
    assert v1_nodes("drbd", DRBD_V1) == [P, S]
    with pytest.raises(ValueError, match="needs a primary and a secondary"):
        to_v1(ident, P, None)


@pytest.mark.parametrize(("dev_type", "stored"), [
    ("plain", ["xenvg"]),                      # too short
    ("sharedfile", ["loop", "x"]),             # a template this version does not parse
    ("file", []),                              # no id at all
    ("file", ["loop"]),                        # too short
    ("drbd", [P, S, "11000", "x.drbd.disk0"]),  # a port that is not a number
    ("drbd", [P, S, 11000]),                   # no path
    ("diskless", []),
])
def test_other_shapes_are_kept_verbatim(dev_type: str, stored: list[Any]) -> None:
    ident = parse(dev_type, stored)
    assert isinstance(ident, RawId)
    assert to_v1(ident, P, S) == stored
    assert ident.file_path() is None and ident.hook_vars(P, S) == {}
    assert display(dev_type, stored) == "/".join(str(v) for v in stored)


def test_lv_ids_plain_and_drbd_over_lvm() -> None:
    plain = parse("plain", ["herdvg", "3f2c_plain"])
    assert plain == LvId("herdvg", "3f2c_plain") and to_v1(plain) == ["herdvg", "3f2c_plain"]
    assert plain.file_path() is None and plain.hook_vars() == {"VG": "herdvg", "ID": "3f2c_plain"}
    assert display("plain", ["herdvg", "3f2c_plain"]) == "herdvg/3f2c_plain"
    stored = [P, S, 11001, ["herdvg", "3f2c_drbd"], "mirror-meta/3f2c.gen"]
    ident = parse("drbd", stored)
    assert ident == DrbdId(11001, data=LvId("herdvg", "3f2c_drbd"), meta="mirror-meta/3f2c.gen")
    assert to_v1(ident, P, S) == stored and ident.file_path() is None
    assert to_v1(ident, S, P) == [S, P, *stored[2:]] and v1_nodes("drbd", stored) == [P, S]
    assert ident.hook_vars(P, S) == {"PNODE": P, "SNODE": S, "PORT": 11001,
                                     "DATA_VG": "herdvg", "DATA_ID": "3f2c_drbd"}
    assert display("drbd", stored) == f"{P}/{S}/11001/herdvg/3f2c_drbd"
    with pytest.raises(ValueError, match=r"in a file \(path\) or an LV"):
        DrbdId(11001, data=LvId("herdvg", "x"))  # an LV needs its record's place
    assert isinstance(parse("drbd", [P, S, 11001, ["herdvg"], "m"]), RawId)


def test_a_typed_id_is_parsed_once() -> None:
    ident = DrbdId(11000, "x")
    assert parse("drbd", ident) is ident
    disk = Disk(dev_type="drbd", nodes=[P, S], logical_id=DRBD_V1)
    assert disk.logical_id == DrbdId(11000, "db1/3f2c.drbd.disk0")
    assert disk.copy().logical_id is not disk.logical_id
    assert disk.copy().logical_id == disk.logical_id
    assert Disk().logical_id == RawId(())


# -- the stored form, byte for byte -----------------------------------------------------------
def test_a_v1_config_loads_and_saves_byte_for_byte() -> None:
    raw = json.loads(sample_text())
    assert config_problem(raw) is None
    cfg = ConfigData.from_dict(raw)
    kinds = {d.uuid: type(d.logical_id) for i in cfg.instances.values() for d in i.disks}
    assert kinds == {"d-file-0": FileId, "d-file-1": FileId, "d-drbd-0": DrbdId,
                     "d-drbd-1": DrbdId, "d-drbd2-0": DrbdId, "d-plain-0": LvId}
    assert dumps(cfg.to_dict()) == sample_text()
    assert dumps(ConfigData.from_dict(cfg.to_dict()).to_dict()) == sample_text()


def test_node_rpc_and_query_rows_get_the_v1_lists() -> None:
    from herd.logic.specs import disk_dict

    cfg = ConfigData.from_dict(json.loads(sample_text()))
    inst = cfg.instances["i-drbd"]  # failed over: primary n-0003
    assert disk_dict(inst, 0)["logical_id"] == ["n-0003", "n-0001", 11000,
                                                "db1.example.com/d-drbd-0.drbd.disk0"]
    rows = inst.disk_dicts()
    assert [r["logical_id"][:2] for r in rows] == [["n-0003", "n-0001"]] * 2
    assert [r["nodes"] for r in rows] == [["n-0003", "n-0001"]] * 2


# -- one source of nodes ----------------------------------------------------------------------
def drbd_instance() -> Instance:
    return Instance(name="db1", primary_node=P, disk_template="drbd",
                    disks=[Disk(dev_type="drbd", nodes=[P, S], size=64,
                                logical_id=[P, S, 11000 + i, f"db1/d{i}.drbd.disk{i}"])
                           for i in range(2)])


def test_swap_primary_sets_only_the_primary_and_the_stored_lists_follow() -> None:
    inst = drbd_instance()
    nodes_before = [list(d.nodes) for d in inst.disks]
    ids_before = [d.logical_id for d in inst.disks]
    inst.swap_primary()
    assert inst.primary_node == S and inst.secondary_nodes == [P]
    assert [d.nodes for d in inst.disks] == nodes_before  # untouched in memory
    assert [d.logical_id for d in inst.disks] == ids_before
    stored = inst.to_dict()["disks"]
    assert [d["logical_id"] for d in stored] == [[S, P, 11000, "db1/d0.drbd.disk0"],
                                                [S, P, 11001, "db1/d1.drbd.disk1"]]
    assert [d["nodes"] for d in stored] == [[S, P]] * 2  # what the old swap wrote
    inst.swap_primary()
    assert inst.to_dict()["disks"][0]["logical_id"][:2] == [P, S]


def test_replace_node_moves_the_secondary_and_refuses_the_primary() -> None:
    inst = drbd_instance()
    inst.replace_node(S, T)
    assert inst.secondary_nodes == [T]
    assert [d["logical_id"][:2] for d in inst.to_dict()["disks"]] == [[P, T]] * 2
    inst.replace_node(T, S)  # the undo of a failed rebuild
    assert [d["logical_id"][:2] for d in inst.to_dict()["disks"]] == [[P, S]] * 2
    assert [d.nodes for d in inst.disks] == [[P, S]] * 2
    with pytest.raises(ValueError, match="swap_primary"):
        inst.replace_node(P, T)


def test_the_mirror_peer_comes_from_the_disks_nodes() -> None:
    from herd.objects import Cluster, Node, NodeGroup

    group = NodeGroup(name="default")
    nodes = {u: Node(uuid=u, name=f"{u}.example.com", primary_ip=f"192.0.2.{i}",
                     secondary_ip=f"198.51.100.{i}", group=group.uuid)
             for i, u in enumerate((P, S, T), start=1)}
    inst = drbd_instance()
    cfg = ConfigData(cluster=Cluster(master_node=P), nodegroups={group.uuid: group},
                     nodes=nodes, instances={inst.uuid: inst})
    assert drbd.mirror_disk(cfg, inst, 0, P)["peer_ip"] == "198.51.100.2"
    assert drbd.mirror_disk(cfg, inst, 0, S)["peer_ip"] == "198.51.100.1"
    inst.replace_node(S, T)
    primary_side = drbd.mirror_disk(cfg, inst, 1, P)
    assert (primary_side["peer_ip"], primary_side["port"], primary_side["name"]) == (
        "198.51.100.3", 11001, "db1/d1.drbd.disk1")
    assert drbd.mirror_disk(cfg, inst, 1, T)["peer_ip"] == "198.51.100.1"
    assert drbd.used_ports(cfg) == {11000, 11001}


def test_hook_variables_follow_the_primary() -> None:
    from herd.objects import Cluster, Node, NodeGroup

    group = NodeGroup(name="default")
    nodes = {u: Node(uuid=u, name=f"{u}.example.com", group=group.uuid) for u in (P, S)}
    inst = drbd_instance()
    cfg = ConfigData(cluster=Cluster(master_node=P), nodegroups={group.uuid: group},
                     nodes=nodes, instances={inst.uuid: inst})
    env = hooks.instance_env(cfg, inst, {})
    assert (env["INSTANCE_DISK0_PNODE"], env["INSTANCE_DISK0_SNODE"],
            env["INSTANCE_DISK0_PORT"]) == (P, S, 11000)
    assert "INSTANCE_DISK0_ID" not in env
    inst.swap_primary()
    env = hooks.instance_env(cfg, inst, {})
    assert (env["INSTANCE_DISK1_PNODE"], env["INSTANCE_DISK1_SNODE"]) == (S, P)


# -- the shape check --------------------------------------------------------------------------
def _instance(raw: dict[str, Any], uuid: str) -> dict[str, Any]:
    inst: dict[str, Any] = raw["instances"][uuid]
    return inst


@pytest.mark.parametrize(("change", "fragment"), [
    (lambda raw: _instance(raw, "i-drbd")["disks"][0]["logical_id"].__setitem__(0, "n-0001"),
     "disk/0 of instance db1.example.com: its id names the nodes ['n-0001', 'n-0001']"),
    (lambda raw: _instance(raw, "i-drbd")["disks"][1]["logical_id"].__setitem__(1, "n-0002"),
     "but the instance's primary is 'n-0003'"),
    (lambda raw: _instance(raw, "i-drbd").__setitem__("primary_node", "n-0002"),
     "disk/0 of instance db1.example.com has no copy on the primary node 'n-0002'"),
    (lambda raw: _instance(raw, "i-file")["disks"][1].__setitem__("nodes", ["n-0001"]),
     "disk/1 of instance web1.example.com has no copy on the primary node"),
    (lambda raw: _instance(raw, "i-drbd2")["disks"][0].__setitem__("nodes", ["n-0001"]),
     "its id names the nodes ['n-0001', 'n-0002']"),
    (lambda raw: _instance(raw, "i-file")["disks"][0].__setitem__("logical_id", "loop"),
     "logical_id is string, expected a list"),
])
def test_disks_that_disagree_with_their_instance_are_refused(change: Any,
                                                              fragment: str) -> None:
    raw = copy.deepcopy(json.loads(sample_text()))
    change(raw)
    problem = config_problem(raw)
    assert problem is not None and fragment in problem, problem


def test_a_diskless_instance_needs_no_disk_nodes() -> None:
    raw = json.loads(sample_text())
    inst = _instance(raw, "i-none")
    inst["disks"] = [{"size": 64, "nodes": []}]  # as test_config_shape's good config has
    assert config_problem(raw) is None
