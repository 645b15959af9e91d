"""Config document round trip, atomic saves, and parameter inheritance/validation."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from herd.config.store import ConfigStore
from herd.errors import ConfigurationError, ParameterError
from herd.objects import Cluster, ConfigData, Disk, Instance, Nic, Node, NodeGroup, params
from herd.objects.disk_ids import FileId


def sample_config() -> ConfigData:
    group = NodeGroup(name="default", beparams={"vcpus": 2}, nicparams={"link": "br-group"},
                      hvparams={"kvm": {"kernel_path": "/group/vmlinuz"}})
    node = Node(name="node1.example.com", primary_ip="192.0.2.1", secondary_ip="198.51.100.1",
                group=group.uuid)
    inst = Instance(
        name="web1.example.com", primary_node=node.uuid, os="debootstrap+default",
        disk_template="file", admin_state="up",
        disks=[Disk(size=1024, logical_id=["loop", "web1/d0"], nodes=[node.uuid], name="root"),
               Disk(size=2048, mode="ro", nodes=[node.uuid])],
        nics=[Nic(mac="aa:00:00:11:22:33", ip="192.0.2.50", nicparams={"mode": "routed"}),
              Nic(mac="aa:00:00:44:55:66")],
        hvparams={"boot_order": "disk"}, beparams={"maxmem": 512}, tags=["prod"])
    cluster = Cluster(cluster_name="cluster.example.com", master_node=node.uuid,
                      master_ip="192.0.2.10",
                      hvparams={"kvm": {"kernel_path": "/cluster/vmlinuz", "acpi": True}})
    return ConfigData(cluster=cluster, nodegroups={group.uuid: group}, nodes={node.uuid: node},
                      instances={inst.uuid: inst}, serial_no=7)


# -- round trip ------------------------------------------------------------------------------
def test_config_round_trip_through_json() -> None:
    data = sample_config()
    raw = json.loads(json.dumps(data.to_dict()))
    back = ConfigData.from_dict(raw)
    assert back == data
    assert back.to_dict() == data.to_dict()
    inst = next(iter(back.instances.values()))
    assert all(isinstance(d, Disk) for d in inst.disks)
    assert all(isinstance(n, Nic) for n in inst.nics)
    assert inst.disks[0].logical_id == FileId("loop", "web1/d0")
    assert raw["instances"][inst.uuid]["disks"][0]["logical_id"] == ["loop", "web1/d0"]
    assert inst.disks[1].mode == "ro"
    assert inst.nics[0].nicparams == {"mode": "routed"}
    assert back.serial_no == 7


def test_from_dict_ignores_unknown_fields_from_newer_versions() -> None:
    raw = sample_config().to_dict()
    inst = next(iter(raw["instances"].values()))
    inst["future_field"] = 1
    inst["disks"][0]["another_future_field"] = "x"
    back = ConfigData.from_dict(raw)
    assert next(iter(back.instances.values())).disks[0].size == 1024


def test_copy_is_deep() -> None:
    inst = next(iter(sample_config().instances.values()))
    dup = inst.copy()
    dup.disks[0].size = 1
    dup.beparams["maxmem"] = 1
    assert inst.disks[0].size == 1024
    assert inst.beparams["maxmem"] == 512


# -- the store -------------------------------------------------------------------------------
def test_save_bumps_serial_writes_and_notifies(tmp_path: Path) -> None:
    path = tmp_path / "config.data"
    store = ConfigStore.create(path, sample_config())
    assert json.loads(path.read_text())["serial_no"] == 7
    seen: list[tuple[int, int]] = []

    async def listener(data: ConfigData) -> None:
        # when listeners run, the change is already on disk
        seen.append((data.serial_no, json.loads(path.read_text())["serial_no"]))

    store.add_listener(listener)
    next(iter(store.data.instances.values())).admin_state = "down"
    asyncio.run(store.save())
    asyncio.run(store.save())
    assert seen == [(8, 8), (9, 9)]
    loaded = ConfigStore.load(path)
    assert loaded.data.serial_no == 9
    assert next(iter(loaded.data.instances.values())).admin_state == "down"
    assert [p.name for p in tmp_path.iterdir()] == ["config.data"], "temp files left behind"


def test_save_is_atomic_when_the_write_fails(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.data"
    store = ConfigStore.create(path, sample_config())
    before = path.read_text()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        asyncio.run(store.save())
    monkeypatch.undo()
    assert path.read_text() == before, "a failed save damaged the config file"
    json.loads(path.read_text())
    assert [p.name for p in tmp_path.iterdir()] == ["config.data"], "temp file left behind"


def test_file_is_valid_json_at_every_save(tmp_path: Path) -> None:
    path = tmp_path / "config.data"
    store = ConfigStore.create(path, sample_config())

    async def reader_check(data: ConfigData) -> None:
        assert json.loads(path.read_text())["serial_no"] == data.serial_no

    store.add_listener(reader_check)

    async def many() -> None:
        for i in range(20):
            store.data.cluster.tags.append(f"t{i}")
            await store.save()

    asyncio.run(many())
    assert json.loads(path.read_text())["cluster"]["tags"][-1] == "t19"
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


def test_load_missing_file_is_a_helpful_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "config.data"
    with pytest.raises(ConfigurationError) as err:
        ConfigStore.load(path)
    message = err.value.message
    assert str(path) in message
    assert "gnt-cluster init" in message
    assert "\n" not in message


def test_load_corrupt_file_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "config.data"
    path.write_text('{"cluster": ')
    with pytest.raises(ConfigurationError) as err:
        ConfigStore.load(path)
    assert str(path) in err.value.message


# -- inheritance -----------------------------------------------------------------------------
def _parts() -> tuple[ConfigData, NodeGroup, Instance]:
    data = sample_config()
    return data, next(iter(data.nodegroups.values())), next(iter(data.instances.values()))


def test_filled_beparams_cluster_group_instance() -> None:
    data, group, inst = _parts()
    data.cluster.beparams = {**params.BE_DEFAULTS, "maxmem": 256, "minmem": 256,
                             "always_failover": True}
    group.beparams = {"vcpus": 2, "minmem": 200}
    inst.beparams = {"maxmem": 512}
    filled = data.filled_beparams(inst)
    assert filled == {**params.BE_DEFAULTS, "maxmem": 512, "minmem": 200, "vcpus": 2,
                      "always_failover": True}
    # instance overrides win over the group
    inst.beparams["vcpus"] = 4
    assert data.filled_beparams(inst)["vcpus"] == 4
    # removing the override falls back to the group, then the cluster
    inst.beparams = params.update_overrides(inst.beparams, {"vcpus": None, "maxmem": None})
    assert data.filled_beparams(inst)["vcpus"] == 2
    assert data.filled_beparams(inst)["maxmem"] == 256
    group.beparams = {}
    assert data.filled_beparams(inst)["vcpus"] == params.BE_DEFAULTS["vcpus"]


def test_filled_beparams_defaults_when_cluster_lacks_a_key() -> None:
    data, group, inst = _parts()
    data.cluster.beparams = {"maxmem": 1024}  # e.g. a config written by an older version
    group.beparams = {}
    inst.beparams = {}
    filled = data.filled_beparams(inst)
    assert filled["maxmem"] == 1024
    assert filled["vcpus"] == params.BE_DEFAULTS["vcpus"]
    assert set(filled) == set(params.BE_DEFAULTS)


def test_filled_nicparams() -> None:
    data, group, inst = _parts()
    data.cluster.nicparams = {"mode": "bridged", "link": "br0", "vlan": ""}
    group.nicparams = {"link": "br-group"}
    assert data.filled_nicparams(inst, {}) == {"mode": "bridged", "link": "br-group",
                                               "vlan": ""}
    assert data.filled_nicparams(inst, {"mode": "routed", "link": "100"}) == \
        {"mode": "routed", "link": "100", "vlan": ""}
    assert data.filled_nicparams(inst, {"link": None})["link"] == "br-group"


def test_filled_hvparams() -> None:
    data, group, inst = _parts()
    defaults = {"kernel_path": "", "acpi": False, "boot_order": "cdrom", "serial_console": True}
    data.cluster.hvparams = {"kvm": {"kernel_path": "/cluster/vmlinuz", "acpi": True}}
    group.hvparams = {"kvm": {"kernel_path": "/group/vmlinuz"}}
    inst.hvparams = {"boot_order": "disk"}
    assert data.filled_hvparams(inst, defaults) == {
        "kernel_path": "/group/vmlinuz", "acpi": True, "boot_order": "disk",
        "serial_console": True}
    # another hypervisor's cluster settings do not leak in
    data.cluster.hvparams["fake"] = {"acpi": "nope"}
    assert data.filled_hvparams(inst, defaults)["acpi"] is True


def test_instance_on_unknown_node_uses_cluster_level() -> None:
    data, _, inst = _parts()
    inst.primary_node = "no-such-node"
    inst.beparams = {}
    assert data.filled_beparams(inst)["vcpus"] == data.cluster.beparams["vcpus"]


# -- validation ------------------------------------------------------------------------------
def test_check_beparams_memory_alias() -> None:
    assert params.check_beparams({"memory": "1G"}) == {"maxmem": 1024, "minmem": 1024}
    assert params.check_beparams({"memory": 512}) == {"maxmem": 512, "minmem": 512}
    out = params.check_beparams({"maxmem": "2G", "minmem": "1G", "vcpus": "4",
                                 "auto_balance": "no", "always_failover": "yes"})
    assert out == {"maxmem": 2048, "minmem": 1024, "vcpus": 4, "auto_balance": False,
                   "always_failover": True}


def test_check_beparams_none_means_reset() -> None:
    assert params.check_beparams({"maxmem": None, "vcpus": None}) == \
        {"maxmem": None, "vcpus": None}


@pytest.mark.parametrize(("given", "fragments"), [
    ({"vcpus": "many"}, ["'many'", "vcpus", "integer"]),
    ({"vcpus": 0}, ["'0'", "vcpus", "at least 1"]),
    ({"spindle_use": -1}, ["'-1'", "spindle_use"]),
    ({"memory": "10X"}, ["'10X'", "memory"]),
    ({"maxmem": "lots"}, ["'lots'", "maxmem"]),
    ({"auto_balance": "maybe"}, ["'maybe'", "auto_balance"]),
    ({"minmem": 512, "maxmem": 256}, ["512", "256", "minmem", "maxmem"]),
    ({"colour": "blue"}, ["'colour'", "maxmem", "memory"]),
])
def test_check_beparams_errors_are_one_line_naming_the_value(given: dict[str, object],
                                                             fragments: list[str]) -> None:
    with pytest.raises(ParameterError) as err:
        params.check_beparams(given)
    message = err.value.message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_update_overrides_none_resets() -> None:
    current = {"maxmem": 512, "vcpus": 2}
    out = params.update_overrides(current, {"maxmem": None, "vcpus": 4, "minmem": 256,
                                            "not_set": None})
    assert out == {"vcpus": 4, "minmem": 256}
    assert current == {"maxmem": 512, "vcpus": 2}, "the stored overrides were modified in place"


def test_check_nicparams() -> None:
    assert params.check_nicparams({"mode": "routed", "link": "100"}) == \
        {"mode": "routed", "link": "100"}
    with pytest.raises(ParameterError, match="'bogus'"):
        params.check_nicparams({"mode": "bogus"})
    with pytest.raises(ParameterError, match="'speed'"):
        params.check_nicparams({"speed": "1G"})
