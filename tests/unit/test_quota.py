"""Quotas (herd.logic.quota): what owners hold, what a job adds, and the one-line refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.errors import ParameterError
from herd.logic import quota
from herd.objects import Cluster, ConfigData, Disk, Instance, Node, NodeGroup
from herd.objects.disk_ids import FileId


def config(*instances: Instance, beparams: dict | None = None) -> ConfigData:
    group = NodeGroup(name="default")
    node = Node(name="node1.example.com", primary_ip="192.0.2.1", group=group.uuid)
    cluster = Cluster(cluster_name="c.example.com", master_node=node.uuid,
                      beparams=beparams or {"vcpus": 1, "maxmem": 512, "minmem": 512})
    for inst in instances:
        inst.primary_node = node.uuid
        for disk in inst.disks:
            disk.nodes = [node.uuid]
    return ConfigData(cluster=cluster, nodegroups={group.uuid: group}, nodes={node.uuid: node},
                      instances={i.uuid: i for i in instances})


def inst(name: str, tags: list[str], *, memory: int | None = None, vcpus: int | None = None,
         disks: tuple[int, ...] = (1024,), admin_state: str = "down") -> Instance:
    be = {k: v for k, v in (("maxmem", memory), ("vcpus", vcpus)) if v is not None}
    return Instance(name=name, primary_node="", os="busybox+default", disk_template="file",
                    admin_state=admin_state, beparams=be, tags=tags,
                    disks=[Disk(size=s, logical_id=FileId("loop", f"{name}/d{i}"))
                           for i, s in enumerate(disks)])


def test_usage_counts_configured_sizes_of_owned_instances_stopped_ones_too() -> None:
    cfg = config(inst("a1", ["herd:owner:alice"], memory=1024, vcpus=2, disks=(1024, 2048)),
                 inst("a2", ["herd:owner:alice"], admin_state="up"),  # cluster defaults
                 inst("t1", ["herd:owner:@devs", "herd:owner:alice"], memory=256),
                 inst("x", ["env:prod"]))
    used = quota.usage_by_owner(cfg)
    assert used["alice"] == quota.Usage(vcpus=4, memory=1024 + 512 + 256,
                                        disk=1024 + 2048 + 1024 + 1024, instances=3)
    # a group's instance counts for the group, not again for each member
    assert used["@devs"] == quota.Usage(vcpus=1, memory=256, disk=1024, instances=1)
    assert "env:prod" not in used and len(used) == 2


def test_creation_demand_uses_cluster_defaults_and_disk_sizes_in_any_unit() -> None:
    cfg = config()
    op = {"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "n", "tags": ["herd:owner:alice"],
          "beparams": {"memory": 2048}, "disks": [{"size": "1G"}, {"size": 512}]}
    assert quota.op_demands(cfg, op) == {
        "alice": quota.Usage(vcpus=1, memory=2048, disk=1536, instances=1)}
    # no owner: nobody's quota (Ganeti's behaviour for users without a quota)
    assert quota.op_demands(cfg, {**op, "tags": []}) == {}


def test_limited_creator_becomes_owner_of_an_unowned_instance() -> None:
    ops = [{"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "n", "tags": ["env:dev"]},
           {"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "m", "tags": ["herd:owner:@devs"]},
           {"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "n"}]
    out = quota.creation_owner_tags(ops, "alice", limited=True)
    assert out[0]["tags"] == ["env:dev", "herd:owner:alice"]
    assert out[1]["tags"] == ["herd:owner:@devs"]  # already owned: left alone
    assert out[2] == ops[2]
    assert quota.creation_owner_tags(ops, "alice", limited=False) is ops
    assert quota.limited_subjects("alice", ["devs"], {"@devs": {"instances": 3}})
    assert not quota.limited_subjects("bob", [], {"@devs": {"instances": 3}, "bob": {}})


def test_modify_grow_and_owner_tags_demand_only_growth() -> None:
    a1 = inst("a1", ["herd:owner:alice"], memory=1024, vcpus=2, disks=(1024,))
    cfg = config(a1)
    grow_mem = {"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "a1",
                "beparams": {"maxmem": 3072, "vcpus": 1}}
    assert quota.op_demands(cfg, grow_mem) == {"alice": quota.Usage(memory=2048)}
    add_disk = {"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "a1",
                "disks": [["add", -1, {"size": "2G"}]]}
    assert quota.op_demands(cfg, add_disk) == {"alice": quota.Usage(disk=2048)}
    shrink = {"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "a1",
              "beparams": {"maxmem": 256}}
    assert quota.op_demands(cfg, shrink) == {}
    grow = {"OP_ID": "OP_INSTANCE_GROW_DISK", "instance_name": "a1", "disk": 0, "amount": 512}
    assert quota.op_demands(cfg, grow) == {"alice": quota.Usage(disk=512)}
    to = {**grow, "amount": 4096, "absolute": True}
    assert quota.op_demands(cfg, to) == {"alice": quota.Usage(disk=3072)}
    # tagging a new owner hands it the whole instance: bob's quota must allow it
    tag = {"OP_ID": "OP_TAGS_SET", "kind": "instance", "name": "a1",
           "tags": ["herd:owner:bob", "herd:owner:alice", "x"]}
    assert quota.op_demands(cfg, tag) == {
        "bob": quota.Usage(vcpus=2, memory=1024, disk=1024, instances=1)}
    assert quota.op_demands(cfg, {**tag, "kind": "node"}) == {}
    assert quota.op_demands(cfg, {**grow, "instance_name": "nope"}) == {}


def test_refusal_names_owner_resource_usage_limit_and_need() -> None:
    used = {"alice": quota.Usage(vcpus=2, memory=3072, disk=10240, instances=2)}
    quotas = {"alice": {"memory": 4096, "instances": 5}}
    need = {"alice": quota.Usage(vcpus=1, memory=2048, disk=1024, instances=1)}
    assert quota.refusal(quotas, used, need) == \
        "quota of alice: memory 3.0G of 4.0G used, this job needs 2.0G"
    assert quota.refusal(quotas, used, {"alice": quota.Usage(memory=1024)}) is None
    # the instance count, and a subject without a quota
    quotas = {"@devs": {"instances": 1}}
    assert quota.refusal(quotas, {"@devs": quota.Usage(instances=1)},
                         {"@devs": quota.Usage(instances=1), "bob": quota.Usage(memory=9)}) \
        == "quota of @devs: instances 1 of 1 used, this job needs 1"


def test_limits_are_checked_with_one_line_errors() -> None:
    assert quota.check_limits("alice", {"memory": "4G", "disk": 1024, "vcpus": "8",
                                        "instances": None}) == \
        {"memory": 4096, "disk": 1024, "vcpus": 8}
    with pytest.raises(ParameterError, match="unknown quota resource 'ram': allowed are "
                                             "vcpus, memory, disk, instances"):
        quota.check_limits("alice", {"ram": 1})
    with pytest.raises(ParameterError, match="invalid vcpus quota '-1'"):
        quota.check_limits("alice", {"vcpus": "-1"})
    with pytest.raises(ParameterError, match="invalid grant subject 'a b'"):
        quota.check_limits("a b", {"vcpus": 1})


def test_report_lists_subjects_with_a_quota_and_their_usage() -> None:
    cfg = config(inst("a1", ["herd:owner:alice"], memory=1024))
    cfg.cluster.access_quotas = {"alice": {"memory": 2048}}
    rows = quota.report(cfg, ["bob"])
    assert [r["subject"] for r in rows] == ["alice", "bob"]
    memory = next(r for r in rows[0]["resources"] if r["resource"] == "memory")
    assert (memory["used"], memory["limit"]) == (1024, 2048)
    assert all(r["limit"] is None and r["used"] == 0 for r in rows[1]["resources"])


# -- gnt-cluster set-quota / list-quotas and the config change ------------------------------
def test_cli_set_quota_submits_checked_limits(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from herd.cli import gnt_cluster

    submitted: list[list[dict[str, object]]] = []
    monkeypatch.setattr(gnt_cluster, "submit_or_run", lambda opts, ops: submitted.append(ops))
    assert gnt_cluster.main(["set-quota", "alice", "--memory", "4G", "--instances", "3"]) == 0
    assert gnt_cluster.main(["set-quota", "@devs", "--remove"]) == 0
    assert submitted == [
        [{"OP_ID": "OP_CLUSTER_SET_PARAMS",
          "quotas": {"alice": {"memory": 4096, "instances": 3}}}],
        [{"OP_ID": "OP_CLUSTER_SET_PARAMS", "quotas": {"@devs": None}}]]
    assert gnt_cluster.main(["set-quota", "alice", "--vcpus", "many"]) != 0
    assert "invalid vcpus quota 'many': expected a whole number >= 0" in capsys.readouterr().err
    assert gnt_cluster.main(["set-quota", "alice"]) != 0  # nothing to set
    assert len(submitted) == 2


def test_quota_changes_are_stored_and_bad_ones_change_nothing(tmp_path: Path) -> None:
    from tests.harness import InProcessCluster, scratch_root

    with scratch_root(tmp_path) as root, InProcessCluster(root, nodes=1) as cluster:
        done = cluster.run({"OP_ID": "OP_CLUSTER_SET_PARAMS",
                            "quotas": {"alice": {"memory": "2G", "vcpus": 4}}})
        assert done.status == "success", done.log
        assert cluster.saved_config().cluster.access_quotas == \
            {"alice": {"memory": 2048, "vcpus": 4}}
        before = cluster.saved_config().serial_no
        bad = cluster.run({"OP_ID": "OP_CLUSTER_SET_PARAMS",
                           "quotas": {"alice": {"cpus": 1}}})
        assert bad.status == "error"
        assert "unknown quota resource 'cpus'" in str(bad.results)
        assert cluster.saved_config().serial_no == before
        done = cluster.run({"OP_ID": "OP_CLUSTER_SET_PARAMS", "quotas": {"alice": None}})
        assert done.status == "success"
        assert cluster.saved_config().cluster.access_quotas == {}
