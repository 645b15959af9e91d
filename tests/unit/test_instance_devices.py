"""gnt-instance modify --net/--disk run whole on the in-process cluster (fake hypervisor):
what the config, the nodes' volumes and the running guest hold afterwards, and that a
failure half-way leaves all three as they were."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd import errors
from tests.harness import Fault, InProcessCluster, create_op, node_name, scratch_root

N1, N2 = node_name(1), node_name(2)
INST = "inst1.example.com"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[InProcessCluster]:
    with scratch_root(tmp_path) as root, \
            InProcessCluster(root, nodes=2, disk_templates=("file", "drbd", "diskless")) as c:
        yield c


def modify(cluster: InProcessCluster, **fields: Any) -> Any:
    return cluster.run({"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": INST, **fields})


def guest(cluster: InProcessCluster) -> dict[str, Any]:
    spec: dict[str, Any] = cluster.running(N2)[INST]["spec"]
    return spec


def test_hotplug_adds_and_removes_a_nic_and_a_disk_of_a_running_guest(
        cluster: InProcessCluster) -> None:
    outcome = cluster.run(create_op(INST, node=N2, start=True, nics=[{}]))
    assert outcome.status == "success", outcome.log
    before = set(cluster.nodes[N2].disk_files())
    done = modify(cluster, hotplug=True, nics=[["add", {"name": "backend", "link": "br9"}]],
                  disks=[["add", -1, {"size": "128M", "name": "data"}]])
    assert done.status == "success", done.log
    inst = cluster.saved_config().find_instance(INST)
    assert inst is not None
    assert [n.name for n in inst.nics] == [None, "backend"]
    new_nic, new_disk = inst.nics[1], inst.disks[1]
    prefix = cluster.config.cluster.mac_prefix
    assert new_nic.mac.startswith(prefix) and new_nic.mac != inst.nics[0].mac
    assert (new_disk.size, new_disk.name) == (128, "data")
    assert [d["uuid"] for d in guest(cluster)["disks"]] == [d.uuid for d in inst.disks]
    assert [n["mac"] for n in guest(cluster)["nics"]] == [n.mac for n in inst.nics]
    assert len(set(cluster.nodes[N2].disk_files()) - before) == 1
    assert ["nic.1", f"add:mac={new_nic.mac},ip=None,mode=bridged,link=br9"] in done.result
    assert not any("next restart" in line for line in done.log)

    gone = modify(cluster, hotplug=True, nics=[["remove", "backend", {}]],
                  disks=[["remove", {}]])  # Ganeti's 2-tuple: the last disk
    assert gone.status == "success", gone.log
    inst = cluster.saved_config().find_instance(INST)
    assert inst is not None and len(inst.nics) == 1 and len(inst.disks) == 1
    assert len(guest(cluster)["disks"]) == 1 and len(guest(cluster)["nics"]) == 1
    assert set(cluster.nodes[N2].disk_files()) == before


def test_without_hotplug_a_running_guest_gets_changes_at_its_next_restart(
        cluster: InProcessCluster) -> None:
    assert cluster.run(create_op(INST, node=N2, start=True,
                                 disks=[{"size": 64}, {"size": 64}])).status == "success"
    done = modify(cluster, nics=[{"action": "add", "identifier": -1, "params": {}}],
                  beparams={"maxmem": "256M"})
    assert done.status == "success", done.log
    notice = [line for line in done.log if "next restart" in line]
    assert len(notice) == 1 and "be/maxmem, nic.0 add" in notice[0]
    assert len(guest(cluster)["nics"]) == 0  # the guest kept its hardware
    assert len(cluster.saved_config().find_instance(INST).nics) == 1  # type: ignore[union-attr]

    refused = modify(cluster, disks=[["remove", 0, {}]])
    assert refused.error[0] == "OpPrereqError"
    assert "is running and uses disk/0: remove it with --hotplug" in refused.error[1]

    stopped = cluster.run({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": INST})
    assert stopped.status == "success"
    quiet = modify(cluster, beparams={"maxmem": "512M"})
    assert not any("next restart" in line for line in quiet.log)


def test_a_disk_added_to_a_mirrored_instance_has_a_copy_on_both_nodes(
        cluster: InProcessCluster) -> None:
    outcome = cluster.run(create_op(INST, node=N2, snode=N1, template="drbd"))
    assert outcome.status == "success", outcome.log
    before = {n: set(cluster.nodes[n].disk_files()) for n in (N1, N2)}
    done = modify(cluster, disks=[["add", 0, {"size": 64}]])
    assert done.status == "success", done.log
    inst = cluster.saved_config().find_instance(INST)
    assert inst is not None and len(inst.disks) == 2
    new = inst.disks[0]
    assert sorted(new.nodes) == sorted(inst.all_nodes)
    assert new.logical_id.port != inst.disks[1].logical_id.port  # type: ignore[attr-defined]
    for n in (N1, N2):
        assert any(new.uuid in f for f in set(cluster.nodes[n].disk_files()) - before[n])


def test_no_room_on_the_secondary_leaves_nothing_behind(cluster: InProcessCluster) -> None:
    assert cluster.run(create_op(INST, node=N2, snode=N1, template="drbd")).status == "success"
    before = {n: cluster.nodes[n].disk_files() for n in (N1, N2)}
    config_before = cluster.saved_config().find_instance(INST).to_dict()  # type: ignore
    cluster.nodes[N1].faults["blockdev_create"] = [
        Fault(errors.StorageError("not enough space in /srv/herd (need 64 MiB)"))]
    failed = modify(cluster, disks=[["add", {"size": 64}]])
    assert failed.status == "error" and "not enough space" in failed.error[1]
    assert {n: cluster.nodes[n].disk_files() for n in (N1, N2)} == before
    assert cluster.saved_config().find_instance(INST).to_dict() == config_before  # type: ignore


def test_a_refused_hotplug_removes_the_new_disk_and_keeps_the_config(
        cluster: InProcessCluster) -> None:
    assert cluster.run(create_op(INST, node=N2, start=True)).status == "success"
    before = cluster.nodes[N2].disk_files()
    config_before = cluster.saved_config().find_instance(INST).to_dict()  # type: ignore
    cluster.nodes[N2].faults["instance_hotplug"] = [
        Fault(errors.HypervisorError("the guest did not release device x"))]
    failed = modify(cluster, hotplug=True, disks=[["add", {"size": 64}]],
                    nics=[["add", {}]])
    assert failed.status == "error", failed.log
    assert cluster.nodes[N2].disk_files() == before
    assert cluster.saved_config().find_instance(INST).to_dict() == config_before  # type: ignore
    assert len(guest(cluster)["nics"]) == 0 and len(guest(cluster)["disks"]) == 1


def test_nic_and_disk_changes_and_refusals(cluster: InProcessCluster) -> None:
    assert cluster.run(create_op(INST, node=N2, nics=[{"name": "lan"}])).status == "success"
    done = modify(cluster, nics=[["modify", "lan", {"link": "br7", "mac": "aa:00:00:11:22:33"}]],
                  disks=[[0, {"name": "root", "mode": "ro"}]])
    assert done.status == "success", done.log
    inst = cluster.saved_config().find_instance(INST)
    assert inst is not None
    assert (inst.nics[0].mac, inst.nics[0].nicparams["link"]) == ("aa:00:00:11:22:33", "br7")
    assert (inst.disks[0].name, inst.disks[0].mode) == ("root", "ro")
    assert cluster.run(create_op("other.example.com", node=N1)).status == "success"
    clash = cluster.run({"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "other.example.com",
                         "nics": [["add", {"mac": "aa:00:00:11:22:33"}]]})
    assert clash.error == ("AlreadyExistsError",
                           "MAC address aa:00:00:11:22:33 is already in use in the cluster")
    last = modify(cluster, disks=[["remove", {}]])
    assert last.error[0] == "ParameterError" and "needs at least one disk" in last.error[1]
