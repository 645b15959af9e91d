"""Disk paths to QEMU -drive options: local files, NBD URIs, and the migration-target flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.errors import HypervisorError
from herd.hypervisor.base import DiskSpec, InstanceSpec
from herd.hypervisor.kvm import disks, params
from herd.hypervisor.kvm.cmdline import LaunchContext, build_argv
from herd.hypervisor.kvm.runtime import InstanceFiles

RUN = Path("/r/var/run/herd/kvm")


def _argv(paths: list[str], **ctx: object) -> list[str]:
    spec = InstanceSpec(name="i1", uuid="12345678-aaaa-bbbb-cccc-1234567890ab", memory=128,
                        vcpus=1, hvparams={}, disks=[DiskSpec(i, p) for i, p in enumerate(paths)])
    c = LaunchContext(files=InstanceFiles(RUN, "i1"), accel="tcg")
    for k, v in ctx.items():
        setattr(c, k, v)
    return build_argv(spec, params.fill({}), c)


def _drives(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-drive"]


def test_is_uri() -> None:
    assert disks.is_uri("nbd+unix:///disk0?socket=/run/x.sock")
    assert disks.is_uri("nbd://203.0.113.1:10809/disk0")
    assert not disks.is_uri("/srv/herd/file-storage/i1/disk0")
    assert not disks.is_uri("/srv/odd:name://x")
    assert not disks.is_uri("relative/path")


def test_parse_unix_and_tcp() -> None:
    assert disks.parse_nbd_uri("nbd+unix:///disk0?socket=/run/q.sock") == \
        disks.NbdTarget(export="disk0", socket="/run/q.sock")
    assert disks.parse_nbd_uri("nbd://203.0.113.1:10900/disk%201") == \
        disks.NbdTarget(export="disk 1", host="203.0.113.1", port=10900)
    assert disks.parse_nbd_uri("nbd://node2.example.com/d") == \
        disks.NbdTarget(export="d", host="node2.example.com", port=10809)
    assert disks.parse_nbd_uri("nbd+tcp://[2001:db8::1]:99/e") == \
        disks.NbdTarget(export="e", host="2001:db8::1", port=99)
    assert disks.parse_nbd_uri("nbd+unix://?socket=/s").export == ""


@pytest.mark.parametrize("uri", [
    "nbd+unix:///disk0",                      # no socket
    "nbd+unix:///disk0?socket=rel.sock",      # relative socket
    "nbd+unix://host/disk0?socket=/s",        # host on a unix URI
    "nbd:///disk0",                           # no host
    "nbd://h:notaport/disk0",
    "nbd://h/disk0?socket=/s",
    "iscsi://h/iqn",                          # another protocol
])
def test_bad_uris(uri: str) -> None:
    with pytest.raises(HypervisorError):
        disks.parse_nbd_uri(uri)


def test_drive_options_for_nbd() -> None:
    argv = _argv(["/srv/d,0", "nbd+unix:///disk1?socket=/run/qsd,1.sock",
                  "nbd://203.0.113.1/disk2"])
    local, unix, tcp = _drives(argv)
    assert local == "file=/srv/d,,0,format=raw,if=virtio,index=0"
    assert unix == ("file.driver=nbd,file.server.type=unix,file.server.path=/run/qsd,,1.sock,"
                    "file.export=disk1,file.reconnect-delay=30,file.open-timeout=10,"
                    "format=raw,if=virtio,index=1")
    assert tcp.startswith("file.driver=nbd,file.server.type=inet,file.server.host=203.0.113.1,"
                          "file.server.port=10809,file.export=disk2,")
    assert "file=" not in unix and "file=" not in tcp


def test_incoming_target_is_paused_and_deferred() -> None:
    argv = _argv([], incoming=True)
    assert "-S" in argv and argv[argv.index("-incoming") + 1] == "defer"
    argv = _argv([], paused=True)
    assert "-S" in argv and "-incoming" not in argv
    assert "-incoming" not in _argv([])
