"""Ganeti's hooks interface: script discovery and running on a node, and the master's pure
parts (node lists, environment, reading results). Scripts here are real executables."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from herd import errors
from herd.logic import hooks
from herd.logic.base import MasterContext, lu_for
from herd.logic.cluster import LUClusterModify
from herd.node import hooks as node_hooks
from herd.objects import Cluster, ConfigData, Disk, Instance, Nic, Node, NodeGroup
from herd.opcodes import OpClusterModify, opcode_from_dict
from herd.opcodes.base import _REGISTRY
from herd.paths import HerdPaths


def script(path: Path, body: str, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(mode)
    return path


# -- node side: discovery and running ----------------------------------------------------------
def test_discovery_follows_ganetis_naming_and_mode_rules(tmp_path: Path) -> None:
    d = tmp_path / "instance-add-pre.d"
    script(d / "20-second", "exit 0")
    script(d / "10_first", "exit 0")
    script(d / "x.sh", "exit 1")                 # a dot: ignored (as Ganeti's run-parts)
    script(d / "noexec", "exit 1", mode=0o644)   # not executable: ignored
    script(d / ".hidden", "exit 1")              # hidden: not even listed
    (d / "subdir").mkdir()                       # not a file: ignored
    entries = node_hooks.discover(d)
    assert [(e.name, e.runnable) for e in entries] == [
        ("10_first", True), ("20-second", True), ("noexec", False), ("subdir", False),
        ("x.sh", False)]
    assert node_hooks.discover(tmp_path / "missing") == []


def test_run_hooks_results_env_and_order(tmp_path: Path) -> None:
    d = tmp_path / "instance-start-post.d"
    log = tmp_path / "order"
    script(d / "10-env", f"echo 10 >> {log}; env | sort")
    script(d / "20-fail", f"echo 20 >> {log}; echo refused >&2; exit 3")
    script(d / "x.sh", f"echo never >> {log}")
    results = node_hooks.run_hooks(tmp_path, "instance-start", "post",
                                   {"GANETI_FOO": "bar", "GANETI_N": 3}, timeout=10)
    assert [(r.script, r.status) for r in results] == [
        ("instance-start-post.d/10-env", "success"),
        ("instance-start-post.d/20-fail", "fail"),
        ("instance-start-post.d/x.sh", "skip")]
    assert log.read_text().split() == ["10", "20"]
    env = dict(line.split("=", 1) for line in results[0].output.splitlines())
    # the environment is exactly what was given, PATH reset to Ganeti's
    assert env.pop("PATH") == node_hooks.SCRIPT_PATH_ENV
    env.pop("PWD", None)  # the shell adds it
    env.pop("SHLVL", None)
    assert env == {"GANETI_FOO": "bar", "GANETI_N": "3"}
    assert results[1].output == "refused"


def test_no_directory_means_no_hooks(tmp_path: Path) -> None:
    assert node_hooks.run_hooks(tmp_path, "node-add", "pre", {}, timeout=5) == []


@pytest.mark.parametrize("hpath,phase", [("../etc", "pre"), ("instance-add", "during"),
                                         ("Instance", "pre"), ("a/b", "post")])
def test_bad_hooks_path_or_phase_is_refused(tmp_path: Path, hpath: str, phase: str) -> None:
    with pytest.raises(errors.ParameterError) as exc:
        node_hooks.run_hooks(tmp_path, hpath, phase, {}, timeout=5)
    assert repr(hpath if phase in ("pre", "post") else phase) in exc.value.message


def test_hanging_script_and_its_children_are_killed_at_the_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    d = tmp_path / "instance-add-pre.d"
    script(d / "10-hang", f"echo started; sleep 300 & echo $! > {pidfile}; wait")
    script(d / "20-next", "echo next")
    t0 = time.monotonic()
    results = node_hooks.run_hooks(tmp_path, "instance-add", "pre", {}, timeout=1)
    assert time.monotonic() - t0 < 5
    hang, nxt = results
    assert hang.status == "fail"
    assert hang.output.startswith("started\nhook script timed out after 1 s and was killed")
    assert (nxt.status, nxt.output) == ("success", "next")
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and \
            "Z" not in Path(f"/proc/{child}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, "the hook's child survived the timeout"
        time.sleep(0.05)


def test_directory_budget_reports_scripts_not_run(tmp_path: Path) -> None:
    d = tmp_path / "x"
    script(d / "a", "sleep 5")
    script(d / "b", "echo b")
    results = node_hooks.run_parts(d, {"PATH": "/bin:/usr/bin"}, timeout=0.5, budget=0.4)
    assert [r.status for r in results] == ["fail", "fail"]
    assert "not run" in results[1].output


def test_output_is_bounded(tmp_path: Path) -> None:
    d = tmp_path / "y"
    script(d / "big", "head -c 100000 /dev/zero | tr '\\0' a")
    (result,) = node_hooks.run_parts(d, {"PATH": "/bin:/usr/bin"}, timeout=10)
    assert result.status == "success"
    assert len(result.output) < node_hooks.OUTPUT_LIMIT + 100
    assert result.output.endswith(f"({100000 - node_hooks.OUTPUT_LIMIT} more bytes of output "
                                  "not kept)")


def test_timeout_setting() -> None:
    assert node_hooks.configured_timeout({}) == 3600
    assert node_hooks.configured_timeout({"HERD_HOOKS_TIMEOUT": "2.5"}) == 2.5
    for bad in ("0", "-1", "soon", "1e9"):
        with pytest.raises(errors.ParameterError, match=f"invalid HERD_HOOKS_TIMEOUT '{bad}'"):
            node_hooks.configured_timeout({"HERD_HOOKS_TIMEOUT": bad})


def test_inventory_lists_files_with_checksum_and_mode(tmp_path: Path) -> None:
    script(tmp_path / "instance-add-post.d" / "10-log", "true")
    script(tmp_path / "watcher" / "noexec", "true", mode=0o644)
    inv = node_hooks.inventory(tmp_path)
    assert set(inv) == {"instance-add-post.d/10-log", "watcher/noexec"}
    assert inv["instance-add-post.d/10-log"][1] is True
    assert inv["watcher/noexec"][1] is False
    assert inv["watcher/noexec"][0] == inv["instance-add-post.d/10-log"][0]
    assert node_hooks.inventory(tmp_path / "none") == {}


# -- master side: the table, nodes, environment -----------------------------------------------
def three_nodes() -> tuple[ConfigData, dict[str, Node]]:
    group = NodeGroup(name="default")
    nodes = {n: Node(name=f"{n}.example.com", primary_ip=f"192.0.2.{i}", group=group.uuid)
             for i, n in enumerate(("node1", "node2", "node3"), start=1)}
    cluster = Cluster(cluster_name="cluster.example.com", master_node=nodes["node1"].uuid,
                      tags=["prod"])
    cfg = ConfigData(cluster=cluster, nodegroups={group.uuid: group},
                     nodes={n.uuid: n for n in nodes.values()})
    return cfg, nodes


def mirrored_instance(nodes: dict[str, Node]) -> Instance:
    p, s = nodes["node2"].uuid, nodes["node3"].uuid
    return Instance(
        name="web1.example.com", primary_node=p, os="busybox+default", disk_template="drbd",
        disks=[Disk(size=1024, dev_type="drbd", nodes=[p, s], logical_id=[p, s, 11000, "r0"]),
               Disk(size=512, mode="ro", name="data", dev_type="drbd", nodes=[p, s],
                    logical_id=[p, s, 11001, "r1"])],
        nics=[Nic(mac="aa:00:00:11:22:33", ip="198.51.100.7"),
              Nic(mac="aa:00:00:44:55:66", name="backend",
                  nicparams={"mode": "routed", "link": "rt1"})],
        beparams={"maxmem": 512, "minmem": 256}, tags=["web", "blue"])


def test_every_declared_opcode_exists_and_has_a_logical_unit() -> None:
    for op_id, decl in hooks.HOOKS.items():
        assert op_id in _REGISTRY, op_id
        lu = lu_for(_REGISTRY[op_id].__new__(_REGISTRY[op_id]))
        assert op_id == lu.OPCODE.OP_ID
        assert node_hooks.HOOKS_PATH.match(decl.path)
        assert decl.object_type in ("INSTANCE", "NODE", "CLUSTER", "NETWORK", "GROUP")  # HTYPE_*
        for attr in decl.op_vars.values():
            assert attr in _REGISTRY[op_id].__dataclass_fields__, (op_id, attr)
    # Ganeti's directory names, which existing scripts are installed under
    paths = {op: d.path for op, d in hooks.HOOKS.items()}
    assert paths["OP_INSTANCE_CREATE"] == "instance-add"
    assert paths["OP_INSTANCE_REPLACE_DISKS"] == "mirrors-replace"
    assert paths["OP_NODE_SET_PARAMS"] == "node-modify"
    assert paths["OP_CLUSTER_VERIFY"] == "cluster-verify"
    assert hooks.HOOKS["OP_CLUSTER_VERIFY"].pre == ()


def test_nodes_per_phase_follow_ganetis_table() -> None:
    cfg, nodes = three_nodes()
    inst = mirrored_instance(nodes)
    t = hooks.HookTargets(instance=inst, target="node3.example.com")

    def phases(op_id: str, targets: hooks.HookTargets) -> tuple[list[str], list[str]]:
        decl = hooks.HOOKS[op_id]
        return (hooks.resolve_nodes(decl.pre, cfg, targets),
                hooks.resolve_nodes(decl.post, cfg, targets))

    short = {f"{n}.example.com": n for n in nodes}

    def names(pair: tuple[list[str], list[str]]) -> tuple[list[str], list[str]]:
        return [short[n] for n in pair[0]], [short[n] for n in pair[1]]

    assert names(phases("OP_INSTANCE_CREATE", t)) == (["node1", "node2", "node3"],) * 2
    assert names(phases("OP_INSTANCE_REMOVE", t)) == (["node1"], ["node1", "node2", "node3"])
    # failover: the target before, the node it leaves as well after
    assert names(phases("OP_INSTANCE_FAILOVER", t)) == (["node1", "node3"],
                                                        ["node1", "node3", "node2"])
    assert names(phases("OP_INSTANCE_MIGRATE", t)) == (["node1", "node2", "node3"],) * 2
    node_t = hooks.HookTargets(node="node2.example.com")
    assert names(phases("OP_NODE_REMOVE", node_t)) == (["node1", "node3"],) * 2
    assert names(phases("OP_NODE_SET_PARAMS", node_t)) == (["node1", "node2"],) * 2
    new = hooks.HookTargets(node="node4.example.com")
    pre, post = phases("OP_NODE_ADD", new)
    assert pre == sorted(short) and post == [*sorted(short), "node4.example.com"]
    assert names(phases("OP_CLUSTER_VERIFY", hooks.HookTargets())) == (
        [], ["node1", "node2", "node3"])


def test_instance_env_has_nics_and_disks() -> None:
    cfg, nodes = three_nodes()
    inst = mirrored_instance(nodes)
    env = hooks.prefixed(hooks.instance_env(cfg, inst, {"kernel_path": "/k"}), "GANETI_")
    p, s = nodes["node2"].uuid, nodes["node3"].uuid
    expected = {
        "GANETI_OP_TARGET": "web1.example.com",
        "GANETI_INSTANCE_NAME": "web1.example.com",
        "GANETI_INSTANCE_PRIMARY": "node2.example.com",
        "GANETI_INSTANCE_SECONDARIES": "node3.example.com",
        "GANETI_INSTANCE_SECONDARY": "node3.example.com",
        "GANETI_INSTANCE_OS_TYPE": "busybox+default",
        "GANETI_INSTANCE_STATUS": "down",
        "GANETI_INSTANCE_MEMORY": "512", "GANETI_INSTANCE_MAXMEM": "512",
        "GANETI_INSTANCE_MINMEM": "256", "GANETI_INSTANCE_VCPUS": "1",
        "GANETI_INSTANCE_DISK_TEMPLATE": "drbd", "GANETI_INSTANCE_HYPERVISOR": "kvm",
        "GANETI_INSTANCE_TAGS": "web blue",
        "GANETI_INSTANCE_NIC_COUNT": "2",
        "GANETI_INSTANCE_NIC0_MAC": "aa:00:00:11:22:33",
        "GANETI_INSTANCE_NIC0_IP": "198.51.100.7",
        "GANETI_INSTANCE_NIC0_MODE": "bridged", "GANETI_INSTANCE_NIC0_LINK": "br0",
        "GANETI_INSTANCE_NIC0_BRIDGE": "br0",
        "GANETI_INSTANCE_NIC1_NAME": "backend", "GANETI_INSTANCE_NIC1_IP": "",
        "GANETI_INSTANCE_NIC1_MODE": "routed", "GANETI_INSTANCE_NIC1_LINK": "rt1",
        "GANETI_INSTANCE_DISK_COUNT": "2",
        "GANETI_INSTANCE_DISK0_SIZE": "1024", "GANETI_INSTANCE_DISK0_MODE": "rw",
        "GANETI_INSTANCE_DISK0_DEV_TYPE": "drbd",
        "GANETI_INSTANCE_DISK0_PNODE": p, "GANETI_INSTANCE_DISK0_SNODE": s,
        "GANETI_INSTANCE_DISK0_PORT": "11000",
        "GANETI_INSTANCE_DISK1_NAME": "data", "GANETI_INSTANCE_DISK1_SIZE": "512",
        "GANETI_INSTANCE_DISK1_MODE": "ro",
        "GANETI_INSTANCE_BE_auto_balance": "True",
        "GANETI_INSTANCE_HV_kernel_path": "/k",
    }
    assert {k: env.get(k) for k in expected} == expected
    assert "GANETI_INSTANCE_NIC1_BRIDGE" not in env  # routed NICs have no bridge
    assert "GANETI_INSTANCE_DISK0_NAME" not in env   # only named disks have a name
    assert env["GANETI_INSTANCE_DISK0_UUID"] == inst.disks[0].uuid


def test_base_env_and_opcode_vars() -> None:
    decl = hooks.HOOKS["OP_INSTANCE_REBOOT"]
    env = hooks.base_env(decl, "OP_INSTANCE_REBOOT", "pre", "c.example.com",
                         "node1.example.com", "/var/lib/herd")
    assert env == {"PATH": "/sbin:/bin:/usr/sbin:/usr/bin", "GANETI_HOOKS_VERSION": "2",
                   "GANETI_OP_CODE": "OP_INSTANCE_REBOOT", "GANETI_OBJECT_TYPE": "INSTANCE",
                   "GANETI_DATA_DIR": "/var/lib/herd", "GANETI_HOOKS_PHASE": "pre",
                   "GANETI_HOOKS_PATH": "instance-reboot", "GANETI_CLUSTER": "c.example.com",
                   "GANETI_MASTER": "node1.example.com"}
    op = opcode_from_dict({"OP_ID": "OP_INSTANCE_REBOOT", "instance_name": "web1",
                           "reboot_type": "soft"})
    assert hooks.prefixed(hooks.op_env(decl, op), "GANETI_") == {
        "GANETI_IGNORE_SECONDARIES": "False", "GANETI_REBOOT_TYPE": "soft",
        "GANETI_SHUTDOWN_TIMEOUT": "120"}
    verify = hooks.HOOKS["OP_CLUSTER_VERIFY"]
    assert hooks.base_env(verify, "OP_CLUSTER_VERIFY", "post", "c", "m", "/d")[
        "GANETI_OP_CODE"] == "OP_CLUSTER_VERIFY_GROUP"


# -- reading results ---------------------------------------------------------------------------
def outcomes() -> dict[str, hooks.NodeOutcome]:
    R = node_hooks.ScriptResult
    return {
        "node2.example.com": hooks.NodeOutcome(scripts=[
            R("instance-add-pre.d/10-ok", "success", "fine"),
            R("instance-add-pre.d/20-deny", "fail", "not in the inventory\nask ops"),
            R("instance-add-pre.d/x.sh", "skip", "")]),
        "node1.example.com": hooks.NodeOutcome(scripts=[
            R("instance-add-pre.d/10-ok", "success", "")]),
        "node3.example.com": hooks.NodeOutcome(error="connection refused"),
    }


def test_pre_failures_make_one_clear_line_then_the_output() -> None:
    failures = hooks.pre_failures(outcomes())
    assert failures == [("node2.example.com", "instance-add-pre.d/20-deny",
                         "not in the inventory\nask ops")]
    message = hooks.abort_message("INSTANCE_CREATE(web1)", failures)
    assert message.splitlines() == [
        "pre hook instance-add-pre.d/20-deny failed on node node2.example.com, so "
        "INSTANCE_CREATE(web1) was not carried out (nothing was changed); its output:",
        "    not in the inventory", "    ask ops"]
    two = [*failures, ("node1.example.com", "instance-add-pre.d/30-x", "")]
    first = hooks.abort_message("X", two).splitlines()[0]
    assert "instance-add-pre.d/20-deny on node2.example.com" in first
    assert "instance-add-pre.d/30-x on node1.example.com" in first
    # an unreachable node is not a refusal, but it is reported
    assert hooks.unreachable_warnings(outcomes(), "pre") == [
        "hooks (pre phase) not run on node node3.example.com: communication failure: "
        "connection refused"]


def test_post_failures_are_warnings_in_ganetis_words() -> None:
    assert hooks.post_warnings(outcomes()) == [
        "On node2.example.com script instance-add-pre.d/20-deny failed, output: "
        "not in the inventory\nask ops"]
    report = hooks.post_report(outcomes())
    assert len(report) == 2 and report[0].startswith("hooks (post phase) not run on node "
                                                     "node3.example.com")


def test_verify_hooks_results() -> None:
    lines, ok = hooks.verify_report(outcomes())
    assert not ok
    assert lines == [
        "* Hooks Results",
        "  - ERROR: node node2.example.com: Script instance-add-pre.d/20-deny failed, output:",
        "      not in the inventory\n      ask ops",
        "  - ERROR: node node3.example.com: Communication failure in hooks execution: "
        "connection refused"]
    fine = {"node1.example.com": outcomes()["node1.example.com"]}
    assert hooks.verify_report(fine) == (["* Hooks Results"], True)


def test_hook_directories_compared_across_nodes() -> None:
    ours = {"instance-add-pre.d/10-a": ["aa", True], "watcher/w": ["bb", True],
            "node-add-post.d/n": ["cc", True]}
    theirs = {"node2.example.com": {"instance-add-pre.d/10-a": ["aa", True],
                                    "watcher/w": ["xx", True],
                                    "node-add-post.d/n": ["cc", False],
                                    "extra-post.d/e": ["dd", True]},
              "node3.example.com": dict(ours)}
    found = hooks.compare_inventories("node1.example.com", ours, theirs)
    assert found == [
        "node node2.example.com: hook file extra-post.d/e is not on the master "
        "node1.example.com",
        "node node2.example.com: hook file node-add-post.d/n is not executable there, unlike "
        "on the master",
        "node node2.example.com: hook file watcher/w differs from the master's copy "
        "(checksum mismatch)"]
    del theirs["node2.example.com"]
    theirs["node3.example.com"].pop("watcher/w")
    assert hooks.compare_inventories("m", ours, theirs) == [
        "node node3.example.com: hook file watcher/w is missing (present on the master m; "
        "'gnt-cluster copyfile' distributes it)"]


def test_every_env_value_is_a_string() -> None:
    assert hooks.env_value(None) == "None"
    assert hooks.env_value(True) == "True"
    assert hooks.env_value(3) == "3"
    assert os.sep not in hooks.HOOKS["OP_NODE_ADD"].path


# -- the order around an operation (network replaced by a scripted node answer) ---------------
class ScriptedNodes:
    """Answers hooks_run per (node, phase) as the test says; records the calls."""

    def __init__(self, answers: dict[tuple[str, str], object]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    def node(self, node: Node) -> ScriptedNodes._Client:
        return ScriptedNodes._Client(self, node.name)

    class _Client:
        def __init__(self, owner: ScriptedNodes, name: str) -> None:
            self.owner, self.name = owner, name

        async def call(self, method: str, **args: object) -> object:
            assert method == "hooks_run"
            phase = str(args["phase"])
            self.owner.calls.append((self.name, phase, dict(args["env"])))  # type: ignore[arg-type]
            answer = self.owner.answers.get((self.name, phase), [])
            if isinstance(answer, Exception):
                raise answer
            return answer


class ModifyLU(LUClusterModify):
    """Ganeti's cluster-modify hooks around an execute that only records that it ran."""

    ran = False

    async def execute(self) -> str:
        self.ran = True
        return "done"


