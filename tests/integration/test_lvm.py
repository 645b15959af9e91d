"""The node-side LVM layer on the real LVM2 tools and real loop devices (herd/storage/lvm.py).

Each "node" is a sparse file attached as a loop device and made a PV with a VG ``herdvg``, as the
lab gives every node its own PV. LVs are activated in loop mode (the mode these build machines get
automatically; forced where device-mapper exists, since loop mode is what is tested here). The
test cleans up, by their exact names, the PV loop devices it attached and any loop device left
over one of them, and the files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from herd.errors import ParameterError, StorageError
from herd.storage.lvm import (
    MIB,
    MODE_LOOP,
    ActivationMode,
    LvmNode,
    block_size,
    loop_span,
    probe_activation,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("lvm") is None
                       or shutil.which("losetup") is None,
                       reason="needs root, lvm2 and losetup"),
]

DISK = "3f2c1e6a-5b7d-4a2b-9c1d-6e1f00000001"  # LVs are named by disk uuid
OLD_DATA = 0xAB
MakeNode = Callable[..., tuple[LvmNode, str]]


def _loops_over(device: str) -> list[str]:
    out = subprocess.run(["losetup", "-n", "-O", "NAME", "-j", device], capture_output=True,
                         text=True, check=True).stdout
    return out.split()


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[MakeNode]:
    """make_node(label, old_data=False) -> (LvmNode, PV device): a node's PV with VG herdvg;
    ``old_data`` fills the PV's data area with a previous tenant's bytes first."""
    probed = probe_activation()
    activation = probed if probed.mode == MODE_LOOP else ActivationMode(
        MODE_LOOP, "forced by the test: loop activation is what it checks")
    attached: list[tuple[str, Path]] = []

    def make(label: str, old_data: bool = False) -> tuple[LvmNode, str]:
        image = tmp_path / f"{label}.img"
        with open(image, "wb") as handle:
            handle.truncate(64 * MIB)
            if old_data:
                handle.seek(MIB)
                handle.write(bytes([OLD_DATA]) * (40 * MIB))
        device = subprocess.run(["losetup", "--find", "--show", str(image)],
                                capture_output=True, text=True, check=True).stdout.strip()
        attached.append((device, image))
        node = LvmNode("herdvg", [device], tmp_path / label / "etc/lvm", activation=activation)
        node.create_vg()
        return node, device

    try:
        yield make
    finally:
        for device, image in reversed(attached):
            for leftover in _loops_over(device):
                subprocess.run(["losetup", "-d", leftover], check=False)
            subprocess.run(["losetup", "-d", device], check=False)
            image.unlink(missing_ok=True)


def _read(device: str, offset: int, length: int) -> bytes:
    fd = os.open(device, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def _write(device: str, offset: int, data: bytes) -> None:
    fd = os.open(device, os.O_WRONLY)
    try:
        assert os.pwrite(fd, data, offset) == len(data)
        os.fsync(fd)
    finally:
        os.close(fd)


def test_this_machine_reports_its_activation_mode() -> None:
    mode = probe_activation()
    assert mode.mode in ("device-mapper", "loop") and mode.reason
    misc = Path("/proc/misc").read_text()
    if "device-mapper" not in misc:
        assert mode.mode == MODE_LOOP and "no device-mapper" in mode.reason


def test_lv_lifecycle_in_loop_mode(make_node: MakeNode) -> None:
    node, pv = make_node("n1", old_data=True)
    vg = node.vg_info()
    assert vg.name == "herdvg" and [p.name for p in vg.pvs] == [pv]
    assert vg.extent_size == 4 * MIB

    lv = node.create(DISK, 8, ["herd.disk"])
    assert (lv.size, lv.tags, lv.path) == (8 * MIB, ("herd.disk",), None)  # created inactive
    assert _loops_over(pv) == []

    device = node.assemble(DISK)
    assert device.startswith("/dev/loop")
    assert node.assemble(DISK) == device and node.path_of(DISK) == device  # idempotent
    assert _loops_over(pv) == [device]
    assert block_size(device) == 8 * MIB

    # a new LV starts with a zeroed first MiB although the PV held data there; the rest is
    # the PV's old content (not wiped), which also shows where the LV lies
    assert _read(device, 0, MIB) == bytes(MIB)
    assert _read(device, MIB, 4096) == bytes([OLD_DATA]) * 4096

    # written through the LV's device, found on the PV at pe_start + first extent * extent size
    span = loop_span(node.get(DISK), vg.pvs, vg.extent_size)
    pattern = os.urandom(64 * 1024)
    _write(device, 2 * MIB, pattern)
    assert _read(pv, span.offset + 2 * MIB, len(pattern)) == pattern

    # grow while active: the same loop device gets the new size
    grown = node.grow(DISK, 16)
    assert grown.size == 16 * MIB and grown.path == device
    assert block_size(device) == 16 * MIB
    assert _read(device, 2 * MIB, len(pattern)) == pattern
    assert node.grow(DISK, 12).size == 16 * MIB  # a target below the size changes nothing

    # an LV right after it: a loop-mode grow cannot go on contiguously, and says so
    node.create("neighbour", 4)
    with pytest.raises(StorageError, match=rf"herdvg/{DISK} from 16 to 24 MiB.*contiguous.*"
                                           r"extents right after it"):
        node.grow(DISK, 24)
    assert node.get(DISK).size == 16 * MIB and block_size(device) == 16 * MIB

    # rename: the active device follows (a loop device maps extents, not names)
    node.rename(DISK, "renamed")
    assert node.find(DISK) is None and node.path_of("renamed") == device

    # in use: neither deactivated nor removed
    fd = os.open(device, os.O_RDONLY)
    try:
        with pytest.raises(StorageError, match=rf"herdvg/renamed is in use: its loop device "
                                               rf"{device} is held by pid {os.getpid()}"):
            node.remove("renamed")
        assert node.path_of("renamed") == device
    finally:
        os.close(fd)

    node.deactivate("renamed")
    assert node.path_of("renamed") is None and _loops_over(pv) == []
    node.deactivate("renamed")  # nothing to do

    node.remove("renamed")
    node.remove("neighbour")
    node.remove("renamed")  # already gone: nothing to do
    assert node.list_lvs() == [] and node.loop_devices() == [] and _loops_over(pv) == []
    assert node.vg_info().free == vg.free


def test_failed_create_leaves_nothing(make_node: MakeNode) -> None:
    node, pv = make_node("n1")
    with pytest.raises(StorageError, match=rf"cannot create LV herdvg/{DISK} \(100 MiB\): "
                                           r'Volume group "herdvg" has insufficient free space'):
        node.create(DISK, 100)
    with pytest.raises(ParameterError, match="invalid LVM logical volume name 'disk 0'"):
        node.create("disk 0", 4)
    with pytest.raises(StorageError, match=r"LV herdvg/nothere does not exist"):
        node.assemble("nothere")
    assert node.list_lvs() == [] and _loops_over(pv) == []


def test_two_nodes_with_the_same_vg_name_do_not_see_each_other(make_node: MakeNode) -> None:
    a, pv_a = make_node("a")
    b, pv_b = make_node("b")
    assert [p.name for p in a.vg_info().pvs] == [pv_a]
    assert [p.name for p in b.vg_info().pvs] == [pv_b]

    # the same disk uuid on both nodes, as a mirrored disk's two copies
    a.create(DISK, 4)
    a.create("only-on-a", 4)
    b.create(DISK, 4)
    assert [lv.name for lv in a.list_lvs()] == [DISK, "only-on-a"]
    assert [lv.name for lv in b.list_lvs()] == [DISK]

    dev_a, dev_b = a.assemble(DISK), b.assemble(DISK)
    assert dev_a != dev_b
    _write(dev_a, 0, b"A" * 4096)
    _write(dev_b, 0, b"B" * 4096)
    assert _read(dev_a, 0, 4096) == b"A" * 4096 and _read(dev_b, 0, 4096) == b"B" * 4096
    assert a.loop_devices()[0].name == dev_a and b.loop_devices()[0].name == dev_b

    a.remove(DISK)
    assert b.path_of(DISK) == dev_b and _read(dev_b, 0, 4096) == b"B" * 4096
    a.remove_vg()
    assert [lv.name for lv in b.list_lvs()] == [DISK]
    b.remove(DISK)
    assert _loops_over(pv_a) == [] and _loops_over(pv_b) == []
