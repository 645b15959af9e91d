"""Node groups on a four-node in-process cluster (fake hypervisor, mirrored disks): two
groups of two nodes; mirrors stay within a group, assign-nodes refuses to split one,
change-group and group evacuate move instances between groups through jobs of their own,
and the groups' parameters are filled from the cluster's as Ganeti fills them. The pure
decisions (herd.logic.group_checks, params.fill_ipolicy) are tested on their own too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd import errors
from herd.jobs import audit
from herd.logic import group_checks
from herd.logic.querydata import query_groups
from herd.objects import params
from herd.paths import GANETI_IALLOCATOR_SEARCH_PATH
from tests.harness import InProcessCluster, create_op, node_name, scratch_root

GIB = 1024
N1, N2, N3, N4 = (node_name(i) for i in range(1, 5))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[InProcessCluster]:
    with scratch_root(tmp_path) as root, \
            InProcessCluster(root, nodes=4, disk_templates=("drbd", "file", "diskless")) as c:
        for node in c.nodes.values():
            node.service.simulated_size = {"memory_total": 8192, "memory_node": 512,
                                           "cpu_total": 4}
        ok(c, {"OP_ID": "OP_GROUP_ADD", "group_name": "g2"})
        ok(c, {"OP_ID": "OP_GROUP_ASSIGN_NODES", "group_name": "g2", "nodes": [N3, N4]})
        yield c


def ok(cluster: InProcessCluster, op: dict[str, Any]) -> Any:
    outcome = cluster.run(op)
    assert outcome.status == "success", (op, outcome.log, outcome.results)
    return outcome.result


def refused(cluster: InProcessCluster, op: dict[str, Any]) -> str:
    serial = cluster.config.serial_no
    outcome = cluster.run(op)
    assert outcome.status == "error", (op, outcome.log)
    assert cluster.config.serial_no == serial  # nothing changed
    assert outcome.error is not None
    return outcome.error[1]


def group_of(cluster: InProcessCluster, node: str) -> str:
    cfg = cluster.config
    return cfg.nodegroups[cfg.get_node(node).group].name


def nodes_of(cluster: InProcessCluster, name: str) -> list[str]:
    inst = cluster.instance(name)
    assert inst is not None
    return [cluster.config.node_name(u) for u in inst.all_nodes]


def mirror(cluster: InProcessCluster, name: str, nodes: tuple[str, str] | None = None,
           start: bool = True) -> list[str]:
    pnode, snode = nodes or (None, None)
    ok(cluster, create_op(name, template="drbd", node=pnode, snode=snode, start=start,
                          disks=[{"size": GIB}], beparams={"memory": 512}))
    return nodes_of(cluster, name)


def run_jobs(cluster: InProcessCluster, result: dict[str, Any]) -> list[Any]:
    """Wait for the jobs an operation submitted (Ganeti's {"jobs": [[ok, id], ...]})."""
    outcomes = []
    for submitted, job_id in result["jobs"]:
        assert submitted is True
        outcome = cluster.wait(cluster.finish(job_id, timeout=30))
        assert outcome.status == "success", "\n".join(outcome.log)
        outcomes.append(outcome)
    return outcomes


def test_groups_are_added_modified_renamed_and_removed(cluster: InProcessCluster) -> None:
    ok(cluster, {"OP_ID": "OP_GROUP_ADD", "group_name": "spare", "alloc_policy": "last_resort",
                 "ndparams": {"spindle_count": 2},
                 "ipolicy": {"vcpu-ratio": 2, "disk-templates": ["drbd"]}})
    (row,) = query_groups(cluster.ctx, ["spare"])
    assert row["alloc_policy"] == "last_resort" and row["node_cnt"] == 0
    assert row["ndparams"]["spindle_count"] == 2 and row["custom_ndparams"] == {
        "spindle_count": 2}
    ok(cluster, {"OP_ID": "OP_GROUP_ADD", "group_name": "g3", "ndparams": {"ssh_port": 2222}})
    ok(cluster, {"OP_ID": "OP_GROUP_ASSIGN_NODES", "group_name": "g3", "nodes": [N4]})
    node = cluster.config.get_node(N4)
    assert cluster.config.filled_ndparams(node)["ssh_port"] == 2222  # cluster <- group
    ok(cluster, {"OP_ID": "OP_GROUP_ASSIGN_NODES", "group_name": "g2", "nodes": [N4]})
    ok(cluster, {"OP_ID": "OP_GROUP_REMOVE", "group_name": "g3"})
    # the cluster's policy, with the group's keys replacing it
    assert row["ipolicy"]["vcpu-ratio"] == 2.0 and row["ipolicy"]["disk-templates"] == ["drbd"]
    assert row["ipolicy"]["minmax"] == [{"min": params.ISPEC_MIN, "max": params.ISPEC_MAX}]
    assert row["custom_ipolicy"] == {"vcpu-ratio": 2.0, "disk-templates": ["drbd"]}
    assert "already exists" in refused(cluster, {"OP_ID": "OP_GROUP_ADD",
                                                 "group_name": "spare"})
    assert "invalid allocation policy 'sometimes'" in refused(
        cluster, {"OP_ID": "OP_GROUP_SET_PARAMS", "group_name": "spare",
                  "alloc_policy": "sometimes"})
    assert "must give all of" in refused(
        cluster, {"OP_ID": "OP_GROUP_SET_PARAMS", "group_name": "spare",
                  "ipolicy": {"minmax": [{"min": {"memory-size": 1}, "max": {}}]}})
    ok(cluster, {"OP_ID": "OP_GROUP_SET_PARAMS", "group_name": "spare",
                 "alloc_policy": "unallocable", "ipolicy": {"vcpu-ratio": None},
                 "ndparams": {"spindle_count": None}})
    (row,) = query_groups(cluster.ctx, ["spare"])
    assert row["alloc_policy"] == "unallocable" and row["custom_ndparams"] == {}
    assert row["ipolicy"]["vcpu-ratio"] == params.IPOLICY_VCPU_RATIO
    ok(cluster, {"OP_ID": "OP_GROUP_RENAME", "group_name": "spare", "new_name": "reserve"})
    assert "already exists" in refused(cluster, {"OP_ID": "OP_GROUP_RENAME",
                                                 "group_name": "reserve", "new_name": "g2"})
    assert "is not empty" in refused(cluster, {"OP_ID": "OP_GROUP_REMOVE",
                                               "group_name": "g2"})
    ok(cluster, {"OP_ID": "OP_GROUP_REMOVE", "group_name": "reserve"})
    assert cluster.config.find_group("reserve") is None
    assert "does not exist" in refused(cluster, {"OP_ID": "OP_GROUP_REMOVE",
                                                 "group_name": "reserve"})


def test_mirrors_stay_within_a_group(cluster: InProcessCluster) -> None:
    message = refused(cluster, create_op("x.example.com", template="drbd",
                                         node=N1, snode=N3, disks=[{"size": GIB}]))
    assert f"secondary node {N3} is in node group g2" in message
    assert cluster.instance("x.example.com") is None
    # without -n the allocator keeps every pair inside one group
    for index in range(4):
        nodes = mirror(cluster, f"m{index}.example.com")
        assert len({group_of(cluster, n) for n in nodes}) == 1, nodes
    pair = mirror(cluster, "a.example.com", nodes=(N1, N2))
    assert pair == [N1, N2]
    message = refused(cluster, {"OP_ID": "OP_INSTANCE_REPLACE_DISKS",
                                "instance_name": "a.example.com",
                                "mode": "replace_new_secondary", "remote_node": N4})
    assert "keeps both copies in one group" in message
    # moving one node of the pair would split it: refused, then done with force
    message = refused(cluster, {"OP_ID": "OP_GROUP_ASSIGN_NODES", "group_name": "g2",
                                "nodes": [N2]})
    assert "a.example.com" in message and "--force" in message
    outcome = cluster.run({"OP_ID": "OP_GROUP_ASSIGN_NODES", "group_name": "g2",
                           "nodes": [N2], "force": True})
    assert outcome.status == "success", outcome.log
    assert any("splits these mirrored instances" in line for line in outcome.log)
    assert group_of(cluster, N2) == "g2"
    # verify names the split instance
    verify = cluster.run({"OP_ID": "OP_CLUSTER_VERIFY"})
    assert any("a.example.com" in line and "different node groups" in line
               for line in verify.log), verify.log


def test_change_group_moves_an_instance_through_its_own_jobs(
        cluster: InProcessCluster) -> None:
    # stopped: the fake hypervisor does not finish live migrations (the lab test migrates a
    # real guest); the allocator's migrate of a stopped instance is a failover
    assert mirror(cluster, "a.example.com", nodes=(N1, N2), start=False) == [N1, N2]
    asked = [audit.SOURCE, "via=cli user=alice uid=1000 pid=1", 1]
    result = ok(cluster, {"OP_ID": "OP_INSTANCE_CHANGE_GROUP", "reason": [asked],
                          "instance_name": "a.example.com", "target_groups": ["g2"]})
    (job,) = run_jobs(cluster, result)
    assert [op for op in job.op_status] == ["success"] * 3
    # the move job is alice's, as the change-group that submitted it
    moves = [op.input for op in cluster.queue.get(job.job_id).ops]
    assert audit.origin_of(moves) == "via=cli user=alice uid=1000 pid=1"
    nodes = nodes_of(cluster, "a.example.com")
    assert set(nodes) == {N3, N4}
    verify = cluster.run({"OP_ID": "OP_CLUSTER_VERIFY"})
    assert verify.status == "success" and verify.result is True, verify.log
    # the other group is unallocable: nothing can go there
    ok(cluster, {"OP_ID": "OP_GROUP_SET_PARAMS", "group_name": "default",
                 "alloc_policy": "unallocable"})
    message = refused(cluster, {"OP_ID": "OP_INSTANCE_CHANGE_GROUP",
                                "instance_name": "a.example.com"})
    assert "unallocable" in message
    ok(cluster, {"OP_ID": "OP_GROUP_SET_PARAMS", "group_name": "default",
                 "alloc_policy": "preferred"})
    # a group cannot be its own target; a file instance cannot change group
    assert "cannot be a target" in refused(cluster, {
        "OP_ID": "OP_INSTANCE_CHANGE_GROUP", "instance_name": "a.example.com",
        "target_groups": ["g2"]})
    ok(cluster, create_op("f.example.com", template="file", node=N1))
    assert "no mirrored disks" in refused(cluster, {
        "OP_ID": "OP_INSTANCE_CHANGE_GROUP", "instance_name": "f.example.com"})
    # the group's evacuation brings it back, in one job with --sequential
    result = ok(cluster, {"OP_ID": "OP_GROUP_EVACUATE", "group_name": "g2",
                          "sequential": True, "force_failover": True})
    (job,) = run_jobs(cluster, result)
    assert set(nodes_of(cluster, "a.example.com")) == {N1, N2}
    assert [op.input["OP_ID"] for op in cluster.queue.get(job.job_id).ops] == [
        "OP_INSTANCE_REPLACE_DISKS", "OP_INSTANCE_FAILOVER", "OP_INSTANCE_REPLACE_DISKS"]


# -- the pure decisions ------------------------------------------------------------------------
def test_assignment_splits_and_removal(cluster: InProcessCluster) -> None:
    mirror(cluster, "a.example.com", nodes=(N1, N2))
    cfg = cluster.config
    g2 = cfg.get_group("g2")
    default = cfg.get_group("default")
    n1, n2 = cfg.get_node(N1).uuid, cfg.get_node(N2).uuid
    assert group_checks.assignment_splits(cfg, [n2], g2.uuid) == (["a.example.com"], [])
    assert group_checks.assignment_splits(cfg, [n1, n2], g2.uuid) == ([], [])
    cfg.get_node(N2).group = g2.uuid  # split already
    assert group_checks.assignment_splits(cfg, [n1], default.uuid) == ([], ["a.example.com"])
    assert group_checks.assignment_splits(cfg, [n2], default.uuid) == ([], [])
    cfg.get_node(N2).group = default.uuid
    assert "is not empty" in (group_checks.removal_refusal(cfg, g2) or "")
    assert group_checks.target_groups(cfg, {default.uuid}, None) == [g2.uuid]
    with pytest.raises(errors.NotFoundError, match="'nosuch' does not exist"):
        group_checks.target_groups(cfg, {default.uuid}, ["nosuch"])
    inst = cfg.get_instance("a.example.com")
    assert group_checks.missing_networks(cfg, inst, g2.uuid) == []


def test_move_jobs_follow_the_options() -> None:
    jobs = [[{"OP_ID": "OP_INSTANCE_REPLACE_DISKS", "instance_name": "a", "remote_node": "n3",
              "mode": "replace_new_secondary"},
             {"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": "a"}],
            [{"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": "b", "iallocator": None,
              "target_node": None, "ganeti_only": 1}]]
    plain = group_checks.move_jobs(jobs)
    assert len(plain) == 2 and plain[0][0]["change_group"] is True
    assert "change_group" not in jobs[0][0]  # the allocator's answer is left alone
    assert plain[1] == [{"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": "b"}]
    failover = group_checks.move_jobs(jobs, force_failover=True, early_release=True)
    assert [op["OP_ID"] for op in failover[0]] == ["OP_INSTANCE_REPLACE_DISKS",
                                                   "OP_INSTANCE_FAILOVER"]
    assert failover[0][0]["early_release"] is True
    stopped = group_checks.move_jobs(jobs, stopped=["b"])
    assert [job[-1]["OP_ID"] for job in stopped] == ["OP_INSTANCE_MIGRATE",
                                                     "OP_INSTANCE_FAILOVER"]
    (one,) = group_checks.move_jobs(jobs, sequential=True)
    assert [op["instance_name"] for op in one] == ["a", "a", "b"]


def test_ipolicy_is_filled_as_ganeti_fills_it() -> None:
    cluster = params.default_ipolicy(["drbd", "file"])
    group = params.check_ipolicy({"std": {"memory-size": 256}, "spindle-ratio": "16"})
    filled = params.fill_ipolicy(cluster, group)
    assert filled["std"] == {**params.ISPEC_MIN, "memory-size": 256}
    assert filled["spindle-ratio"] == 16.0 and filled["minmax"] == cluster["minmax"]
    bounds = [{"min": dict(params.ISPEC_MIN), "max": dict(params.ISPEC_MIN)}]
    assert params.fill_ipolicy(cluster, params.check_ipolicy({"minmax": bounds}))[
        "minmax"] == bounds  # replaces the list wholesale
    with pytest.raises(errors.ParameterError, match="min above max for memory-size"):
        params.check_ipolicy({"minmax": [{"min": {**params.ISPEC_MIN, "memory-size": 9999},
                                          "max": params.ISPEC_MIN}]})
    with pytest.raises(errors.ParameterError, match="unknown ipolicy key 'vcpu_ratio'"):
        params.check_ipolicy({"vcpu_ratio": 2})
    with pytest.raises(errors.ParameterError, match="invalid ipolicy disk template"):
        params.check_ipolicy({"disk-templates": ["drbd", "rbd"]})
    assert params.check_ipolicy({"vcpu-ratio": "default"}) == {"vcpu-ratio": None}


def test_gnt_group_options_read_as_ganetis() -> None:
    from herd.cli import gnt_group

    pairs = gnt_group.parse_bounds_specs(
        "min:memory-size=128M,cpu-count=1,disk-count=1,disk-size=1G,nic-count=1,"
        "spindle-use=1/max:memory-size=4G,cpu-count=4,disk-count=4,disk-size=100G,"
        "nic-count=4,spindle-use=4//min:memory-size=8G,cpu-count=4,disk-count=1,"
        "disk-size=1G,nic-count=1,spindle-use=1/max:memory-size=16G,cpu-count=8,"
        "disk-count=4,disk-size=100G,nic-count=4,spindle-use=4")
    assert len(pairs) == 2 and pairs[0]["max"]["memory-size"] == 4096
    assert pairs[1]["min"]["disk-size"] == 1024
    assert params.check_ipolicy({"minmax": pairs})["minmax"] == pairs
    with pytest.raises(errors.ParameterError, match="needs both min: and max:"):
        gnt_group.parse_bounds_specs("min:cpu-count=1")
    with pytest.raises(errors.ParameterError, match="unknown spec 'memory'"):
        gnt_group.parse_bounds_specs("min:memory=1/max:memory=2")
    parser = gnt_group.build_parser()
    opts = parser.parse_args(["modify", "g", "--ipolicy-vcpu-ratio", "default",
                              "--ipolicy-disk-templates", "drbd,file", "-D", "drbd:",
                              "--alloc-policy", "last_resort"])
    op = gnt_group._params_op("OP_GROUP_SET_PARAMS", opts)
    assert op["ipolicy"] == {"disk-templates": ["drbd", "file"], "vcpu-ratio": None}
    assert op["diskparams"] == {"drbd": {}} and op["alloc_policy"] == "last_resort"
    evac = parser.parse_args(["evacuate", "--to", "a", "--to", "b", "--sequential", "g"])
    assert (evac.to, evac.sequential) == (["a", "b"], True)


@pytest.mark.skipif(not any((Path(d) / "hail").is_file()
                            for d in GANETI_IALLOCATOR_SEARCH_PATH),
                    reason="hail (ganeti-htools-3.0) is not installed")
def test_hail_plans_a_change_group_herd_carries_out(cluster: InProcessCluster) -> None:
    mirror(cluster, "h.example.com", nodes=(N1, N2), start=False)
    result = ok(cluster, {"OP_ID": "OP_INSTANCE_CHANGE_GROUP", "instance_name": "h.example.com",
                          "iallocator": "hail"})
    run_jobs(cluster, result)
    assert set(nodes_of(cluster, "h.example.com")) == {N3, N4}


def test_change_group_and_evacuate_commands_submit_ganetis_opcodes(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from herd.cli import gnt_group, gnt_instance, instance_changes

    ops: list[dict[str, Any]] = []

    def capture(opts: Any, given: list[dict[str, Any]], client: Any = None) -> list[Any]:
        assert not opts.submit_only  # the planning job is always waited for
        ops.extend(given)
        return [{"jobs": []}]

    for module in (gnt_group, instance_changes):
        monkeypatch.setattr(module, "submit_or_run", capture)
    opts = gnt_instance.build_parser().parse_args(
        ["change-group", "--to", "g2", "-I", "hail", "--submit", "i1.example.com"])
    assert opts.func(opts) == 0
    opts = gnt_group.build_parser().parse_args(["evacuate", "--force-failover", "g2"])
    assert opts.func(opts) == 0
    assert ops == [
        {"OP_ID": "OP_INSTANCE_CHANGE_GROUP", "instance_name": "i1.example.com",
         "target_groups": ["g2"], "iallocator": "hail", "early_release": False},
        {"OP_ID": "OP_GROUP_EVACUATE", "group_name": "g2", "iallocator": None,
         "target_groups": None, "early_release": False, "sequential": False,
         "force_failover": True}]
    assert capsys.readouterr().out.count("No jobs were needed") == 2


def test_group_hooks_follow_ganetis_table(cluster: InProcessCluster) -> None:
    from herd.logic import hooks

    cfg = cluster.config
    g2 = hooks.HookTargets(group=cfg.get_group("g2").uuid)
    for op_id in ("OP_GROUP_RENAME", "OP_GROUP_EVACUATE"):
        decl = hooks.HOOKS[op_id]
        assert hooks.resolve_nodes(decl.pre, cfg, g2) == [N1, N3, N4]
    for op_id in ("OP_GROUP_ADD", "OP_GROUP_SET_PARAMS", "OP_GROUP_REMOVE",
                  "OP_INSTANCE_CHANGE_GROUP"):
        assert hooks.resolve_nodes(hooks.HOOKS[op_id].post, cfg, g2) == [N1]
    assert hooks.HOOKS["OP_GROUP_RENAME"].op_vars == {"OLD_NAME": "group_name",
                                                      "NEW_NAME": "new_name"}
    # a rename runs its hooks and keeps finding the group's nodes after the new name
    outcome = cluster.run({"OP_ID": "OP_GROUP_RENAME", "group_name": "g2", "new_name": "g9"})
    assert outcome.status == "success", outcome.log


def test_node_add_needs_a_group_when_there_are_several(cluster: InProcessCluster) -> None:
    from herd.rpc.join import PIN_HEX

    op = {"OP_ID": "OP_NODE_ADD", "node_name": "node9.example.com", "primary_ip": "192.0.2.9",
          "secondary_ip": "192.0.2.109", "join_token": "ab" * 16 + ":" + "0" * PIN_HEX}
    with pytest.raises(errors.OpPrereqError, match=r"give the new node's group with "
                                                    r"--node-group \(one of default, g2\)"):
        cluster.check(op)
    with pytest.raises(errors.NotFoundError, match="'nosuch' does not exist"):
        cluster.check({**op, "group": "nosuch"})


def test_change_group_needs_the_instances_networks_in_the_target(
        cluster: InProcessCluster) -> None:
    """Ganeti #1016: change-group moved instances to groups without their networks."""
    ok(cluster, {"OP_ID": "OP_NETWORK_ADD", "network_name": "lan",
                 "network": "192.0.2.0/24"})
    ok(cluster, {"OP_ID": "OP_NETWORK_CONNECT", "network_name": "lan",
                 "group_name": "default", "network_mode": "bridged",
                 "network_link": "br0"})
    ok(cluster, create_op("n.example.com", template="drbd", node=N1, snode=N2, start=False,
                          disks=[{"size": GIB}], beparams={"memory": 512},
                          nics=[{"network": "lan", "ip": "pool"}]))
    message = refused(cluster, {"OP_ID": "OP_INSTANCE_CHANGE_GROUP",
                                "instance_name": "n.example.com", "target_groups": ["g2"]})
    assert "g2 lacks network(s) lan" in message
    ok(cluster, {"OP_ID": "OP_NETWORK_CONNECT", "network_name": "lan", "group_name": "g2",
                 "network_mode": "bridged", "network_link": "br0"})
    result = ok(cluster, {"OP_ID": "OP_INSTANCE_CHANGE_GROUP",
                          "instance_name": "n.example.com", "target_groups": ["g2"]})
    run_jobs(cluster, result)
    assert set(nodes_of(cluster, "n.example.com")) == {N3, N4}
