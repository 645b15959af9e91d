"""Node-side LVM: one volume group per node, driven through the real LVM2 tools.

This module only runs LVM on one node; which LVs a disk needs is decided elsewhere (the
block-device layer of issue 11). Its choices, and why:

* **Isolation per node.** Every LVM command gets ``--devices DEV[,DEV]`` (LVM >= 2.03.12): LVM
  then scans only this node's PVs. In the lab all nodes share one kernel, and each has a VG of the
  same name (``herdvg``) on its own PV, as the nodes of a real cluster do; without the restriction
  a node would see its neighbours' VGs ("VG name herdvg is used by VGs ...").
  ``LVM_SYSTEM_DIR`` points at a directory of the node's own (under its Herd root): LVM keeps its
  metadata backups and archives there instead of in the host's ``/etc/lvm``, which Herd never
  touches.
* **Two activation modes, chosen automatically** (:func:`probe_activation`,
  :func:`decide_activation`) and reported with their reason, like the KVM/TCG fallback:
  ``device-mapper`` where the kernel has the linear and striped targets (production), else
  ``loop``: LVM runs with ``global { activation = 0 }`` (metadata only) and an LV is made usable
  as a loop device over its PV, ``losetup --offset <pe_start + first extent * extent size>
  --sizelimit <LV size>``. One loop device maps one extent range, so in loop mode LVs are always
  allocated ``--alloc contiguous``.
* **New LVs start clean at the start.** LVs are created inactive and unzeroed (``--activate n
  --zero n``: LVM cannot zero without device-mapper), then :meth:`LvmNode.create` zeroes the
  first MiB through the device itself, in both modes, so that a new disk never starts with a
  previous tenant's partition table, filesystem superblock or boot sector (an OS install script
  or a guest would otherwise find and trust them). The rest is not wiped, as with Ganeti's LVs
  (lvcreate zeroes 4 KiB): a guest can read old blocks it has not written yet; wiping would make
  creating a multi-GiB disk take minutes.
* **Pure functions apart** (parsing ``lvs``/``vgs``/``pvs``/``losetup`` JSON, the loop offset and
  size, the mode decision, name checks), so that they are unit-tested on output captured from the
  real tools; :class:`LvmNode` only runs commands and applies them.

Errors are one line naming the command's object and LVM's own message, as :class:`StorageError`
(:class:`ParameterError` for a name or tag LVM would refuse, before anything runs).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from herd.errors import ParameterError, StorageError

MIB = 1024 * 1024
#: Bytes zeroed at the start of every new LV (see the module docstring).
ZERO_BYTES = MIB
MODE_DM = "device-mapper"
MODE_LOOP = "loop"
#: What LVM needs from device-mapper for plain LVs (its own error names "striped").
REQUIRED_DM_TARGETS = ("linear", "striped")
#: ``--devices`` appeared in LVM 2.03.12.
MIN_LVM_VERSION = (2, 3, 12)
#: Seconds an LVM command may take (it may wait for another command's VG lock).
LVM_TIMEOUT = 300.0
#: Seconds a detached loop device may take to disappear when nobody holds it open.
DETACH_TIMEOUT = 10.0

LV_FIELDS = ("lv_name,vg_name,lv_uuid,lv_size,lv_tags,seg_start_pe,seg_pe_ranges,lv_active,"
             "lv_path,lv_dm_path")
#: One ``pvs`` gives the PVs and their VG's figures (a separate ``vgs`` would cost another LVM
#: start, about 55 ms here).
PV_FIELDS = ("pv_name,vg_name,pe_start,pv_size,pv_free,pv_pe_count,vg_uuid,vg_size,vg_free,"
             "vg_extent_size,vg_extent_count,vg_free_count")
REPORT_OPTIONS = ("--reportformat", "json", "--units", "b", "--nosuffix")

# -- names --------------------------------------------------------------------------------------
_NAME_RE = re.compile(r"[A-Za-z0-9+_.-]+")
_TAG_RE = re.compile(r"[A-Za-z0-9_+.\-/=!:&#]+")
#: Substrings LVM reserves for its internal sub-LVs (lvm(8), VALID NAMES).
_RESERVED_PARTS = ("_cdata", "_cmeta", "_corig", "_iorig", "_mimage", "_mlog", "_pmspare",
                   "_rimage", "_rmeta", "_tdata", "_tmeta", "_vdata", "_vorigin", "_wcorig")
#: LVM 2.03.16 refuses names *starting* with these ("Names starting "snapshot" are reserved").
_RESERVED_PREFIXES = ("snapshot", "pvmove")
#: LVM refuses ``VG/LV`` when len(VG) + len(LV) + 3 exceeds this (measured: 118 + "herdvg" ok,
#: 119 "length 128 is not supported"); device-mapper names are limited the same way.
_MAX_FULL_NAME = 127
_ALLOWED = "letters, digits and + _ . - (not starting with -)"


def validate_vg_name(name: str) -> str:
    """The VG name, or ParameterError saying what LVM allows (checked before LVM runs, so
    that the caller's error names the rule instead of LVM's usage text)."""
    if (not name or not _NAME_RE.fullmatch(name) or name.startswith("-")
            or name in (".", "..") or len(name) > _MAX_FULL_NAME):
        raise ParameterError(f"invalid LVM volume group name '{name}': use {_ALLOWED}, "
                             f"at most {_MAX_FULL_NAME} characters")
    return name


def validate_lv_name(name: str, vg_name: str) -> str:
    """The LV name, or ParameterError saying which LVM rule it breaks.

    Callers name LVs by disk uuid (never by instance name, so that renaming an instance moves
    nothing); a uuid always passes."""
    problem = ""
    if not name or not _NAME_RE.fullmatch(name) or name.startswith("-"):
        problem = f"use {_ALLOWED}"
    elif name in (".", ".."):
        problem = "'.' and '..' are not names"
    elif name.startswith(_RESERVED_PREFIXES):
        problem = "names starting with 'snapshot' or 'pvmove' are reserved by LVM"
    elif any(part in name for part in _RESERVED_PARTS):
        problem = ("LVM reserves names containing " + ", ".join(_RESERVED_PARTS))
    elif len(vg_name) + len(name) + 3 > _MAX_FULL_NAME or len(dm_name(vg_name, name)) > 127:
        problem = (f"too long: LVM allows {_MAX_FULL_NAME - 3 - len(vg_name)} characters in "
                   f"volume group {vg_name}")
    if problem:
        raise ParameterError(f"invalid LVM logical volume name '{name}': {problem}")
    return name


def validate_tag(tag: str) -> str:
    if not tag or len(tag) > 1024 or not _TAG_RE.fullmatch(tag):
        raise ParameterError(f"invalid LVM tag '{tag}': use letters, digits and _ + . - / = ! "
                             ": & #, at most 1024 characters")
    return tag


def dm_name(vg_name: str, lv_name: str) -> str:
    """device-mapper's name of an LV: hyphens doubled, joined by one hyphen."""
    return f"{vg_name.replace('-', '--')}-{lv_name.replace('-', '--')}"


