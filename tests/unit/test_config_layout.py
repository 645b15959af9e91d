"""The config's etcd layout (herd.config.layout), the master lease's timing rule and the
master watch's decision: pure functions, no etcd."""

from __future__ import annotations

import pytest

from herd.config import layout
from herd.config.tracking import KeyTrackingDict
from herd.etcd.election import lease_lost, sole_voter
from herd.etcd.members import Member
from herd.jobs.locking import ALL, LEVEL_CLUSTER, LEVEL_INSTANCE, LEVEL_NODE, LockRequest
from herd.node.master_watch import should_start
from herd.objects import Cluster, ConfigData, Instance, Node, NodeGroup


def config(instances: int = 3) -> ConfigData:
    group = NodeGroup(name="default")
    node = Node(name="node1.example.com", primary_ip="192.0.2.1", group=group.uuid)
    cluster = Cluster(cluster_name="c.example.com", master_node=node.uuid)
    insts = [Instance(name=f"i{n}.example.com", primary_node=node.uuid) for n in range(instances)]
    return ConfigData(cluster=cluster, nodegroups={group.uuid: group}, nodes={node.uuid: node},
                      instances={i.uuid: i for i in insts})


def stored(cfg: ConfigData) -> dict[str, str]:
    return dict(layout.diff(cfg, {}).puts)


def scope(*requests: LockRequest) -> layout.Scope:
    return layout.scope_from_locks(requests, LEVEL_CLUSTER, LEVEL_INSTANCE, LEVEL_NODE, ALL)


def test_every_object_has_its_own_key_and_the_document_comes_back() -> None:
    cfg = config()
    texts = stored(cfg)
    assert len(texts) == 1 + 1 + 1 + 3
    assert all(layout.parse_key(k) for k in texts)
    back = layout.assemble(texts, 42)
    assert back.serial_no == 42
    assert back.to_dict() | {"serial_no": 0} == cfg.to_dict() | {"serial_no": 0}


def test_a_change_writes_only_the_changed_object() -> None:
    cfg = config()
    texts = stored(cfg)
    inst = next(iter(cfg.instances.values()))
    inst.tags.append("blue")
    change = layout.diff(cfg, texts)
    assert list(change.puts) == [layout.object_key("instances", inst.uuid)]
    assert change.deletes == []


def test_a_save_sees_only_what_the_job_holds_exclusively() -> None:
    cfg = config()
    texts = stored(cfg)
    a, b = list(cfg.instances.values())[:2]
    a.tags.append("mine")
    b.tags.append("another job's, half done")
    change = layout.diff(cfg, texts, scope(LockRequest(LEVEL_CLUSTER, "cluster", shared=True),
                                           LockRequest(LEVEL_INSTANCE, a.name)))
    assert list(change.puts) == [layout.object_key("instances", a.uuid)]
    # the whole cluster held exclusively: everything is compared
    change = layout.diff(cfg, texts, scope(LockRequest(LEVEL_CLUSTER, "cluster")))
    assert len(change.puts) == 2


def test_added_and_removed_objects_are_found_whatever_the_scope() -> None:
    cfg = config()
    texts = stored(cfg)
    gone = next(iter(cfg.instances))
    del cfg.instances[gone]
    new = Instance(name="new.example.com", primary_node=cfg.cluster.master_node)
    cfg.instances[new.uuid] = new
    change = layout.diff(cfg, texts, scope(LockRequest(LEVEL_INSTANCE, "new.example.com")))
    assert list(change.puts) == [layout.object_key("instances", new.uuid)]
    assert change.deletes == [layout.object_key("instances", gone)]


def tracked(cfg: ConfigData) -> ConfigData:
    """The config as the etcd store holds it: collections that note added/removed keys."""
    for collection in layout.COLLECTIONS:
        setattr(cfg, collection, KeyTrackingDict(getattr(cfg, collection)))
    return cfg


def test_tracked_collections_find_added_and_removed_objects_by_their_keys_alone() -> None:
    cfg = config()
    texts = stored(cfg)
    index = layout.uuid_index(texts)
    tracked(cfg)
    first, second, _third = list(cfg.instances)
    nobody = scope()  # a job that locked nothing: only the presence checks can see changes
    assert not layout.diff(cfg, texts, nobody, index)
    # every way a dict can lose or gain a key is seen
    cfg.instances.pop(first)
    removed = cfg.instances.popitem()[0]
    new = Instance(name="new.example.com", primary_node=cfg.cluster.master_node)
    cfg.instances.update({new.uuid: new})
    change = layout.diff(cfg, texts, nobody, index)
    assert sorted(change.deletes) == sorted(layout.object_key("instances", u)
                                            for u in (first, removed))
    assert list(change.puts) == [layout.object_key("instances", new.uuid)]
    # until etcd holds the change, every save still writes it; afterwards none does
    assert layout.diff(cfg, texts, nobody, index) == change
    index["instances"] = set(cfg.instances)
    texts = {k: v for k, v in texts.items() if k not in change.deletes} | change.puts
    assert not layout.diff(cfg, texts, nobody, index)
    assert cfg.instances.touched == set()  # settled keys are forgotten
    cfg.instances.clear()
    assert len(layout.diff(cfg, texts, nobody, index).deletes) == 2
    assert second not in cfg.instances


