"""Logical units run whole (locks, check, hooks, execute, rollback) on the in-process cluster.

What users rely on is checked where it shows: the disk file on the primary node's root, the
fake hypervisor's guests, the config as saved on the master, the job's status and log. The
nodes are real NodeServices; only the network is in-process (tests/harness.py), so each test
takes milliseconds.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from herd import errors
from herd.logic import intents
from herd.opcodes import OpInstanceStartup
from herd.rpc.client import NodeClient
from tests.harness import InProcessCluster, create_op, node_name, scratch_root

N1, N2 = node_name(1), node_name(2)
INST = "inst1.example.com"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[InProcessCluster]:
    """A fresh two-node cluster for each test: no test depends on another's state."""
    with scratch_root(tmp_path) as root, InProcessCluster(root, nodes=2) as c:
        yield c


@pytest.fixture(scope="module")
def untouched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessCluster]:
    """One cluster shared by tests of operations that must change nothing (each of them
    asserts so, and a test whose operation did change something fails itself)."""
    with scratch_root(tmp_path_factory.mktemp("untouched")) as root, \
            InProcessCluster(root, nodes=2) as c:
        yield c


def op(op_id: str, **fields: Any) -> dict[str, Any]:
    return {"OP_ID": op_id, **fields}


def add(cluster: InProcessCluster, name: str = INST, **kwargs: Any) -> None:
    """An instance on node2 (not the master, so that "the primary's root" means something)."""
    kwargs.setdefault("node", N2)
    outcome = cluster.run(create_op(name, **kwargs))
    assert outcome.status == "success", outcome.log


def errors_in(log: list[str]) -> list[str]:
    return [line for line in log if line.lstrip().startswith("- ERROR:")]


# -- the harness itself: the wire's behaviour, or the tests below prove nothing --------------
def test_harness_client_answers_as_the_production_client(cluster: InProcessCluster) -> None:
    """Every answer of the harness's client (noded's app called directly) is what the
    unmodified NodeClient gets over HTTP from the same app: results and errors alike."""
    node = cluster.config.find_node(N2)
    fast, wire = cluster.rpc.node(node), cluster.rpc.wire(node)

    def answer(call: Callable[[NodeClient], Awaitable[Any]], client: NodeClient) -> Any:
        try:
            return cluster.wait(call(client))
        except errors.HerdError as exc:
            return type(exc).__name__, exc.message

    def same(call: Callable[[NodeClient], Awaitable[Any]]) -> Any:
        ours = answer(call, fast)
        assert ours == answer(call, wire)
        return ours

    missing = {"template": "file", "logical_id": ["loop", "x/y.disk0"], "uuid": "u", "index": 0}
    assert same(lambda c: c.master_info())["node_name"] == N2  # node2's own root
    # an older master's call, answered through the translators (a rolling upgrade)
    assert same(lambda c: c.call("disks_check", disks=[missing])) == [
        {"uuid": "u", "exists": False, "size": None,
         "path": str(cluster.nodes[N2].paths.file_storage_dir / "x/y.disk0")}]
    # a call the node does not know: an older noded than the master (a rolling upgrade)
    assert same(lambda c: c.call("rm_rf")) == (
        "RpcError", f"node {N2} runs an older herd-noded that lacks the 'rm_rf' call: upgrade "
        "it first (gnt-cluster verify names each node's version)")
    assert same(lambda c: c.call("ping", bogus=1))[0] == "ParameterError"
    for error, expected in ((errors.HypervisorError("QMP socket gone"),
                             ("HypervisorError", "QMP socket gone")),
                            (ValueError("boom"), ("HerdError", "node RPC 'instance_list' "
                                                               "failed: ValueError: boom"))):
        cluster.fail_once(N2, "instance_list", error)  # once for each client
        cluster.fail_once(N2, "instance_list", error)
        assert same(lambda c: c.instance_list()) == expected
    assert same(lambda c: c.instance_list()) == []  # each fault fired once
    cluster.set_unreachable(N2)
    assert same(lambda c: c.master_info()) == (
        "RpcError", f"node {N2} (https://192.0.2.2:1811) unreachable for 'master_info': "
        "ConnectError: [Errno 113] No route to host")


