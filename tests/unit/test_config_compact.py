"""Config objects load fast and stay small (issue 17 item 3): slotted objects, converters and
shape checks computed once per class (never per object), no cyclic collection while a config
is built, and still the same stored form for every object kind (v1 sample included)."""

from __future__ import annotations

import copy
import dataclasses
import gc
import json
from pathlib import Path
from typing import Any

import pytest

from herd.config import layout, shape
from herd.objects import Cluster, ConfigData, Disk, Instance, Nic, Node, NodeGroup, base
from herd.objects.disk_ids import DrbdId, FileId, LvId, RawId

SAMPLE = Path(__file__).parent / "data" / "config_v1.json"
KINDS = (Cluster, NodeGroup, Node, Instance, Disk, Nic)


def every_kind() -> ConfigData:
    group = NodeGroup(name="g1", beparams={"vcpus": 2}, hvparams={"kvm": {"acpi": False}},
                      tags=["t"])
    n1 = Node(name="n1.example.com", primary_ip="192.0.2.1", group=group.uuid, drained=True)
    n2 = Node(name="n2.example.com", primary_ip="192.0.2.2", group=group.uuid,
              ndparams={"ssh_port": 2222})
    disks = [Disk(size=64, dev_type="file", logical_id=FileId("loop", "i1/d0"), nodes=[n1.uuid]),
             Disk(size=64, dev_type="plain", logical_id=LvId("vg", "lv0"), nodes=[n1.uuid]),
             Disk(size=64, dev_type="drbd", logical_id=DrbdId(11000, "i1/d2"),
                  nodes=[n1.uuid, n2.uuid], name="data"),
             Disk(size=64, dev_type="drbd", logical_id=DrbdId(11001, data=LvId("vg", "lv3"),
                                                              meta="m/3"),
                  nodes=[n1.uuid, n2.uuid]),
             Disk(size=64, dev_type="blockdev", logical_id=RawId(("manual", "/dev/x")),
                  nodes=[n1.uuid], params={"k": 1})]
    inst = Instance(name="i1.example.com", primary_node=n1.uuid, os="busybox",
                    disk_template="drbd", disks=disks,
                    nics=[Nic(mac="aa:00:00:00:00:01", ip="192.0.2.9", network="net1",
                              nicparams={"link": "br1"})],
                    beparams={"maxmem": 256}, network_port=12000, tags=["a", "b"])
    cluster = Cluster(cluster_name="c.example.com", master_node=n1.uuid,
                      access_grants=[{"role": "viewer", "subject": "ann", "path": "/"}],
                      access_groups={"ops": ["ann"]})
    return ConfigData(cluster=cluster, nodegroups={group.uuid: group},
                      nodes={n1.uuid: n1, n2.uuid: n2}, instances={inst.uuid: inst},
                      serial_no=3)


def test_every_kind_is_slotted_and_round_trips_through_json() -> None:
    data = every_kind()
    for kind in KINDS:
        assert "__slots__" in kind.__dict__ and not hasattr(kind(), "__dict__"), kind
    raw = json.loads(json.dumps(data.to_dict()))
    back = ConfigData.from_dict(raw)
    assert back == data and back.to_dict() == raw
    inst = next(iter(back.instances.values()))
    assert [type(d.logical_id) for d in inst.disks] == [FileId, LvId, DrbdId, DrbdId, RawId]
    for obj in (back.cluster, *back.nodegroups.values(), *back.nodes.values(), inst,
                *inst.disks, *inst.nics):
        assert type(obj).from_dict(json.loads(json.dumps(obj.to_dict()))) == obj
        assert obj.copy() == obj and obj.copy() is not obj
        assert copy.deepcopy(obj) == obj  # mirror_rebuild deep-copies instances
    with pytest.raises(AttributeError):
        inst.not_a_field = 1  # type: ignore[attr-defined]  # a typo fails, never stored


def test_the_v1_sample_loads_the_same_from_a_file_and_from_etcd_keys() -> None:
    raw = json.loads(SAMPLE.read_text())
    data = ConfigData.from_dict(raw)
    texts = {layout.CLUSTER_KEY: layout.dumps(raw["cluster"])}
    for collection in layout.COLLECTIONS:
        for uuid, obj in raw.get(collection, {}).items():  # (v1 has no networks)
            texts[layout.object_key(collection, uuid)] = layout.dumps(obj)
    stored = layout.assemble(texts, raw["serial_no"])
    stored.mtime = data.mtime  # the document's own mtime is no object of etcd's
    assert stored.to_dict() == data.to_dict()
    assert json.dumps(data.to_dict(), indent=1, sort_keys=True) + "\n" == SAMPLE.read_text()


def test_type_hints_are_resolved_once_per_class_not_per_object(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[type] = []
    real = base.get_type_hints

    def counting(cls: type) -> dict[str, Any]:
        calls.append(cls)
        return real(cls)

    monkeypatch.setattr(base, "get_type_hints", counting)
    base._init_fields.cache_clear()
    base.type_hints.cache_clear()
    try:
        raw = every_kind().to_dict()
        inst = next(iter(raw["instances"].values()))
        for n in range(200):
            raw["instances"][f"u{n}"] = dict(inst, name=f"x{n}", uuid=f"u{n}")
        ConfigData.from_dict(raw)
        assert shape.config_problem(raw) is None
        assert len(calls) == len(set(calls)) <= len(KINDS)
    finally:
        base._init_fields.cache_clear()
        base.type_hints.cache_clear()


def _wrong_values(hint: Any) -> list[Any]:
    return [None, "x", 1, 1.5, True, [], [1], {}, {"a": 1}, [{}], ["s"]]


@pytest.mark.parametrize("kind", [Cluster, NodeGroup, Node, Instance, Disk, Nic])
def test_the_fast_shape_check_agrees_with_the_one_that_names_the_problem(kind: type) -> None:
    """The compiled check decides; the slow walk only words the message. For every field of
    every kind and values of every JSON type they must agree, or a damaged config would load
    (or a good one be refused)."""
    good = kind().to_dict()
    hints = base.type_hints(kind)
    fast = shape._object_check(kind)
    assert fast(good) and shape.object_problem("x", good, kind) is None
    for field in dataclasses.fields(kind):
        for value in _wrong_values(hints[field.name]):
            data = dict(good, **{field.name: value})
            slow = shape.object_problem("x", data, kind)
            assert fast(data) == (slow is None), (kind.__name__, field.name, value, slow)


def test_a_damaged_object_is_still_named_with_its_field() -> None:
    raw = every_kind().to_dict()
    next(iter(raw["instances"].values()))["disks"][2]["size"] = "big"
    problem = shape.config_problem(raw)
    assert problem is not None and ".disks[2].size is string, expected an integer" in problem


def test_no_cyclic_collection_while_a_config_is_built_and_back_after() -> None:
    assert gc.isenabled()
    seen: list[bool] = []
    real = Instance.from_dict.__func__  # type: ignore[attr-defined]

    def spy(cls: type, data: dict[str, Any]) -> Instance:
        seen.append(gc.isenabled())
        return real(cls, data)

    raw = every_kind().to_dict()
    mp = pytest.MonkeyPatch()
    mp.setattr(Instance, "from_dict", classmethod(spy))
    try:
        ConfigData.from_dict(raw)
        with pytest.raises(KeyError):
            ConfigData.from_dict({})  # no cluster: fails, and the collector is back
    finally:
        mp.undo()
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        with base.gc_paused():
            pass
        assert not gc.isenabled()  # a caller that had it off keeps it off
    finally:
        gc.enable()
