"""The pure parts of the node-side LVM layer (herd/storage/lvm.py).

The report samples in data/lvm/ are output of the real tools (LVM 2.03.16, util-linux 2.38 on
Debian 12), captured through LvmNode on a build machine without device-mapper (``global {
activation = 0 }``, ``--reportformat json --units b --nosuffix``); the stderr samples below too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.errors import ParameterError, StorageError
from herd.storage.lvm import (
    MODE_DM,
    MODE_LOOP,
    DeviceIdentity,
    LoopDevice,
    LoopSpan,
    PeRange,
    decide_activation,
    dm_name,
    loop_span,
    loops_at,
    lvm_argv,
    lvm_config,
    lvm_message,
    parse_dm_targets,
    parse_losetup,
    parse_lvm_version,
    parse_lvs,
    parse_pe_ranges,
    parse_pvs,
    parse_vg,
    validate_lv_name,
    validate_tag,
    validate_vg_name,
)

MIB = 1024 * 1024
EXTENT = 4 * MIB

DATA = Path(__file__).parent / "data" / "lvm"
#: pvs -o PV_FIELDS (PV and VG figures) of a 64 MiB loop file as PV of VG herdvg with 4 MiB
#: extents, 1 extent free
PVS_JSON = (DATA / "pvs.json").read_text()
#: lvs -o LV_FIELDS: "a" (8 MiB) was made without --alloc contiguous, then "b" after it removed
#: and "a" extended by 40 MiB over b's extents and beyond "c": two segments, one row each
LVS_JSON = (DATA / "lvs.json").read_text()
#: losetup -J -l -O NAME,BACK-FILE,BACK-INO,BACK-MAJ:MIN,OFFSET,SIZELIMIT with "c" active:
#: loop0 is the node's PV (a file), loop1 is LV c (extents 4-5) over loop0
LOSETUP_JSON = (DATA / "losetup.json").read_text()

# stderr of real failures (LVM_SUPPRESS_FD_WARNINGS=1, activation = 0)
ERR_NO_SPACE = """  WARNING: Activation disabled. No device-mapper interaction will be attempted.
  Volume group "herdvg" has insufficient free space (11 extents): 25 required.