def test_nodes_hold_the_cluster_files_and_rpcs_are_recorded(cluster: InProcessCluster) -> None:
    """The replicator pushed facts and TLS files at creation, as gnt-node add leaves them."""
    node2 = cluster.nodes[N2]
    assert node2.paths.ca_cert.read_bytes() == cluster.paths.ca_cert.read_bytes()
    assert node2.methods_called() == ["config_upload"]
    assert node2.calls[0][1]["facts"]["master_node"] == N1


# -- gnt-instance add ------------------------------------------------------------------------
def test_add_creates_the_disk_file_on_the_primary_and_the_config_entry(
        cluster: InProcessCluster) -> None:
    outcome = cluster.run(create_op(INST, node=N2, disks=[{"size": "64M"}, {"size": "1G"}]))

    assert (outcome.status, outcome.result) == ("success", [INST])
    inst = cluster.saved_config().find_instance(INST)
    assert inst is not None and inst.disk_template == "file" and inst.admin_state == "down"
    assert inst.primary_node == cluster.config.find_node(N2).uuid
    rels = [d.logical_id.file_path() for d in inst.disks]
    assert cluster.nodes[N2].disk_files() == sorted(rels)
    assert cluster.nodes[N1].disk_files() == []
    sizes = [os.stat(cluster.nodes[N2].paths.file_storage_dir / r).st_size for r in rels]
    assert sizes == [64 << 20, 1024 << 20]
    assert cluster.running(N2) == {}  # --no-start
    assert not list((cluster.paths.data_dir / "intents").glob("*.json"))


def test_add_with_start_runs_the_guest_on_the_primary(cluster: InProcessCluster) -> None:
    add(cluster, start=True, beparams={"maxmem": "256M"})

    guest = cluster.running(N2)[INST]
    assert (guest["state"], guest["memory"]) == ("running", 256)
    assert cluster.running(N1) == {}
    assert cluster.saved_config().find_instance(INST).admin_state == "up"


def test_failed_start_rolls_back_the_disks_and_the_config_entry(
        cluster: InProcessCluster) -> None:
    serial = cluster.saved_config().serial_no
    cluster.fail_once(N2, "instance_start", errors.HypervisorError("QEMU exited: no memory"))

    outcome = cluster.run(create_op(INST, node=N2, start=True))

    assert outcome.status == "error"
    assert outcome.error == ("HypervisorError", "QEMU exited: no memory")
    assert "* removing the disks created for the failed instance" in outcome.log
    assert cluster.nodes[N2].disk_files() == []
    assert cluster.running(N2) == {}
    assert cluster.instance(INST) is None
    assert cluster.saved_config().find_instance(INST) is None
    assert cluster.saved_config().serial_no == serial
    assert not list((cluster.paths.data_dir / "intents").glob("*.json"))
    assert intents.live_intents() == []
    # the name and MAC reservations were released: the same add now succeeds
    add(cluster, start=True)


def test_disk_created_then_failure_reported_is_still_removed(cluster: InProcessCluster) -> None:
    """The node made the file but answered with an error (as after a lost answer): the
    rollback must not trust the error and leave the file behind."""
    cluster.fail_once(N2, "blockdev_create", after=True)

    outcome = cluster.run(create_op(INST, node=N2))

    assert outcome.status == "error"
    assert "injected failure of 'blockdev_create'" in outcome.error[1]
    assert "blockdev_remove" in cluster.nodes[N2].methods_called()
    assert cluster.nodes[N2].disk_files() == []
    assert cluster.saved_config().find_instance(INST) is None


def test_disk_larger_than_the_node_has_leaves_nothing(cluster: InProcessCluster) -> None:
    """The second disk does not fit: the node removes the first itself, the master writes no
    config entry."""
    outcome = cluster.run(create_op(INST, node=N2, disks=[{"size": 64}, {"size": "900T"}]))

    assert outcome.error is not None and outcome.error[0] == "StorageError"
    assert "not enough space for a 943718400 MiB disk" in outcome.error[1]
    assert cluster.nodes[N2].disk_files() == []
    assert cluster.saved_config().find_instance(INST) is None


