"""Tests of OS definition discovery, the script environment, the runner, and the bundled
busybox OS definition run for real on a temporary raw disk."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from pathlib import Path

import pytest

from herd import errors, osdef
from herd.lab import guest_records
from herd.osdef.definition import OsDefinition
from herd.paths import BUNDLED_OS_DIR

SCRIPTS = ("create", "import", "export", "rename", "verify")


def make_os(top: Path, name: str, *, api: str = "20\n", variants: str | None = "default\n",
            params: str | None = "dhcp Whether to use DHCP\n", scripts: tuple[str, ...] = SCRIPTS,
            body: str = "exit 0\n", executable: bool = True) -> Path:
    d = top / name
    d.mkdir(parents=True)
    (d / "ganeti_api_version").write_text(api)
    if variants is not None:
        (d / "variants.list").write_text(variants)
    if params is not None:
        (d / "parameters.list").write_text(params)
    for s in scripts:
        p = d / s
        p.write_text("#!/bin/sh\n" + body)
        if executable:
            p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return d


# -- discovery ---------------------------------------------------------------------------
def test_discover_valid_and_invalid(tmp_path: Path) -> None:
    top = tmp_path / "os"
    make_os(top, "good", variants="# comment\n\nalpha\nbeta\n")
    make_os(top, "noexec", executable=False)
    make_os(top, "noverify", scripts=("create", "import", "export", "rename"))
    make_os(top, "oldapi", api="5\n")
    make_os(top, "badapi", api="twenty\n")
    make_os(top, "noparams", params=None)
    make_os(top, "api15", api="15\n", params=None, scripts=("create", "import", "export",
                                                            "rename"))
    (top / ".hidden").mkdir()
    (top / "afile").write_text("not a dir")

    found = osdef.discover([top, tmp_path / "missing"])
    assert set(found) == {"good", "noexec", "noverify", "oldapi", "badapi", "noparams", "api15"}
    good = found["good"]
    assert good.valid and good.error is None
    assert good.variants == ["alpha", "beta"]
    assert good.parameters == [("dhcp", "Whether to use DHCP")]
    assert good.path.is_absolute()
    assert "not executable" in (found["noexec"].error or "")
    assert "missing script verify" in (found["noverify"].error or "")
    assert "unsupported OS API version(s) 5" in (found["oldapi"].error or "")
    assert "non-numeric" in (found["badapi"].error or "")
    assert "parameters.list" in (found["noparams"].error or "")
    assert found["api15"].valid and found["api15"].api_version == 15
    assert not any(d.valid for n, d in found.items() if n not in ("good", "api15"))


def test_first_in_search_path_wins(tmp_path: Path) -> None:
    make_os(tmp_path / "a", "dup", variants="first\n")
    make_os(tmp_path / "b", "dup", variants="second\n")
    found = osdef.discover([tmp_path / "a", tmp_path / "b"])
    assert found["dup"].variants == ["first"]
    assert found["dup"].path == (tmp_path / "a" / "dup").absolute()


def test_to_from_dict_roundtrip(tmp_path: Path) -> None:
    d = osdef.discover([BUNDLED_OS_DIR])["busybox"]
    again = OsDefinition.from_dict(json.loads(json.dumps(d.to_dict())))
    assert again == d


# -- lookup and parameters -----------------------------------------------------------------
def test_lookup(tmp_path: Path) -> None:
    top = tmp_path / "os"
    make_os(top, "alpha", variants="one\ntwo\n")
    make_os(top, "beta", variants=None)
    make_os(top, "broken", api="99\n")
    sp = [top]
    d, v = osdef.lookup("alpha+two", sp)
    assert (d.name, v) == ("alpha", "two")
    assert osdef.lookup("alpha", sp)[1] is None
    with pytest.raises(errors.NotFoundError, match=r"OS 'gamma' not found; available: alpha, beta"):
        osdef.lookup("gamma", sp)
    with pytest.raises(errors.ParameterError, match=r"no variant 'three'; allowed: one, two"):
        osdef.lookup("alpha+three", sp)
    with pytest.raises(errors.ParameterError, match="does not support variants"):
        osdef.lookup("beta+x", sp)
    with pytest.raises(errors.ParameterError, match="is invalid: unsupported OS API"):
        osdef.lookup("broken", sp)


def test_check_osparams(tmp_path: Path) -> None:
    d = osdef.load("x", make_os(tmp_path, "x", params="dhcp a\nroot_size b\n"))
    osdef.check_osparams(d, {"dhcp": "yes"})
    with pytest.raises(errors.ParameterError, match=r"unknown OS parameter\(s\) for OS 'x': "
                       r"bogus; allowed: dhcp, root_size"):
        osdef.check_osparams(d, {"dhcp": "yes", "bogus": "1"})


# -- environment -----------------------------------------------------------------------------
def _env(d: OsDefinition, variant: str | None = None, **kw: object) -> dict[str, str]:
    args: dict = dict(
        instance_name="inst1.example.com", hypervisor="kvm",
        disks=[{"path": "/srv/d0", "size": 1024, "mode": "rw", "uuid": "u-d0", "name": None,
                "template": "file"},
               {"path": "/dev/x", "size": 512, "mode": "ro", "uuid": "u-d1", "name": "data",
                "template": "drbd"}],
        nics=[{"mac": "aa:00:00:00:00:01", "ip": None, "mode": "bridged", "link": "br0",
               "uuid": "u-n0", "name": None},
              {"mac": "aa:00:00:00:00:02", "ip": "192.0.2.5", "mode": "routed", "link": "100",
               "uuid": "u-n1", "name": "wan"}],
        osparams={"dhcp": "no"}, hvparams={"disk_type": "paravirtual", "nic_type": "e1000",
                                           "acpi": True},
        beparams={"maxmem": 128, "vcpus": 1})
    args.update(kw)
    return osdef.build_env(d, variant, **args)


def test_build_env(tmp_path: Path) -> None:
    d = osdef.load("deb", make_os(tmp_path, "deb", variants="stable\ntesting\n"))
    env = _env(d, "testing", debug_level=1, extra={"OLD_INSTANCE_NAME": "old.example.com"})
    expected = {
        "OS_API_VERSION": "20", "OS_NAME": "deb", "OS_VARIANT": "testing",
        "INSTANCE_OS": "deb+testing", "INSTANCE_NAME": "inst1.example.com",
        "HYPERVISOR": "kvm", "DEBUG_LEVEL": "1", "PATH": "/sbin:/bin:/usr/sbin:/usr/bin",
        "OSP_DHCP": "no",
        "DISK_COUNT": "2",
        "DISK_0_PATH": "/srv/d0", "DISK_0_ACCESS": "rw", "DISK_0_UUID": "u-d0",
        "DISK_0_FRONTEND_TYPE": "paravirtual", "DISK_0_BACKEND_TYPE": "file:loop",
        "DISK_1_PATH": "/dev/x", "DISK_1_ACCESS": "ro", "DISK_1_UUID": "u-d1",
        "DISK_1_NAME": "data", "DISK_1_FRONTEND_TYPE": "paravirtual",
        "DISK_1_BACKEND_TYPE": "block",
        "NIC_COUNT": "2",
        "NIC_0_MAC": "aa:00:00:00:00:01", "NIC_0_MODE": "bridged", "NIC_0_LINK": "br0",
        "NIC_0_BRIDGE": "br0", "NIC_0_UUID": "u-n0", "NIC_0_FRONTEND_TYPE": "e1000",
        "NIC_1_MAC": "aa:00:00:00:00:02", "NIC_1_IP": "192.0.2.5", "NIC_1_MODE": "routed",
        "NIC_1_LINK": "100", "NIC_1_UUID": "u-n1", "NIC_1_NAME": "wan",
        "NIC_1_FRONTEND_TYPE": "e1000",
        "INSTANCE_HV_disk_type": "paravirtual", "INSTANCE_HV_nic_type": "e1000",
        "INSTANCE_HV_acpi": "True", "INSTANCE_BE_maxmem": "128", "INSTANCE_BE_vcpus": "1",
        "OLD_INSTANCE_NAME": "old.example.com",
    }
    assert env == expected


def test_build_env_defaults(tmp_path: Path) -> None:
    d = osdef.load("deb", make_os(tmp_path, "deb", variants="stable\ntesting\n"))
    env = _env(d, None, hvparams={}, nics=[], disks=[])
    assert env["OS_VARIANT"] == "stable" and env["INSTANCE_OS"] == "deb+stable"
    assert env["DISK_COUNT"] == "0" and env["NIC_COUNT"] == "0"
    assert not any(k.endswith("FRONTEND_TYPE") for k in env)
    novar = osdef.load("plain", make_os(tmp_path, "plain", variants=None))
    env = _env(novar, None)
    assert env["OS_VARIANT"] == "" and env["INSTANCE_OS"] == "plain"
    with pytest.raises(errors.ProgrammerError):
        _env(novar, None, extra={"INSTANCE_NAME": "x"})


# -- runner ----------------------------------------------------------------------------------
def _run(d: OsDefinition, script: str, env: dict[str, str], log: Path, **kw: object) -> None:
    asyncio.run(osdef.run_script(d, script, env, log, **kw))  # type: ignore[arg-type]


def test_run_script_success_env_and_cwd(tmp_path: Path) -> None:
    body = 'echo "args=$* cwd=$(pwd) name=$INSTANCE_NAME home=${HOME:-unset}"\necho err >&2\n'
    d = osdef.load("s", make_os(tmp_path, "s", body=body))
    log = tmp_path / "logs" / "s.log"
    _run(d, "create", {"INSTANCE_NAME": "i1", "PATH": "/bin:/usr/bin"}, log)
    _run(d, "verify", {"INSTANCE_NAME": "i1", "PATH": "/bin:/usr/bin"}, log)
    text = log.read_text()
    assert f"args= cwd={d.path} name=i1 home=unset" in text
    assert "args=parameters" in text
    assert text.count("err") == 2 and text.count("=== ") == 2


def test_run_script_stdout_fd(tmp_path: Path) -> None:
    d = osdef.load("s", make_os(tmp_path, "s", body="printf data\necho note >&2\n"))
    out = tmp_path / "out"
    with open(out, "wb") as f:
        _run(d, "export", {"PATH": "/bin"}, tmp_path / "log", stdout=f.fileno())
    assert out.read_bytes() == b"data"
    assert "note" in (tmp_path / "log").read_text()


def test_run_script_failure(tmp_path: Path) -> None:
    d = osdef.load("s", make_os(tmp_path, "s", body="echo first >&2\necho 'disk full' >&2\n"
                                                      "exit 3\n"))
    with pytest.raises(errors.OpExecError,
                       match=r"OS create script failed \(exit 3\); last lines of log: "
                             r"first; disk full"):
        _run(d, "create", {"PATH": "/bin"}, tmp_path / "log")


def test_run_script_timeout_kills_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    body = f"sleep 30 &\necho $! > {pidfile}\necho started >&2\nwait\n"
    d = osdef.load("s", make_os(tmp_path, "s", body=body))
    t0 = time.monotonic()
    with pytest.raises(errors.OpExecError, match=r"timed out after 0.5 s.*started"):
        _run(d, "create", {"PATH": "/bin:/usr/bin"}, tmp_path / "log", timeout=0.5)
    assert time.monotonic() - t0 < 5
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    if _alive(child):
        pytest.fail("background child of the script survived the timeout")


def _alive(pid: int) -> bool:
    """True if ``pid`` runs; an orphaned zombie (unreaped by a container's PID 1) is dead."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


# -- the bundled busybox OS definition, for real -------------------------------------------------
def _busybox_env(disk: Path, name: str, variant: str | None = None,
                 osparams: dict[str, str] | None = None,
                 extra: dict[str, str] | None = None) -> tuple[OsDefinition, dict[str, str]]:
    d, v = osdef.lookup("busybox" + (f"+{variant}" if variant else ""), [BUNDLED_OS_DIR])
    params = osparams or {}
    osdef.check_osparams(d, params)
    env = osdef.build_env(
        d, v, instance_name=name, hypervisor="kvm",
        disks=[{"path": str(disk), "size": 32, "mode": "rw", "uuid": "u0", "name": None,
                "template": "file"}],
        nics=[], osparams=params, hvparams={}, beparams={}, extra=extra)
    return d, env


def test_busybox_create_rename_export_import(tmp_path: Path) -> None:
    disk = tmp_path / "disk0.raw"
    with open(disk, "wb") as f:
        f.truncate(32 << 20)
    guest_records.write_record(disk, 1)          # stale data that create must clear
    log = tmp_path / "os.log"
    d, env = _busybox_env(disk, "inst1.example.com", "writer", {"banner": "hello guest"})
    _run(d, "verify", env, log)
    _run(d, "create", env, log)
    hdr = guest_records.read_header(disk)
    assert hdr is not None
    assert (hdr.instance, hdr.os) == ("inst1.example.com", "busybox")
    assert abs(hdr.created - time.time()) < 60
    assert hdr.extras == {"variant": "writer", "mode": "writer", "banner": "hello guest"}
    assert guest_records.read_records(disk).present == 0
    assert disk.stat().st_size == 32 << 20

    for seq in (1, 2, 3):
        guest_records.write_record(disk, seq)
    d, env = _busybox_env(disk, "inst2.example.com", "writer", {"banner": "hello guest"},
                          extra={"OLD_INSTANCE_NAME": "inst1.example.com"})
    _run(d, "rename", env, log)
    hdr2 = guest_records.read_header(disk)
    assert hdr2 is not None and hdr2.instance == "inst2.example.com"
    assert (hdr2.created, hdr2.extras) == (hdr.created, hdr.extras)
    scan = guest_records.read_records(disk)
    assert (scan.last, scan.ok) == (3, True)

    image = tmp_path / "export.img"
    _, env = _busybox_env(disk, "inst2.example.com",
                          extra={"EXPORT_INDEX": "0", "EXPORT_DISK_PATH": str(disk),
                                 "EXPORT_DEVICE": str(disk)})
    with open(image, "wb") as out:
        _run(d, "export", env, log, stdout=out.fileno())
    assert image.read_bytes() == disk.read_bytes()

    target = tmp_path / "disk1.raw"
    with open(target, "wb") as f:
        f.truncate(32 << 20)
    _, env = _busybox_env(target, "inst3.example.com",
                          extra={"IMPORT_INDEX": "0", "IMPORT_DISK_PATH": str(target),
                                 "IMPORT_DEVICE": str(target)})
    with open(image, "rb") as src:
        _run(d, "import", env, log, stdin=src.fileno())
    assert target.read_bytes() == disk.read_bytes()


def test_busybox_refusals(tmp_path: Path) -> None:
    d, v = osdef.lookup("busybox", [BUNDLED_OS_DIR])
    env = osdef.build_env(d, v, instance_name="nodisk", hypervisor="kvm", disks=[], nics=[],
                          osparams={}, hvparams={}, beparams={})
    with pytest.raises(errors.OpExecError, match="has no disks"):
        _run(d, "create", env, tmp_path / "log")
    disk = tmp_path / "d.raw"
    disk.write_bytes(b"")
    d, env = _busybox_env(disk, "x", osparams={"banner": "two\nlines"})
    with pytest.raises(errors.OpExecError, match=r"verify script failed.*banner"):
        _run(d, "verify", env, tmp_path / "log")
    with pytest.raises(errors.ParameterError, match="allowed: banner"):
        osdef.check_osparams(d, {"colour": "red"})
    d, env = _busybox_env(disk, "x", extra={"OLD_INSTANCE_NAME": "y"})
    with pytest.raises(errors.OpExecError, match="no HERD-DISK v1 header"):
        _run(d, "rename", env, tmp_path / "log")


# -- guest_records -----------------------------------------------------------------------------
def test_guest_records_scan(tmp_path: Path) -> None:
    disk = tmp_path / "d.raw"
    disk.write_bytes(guest_records.format_header("i", "busybox", 5, {"banner": "b"}))
    with open(disk, "r+b") as f:
        f.truncate(4 << 20)
    assert guest_records.read_header(disk) == guest_records.DiskHeader("i", "busybox", 5,
                                                                       {"banner": "b"})
    assert guest_records.read_records(disk) == guest_records.RecordScan(last=0)
    for seq in range(1, 301):
        guest_records.write_record(disk, seq, "boot-a")
    assert guest_records.read_records(disk).last == 300
    guest_records.write_record(disk, 400)
    scan = guest_records.read_records(disk)
    assert (scan.last, scan.gap_at, scan.bad_at) == (300, 301, None)
    with open(disk, "r+b") as f:                     # corrupt record 50's payload
        f.seek(guest_records.record_offset(50) + 20)
        f.write(b"X")
    scan = guest_records.read_records(disk)
    assert (scan.last, scan.bad_at, scan.ok) == (49, 50, False)
    with open(disk, "r+b") as f:                     # garbage in record 10's padding
        f.seek(guest_records.record_offset(10) + 2000)
        f.write(b"junk")
    assert guest_records.read_records(disk).bad_at == 10
    blank = tmp_path / "blank.raw"
    blank.write_bytes(b"\0" * 8192)
    assert guest_records.read_header(blank) is None