"""
ERR_NOT_CONTIGUOUS = ("  WARNING: Activation disabled. No device-mapper interaction will be "
                      "attempted.\n  Insufficient suitable contiguous allocatable extents for "
                      "logical volume a: 1 more required\n")
ERR_RESERVED = """  WARNING: Activation disabled. No device-mapper interaction will be attempted.
  Names including "_mlog" are reserved. Please choose a different LV name.
  Run `lvcreate --help' for more information.
"""
ERR_BAD_TAG = """  WARNING: Activation disabled. No device-mapper interaction will be attempted.
  Invalid argument for --addtag: bad tag
  Error during parsing of command line.
"""
ERR_ACTIVATION = """  WARNING: Activation disabled. No device-mapper interaction will be attempted.
  WARNING: Logical volume herdvg/a not zeroed.
"""
# dmsetup targets on a kernel without device-mapper (exit status 1)
DMSETUP_NO_DM = """/dev/mapper/control: open failed: No such device
Failure to communicate with kernel device-mapper driver.
Check that device-mapper is available in the kernel.
Incompatible libdevmapper 1.02.185 (2022-05-18) and kernel driver (unknown version).
Command failed.
"""
# dmsetup targets where device-mapper works (the format of dmsetup(8); not captured here)
DMSETUP_TARGETS = """striped          v1.6.0
linear           v1.4.0
error            v1.6.0
"""
LVM_VERSION = """  LVM version:     2.03.16(2) (2022-05-18)
  Library version: 1.02.185 (2022-05-18)
  Configuration:   ./configure --build=x86_64-linux-gnu --prefix=/usr
"""


# -- reports ------------------------------------------------------------------------------------
def test_pvs_report_gives_the_pvs_and_their_vg_in_bytes() -> None:
    pvs = parse_pvs(PVS_JSON)
    assert len(pvs) == 1 and pvs[0].name == "/dev/loop0"
    assert (pvs[0].pe_start, pvs[0].size, pvs[0].pe_count) == (MIB, 60 * MIB, 15)
    vg = parse_vg(PVS_JSON, "herdvg")
    assert vg is not None
    assert (vg.name, vg.size, vg.free, vg.extent_size) == ("herdvg", 60 * MIB, 4 * MIB, EXTENT)
    assert (vg.extent_count, vg.free_count) == (15, 1)
    assert vg.pvs == tuple(pvs)


def test_a_vg_the_nodes_pvs_do_not_hold_is_none() -> None:
    assert parse_vg(PVS_JSON, "othervg") is None
    assert parse_pvs('  {"report": [{"pv": []}]}') == []


def test_unreadable_report_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="unreadable lvs report"):
        parse_lvs("Volume group not found")


def test_lvs_rows_of_one_lv_join_into_segments_in_logical_order() -> None:
    a, c = parse_lvs(LVS_JSON)
    assert a.name == "a" and a.size == 48 * MIB
    assert [s.start_pe for s in a.segments] == [0, 4]
    assert a.segments[0].ranges == (PeRange("/dev/loop0", 0, 3),)
    assert a.segments[1].ranges == (PeRange("/dev/loop0", 6, 13),)
    assert a.pvs == ("/dev/loop0",)
    assert c.tags == ("herd", "x=1/y:z")
    assert a.tags == ()
    assert c.lvm_active == "unknown" and c.lvm_path == "/dev/herdvg/c"
    assert c.path is None


def test_pe_ranges_of_a_striped_segment() -> None:
    assert parse_pe_ranges("/dev/sda:0-9 /dev/sdb:10-19") == (
        PeRange("/dev/sda", 0, 9), PeRange("/dev/sdb", 10, 19))
    assert PeRange("/dev/sda", 10, 19).count == 10
    with pytest.raises(StorageError, match="unreadable extent range"):
        parse_pe_ranges("/dev/sda")


# -- the loop mapping ---------------------------------------------------------------------------
def test_loop_span_is_pe_start_plus_extents() -> None:
    pvs = parse_pvs(PVS_JSON)
    _, c = parse_lvs(LVS_JSON)  # extents 4-5
    assert loop_span(c, pvs, EXTENT) == LoopSpan("/dev/loop0", MIB + 4 * EXTENT, 2 * EXTENT)


def test_loop_span_refuses_an_lv_in_pieces_and_says_why() -> None:
    a, _ = parse_lvs(LVS_JSON)
    with pytest.raises(StorageError, match=r"not one contiguous extent range "
                                           r"\(/dev/loop0:0-3 /dev/loop0:6-13\)"):
        loop_span(a, parse_pvs(PVS_JSON), EXTENT)


def test_loop_span_refuses_a_pv_the_node_does_not_have() -> None:
    _, c = parse_lvs(LVS_JSON)
    with pytest.raises(StorageError, match="not among this node's physical volumes"):
        loop_span(c, [], EXTENT)


def test_loop_span_checks_the_size_lvm_reports() -> None:
    _, c = parse_lvs(LVS_JSON)
    with pytest.raises(StorageError, match="but LVM reports"):
        loop_span(c, parse_pvs(PVS_JSON), 2 * EXTENT)


def test_losetup_parses_backing_identity() -> None:
    loops = parse_losetup(LOSETUP_JSON)
    lv = next(lo for lo in loops if lo.name == "/dev/loop1")
    assert lv == LoopDevice("/dev/loop1", "/dev/loop0", 17825792, 8388608, 94, (0, 6))
    assert parse_losetup("") == []


def test_loop_span_matches_the_loop_device_lvmnode_attached() -> None:
    """Both samples come from one run: the computed span is where the real device was."""
    _, c = parse_lvs(LVS_JSON)
    span = loop_span(c, parse_pvs(PVS_JSON), EXTENT)
    loop = next(lo for lo in parse_losetup(LOSETUP_JSON) if lo.name == "/dev/loop1")
    assert (span.offset, span.size) == (loop.offset, loop.sizelimit) == (17 * MIB, 8 * MIB)


def test_loops_at_finds_the_lvs_device_by_path_or_inode() -> None:
    loops = parse_losetup(LOSETUP_JSON)
    span = LoopSpan("/dev/loop0", 17 * MIB, 8 * MIB)
    same, over = loops_at(loops, DeviceIdentity("/dev/loop0"), span)
    assert [lo.name for lo in same] == ["/dev/loop1"] and over == []
    # another name for the same device node: matched by inode and filesystem
    same, _ = loops_at(loops, DeviceIdentity("/dev/disk/by-id/x", 94, (0, 6)), span)
    assert [lo.name for lo in same] == ["/dev/loop1"]
    # another PV: not it (the PV's own loop device, over a file, is not an LV's either)
    same, over = loops_at(loops, DeviceIdentity("/dev/loop7", 1, (0, 6)), span)
    assert same == [] and over == []


def test_loops_at_same_offset_other_size_is_still_the_lvs_device() -> None:
    """A grow that stopped before re-sizing the loop device: it is corrected, not doubled."""
    loops = parse_losetup(LOSETUP_JSON)
    same, over = loops_at(loops, DeviceIdentity("/dev/loop0"),
                          LoopSpan("/dev/loop0", 17 * MIB, 3 * EXTENT))
    assert [lo.name for lo in same] == ["/dev/loop1"] and over == []


def test_loops_at_reports_an_overlapping_leftover() -> None:
    loops = parse_losetup(LOSETUP_JSON)  # loop1 covers 17 MiB .. 25 MiB of loop0
    pv = DeviceIdentity("/dev/loop0")
    _, over = loops_at(loops, pv, LoopSpan("/dev/loop0", 13 * MIB, 8 * MIB))
    assert [lo.name for lo in over] == ["/dev/loop1"]
    _, over = loops_at(loops, pv, LoopSpan("/dev/loop0", 9 * MIB, 8 * MIB))  # ends at 17 MiB
    assert over == []
    _, over = loops_at(loops, pv, LoopSpan("/dev/loop0", 25 * MIB, EXTENT))
    assert over == []
    whole = [LoopDevice("/dev/loop9", "/dev/loop0", 0, 0)]  # the whole PV: overlaps everything
    _, over = loops_at(whole, pv, LoopSpan("/dev/loop0", 25 * MIB, EXTENT))
    assert [lo.name for lo in over] == ["/dev/loop9"]


# -- activation mode ----------------------------------------------------------------------------
def test_device_mapper_with_both_targets() -> None:
    mode = decide_activation(True, parse_dm_targets(DMSETUP_TARGETS))
    assert mode.mode == MODE_DM


def test_no_device_mapper_in_the_kernel_means_loop_with_the_reason() -> None:
    mode = decide_activation(False, None, DMSETUP_NO_DM.splitlines()[0])
    assert mode.mode == MODE_LOOP
    assert "no device-mapper (not in /proc/misc)" in mode.reason
    assert "/dev/mapper/control: open failed: No such device" in mode.reason
    assert "loop devices" in mode.reason


def test_device_mapper_without_striped_means_loop() -> None:
    mode = decide_activation(True, {"linear", "error"})
    assert mode.mode == MODE_LOOP and "lacks the target(s) striped" in mode.reason


def test_device_mapper_present_but_unusable_means_loop() -> None:
    mode = decide_activation(True, None, "Permission denied")
    assert mode.mode == MODE_LOOP and "not usable: Permission denied" in mode.reason


# -- commands and messages ----------------------------------------------------------------------
def test_every_command_is_restricted_to_the_nodes_devices() -> None:
    argv = lvm_argv("lvs", ["herdvg"], ["/dev/loop0", "/dev/loop3"], lvm_config(MODE_LOOP))
    assert argv[:3] == ["lvs", "--devices", "/dev/loop0,/dev/loop3"]
    assert argv[3] == "--config" and "activation = 0" in argv[4] and argv[-1] == "herdvg"
    assert "activation" not in lvm_config(MODE_DM)
    assert 'hints = "none"' in lvm_config(MODE_DM)


@pytest.mark.parametrize(("stderr", "message"), [
    (ERR_NO_SPACE, 'Volume group "herdvg" has insufficient free space (11 extents): 25 required.'),
    (ERR_NOT_CONTIGUOUS, "Insufficient suitable contiguous allocatable extents for logical "
                         "volume a: 1 more required"),
    (ERR_RESERVED, 'Names including "_mlog" are reserved. Please choose a different LV name.'),
    (ERR_BAD_TAG, "Invalid argument for --addtag: bad tag"),
    (ERR_ACTIVATION, "WARNING: Logical volume herdvg/a not zeroed."),
    ("", "exit status 5"),
])
def test_lvm_message_keeps_lvms_words_on_one_line(stderr: str, message: str) -> None:
    assert lvm_message(stderr, 5) == message


def test_lvm_version() -> None:
    assert parse_lvm_version(LVM_VERSION) == (2, 3, 16)
    assert parse_lvm_version("nonsense") is None


# -- names --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["3f2c1e6a-0000-4a2b-9c1d-6e1f00000001", "ok-1.2+3_4",
                                  "a" * 118])
def test_valid_lv_names(name: str) -> None:
    assert validate_lv_name(name, "herdvg") == name


@pytest.mark.parametrize(("name", "why"), [
    ("", "use letters"),
    ("a b", "use letters"),
    ("bad/name", "use letters"),
    ("-x", "not starting with -"),
    ("..", "are not names"),
    ("snapshotx", "starting with 'snapshot'"),
    ("pvmove1", "starting with 'snapshot' or 'pvmove'"),
    ("x_mlog", "reserves names containing"),
    ("a" * 119, "too long: LVM allows 118 characters"),
])
def test_invalid_lv_names_say_the_rule(name: str, why: str) -> None:
    with pytest.raises(ParameterError, match="invalid LVM logical volume name") as err:
        validate_lv_name(name, "herdvg")
    assert why in err.value.message


def test_dm_name_doubles_hyphens() -> None:
    assert dm_name("herd-vg", "a-b") == "herd--vg-a--b"


def test_vg_names_and_tags() -> None:
    assert validate_vg_name("herdvg") == "herdvg"
    with pytest.raises(ParameterError, match="volume group name"):
        validate_vg_name("-vg")
    assert validate_tag("x=1/y:z") == "x=1/y:z"
    for bad in ("bad tag", "bad,tag", ""):
        with pytest.raises(ParameterError, match="invalid LVM tag"):
            validate_tag(bad)