# -- records ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActivationMode:
    """How this node makes LVs usable, and why (shown by ``gnt-node info`` and ``verify``)."""

    mode: str
    reason: str


@dataclass(frozen=True)
class PhysicalVolume:
    name: str
    vg_name: str
    pe_start: int  # bytes from the start of the device to its first extent
    size: int
    free: int
    pe_count: int


@dataclass(frozen=True)
class VolumeGroup:
    name: str
    uuid: str
    size: int
    free: int
    extent_size: int
    extent_count: int
    free_count: int
    pvs: tuple[PhysicalVolume, ...] = ()


@dataclass(frozen=True)
class PeRange:
    """Physical extents ``first``..``last`` (inclusive, as LVM prints them) on PV ``pv``."""

    pv: str
    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class Segment:
    start_pe: int  # first logical extent of the LV that this segment holds
    ranges: tuple[PeRange, ...]  # more than one only for striped/mirrored segments


@dataclass(frozen=True)
class LogicalVolume:
    name: str
    vg_name: str
    uuid: str
    size: int
    tags: tuple[str, ...]
    segments: tuple[Segment, ...]
    #: device-mapper's view ("active" in dm mode; "unknown" when LVM runs without activation).
    lvm_active: str = ""
    lvm_path: str = ""
    #: The block device to use while the LV is active (a /dev/loopN in loop mode), else None.
    path: str | None = None

    @property
    def pvs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.pv for s in self.segments for r in s.ranges))


@dataclass(frozen=True)
class LoopSpan:
    """Where an LV lies on its PV: what a loop device needs to present it."""

    pv: str
    offset: int
    size: int


@dataclass(frozen=True)
class LoopDevice:
    name: str
    back_file: str
    offset: int
    sizelimit: int
    back_ino: int | None = None
    back_dev: tuple[int, int] | None = None  # major, minor of the backing file's filesystem


@dataclass(frozen=True)
class DeviceIdentity:
    """A PV's device node as losetup reports a backing file: its path, inode and filesystem."""

    path: str
    ino: int | None = None
    dev: tuple[int, int] | None = None