def run_modify(tmp_path: Path, answers: dict[tuple[str, str], object],
               dry_run: bool = False) -> tuple[ModifyLU, ScriptedNodes, list[str], object]:
    cfg, _ = three_nodes()
    nodes = ScriptedNodes(answers)
    ctx = MasterContext(paths=HerdPaths(tmp_path), config=SimpleNamespace(data=cfg),  # type: ignore[arg-type]
                        locks=None, rpc=nodes)  # type: ignore[arg-type]
    said: list[str] = []
    lu = ModifyLU(OpClusterModify(mac_prefix="aa:00:01", dry_run=dry_run), ctx, said.append)
    try:
        result: object = asyncio.run(hooks.execute(lu))
    except hooks.HooksAbort as exc:
        result = exc
    return lu, nodes, said, result


def test_failing_pre_hook_means_the_operation_never_runs(tmp_path: Path) -> None:
    lu, nodes, _, result = run_modify(tmp_path, {
        ("node1.example.com", "pre"): [["cluster-modify-pre.d/10-no", "fail", "frozen"]]})
    assert isinstance(result, hooks.HooksAbort)
    assert "cluster-modify-pre.d/10-no failed on node node1.example.com" in result.message
    assert not lu.ran
    assert [(n, p) for n, p, _ in nodes.calls] == [("node1.example.com", "pre")]
    env = nodes.calls[0][2]
    assert env["GANETI_OP_CODE"] == "OP_CLUSTER_SET_PARAMS"
    assert env["GANETI_OBJECT_TYPE"] == "CLUSTER"
    assert env["GANETI_NEW_VG_NAME"] == "None"


def test_unreachable_node_is_no_refusal_and_post_failures_only_warn(tmp_path: Path) -> None:
    lu, nodes, said, result = run_modify(tmp_path, {
        ("node1.example.com", "pre"): errors.RpcError("node1 unreachable"),
        ("node1.example.com", "post"): [["cluster-modify-post.d/10-dns", "fail", "no dns"]]})
    assert lu.ran and result == "done"
    assert said[0] == ("  - WARNING: hooks (pre phase) not run on node node1.example.com: "
                       "communication failure: node1 unreachable")
    assert said[-1] == ("  - WARNING: On node1.example.com script cluster-modify-post.d/10-dns "
                        "failed, output: no dns")
    post_env = nodes.calls[-1][2]
    assert post_env["GANETI_HOOKS_PHASE"] == "post"
    assert post_env["GANETI_POST_OP_TARGET"] == post_env["GANETI_OP_TARGET"] == \
        "cluster.example.com"


def test_dry_run_runs_the_pre_hooks_only(tmp_path: Path) -> None:
    lu, nodes, _, result = run_modify(tmp_path, {}, dry_run=True)
    assert result is None and not lu.ran
    assert [p for _, p, _ in nodes.calls] == ["pre"]