def test_a_change_the_tracking_missed_is_found_by_the_full_comparison() -> None:
    cfg = tracked(config())
    texts = stored(cfg)
    gone = next(iter(cfg.instances))
    dict.__delitem__(cfg.instances, gone)  # bypasses the tracking: the counts disagree
    change = layout.diff(cfg, texts, scope())
    assert change.deletes == [layout.object_key("instances", gone)]
    cfg.instances = {}  # type: ignore[assignment]  # a plain dict: compared in full
    assert len(layout.diff(cfg, texts, scope()).deletes) == 3


def test_scope_levels() -> None:
    s = scope(LockRequest(LEVEL_INSTANCE, "x", shared=True), LockRequest(LEVEL_NODE, "n1"))
    assert s.instances == frozenset() and s.nodes == frozenset({"n1"})
    s = scope(LockRequest(LEVEL_INSTANCE, ALL))
    assert s.instances is None
    assert scope() == layout.Scope(frozenset(), frozenset())


def test_damaged_stored_objects_are_named() -> None:
    cfg = config(1)
    texts = stored(cfg)
    key = layout.object_key("nodes", cfg.cluster.master_node)
    with pytest.raises(layout.DamagedConfig, match="is not JSON"):
        layout.assemble({**texts, key: "{"}, 1)
    with pytest.raises(layout.DamagedConfig, match=r"nodes\[.*\] is list"):
        layout.assemble({**texts, key: "[]"}, 1)
    with pytest.raises(layout.DamagedConfig, match="missing"):
        layout.assemble({k: v for k, v in texts.items() if k != layout.CLUSTER_KEY}, 1)


def test_damaged_instances_are_named_though_each_is_built_as_it_is_read() -> None:
    """assemble checks and builds the instances one at a time (memory: see its doc); every
    check of the whole-document path still applies to each, naming the key or instance."""
    import json

    cfg = config(3)
    texts = stored(cfg)
    inst = list(cfg.instances.values())[1]
    key = layout.object_key("instances", inst.uuid)
    good = json.loads(texts[key])
    with pytest.raises(layout.DamagedConfig, match=f"{key} is not JSON"):
        layout.assemble({**texts, key: "{"}, 1)
    with pytest.raises(layout.DamagedConfig, match=rf"instances\[{inst.uuid}\].name is list"):
        layout.assemble({**texts, key: json.dumps({**good, "name": []})}, 1)
    with pytest.raises(layout.DamagedConfig, match=r"i1\.example\.com has an unknown primary"):
        layout.assemble({**texts, key: json.dumps({**good, "primary_node": "gone"})}, 1)
    plain = {**good, "disk_template": "plain", "disks": [{"dev_type": "plain", "size": 1,
                                                         "logical_id": [], "nodes": []}]}
    with pytest.raises(layout.DamagedConfig, match="no copy on the primary node"):
        layout.assemble({**texts, key: json.dumps(plain)}, 1)
    back = layout.assemble(texts, 1)  # and the good one, in the order etcd gave the keys
    assert list(back.instances) == [layout.parse_key(k)[1] for k in texts  # type: ignore[index]
                                    if k.startswith(layout.object_key("instances", ""))]
    assert back.to_dict() | {"serial_no": 0} == cfg.to_dict() | {"serial_no": 0}
    assert all(type(i).__name__ == "Instance" for i in back.instances.values())


def test_big_imports_are_cut_into_transactions() -> None:
    cfg = config(250)
    pieces = layout.batches(layout.diff(cfg, {}), size=100)
    assert [len(p.puts) for p in pieces] == [100, 100, 53]


def test_lease_is_given_up_before_it_can_expire() -> None:
    assert not lease_lost(now=102.9, last_confirmed_sent=100.0, ttl=5, margin=2)
    assert lease_lost(now=103.0, last_confirmed_sent=100.0, ttl=5, margin=2)
    # the only voter is ours: nobody else can be elected, silence is no reason
    assert not lease_lost(now=200.0, last_confirmed_sent=100.0, sole_voter=True)