# -- parsing (pure) -----------------------------------------------------------------------------
def parse_report(text: str, kind: str) -> list[dict[str, str]]:
    """The rows of kind ``lv``/``vg``/``pv`` in LVM's ``--reportformat json`` output."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise StorageError(f"LVM gave an unreadable {kind}s report ({err}): {text[:200]!r}") \
            from None
    rows: list[dict[str, str]] = []
    for report in data.get("report", []):
        rows.extend(report.get(kind, []))
    return rows


def _int(row: dict[str, str], field: str) -> int:
    try:
        return int(row[field])
    except (KeyError, ValueError):
        raise StorageError(f"LVM report lacks a number in field {field}: {row}") from None


def parse_pvs(text: str) -> list[PhysicalVolume]:
    return [PhysicalVolume(name=r["pv_name"], vg_name=r.get("vg_name", ""),
                           pe_start=_int(r, "pe_start"), size=_int(r, "pv_size"),
                           free=_int(r, "pv_free"), pe_count=_int(r, "pv_pe_count"))
            for r in parse_report(text, "pv")]


def parse_vg(text: str, vg_name: str) -> VolumeGroup | None:
    """VG ``vg_name`` from a ``pvs -o PV_FIELDS`` report (every row repeats its VG's figures),
    with its PVs; None if none of the reported PVs belongs to it."""
    rows = [r for r in parse_report(text, "pv") if r.get("vg_name") == vg_name]
    if not rows:
        return None
    r = rows[0]
    pvs = tuple(p for p in parse_pvs(text) if p.vg_name == vg_name)
    return VolumeGroup(name=vg_name, uuid=r.get("vg_uuid", ""), size=_int(r, "vg_size"),
                       free=_int(r, "vg_free"), extent_size=_int(r, "vg_extent_size"),
                       extent_count=_int(r, "vg_extent_count"),
                       free_count=_int(r, "vg_free_count"), pvs=pvs)


def parse_pe_ranges(text: str) -> tuple[PeRange, ...]:
    """``seg_pe_ranges``: space-separated ``/dev/X:FIRST-LAST`` (one per stripe or mirror leg)."""
    ranges = []
    for item in text.split():
        pv, sep, span = item.rpartition(":")
        first, dash, last = span.partition("-")
        if not sep or not dash or not first.isdigit() or not last.isdigit():
            raise StorageError(f"unreadable extent range '{item}' in LVM's seg_pe_ranges")
        ranges.append(PeRange(pv, int(first), int(last)))
    return tuple(ranges)


def parse_lvs(text: str) -> list[LogicalVolume]:
    """LVs of an ``lvs -o LV_FIELDS`` report: LVM prints one row per segment; rows of one LV are
    joined, segments in logical order."""
    by_key: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in parse_report(text, "lv"):
        by_key.setdefault((row["vg_name"], row["lv_name"]), []).append(row)
    lvs = []
    for (vg, name), rows in by_key.items():
        first = rows[0]
        segments = sorted((Segment(_int(r, "seg_start_pe"), parse_pe_ranges(r["seg_pe_ranges"]))
                           for r in rows), key=lambda s: s.start_pe)
        tags = tuple(t for t in first.get("lv_tags", "").split(",") if t)
        lvs.append(LogicalVolume(name=name, vg_name=vg, uuid=first.get("lv_uuid", ""),
                                 size=_int(first, "lv_size"), tags=tags,
                                 segments=tuple(segments), lvm_active=first.get("lv_active", ""),
                                 lvm_path=first.get("lv_path", "")))
    return lvs


def loop_span(lv: LogicalVolume, pvs: Iterable[PhysicalVolume], extent_size: int) -> LoopSpan:
    """Offset and size of the loop device presenting ``lv``: its one extent range on its PV.

    offset = the PV's pe_start + first extent * extent size; size = extents * extent size, which
    must equal the LV's size (a mismatch means the report is not what this code understands).
    An LV in several pieces cannot be one loop device: StorageError saying so."""
    ranges = [r for s in lv.segments for r in s.ranges]
    if len(lv.segments) != 1 or len(ranges) != 1:
        where = " ".join(f"{r.pv}:{r.first}-{r.last}" for r in ranges) or "no extents"
        raise StorageError(
            f"LV {lv.vg_name}/{lv.name} is not one contiguous extent range ({where}), so it "
            f"cannot be activated as a loop device; loop activation needs LVs allocated "
            f"contiguously (device-mapper activation has no such limit)")
    rng = ranges[0]
    pv = next((p for p in pvs if p.name == rng.pv), None)
    if pv is None:
        raise StorageError(f"LV {lv.vg_name}/{lv.name} lies on {rng.pv}, which is not among this "
                           f"node's physical volumes (missing device?)")
    size = rng.count * extent_size
    if size != lv.size:
        raise StorageError(f"LV {lv.vg_name}/{lv.name}: {rng.count} extents of {extent_size} "
                           f"bytes are {size} bytes, but LVM reports the LV as {lv.size}")
    return LoopSpan(pv=pv.name, offset=pv.pe_start + rng.first * extent_size, size=size)


def parse_losetup(text: str) -> list[LoopDevice]:
    """``losetup -J -l -O NAME,BACK-FILE,BACK-INO,BACK-MAJ:MIN,OFFSET,SIZELIMIT``."""
    if not text.strip():
        return []  # losetup prints nothing at all when no loop device is attached
    devices = []
    for d in json.loads(text).get("loopdevices", []):
        dev = None
        majmin = str(d.get("back-maj:min") or "").strip()
        if ":" in majmin:
            major, minor = majmin.split(":", 1)
            dev = (int(major), int(minor))
        ino = d.get("back-ino")
        devices.append(LoopDevice(name=d["name"], back_file=str(d.get("back-file") or ""),
                                  offset=int(d.get("offset") or 0),
                                  sizelimit=int(d.get("sizelimit") or 0),
                                  back_ino=int(ino) if ino not in (None, "") else None,
                                  back_dev=dev))
    return devices


def is_backed_by(loop: LoopDevice, pv: DeviceIdentity) -> bool:
    """Is ``loop`` a loop device over ``pv``? By path, or by the device node's inode (another
    name for the same node, e.g. a /dev/disk/by-id link, resolved differently)."""
    if loop.back_file == pv.path:
        return True
    return (pv.ino is not None and pv.dev is not None and loop.back_ino == pv.ino
            and loop.back_dev == pv.dev)


def loops_at(loops: Iterable[LoopDevice], pv: DeviceIdentity,
             span: LoopSpan) -> tuple[list[LoopDevice], list[LoopDevice]]:
    """(loop devices presenting ``span``, other loop devices over the PV overlapping it).

    A device at the same offset is this LV's even if its size limit differs (a grow that stopped
    before re-sizing it): the caller corrects the limit. An overlapping one at another offset
    belongs to no current LV and must not be given a second writer."""
    same, overlapping = [], []
    end = span.offset + span.size
    for loop in loops:
        if not is_backed_by(loop, pv):
            continue
        if loop.offset == span.offset:
            same.append(loop)
        elif loop.sizelimit == 0 or (loop.offset < end and span.offset < loop.offset
                                     + loop.sizelimit):
            overlapping.append(loop)
    return same, overlapping


def parse_dm_targets(text: str) -> set[str]:
    """Target names of ``dmsetup targets`` (lines like ``striped          v1.6.0``)."""
    return {line.split()[0] for line in text.splitlines() if line.split()}


def decide_activation(dm_in_proc_misc: bool, dm_targets: Iterable[str] | None,
                      dmsetup_error: str = "") -> ActivationMode:
    """device-mapper if ``dmsetup targets`` listed linear and striped, else loop, with the reason.

    ``dm_targets`` is None when dmsetup failed (``dmsetup_error`` says why); whether /proc/misc
    lists device-mapper only sharpens the reason: a modular dm-mod is loaded by dmsetup's own
    open of /dev/mapper/control, so its absence there alone decides nothing."""
    suffix = "; LVs are activated as loop devices over their physical volume"
    if dm_targets is not None:
        targets = set(dm_targets)
        missing = [t for t in REQUIRED_DM_TARGETS if t not in targets]
        if not missing:
            return ActivationMode(MODE_DM, "device-mapper has the linear and striped targets")
        return ActivationMode(MODE_LOOP, f"device-mapper lacks the target(s) "
                                         f"{', '.join(missing)}{suffix}")
    if not dm_in_proc_misc:
        why = "the kernel has no device-mapper (not in /proc/misc)"
        if dmsetup_error:
            why += f": dmsetup says {dmsetup_error}"
        return ActivationMode(MODE_LOOP, why + suffix)
    return ActivationMode(MODE_LOOP, f"device-mapper is not usable: "
                                     f"{dmsetup_error or 'dmsetup targets failed'}{suffix}")


def lvm_config(mode: str) -> str:
    """The ``--config`` string for every command: no activation in loop mode (LVM would fail
    with "striped: Required device-mapper target(s) not detected"), and no hints file (it lives
    in the shared /run/lvm and would mix the nodes of a lab)."""
    config = 'devices { hints = "none" }'
    if mode == MODE_LOOP:
        config = "global { activation = 0 } " + config
    return config


def lvm_argv(tool: str, args: Sequence[str], devices: Sequence[str], config: str) -> list[str]:
    """One LVM command restricted to ``devices``."""
    return [tool, "--devices", ",".join(devices), "--config", config, *args]


_NOISE = re.compile(r"WARNING: Activation disabled|Run `\S+ --help' for more information"
                    r"|File descriptor \d+ .* leaked on|Error during parsing of command line")


def lvm_message(stderr: str, returncode: int) -> str:
    """LVM's own words from a failed command's stderr, on one line: its errors, without the
    warnings that accompany every command in loop mode and without usage hints."""
    kept = [line.strip() for line in stderr.splitlines()
            if line.strip() and not _NOISE.search(line)]
    errors = [line for line in kept if not line.startswith("WARNING:")]
    return "; ".join(errors or kept) or f"exit status {returncode}"


def parse_lvm_version(text: str) -> tuple[int, int, int] | None:
    """``LVM version:     2.03.16(2) (2022-05-18)`` -> (2, 3, 16)."""
    m = re.search(r"LVM version:\s*(\d+)\.(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


# -- the kernel's loop and block ioctls ---------------------------------------------------------
_LOOP_INFO64 = struct.Struct("=QQQQQIIII64s64s32sQQ")  # struct loop_info64, <linux/loop.h>
_LOOP_SET_STATUS64 = 0x4C04
_LOOP_GET_STATUS64 = 0x4C05
_BLKGETSIZE64 = 0x80081272


def block_size(path: str) -> int:
    """Size in bytes of a block device (BLKGETSIZE64), as its users see it."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        buf = fcntl.ioctl(fd, _BLKGETSIZE64, b"\0" * 8)
    finally:
        os.close(fd)
    return int(struct.unpack("=Q", buf)[0])