@pytest.mark.parametrize(("changes", "code", "fragment"), [
    ({"disks": [{"size": 64, "mode": "rx"}]}, "ParameterError", "invalid mode 'rx' for disk 0"),
    ({"disks": [{"size": "10X"}]}, "ParameterError", "invalid size of disk 0 '10X'"),
    ({"disks": [{"size": 64, "spindels": 2}]}, "ParameterError",
     "unknown disk parameter(s) spindels for disk 0"),
    ({"beparams": {"maxmem": "lots"}}, "ParameterError", "invalid maxmem 'lots'"),
    ({"disk_template": "plainx"}, "ParameterError", "invalid disk template 'plainx'"),
    ({"disk_template": "drbd"}, "OpPrereqError", "disk template 'drbd' is not enabled"),
    ({"hypervisor": "kvm"}, "ParameterError", "hypervisor 'kvm' is not enabled"),
    ({"pnode": "node9.example.com"}, "NotFoundError", "node9.example.com"),
    ({"nics": [{"mode": "routed"}]}, "ParameterError", "NIC 0 is routed and needs an IP"),
])
def test_bad_parameter_fails_in_check_and_creates_nothing(
        untouched: InProcessCluster, changes: dict[str, Any], code: str, fragment: str) -> None:
    cluster = untouched
    bad = create_op(INST, node=N2) | changes
    serial = cluster.saved_config().serial_no

    with pytest.raises(errors.OpPrereqError) as raised:  # refused by check() itself
        cluster.check(bad)
    assert (raised.value.code, fragment in raised.value.message) == (code, True)
    assert "\n" not in raised.value.message

    cluster.clear_calls()
    outcome = cluster.run(bad)
    assert outcome.error == (code, raised.value.message)
    assert outcome.log[-1] == f"Error: {raised.value.message}"
    creating = {"blockdev_create", "disks_create", "instance_start", "os_run"}
    assert not creating & {m for _, m in cluster.all_calls()}
    assert cluster.nodes[N2].disk_files() == []
    assert cluster.saved_config().serial_no == serial
    assert cluster.config.instances == {}


def test_add_refuses_a_name_in_use(cluster: InProcessCluster) -> None:
    add(cluster)
    outcome = cluster.run(create_op(INST, node=N1))
    assert outcome.error == ("AlreadyExistsError", f"instance '{INST}' already exists")
    assert cluster.nodes[N1].disk_files() == []


# -- gnt-instance remove ---------------------------------------------------------------------
def test_remove_stops_the_guest_and_deletes_its_files(cluster: InProcessCluster) -> None:
    add(cluster, start=True, disks=[{"size": 64}, {"size": 64}])
    assert len(cluster.nodes[N2].disk_files()) == 2

    outcome = cluster.run(op("OP_INSTANCE_REMOVE", instance_name=INST))

    assert outcome.status == "success"
    assert cluster.running(N2) == {}
    assert cluster.nodes[N2].disk_files() == []
    assert not (cluster.nodes[N2].paths.file_storage_dir / INST).exists()  # its directory too
    assert cluster.saved_config().find_instance(INST) is None


def test_remove_with_unreachable_primary(cluster: InProcessCluster) -> None:
    """Refused, config kept; --ignore-failures forgets it, and once the node is back verify
    names the file left there."""
    add(cluster)
    cluster.set_unreachable(N2)

    refused = cluster.run(op("OP_INSTANCE_REMOVE", instance_name=INST))
    assert refused.error is not None and refused.error[0] == "RpcError"
    assert f"node {N2}" in refused.error[1]
    assert cluster.saved_config().find_instance(INST) is not None

    forced = cluster.run(op("OP_INSTANCE_REMOVE", instance_name=INST, ignore_failures=True))
    assert forced.status == "success"
    assert any(line.startswith("ignoring failure: node node2") for line in forced.log)
    assert cluster.saved_config().find_instance(INST) is None

    cluster.set_unreachable(N2, False)
    (left,) = cluster.nodes[N2].disk_files()
    verify = cluster.run(op("OP_CLUSTER_VERIFY"))
    assert f"  - WARNING: node {N2}: volume {left} is unknown (a disk file no instance owns)" \
        in verify.log


