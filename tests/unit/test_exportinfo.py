"""config.ini of instance exports (herd.exportinfo) and a node's export directory
(herd.node.exports.ExportStore): Ganeti's format written and read back, bad files refused."""

from __future__ import annotations

import asyncio
import configparser
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from herd import errors, exportinfo
from herd.exportinfo import ExportDisk, ExportInfo, ExportNic
from herd.node.exports import ExportStore
from herd.objects import Disk, Instance, Nic


def sample() -> ExportInfo:
    return ExportInfo(
        name="web1.example.com", os="busybox+writer", source="node1.example.com",
        disk_template="drbd", hypervisor="kvm", timestamp=1700000000,
        disks=[ExportDisk(size=128, dump="d0.dump", name="root"),
               ExportDisk(size=64, dump="d1.dump", mode="ro")],
        nics=[ExportNic(mac="aa:00:00:11:22:33", ip="10.0.0.5",
                        nicparams={"mode": "bridged", "link": "br1"})],
        tags=["a", "b"], hvparams={"kernel_args": "console=ttyS0"},
        beparams={"maxmem": "256", "minmem": "128", "vcpus": "2"},
        osparams={"banner": "hello"})


def test_written_in_ganetis_sections_and_keys() -> None:
    text = exportinfo.dumps(sample())
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    assert parser.sections() == ["export", "instance", "hypervisor", "backend", "os"]
    assert dict(parser.items("export")) == {
        "version": "0", "timestamp": "1700000000", "source": "node1.example.com",
        "os": "busybox+writer", "compression": "none"}
    ins = dict(parser.items("instance"))
    assert ins["name"] == "web1.example.com" and ins["disk_template"] == "drbd"
    assert (ins["maxmem"], ins["minmem"], ins["memory"], ins["vcpus"]) == \
        ("256", "128", "256", "2")
    assert ins["disk_count"] == "2" and ins["disk0_dump"] == "d0.dump"
    assert ins["disk0_size"] == "128" and ins["disk0_ivname"] == "disk/0"
    assert ins["disk1_name"] == "None"  # Ganeti writes Python's str(None)
    assert ins["nic_count"] == "1" and ins["nic0_mac"] == "aa:00:00:11:22:33"
    assert ins["nic0_link"] == "br1" and ins["nic0_vlan"] == "None"
    assert ins["tags"] == "a b"


def test_read_back_is_what_was_written() -> None:
    info = sample()
    assert exportinfo.loads(exportinfo.dumps(info)) == info


def test_reads_a_ganeti_export_without_backend_section() -> None:
    text = """[export]
version = 0
timestamp = 1
source = n1
os = debootstrap+default
compression = none

[instance]
name = old1
memory = 512
vcpus = 1
disk_template = plain
hypervisor = kvm
tags =
nic0_mac = aa:00:00:00:00:01
nic0_ip = None
nic0_mode = routed
nic0_link = rt1
nic_count = 1
disk0_size = 1024
disk0_dump = abc.snap
disk_count = 1
"""
    info = exportinfo.loads(text)
    assert info.beparams == {"maxmem": "512", "minmem": "512", "vcpus": "1"}
    assert info.nics[0].ip is None and info.nics[0].nicparams == {"mode": "routed",
                                                                   "link": "rt1"}
    assert info.disks == [ExportDisk(size=1024, dump="abc.snap")]
    assert info.tags == []


@pytest.mark.parametrize(("text", "message"), [
    ("not an ini", "not a valid export description"),
    ("[export]\nversion = 0\n", "no [instance] section"),
    ("[export]\nversion = 1\n[instance]\nname = a\n", "export version '1'"),
    ("[export]\nversion = 0\ncompression = gzip\n[instance]\nname = a\n",
     "compression 'gzip'"),
    ("[export]\nversion = 0\n[instance]\nname = a\n", "lacks [instance] disk_template"),
    ("[export]\nversion = 0\n[instance]\nname = a\ndisk_template = file\n"
     "disk0_size = 1\n", "disk 0 has a size but no dump file"),
    ("[export]\nversion = 0\n[instance]\nname = a\ndisk_template = file\n"
     "disk0_size = big\ndisk0_dump = x\n", "disk0_size = 'big' is not a number"),
    ("[export]\nversion = 0\n[instance]\nname = a\ndisk_template = file\n"
     "disk0_size = 1\ndisk0_dump = ../../etc/passwd\n", "not a file name"),
])
def test_bad_files_are_refused_in_one_line(text: str, message: str) -> None:
    with pytest.raises(errors.ParameterError) as exc:
        exportinfo.loads(text, "config.ini of x")
    assert message in exc.value.message and "\n" not in exc.value.message