def test_sole_voter() -> None:
    mine = Member(1, "node1", ("https://10.0.0.1:2380",), ("https://10.0.0.1:2379",))
    other = Member(2, "node2", ("https://10.0.0.2:2380",), ("https://10.0.0.2:2379",))
    learner = Member(3, "node3", ("https://10.0.0.3:2380",), (), is_learner=True)
    assert sole_voter([mine], "https://10.0.0.1:2379")
    assert sole_voter([mine, learner], "https://10.0.0.1:2379")
    assert not sole_voter([mine, other], "https://10.0.0.1:2379")
    assert not sole_voter([other], "https://10.0.0.1:2379")
    assert not sole_voter([mine], None)


@pytest.mark.parametrize(("kwargs", "start"), [
    ({}, True),
    ({"candidate": False}, False),
    ({"held": True}, False),
    ({"masterd_running": True}, False),
    ({"holder": "node2"}, False),
    ({"etcd_answered": False}, False),
])
def test_master_watch_starts_masterd_only_when_nobody_is_master(kwargs: dict,
                                                               start: bool) -> None:
    args = {"candidate": True, "held": False, "masterd_running": False, "holder": None,
            "etcd_answered": True} | kwargs
    assert should_start(**args) is start


def test_verify_reports_etcd_membership_and_health() -> None:
    from herd.etcd.client import Status
    from herd.logic.etcd_health import etcd_findings

    def status(leader: int = 7, db: int = 1 << 20, errs: list[str] | None = None) -> Status:
        return Status("3.4.23", db, leader, 1, 2, 3, 4, False, errs or [])

    m1 = Member(1, "n1", ("https://10.0.1.1:2380",), ("https://10.0.0.1:2379",))
    m2 = Member(2, "n2", ("https://10.0.1.2:2380",), ("https://10.0.0.2:2379",))
    m3 = Member(3, "n3", ("https://10.0.1.3:2380",), ("https://10.0.0.3:2379",))
    wanted = {"n1": "https://10.0.1.1:2380", "n2": "https://10.0.1.2:2380",
              "n3": "https://10.0.1.3:2380"}
    healthy = {"n1": status(), "n2": status(), "n3": status()}
    assert etcd_findings([m1, m2, m3], wanted, healthy) == []
    found = etcd_findings([m1, m2], wanted, {**healthy, "n3": None})
    assert ("error", "etcd: master candidate n3 has no etcd member "
                     "(gnt-node modify -C yes re-adds it)") in found
    assert ("error", "etcd: the member of n3 does not answer") in found
    assert any("even number" in text for _level, text in found)
    found = etcd_findings([m1, m2, m3], wanted,
                          {**healthy, "n2": status(leader=0), "n3": status(db=3 << 30)})
    assert ("error", "etcd: the member of n2 knows no leader") in found
    assert any("3072 MiB" in text for _level, text in found)


def test_master_watch_leaves_a_handover_to_its_node() -> None:
    args = {"candidate": True, "held": False, "masterd_running": False, "holder": None,
            "etcd_answered": True}
    assert not should_start(**args, handed_to_other=True)
    assert should_start(**args, handed_to_other=False)


def test_networks_are_objects_of_their_own() -> None:
    """A network has its own key, comes back from etcd, and a connect writes the network's
    group only; an instance holding an address writes only the instance (the address is
    the NIC's, not a second copy in the network)."""
    from herd.objects import Network, Nic

    cfg = config(1)
    net = Network(name="lan", network="10.0.0.0/24", ext_reservations=[0, 255])
    cfg.networks[net.uuid] = net
    texts = stored(cfg)
    key = layout.object_key("networks", net.uuid)
    assert layout.parse_key(key) == ("networks", net.uuid) and key in texts
    back = layout.assemble(texts, 7)
    assert back.networks[net.uuid].to_dict() == net.to_dict()
    group = next(iter(cfg.nodegroups.values()))
    group.networks[net.uuid] = {"mode": "bridged", "link": "br0", "vlan": ""}
    assert list(layout.diff(cfg, texts).puts) == [layout.object_key("nodegroups", group.uuid)]
    texts = stored(cfg)
    inst = next(iter(cfg.instances.values()))
    inst.nics.append(Nic(mac="aa:00:00:00:00:01", ip="10.0.0.1", network=net.uuid))
    assert list(layout.diff(cfg, texts).puts) == [layout.object_key("instances", inst.uuid)]
    del cfg.networks[net.uuid]
    assert layout.diff(cfg, texts).deletes == [key]