# -- startup, shutdown, reboot, disks --------------------------------------------------------
def test_startup_and_shutdown_change_the_guest_and_admin_state(
        cluster: InProcessCluster) -> None:
    add(cluster)

    started = cluster.run(OpInstanceStartup(instance_name=INST))
    assert started.status == "success"
    assert cluster.running(N2)[INST]["state"] == "running"
    assert cluster.saved_config().find_instance(INST).admin_state == "up"

    again = cluster.run(OpInstanceStartup(instance_name=INST))
    assert f"instance {INST} is already running" in again.log

    stopped = cluster.run(op("OP_INSTANCE_SHUTDOWN", instance_name=INST, timeout=0))
    assert stopped.status == "success"
    assert cluster.running(N2) == {}
    assert cluster.saved_config().find_instance(INST).admin_state == "down"

    paused = cluster.run(OpInstanceStartup(instance_name=INST, startup_paused=True,
                                           no_remember=True))
    assert cluster.running(N2)[INST]["state"] == "paused"
    assert paused.status == "success"
    assert cluster.saved_config().find_instance(INST).admin_state == "down"  # not remembered


def test_shutdown_of_unreachable_primary_fails_and_keeps_admin_state(
        cluster: InProcessCluster) -> None:
    add(cluster, start=True)
    cluster.set_unreachable(N2)

    outcome = cluster.run(op("OP_INSTANCE_SHUTDOWN", instance_name=INST))

    assert outcome.error is not None and outcome.error[0] == "RpcError"
    assert "unreachable for 'instance_info'" in outcome.error[1]
    assert cluster.saved_config().find_instance(INST).admin_state == "up"
    cluster.set_unreachable(N2, False)
    assert INST in cluster.running(N2)


def test_startup_refuses_a_missing_disk_until_recreate_disks(cluster: InProcessCluster) -> None:
    add(cluster)
    (rel,) = cluster.nodes[N2].disk_files()
    (cluster.nodes[N2].paths.file_storage_dir / rel).unlink()  # lost on the node

    refused = cluster.run(OpInstanceStartup(instance_name=INST))
    assert refused.error is not None and refused.error[0] == "OpPrereqError"
    assert "is missing on node node2.example.com; use 'gnt-instance recreate-disks'" \
        in refused.error[1]
    assert cluster.running(N2) == {}

    recreated = cluster.run(op("OP_INSTANCE_RECREATE_DISKS", instance_name=INST))
    assert recreated.result == [f"disk/0 on {N2}"]
    assert cluster.nodes[N2].disk_files() == [rel]
    assert cluster.run(OpInstanceStartup(instance_name=INST)).status == "success"
    assert INST in cluster.running(N2)


def test_reboot_of_a_stopped_instance_starts_it(cluster: InProcessCluster) -> None:
    add(cluster)
    outcome = cluster.run(op("OP_INSTANCE_REBOOT", instance_name=INST, reboot_type="hard"))
    assert f"instance {INST} was not running; starting it" in outcome.log
    assert cluster.running(N2)[INST]["state"] == "running"
    assert cluster.saved_config().find_instance(INST).admin_state == "up"


def test_activate_disks_reports_the_path_on_the_primary(cluster: InProcessCluster) -> None:
    add(cluster)
    (rel,) = cluster.nodes[N2].disk_files()

    outcome = cluster.run(op("OP_INSTANCE_ACTIVATE_DISKS", instance_name=INST))

    path = str(cluster.nodes[N2].paths.file_storage_dir / rel)
    assert outcome.result == [[N2, "disk/0", path]]
    assert cluster.saved_config().find_instance(INST).disks_active


def test_modify_backend_parameters_take_effect_at_the_next_start(
        cluster: InProcessCluster) -> None:
    add(cluster, start=True)
    outcome = cluster.run(op("OP_INSTANCE_SET_PARAMS", instance_name=INST,
                             beparams={"maxmem": "512M", "vcpus": 2}))
    assert outcome.result == [["be/maxmem", "512"], ["be/vcpus", "2"]]
    assert cluster.saved_config().find_instance(INST).beparams == {"maxmem": 512, "vcpus": 2}
    assert cluster.running(N2)[INST]["memory"] == 128  # the running guest is left alone

    cluster.run(op("OP_INSTANCE_SHUTDOWN", instance_name=INST))
    cluster.run(OpInstanceStartup(instance_name=INST))
    guest = cluster.running(N2)[INST]
    assert (guest["memory"], guest["vcpus"]) == (512, 2)

    refused = cluster.run(op("OP_INSTANCE_SET_PARAMS", instance_name=INST,
                             disk_template="drbd", remote_node=N1))
    assert refused.error == ("OpPrereqError",
                             "disk template 'drbd' is not enabled in this cluster")
    assert cluster.saved_config().find_instance(INST).disk_template == "file"