def set_loop_sizelimit(device: str, size: int) -> None:
    """Change a bound loop device's size limit in place (LOOP_SET_STATUS64).

    losetup can set a size limit only when it attaches a device, and ``losetup -c`` re-reads the
    backing file's size but keeps the limit. A grown LV's loop device must grow while a guest
    keeps it open, so its status is read, the limit changed and written back: the kernel drains
    the device's I/O and announces the new capacity (QEMU then sees it at ``block_resize``)."""
    fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    try:
        buf = bytearray(_LOOP_INFO64.size)
        fcntl.ioctl(fd, _LOOP_GET_STATUS64, buf, True)
        fields = list(_LOOP_INFO64.unpack(buf))
        fields[4] = size  # lo_sizelimit
        fields[7] = 0  # lo_encrypt_key_size: no key
        fcntl.ioctl(fd, _LOOP_SET_STATUS64, _LOOP_INFO64.pack(*fields))
    except OSError as err:
        raise StorageError(f"cannot set the size of loop device {device} to {size} bytes: "
                           f"{err.strerror}") from None
    finally:
        os.close(fd)


def _device_identity(path: str) -> DeviceIdentity:
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return DeviceIdentity(real)
    return DeviceIdentity(real, st.st_ino, (os.major(st.st_dev), os.minor(st.st_dev)))


