"""What kvm's hotplug sends QEMU: block nodes for each kind of disk path, device ids that do
not depend on indices, and the refusals for device models that cannot be hot-plugged."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.errors import HypervisorError
from herd.hypervisor.base import DiskSpec, InstanceSpec, NicSpec
from herd.hypervisor.kvm import hotplug
from herd.hypervisor.kvm.params import parameter_defaults
from herd.hypervisor.kvm.runtime import RuntimeRecord


def test_a_file_disk_is_a_raw_node_on_the_file(tmp_path: Path) -> None:
    disk = tmp_path / "d.img"
    disk.write_bytes(b"\0" * 512)
    args = hotplug.blockdev_args("n1", str(disk), readonly=True, cache="none")
    assert args == {"driver": "raw", "node-name": "n1", "read-only": True,
                    "file": {"driver": "file", "filename": str(disk)},
                    "cache": {"direct": True, "no-flush": False}}


def test_a_block_device_uses_the_host_device_driver() -> None:
    args = hotplug.blockdev_args("n1", "/dev/null", readonly=False, cache="default")
    assert args["file"]["driver"] == "file"  # a character device is no block device
    assert "cache" not in args


@pytest.mark.parametrize("uri, server", [
    ("nbd+unix:///disk-1?socket=/run/herd/m.sock", {"type": "unix", "path": "/run/herd/m.sock"}),
    ("nbd://192.0.2.1:10810/disk-1", {"type": "inet", "host": "192.0.2.1", "port": "10810"}),
])
def test_a_mirror_export_is_opened_over_nbd_with_reconnects(uri: str,
                                                            server: dict[str, str]) -> None:
    file = hotplug.blockdev_args("n1", uri, readonly=False, cache="default")["file"]
    assert file == {"driver": "nbd", "server": server, "export": "disk-1",
                    "reconnect-delay": 30, "open-timeout": 10}


def test_ids_come_from_the_uuid_not_the_index() -> None:
    uuid = "0a1b2c3d-4e5f-6789-abcd-ef0123456789"
    assert hotplug.disk_ids(uuid) == {"node": "hpdrive-0a1b2c3d", "device": "hpdisk-0a1b2c3d"}
    assert hotplug.nic_ids(uuid) == {"netdev": "hpnet-0a1b2c3d", "device": "hpnic-0a1b2c3d"}
    with pytest.raises(HypervisorError, match="invalid device uuid"):
        hotplug.disk_ids("x")
    assert hotplug.device_path("hpdisk-0a1b2c3d") == "/machine/peripheral/hpdisk-0a1b2c3d"
    assert hotplug.device_path("/machine/peripheral-anon/device[1]") == \
        "/machine/peripheral-anon/device[1]"


def test_models_that_cannot_be_hot_plugged_are_refused_by_name() -> None:
    hv = parameter_defaults()
    hotplug.check_disk_type(hv)
    hotplug.check_nic_type(hv)
    with pytest.raises(HypervisorError, match="disk_type 'ide' cannot be hot-plugged"):
        hotplug.check_disk_type({**hv, "disk_type": "ide"})
    with pytest.raises(HypervisorError, match="nic_type 'ne2k_isa' cannot be hot-plugged"):
        hotplug.check_nic_type({**hv, "nic_type": "ne2k_isa"})


def test_the_runtime_file_keeps_hotplug_state_and_reads_old_files() -> None:
    spec = InstanceSpec("i1", "u", 128, 1, {}, disks=[DiskSpec(0, "/x", uuid="d0")],
                        nics=[NicSpec(0, "aa:00:00:00:00:01", "bridged", "br0", uuid="n0")])
    record = RuntimeRecord(spec=spec, pid=1, accel="tcg", started=0.0, argv=[],
                           hotplug={"changed": True, "d1": {"kind": "disk"}})
    again = RuntimeRecord.from_dict(record.to_dict())
    assert again.hotplug == record.hotplug and again.spec.disks[0].uuid == "d0"
    old = record.to_dict()
    del old["hotplug"]
    for item in old["spec"]["disks"] + old["spec"]["nics"]:
        del item["uuid"]
    legacy = RuntimeRecord.from_dict(old)
    assert legacy.hotplug == {} and legacy.spec.nics[0].uuid is None


def test_grow_resizes_the_running_drive_of_the_disk_not_of_its_config_index() -> None:
    """After disk 0 was unplugged, config disk 0 is the drive started as disk 1, and a
    hot-plugged disk is a block node of its own: block_resize must name those."""
    from herd.hypervisor.kvm import resize_target

    spec = InstanceSpec(name="a", uuid="u", memory=64, vcpus=1, hvparams={},
                        disks=[DiskSpec(index=1, path="/d1", uuid="disk-b"),
                               DiskSpec(index=2, path="/d2", uuid="disk-hot")])
    record = RuntimeRecord(spec=spec, pid=1, accel="tcg", started=0.0, argv=[],
                           hotplug={"disk-hot": {"kind": "disk", "node": "hp-node-x",
                                                 "device": "hp-dev-x"}, "changed": True})
    assert resize_target(record, 0, "disk-b") == {"device": "virtio1"}
    assert resize_target(record, 1, "disk-hot") == {"node-name": "hp-node-x"}
    assert resize_target(record, 0, None) == {"device": "virtio0"}