# -- gnt-cluster verify ----------------------------------------------------------------------
def test_verify_of_a_healthy_cluster_succeeds(cluster: InProcessCluster) -> None:
    add(cluster, start=True)
    outcome = cluster.run(op("OP_CLUSTER_VERIFY"))
    assert (outcome.status, outcome.result) == ("success", True)
    assert errors_in(outcome.log) == []
    # the nodes share one reason: one warning names both (it was one line per node)
    (kvm,) = [line for line in outcome.log if "KVM is not usable" in line]
    assert kvm.startswith(f"  - WARNING: nodes {N1}, {N2}: KVM is not usable (")


def test_verify_names_a_node_that_speaks_another_protocol_with_both_versions(
        cluster: InProcessCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    from herd import __version__
    from herd.version import RPC_VERSION

    service = cluster.nodes[N2].service
    real = service.node_info

    async def older() -> dict[str, Any]:  # what a noded of the last release answers
        info = await real()
        info.update(rpc=RPC_VERSION - 1, herd_version="0.0.9")
        return info

    monkeypatch.setattr(service, "node_info", older)
    outcome = cluster.run(op("OP_CLUSTER_VERIFY"))
    assert (outcome.status, outcome.result) == ("success", False)
    assert (f"  - ERROR: node {N2} runs an older Herd: node RPC protocol {RPC_VERSION - 1} "
            f"(Herd 0.0.9), this master speaks protocol {RPC_VERSION} (Herd {__version__}); "
            "upgrade that node first") in outcome.log
    monkeypatch.setattr(service, "node_info", real)
    assert cluster.run(op("OP_CLUSTER_VERIFY")).result is True


def test_verify_reports_an_unreachable_node_with_its_reason_and_instances(
        cluster: InProcessCluster) -> None:
    add(cluster, start=True)
    cluster.set_unreachable(N2)

    outcome = cluster.run(op("OP_CLUSTER_VERIFY"))

    assert (outcome.status, outcome.result) == ("success", False)  # the job ran; verdict bad
    prefix = f"  - ERROR: node {N2}: unreachable or failing: "
    (line,) = [ln for ln in outcome.log if ln.startswith(prefix)]
    reason = line.removeprefix(prefix)
    assert "unreachable for 'node_info'" in reason and "No route to host" in reason
    assert (f"  - ERROR: instance {INST}: instance not running: its primary node {N2} is "
            "unreachable") in outcome.log


def test_verify_reports_guests_and_files_herd_does_not_know(cluster: InProcessCluster) -> None:
    add(cluster, start=True)
    stray = cluster.nodes[N2].paths.file_storage_dir / "old/disk0"
    stray.parent.mkdir()
    stray.write_bytes(b"")
    # a guest started on node1 behind Herd's back, and ours stopped behind its back
    hv2 = cluster.nodes[N2].service
    cluster.wait(hv2.instance_stop(INST, 0))
    spec = {"name": "ghost.example.com", "uuid": "u", "hypervisor": "fake", "memory": 64,
            "vcpus": 1, "hvparams": {}, "disks": [], "nics": []}
    cluster.wait(cluster.nodes[N1].service.instance_start(spec))

    outcome = cluster.run(op("OP_CLUSTER_VERIFY"))

    assert outcome.result is False
    assert set(errors_in(outcome.log)) == {
        f"  - ERROR: instance {INST}: instance not running on its primary node {N2}",
        f"  - ERROR: node {N1}: instance ghost.example.com is unknown (orphan instance "
        "running behind Herd's back)"}
    assert f"  - WARNING: node {N2}: volume old/disk0 is unknown (a disk file no instance " \
        "owns)" in outcome.log


# -- tags ------------------------------------------------------------------------------------
def test_tags_are_added_and_removed_and_saved(cluster: InProcessCluster) -> None:
    add(cluster)
    tags = op("OP_TAGS_SET", kind="instance", name=INST, tags=["web", "env:prod"])
    assert cluster.run(tags).status == "success"
    assert cluster.run(op("OP_TAGS_SET", kind="cluster", tags=["lab"])).status == "success"
    saved = cluster.saved_config()
    assert saved.find_instance(INST).tags == ["web", "env:prod"]
    assert saved.cluster.tags == ["lab"]

    missing = cluster.run(op("OP_TAGS_DEL", kind="instance", name=INST, tags=["web", "db"]))
    assert missing.error == ("NotFoundError", "tag(s) 'db' not found")
    assert cluster.saved_config().find_instance(INST).tags == ["web", "env:prod"]

    with pytest.raises(errors.ParameterError, match="invalid tag 'two words'"):  # at submit
        cluster.submit(op("OP_TAGS_SET", kind="instance", name=INST, tags=["two words"]))

    assert cluster.run(op("OP_TAGS_DEL", kind="instance", name=INST,
                          tags=["web"])).status == "success"
    assert cluster.saved_config().find_instance(INST).tags == ["env:prod"]
    assert cluster.run(op("OP_TAGS_GET", kind="instance", name=INST)).result == ["env:prod"]


# -- jobs of several opcodes; cluster parameters ---------------------------------------------
def test_a_failing_opcode_aborts_the_rest_of_its_job(cluster: InProcessCluster) -> None:
    outcome = cluster.run(create_op(INST, node=N2),
                          op("OP_TAGS_DEL", kind="instance", name=INST, tags=["nope"]),
                          OpInstanceStartup(instance_name=INST))

    assert outcome.op_status == ["success", "error", "error"]
    assert outcome.results[2] == ["OpExecError", ["Job aborted: an earlier opcode failed"]]
    assert cluster.running(N2) == {}  # the startup never ran
    assert cluster.saved_config().find_instance(INST).admin_state == "down"  # the add stays


def test_cluster_modify_refuses_to_disable_a_template_in_use(cluster: InProcessCluster) -> None:
    add(cluster)
    refused = cluster.run(op("OP_CLUSTER_SET_PARAMS", enabled_disk_templates=["diskless"]))
    assert refused.error == ("OpPrereqError",
                             "cannot disable disk template(s) file: instances use them")
    changed = cluster.run(op("OP_CLUSTER_SET_PARAMS", beparams={"maxmem": "512M"}))
    assert changed.status == "success"
    assert cluster.saved_config().cluster.beparams["maxmem"] == 512
    add(cluster, "inst2.example.com", start=True)
    assert cluster.running(N2)["inst2.example.com"]["memory"] == 512


def test_nodes_and_an_allocator_together_are_refused(cluster: InProcessCluster) -> None:
    """-n and -I both given: Ganeti refuses (which one should win?); -I used to be accepted
    and ignored here. The job fails naming both and creates nothing."""
    outcome = cluster.run(create_op(INST, node=N2, iallocator="hail"))
    assert outcome.status == "error"
    assert outcome.error == ("ParameterError", f"give either nodes (-n {N2}) or an instance "
                             "allocator (-I hail), not both"), outcome.error
    assert cluster.nodes[N2].disk_files() == []
    assert INST not in {i.name for i in cluster.config.instances.values()}


def test_the_os_search_path_is_a_cluster_parameter(cluster: InProcessCluster) -> None:
    import asyncio

    for node in cluster.nodes.values():  # an OS only in /opt/site-os on every node
        os_dir = node.paths.root / "opt/site-os/siteos"
        os_dir.mkdir(parents=True)
        (os_dir / "ganeti_api_version").write_text("15\n")
        for script in ("create", "export", "import", "rename"):
            (os_dir / script).write_text("#!/bin/sh\nexit 0\n")
            (os_dir / script).chmod(0o755)

    def names(node: str) -> set[str]:
        return {d["name"] for d in asyncio.run(cluster.nodes[node].service.os_diagnose())}

    assert "siteos" not in names(N2) and "busybox" in names(N2)  # the default path
    bad = cluster.run(op("OP_CLUSTER_SET_PARAMS", os_search_path=["opt/site-os"]))
    assert bad.status == "error" and any("invalid OS search path entry 'opt/site-os'" in line
                                         for line in bad.log), bad.log
    done = cluster.run(op("OP_CLUSTER_SET_PARAMS", os_search_path=["/opt/site-os"]))
    assert done.status == "success", done.log
    assert names(N1) == names(N2) == {"siteos"}  # every node, through its facts
    assert cluster.run(op("OP_CLUSTER_SET_PARAMS", os_search_path=[])).status == "success"
    assert "busybox" in names(N2) and "siteos" not in names(N2)