def device_users(device: str) -> list[str]:
    """Who holds a block device open: processes (by pid and name), stacked devices, and
    exclusive claims (a mounted filesystem). Empty when nobody does.

    The kernel does not refuse to detach a loop device that is open: it marks it to vanish at
    the last close, and the LV's extents would be reused under a running guest. So Herd looks
    before it detaches or removes."""
    users: list[str] = []
    try:
        rdev = os.stat(device).st_rdev
    except FileNotFoundError:
        return users
    holders = Path("/sys/class/block") / Path(device).name / "holders"
    with contextlib.suppress(OSError):
        users.extend(f"device {h}" for h in sorted(os.listdir(holders)))
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if not os.readlink(f"{fd_dir}/{fd}").startswith("/dev/"):
                    continue
                st = os.stat(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if stat.S_ISBLK(st.st_mode) and st.st_rdev == rdev:
                try:
                    comm = Path(f"/proc/{pid}/comm").read_text().strip()
                except OSError:
                    comm = "?"
                users.append(f"pid {pid} ({comm})")
                break
    try:
        os.close(os.open(device, os.O_RDONLY | os.O_EXCL | os.O_CLOEXEC))
    except OSError as err:
        if err.errno == errno.EBUSY:
            users.append("an exclusive holder (mounted?)")
    return users


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@functools.cache
def probe_activation() -> ActivationMode:
    """Probe this kernel: ``dmsetup targets`` (and /proc/misc for the reason).

    Once per process: the mode must not change under active LVs (a daemon that switched to
    device-mapper while loop devices map LVs would give those extents a second writer; the
    device-mapper path refuses that too, see :meth:`LvmNode.assemble`)."""
    try:
        misc = Path("/proc/misc").read_text()
    except OSError:
        misc = ""
    in_misc = any(line.split()[1:2] == ["device-mapper"] for line in misc.splitlines())
    if shutil.which("dmsetup") is None:
        return decide_activation(in_misc, None, "dmsetup is not installed")
    try:
        proc = subprocess.run(["dmsetup", "targets"], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=30,
                              env={**os.environ, "LC_ALL": "C"})
    except subprocess.TimeoutExpired:
        return decide_activation(in_misc, None, "dmsetup targets did not answer in 30 s")
    if proc.returncode != 0:
        first = next((ln.strip() for ln in proc.stderr.splitlines() if ln.strip()), "")
        return decide_activation(in_misc, None, first or f"exit status {proc.returncode}")
    return decide_activation(in_misc, parse_dm_targets(proc.stdout))


#: The LVM version, once checked in this process (an upgrade keeps --devices).
_LVM_VERSION_OK: list[tuple[int, int, int]] = []


# -- one node's LVM -----------------------------------------------------------------------------
class LvmNode:
    """The LVs of one node's volume group, on that node's own devices only.

    ``devices`` are the node's PVs (block devices); ``system_dir`` is LVM's directory for this
    node (LVM_SYSTEM_DIR: metadata backups and archives, and Herd's lock file), under the node's
    Herd root. ``activation`` is probed on first use unless given.

    LVs are named by the caller (disk uuids). :meth:`create` leaves an LV inactive;
    :meth:`assemble` activates it (idempotently) and returns its device; :meth:`remove`
    deactivates first and refuses while the device is in use.
    """

    def __init__(self, vg_name: str, devices: Sequence[str], system_dir: Path, *,
                 activation: ActivationMode | None = None,
                 timeout: float = LVM_TIMEOUT) -> None:
        self.vg_name = validate_vg_name(vg_name)
        if not devices or any(not d.startswith("/") or "," in d for d in devices):
            raise ParameterError(f"LVM devices must be absolute device paths without commas, "
                                 f"got {list(devices)}")
        self.devices = tuple(devices)
        self.system_dir = Path(system_dir)
        self.timeout = timeout
        self._activation = activation

    # -- mode and command running ---------------------------------------------------------------
    @property
    def activation(self) -> ActivationMode:
        if self._activation is None:
            self._activation = probe_activation()
        return self._activation

    @property
    def mode(self) -> str:
        return self.activation.mode

    def _env(self) -> dict[str, str]:
        return {**os.environ, "LVM_SYSTEM_DIR": str(self.system_dir),
                "LVM_SUPPRESS_FD_WARNINGS": "1", "LC_ALL": "C"}

    def _run(self, argv: Sequence[str], what: str) -> subprocess.CompletedProcess[str]:
        self.system_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            return subprocess.run(list(argv), capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, env=self._env(), timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise StorageError(f"{what}: {argv[0]} did not finish within {self.timeout:.0f} s "
                               f"(another LVM command holding the volume group's lock?)") from None
        except FileNotFoundError:
            package = "util-linux" if argv[0] == "losetup" else "lvm2"
            raise StorageError(f"{what}: {argv[0]} is not installed (Debian package "
                               f"{package})") from None

    def _check_version(self) -> None:
        if _LVM_VERSION_OK:
            return
        proc = self._run(["lvm", "version"], "lvm version")
        version = parse_lvm_version(proc.stdout)
        if version is None:
            raise StorageError(f"cannot read LVM's version: "
                               f"{lvm_message(proc.stderr, proc.returncode)}")
        if version < MIN_LVM_VERSION:
            raise StorageError(f"LVM {'.'.join(map(str, version))} on this node is too old: "
                               f"Herd restricts each node's LVM with --devices, which needs "
                               f"{'.'.join(map(str, MIN_LVM_VERSION))} or newer")
        _LVM_VERSION_OK.append(version)

    def lvm(self, tool: str, args: Sequence[str], what: str) -> str:
        """Run an LVM tool on this node's devices; its stdout, or StorageError naming ``what``."""
        self._check_version()
        proc = self._run(lvm_argv(tool, args, self.devices, lvm_config(self.mode)), what)
        if proc.returncode != 0:
            raise StorageError(f"{what}: {lvm_message(proc.stderr, proc.returncode)}")
        return proc.stdout

    def _losetup(self, args: Sequence[str], what: str) -> str:
        proc = self._run(["losetup", *args], what)
        if proc.returncode != 0:
            msg = "; ".join(ln.strip() for ln in proc.stderr.splitlines() if ln.strip())
            raise StorageError(f"{what}: {msg or f'losetup exit status {proc.returncode}'}")
        return proc.stdout

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One changing operation at a time on this node: two assembles of one LV must not
        each attach a loop device. (LVM's own VG lock does not cover losetup.)"""
        self.system_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.system_dir / "herd-lvm.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- volume group ---------------------------------------------------------------------------
    def create_vg(self, extent_size_mib: int = 4) -> VolumeGroup:
        """pvcreate the node's devices and vgcreate the VG on them (for the lab and tests; on a
        real node the admin makes the VG, as for Ganeti). pvcreate asks before wiping a
        foreign signature; with no terminal that question is a refusal, so data is never lost."""
        for device in self.devices:
            self.lvm("pvcreate", [device], f"cannot make {device} an LVM physical volume")
        self.lvm("vgcreate", ["-s", f"{extent_size_mib}m", self.vg_name, *self.devices],
                 f"cannot create volume group {self.vg_name} on {','.join(self.devices)}")
        return self.vg_info()

    def remove_vg(self) -> None:
        """Remove every LV (refused while one is in use), the VG, and the PV labels."""
        for lv in self.list_lvs():
            self.remove(lv.name)
        self.lvm("vgremove", ["-y", self.vg_name], f"cannot remove volume group {self.vg_name}")
        self.lvm("pvremove", ["-y", *self.devices],
                 f"cannot remove the PV labels of {','.join(self.devices)}")

    def vg_info(self) -> VolumeGroup:
        """Name, size, free space, extent size and PVs of this node's VG (bytes)."""
        what = f"cannot read volume group {self.vg_name} on {','.join(self.devices)}"
        vg = parse_vg(self.lvm("pvs", ["-o", PV_FIELDS, *REPORT_OPTIONS], what), self.vg_name)
        if vg is None:
            raise StorageError(f"{what}: no physical volume there belongs to it")
        return vg

    # -- logical volumes ------------------------------------------------------------------------
    def loop_devices(self) -> list[LoopDevice]:
        """Loop devices over this node's PVs (those of its LVs, and any left behind)."""
        text = self._losetup(["-J", "-l", "-O",
                              "NAME,BACK-FILE,BACK-INO,BACK-MAJ:MIN,OFFSET,SIZELIMIT"],
                             "cannot list loop devices")
        ids = [_device_identity(d) for d in self.devices]
        return [lo for lo in parse_losetup(text) if any(is_backed_by(lo, i) for i in ids)]

    def _span(self, lv: LogicalVolume, vg: VolumeGroup) -> LoopSpan:
        return loop_span(lv, vg.pvs, vg.extent_size)

    def _with_path(self, lv: LogicalVolume, vg: VolumeGroup,
                   loops: list[LoopDevice]) -> LogicalVolume:
        if self.mode == MODE_DM:
            path = None
            if lv.lvm_active == "active":
                path = lv.lvm_path if os.path.exists(lv.lvm_path) else \
                    f"/dev/mapper/{dm_name(lv.vg_name, lv.name)}"
            return replace(lv, path=path)
        try:
            span = self._span(lv, vg)
        except StorageError:
            return lv  # not loop-activatable: never active here
        same, _ = loops_at(loops, _device_identity(span.pv), span)
        return replace(lv, path=same[0].name if same else None)

    def list_lvs(self) -> list[LogicalVolume]:
        """This node's LVs (name, size, tags, segments, active device if any), by name."""
        vg = self.vg_info()
        text = self.lvm("lvs", ["-o", LV_FIELDS, *REPORT_OPTIONS, self.vg_name],
                        f"cannot list the LVs of {self.vg_name}")
        loops = self.loop_devices() if self.mode == MODE_LOOP else []
        return sorted((self._with_path(lv, vg, loops) for lv in parse_lvs(text)),
                      key=lambda lv: lv.name)

    def find(self, name: str) -> LogicalVolume | None:
        validate_lv_name(name, self.vg_name)
        return next((lv for lv in self.list_lvs() if lv.name == name), None)

    def get(self, name: str) -> LogicalVolume:
        lv = self.find(name)
        if lv is None:
            raise StorageError(f"LV {self.vg_name}/{name} does not exist on "
                               f"{','.join(self.devices)}")
        return lv

    def path_of(self, name: str) -> str | None:
        """The block device of an active LV, None when it is not active (or does not exist)."""
        lv = self.find(name)
        return lv.path if lv else None

    def create(self, name: str, size_mib: int, tags: Sequence[str] = ()) -> LogicalVolume:
        """Create an LV of ``size_mib`` MiB (rounded up to whole extents by LVM), inactive,
        with its first MiB zeroed. If zeroing fails the LV is removed again: a failed create
        leaves no LV and no loop device."""
        validate_lv_name(name, self.vg_name)
        for tag in tags:
            validate_tag(tag)
        if size_mib < 1:
            raise ParameterError(f"invalid size {size_mib} MiB for LV {name}: at least 1 MiB")
        full = f"{self.vg_name}/{name}"
        args = ["--activate", "n", "--zero", "n", "--wipesignatures", "n", "--yes",
                "-n", name, "-L", f"{size_mib}m"]
        if self.mode == MODE_LOOP:
            args += ["--alloc", "contiguous"]
        for tag in tags:
            args += ["--addtag", tag]
        with self._locked():
            try:
                self.lvm("lvcreate", [*args, self.vg_name],
                         f"cannot create LV {full} ({size_mib} MiB)")
            except StorageError as err:
                if self.mode == MODE_LOOP and "contiguous" in err.message:
                    raise StorageError(f"{err.message} (loop activation needs each LV in one "
                                       f"contiguous extent range; free space may be "
                                       f"fragmented)") from None
                raise
            try:
                lv = self.get(name)
                path = self._attach(lv)
                try:
                    _zero_start(path, min(ZERO_BYTES, lv.size))
                finally:
                    self._detach(self.get(name))
            except BaseException:
                # Undo, unless the device could not be detached (opened meanwhile): removing
                # the LV then would free extents that a loop device still maps.
                with contextlib.suppress(StorageError):
                    if self.path_of(name) is None:
                        self.lvm("lvremove", ["-y", full], f"cannot remove LV {full}")
                raise
            return self.get(name)

    def assemble(self, name: str) -> str:
        """Activate the LV and return its block device; an LV already active keeps its device
        (a loop device over the same PV and offset is reused, its size limit corrected). In
        device-mapper mode an LV still mapped by a loop device is refused."""
        with self._locked():
            return self._attach(self.get(name))

    def deactivate(self, name: str) -> None:
        """Deactivate the LV; nothing to do if it is inactive or gone. Refused while its device
        is open (a guest or storage daemon still using it)."""
        with self._locked():
            lv = self.find(name)
            if lv is not None:
                self._detach(lv)

    def remove(self, name: str) -> None:
        """Deactivate and remove the LV; nothing to do if it does not exist."""
        full = f"{self.vg_name}/{name}"
        with self._locked():
            lv = self.find(name)
            if lv is None:
                return
            self._detach(lv)
            self.lvm("lvremove", ["-y", full], f"cannot remove LV {full}")

    def rename(self, old: str, new: str) -> LogicalVolume:
        """Rename an LV. An active loop device stays valid: it maps extents, not names."""
        validate_lv_name(old, self.vg_name)
        validate_lv_name(new, self.vg_name)
        with self._locked():
            self.lvm("lvrename", [self.vg_name, old, new],
                     f"cannot rename LV {self.vg_name}/{old} to {new}")
            return self.get(new)

    def grow(self, name: str, size_mib: int) -> LogicalVolume:
        """Grow the LV to ``size_mib`` MiB (a target, so that a retried grow does not grow
        twice; a target at or below the current size changes nothing).

        Loop mode extends only into the extents right after the LV (``--alloc contiguous``):
        if they are taken the grow is refused with that reason, and nothing changes. An active
        LV's loop device then gets the new size limit in place (:func:`set_loop_sizelimit`)."""
        full = f"{self.vg_name}/{name}"
        with self._locked():
            lv = self.get(name)
            if size_mib * MIB > lv.size:
                args = ["-L", f"{size_mib}m"]
                if self.mode == MODE_LOOP:
                    args += ["--alloc", "contiguous"]
                try:
                    self.lvm("lvextend", [*args, full],
                             f"cannot grow LV {full} from {lv.size // MIB} to {size_mib} MiB")
                except StorageError as err:
                    if self.mode == MODE_LOOP and "contiguous" in err.message:
                        pvs = ",".join(lv.pvs)
                        raise StorageError(
                            f"{err.message} (loop activation needs the LV in one contiguous "
                            f"extent range, and the extents right after it on {pvs} are not "
                            f"free)") from None
                    raise
            grown = self.get(name)
            if self.mode == MODE_LOOP and grown.path is not None:
                self._attach(grown)  # corrects the size limit of the active loop device
                grown = self.get(name)
            return grown

    # -- activation -----------------------------------------------------------------------------
    def _attach(self, lv: LogicalVolume) -> str:
        full = f"{lv.vg_name}/{lv.name}"
        if self.mode == MODE_DM:
            self._refuse_loop_leftover(lv)
            self.lvm("lvchange", ["-ay", full], f"cannot activate LV {full}")
            active = self.get(lv.name)
            if active.path is None:
                raise StorageError(f"LV {full} is not active after lvchange -ay")
            return active.path
        span = self._span(lv, self.vg_info())
        pv = _device_identity(span.pv)
        same, overlapping = loops_at(self.loop_devices(), pv, span)
        if overlapping:
            others = ", ".join(f"{o.name} (offset {o.offset}, size {o.sizelimit})"
                               for o in overlapping)
            raise StorageError(f"cannot activate LV {full}: loop device(s) {others} over "
                               f"{span.pv} overlap its extents and belong to no LV; detach "
                               f"them first")
        if same:
            device = same[0].name
            if same[0].sizelimit != span.size:
                set_loop_sizelimit(device, span.size)
        else:
            out = self._losetup(["--find", "--show", "--nooverlap", "--offset", str(span.offset),
                                 "--sizelimit", str(span.size), span.pv],
                                f"cannot attach a loop device for LV {full} on {span.pv}")
            device = out.strip()
        actual = block_size(device)
        if actual != span.size:
            raise StorageError(f"loop device {device} of LV {full} has {actual} bytes, "
                               f"expected {span.size}")
        return device

    def _refuse_loop_leftover(self, lv: LogicalVolume) -> None:
        """In device-mapper mode: refuse an LV that a loop device still maps (attached while
        the node ran in loop mode): two devices over the same extents would both write."""
        loops = self.loop_devices()
        if not loops:
            return
        try:
            span = self._span(lv, self.vg_info())
        except StorageError:
            return  # not one extent range: no loop device can map it
        same, overlapping = loops_at(loops, _device_identity(span.pv), span)
        if same or overlapping:
            names = ", ".join(lo.name for lo in same + overlapping)
            raise StorageError(f"cannot activate LV {lv.vg_name}/{lv.name} through device-mapper: "
                               f"loop device(s) {names} (from loop activation) map its extents; "
                               f"detach them first (losetup -d)")

    def _detach(self, lv: LogicalVolume) -> None:
        full = f"{lv.vg_name}/{lv.name}"
        if self.mode == MODE_DM:
            self.lvm("lvchange", ["-an", full], f"cannot deactivate LV {full}")
            return
        try:
            span = self._span(lv, self.vg_info())
        except StorageError:
            return  # not contiguous: never activated in loop mode
        same, _ = loops_at(self.loop_devices(), _device_identity(span.pv), span)
        for loop in same:
            users = device_users(loop.name)
            if users:
                raise StorageError(f"LV {full} is in use: its loop device {loop.name} is held "
                                   f"by {', '.join(users)}; not deactivated")
            self._losetup(["-d", loop.name], f"cannot detach loop device {loop.name} of {full}")
            sysfs = Path("/sys/class/block") / Path(loop.name).name / "loop"
            if not _wait_for(lambda p=sysfs: not p.exists(), DETACH_TIMEOUT):
                raise StorageError(f"loop device {loop.name} of LV {full} is still attached "
                                   f"{DETACH_TIMEOUT:.0f} s after detaching it (opened "
                                   f"meanwhile?); it goes when its last user closes it")


def _zero_start(path: str, length: int) -> None:
    """Write zeros over the first ``length`` bytes of a device and make them durable."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        zeros = bytes(length)
        done = 0
        while done < length:
            done += os.pwrite(fd, zeros[done:], done)
        os.fsync(fd)
    except OSError as err:
        raise StorageError(f"cannot zero the start of {path}: {err.strerror}") from None
    finally:
        os.close(fd)