def test_from_instance_keeps_own_hvparams_and_filled_beparams() -> None:
    inst = Instance(name="i1", os="busybox", disk_template="file", hvparams={"acpi": False},
                    beparams={"vcpus": 2}, osparams={"banner": "x"}, tags=["t"],
                    nics=[Nic(mac="aa:00:00:00:00:09", nicparams={"link": "br7"})],
                    disks=[Disk(size=32, name="root")])
    info = exportinfo.from_instance(
        inst, source="n1", filled_beparams={"maxmem": 128, "minmem": 128, "vcpus": 2},
        nicparams=[{"mode": "bridged", "link": "br7", "vlan": ""}], timestamp=5)
    assert info.hvparams == {"acpi": "False"}
    assert info.beparams == {"maxmem": "128", "minmem": "128", "vcpus": "2"}
    assert info.nics[0].nicparams == {"mode": "bridged", "link": "br7"}
    assert info.disks == [ExportDisk(size=32, dump=f"{inst.disks[0].uuid}.dump", name="root")]


def test_import_takes_macs_only_under_the_same_name() -> None:
    info = sample()
    assert exportinfo.import_nics(info, same_name=True) == [
        {"mac": "aa:00:00:11:22:33", "ip": "10.0.0.5", "mode": "bridged", "link": "br1"}]
    assert exportinfo.import_nics(info, same_name=False)[0]["mac"] == "auto"
    assert exportinfo.import_disks(info) == [{"size": 128, "mode": "rw", "name": "root"},
                                             {"size": 64, "mode": "ro"}]
    assert exportinfo.merged({"vcpus": 4}, info.beparams)["vcpus"] == 4


@pytest.mark.parametrize(("given", "name"), [
    ("w1", "w1"), ("/srv/herd/export/w1", "w1"), ("/srv/herd/export/w1/", "w1")])
def test_source_name(given: str, name: str) -> None:
    assert exportinfo.source_name(given) == name


@pytest.mark.parametrize("given", ["/tmp/w1", "../w1", "w1.new", "", "/srv/herd/export/.."])
def test_source_name_refused(given: str) -> None:
    with pytest.raises(errors.ParameterError) as exc:
        exportinfo.source_name(given)
    assert "\n" not in exc.value.message


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def test_store_stages_then_replaces_atomically(tmp_path: Path) -> None:
    store = ExportStore(tmp_path / "export")
    assert store.names() == []
    store.begin("w1")
    assert asyncio.run(store.receive("w1", "d0.dump", _chunks(b"abc", b"def"))) == 6
    assert store.names() == []  # a staging export is not an export
    store.finish("w1", "[export]\n")
    assert store.names() == ["w1"]
    assert (tmp_path / "export/w1/d0.dump").read_bytes() == b"abcdef"
    # a second export replaces the first only when it is complete
    store.begin("w1")
    asyncio.run(store.receive("w1", "d0.dump", _chunks(b"new")))
    assert (tmp_path / "export/w1/d0.dump").read_bytes() == b"abcdef"
    store.abort("w1")
    assert store.names() == ["w1"] and not store.staging("w1").exists()
    assert store.config("w1") == "[export]\n"
    assert store.remove("w1") and not store.remove("w1")
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == []


def test_store_full_disk_leaves_no_partial_file(tmp_path: Path) -> None:
    store = ExportStore(tmp_path)
    store.begin("w1")
    (store.staging("w1") / "d0.dump").symlink_to("/dev/full")  # every write: ENOSPC
    with pytest.raises(errors.StorageError) as exc:
        asyncio.run(store.receive("w1", "d0.dump", _chunks(b"x" * 10, b"y")))
    assert "no space left" in exc.value.message
    assert list(store.staging("w1").iterdir()) == []


@pytest.mark.parametrize("dump", ["../x", "config.ini", "", ".."])
def test_store_refuses_bad_dump_names(tmp_path: Path, dump: str) -> None:
    with pytest.raises(errors.ParameterError):
        ExportStore(tmp_path).dump_path("w1", dump, staging=True)


@pytest.mark.parametrize(("fields", "message"), [
    ({"mode": "remote"}, "export mode 'remote' is not supported"),
    ({"compress": "gzip"}, "compression 'gzip'"),
    ({"zero_free_space": True}, "zeroing free space"),
    ({"x509_key_name": ["k", "h"]}, "X.509"),
    ({"remove_instance": True, "shutdown": False}, "drop --noshutdown"),
    ({"shutdown_timeout": -1}, "invalid shutdown timeout -1"),
    ({"target_node": None}, "-n NODE"),
])
def test_export_options_refused(fields: dict, message: str) -> None:
    from herd.logic.backup import check_export_options
    from herd.opcodes import OpBackupExport

    op = OpBackupExport(**{"instance_name": "i1", "target_node": "n2", **fields})
    with pytest.raises(errors.ParameterError, match=message):
        check_export_options(op)


def test_export_options_accepted() -> None:
    from herd.logic.backup import check_export_options
    from herd.opcodes import OpBackupExport, opcode_from_dict

    check_export_options(OpBackupExport(instance_name="i1", target_node="n2"))
    # Ganeti's RAPI body fields are known to the opcode (a misspelt one is refused)
    op = opcode_from_dict({"OP_ID": "OP_BACKUP_EXPORT", "instance_name": "i1",
                           "target_node": "n2", "shutdown": False, "mode": "local"})
    assert isinstance(op, OpBackupExport) and not op.shutdown
    with pytest.raises(errors.ParameterError):
        opcode_from_dict({"OP_ID": "OP_BACKUP_EXPORT", "instance_name": "i1", "shutdwn": 1})
