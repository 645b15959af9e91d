"""Pure decisions of gnt-instance move, gnt-node failover, console ports and list dates, and the
node's move transfer (real qemu-nbd and qemu-img on temporary files)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from herd import errors
from herd.cli.common import print_list
from herd.cli.formatting import format_time
from herd.cli.moves import failover_ops
from herd.hypervisor.kvm import display
from herd.logic import drbd, network_port
from herd.logic.instance_move import move_refusal
from herd.logic.templates import by_name
from herd.node import transfer
from herd.objects import Cluster, ConfigData, Disk, Instance, Node
from herd.objects.disk_ids import DrbdId


def _node(name: str, **kw: object) -> Node:
    return Node(name=f"{name}.example.com", primary_ip="192.0.2.1", **kw)  # type: ignore[arg-type]


# -- move prechecks ---------------------------------------------------------------------------
def test_move_refuses_mirrored_instances_with_the_way_out() -> None:
    src, dst = _node("a"), _node("b")
    inst = Instance(name="m1", primary_node=src.uuid, disk_template="drbd")
    text = move_refusal(inst, by_name("drbd"), src, dst)
    assert text is not None and "failover" in text and "migrate" in text and \
        "replace-disks" in text and "drbd" in text


@pytest.mark.parametrize("template", ["file", "plain", "diskless"])
def test_move_accepts_single_copy_templates(template: str) -> None:
    src, dst = _node("a"), _node("b")
    inst = Instance(name="f1", primary_node=src.uuid, disk_template=template)
    assert move_refusal(inst, by_name(template), src, dst) is None


@pytest.mark.parametrize(("change", "words"), [
    ({"offline": True}, "target node b.example.com is offline"),
    ({"drained": True}, "target node b.example.com is drained"),
    ({"vm_capable": False}, "not vm_capable"),
])
def test_move_refuses_unusable_targets(change: dict, words: str) -> None:
    src, dst = _node("a"), _node("b", **change)
    inst = Instance(name="f1", primary_node=src.uuid, disk_template="file")
    assert words in (move_refusal(inst, by_name("file"), src, dst) or "")


def test_move_to_the_same_node_and_from_an_offline_one() -> None:
    src = _node("a")
    inst = Instance(name="f1", primary_node=src.uuid, disk_template="file")
    assert "already on node a.example.com" in (move_refusal(inst, by_name("file"), src, src)
                                               or "")
    gone = _node("c", offline=True)
    inst.disks = [Disk(size=8)]
    assert "offline" in (move_refusal(inst, by_name("file"), gone, _node("b")) or "")


# -- gnt-node failover ------------------------------------------------------------------------
def test_node_failover_makes_one_job_per_instance_in_name_order() -> None:
    ops = failover_ops(["web2", "db1", "web10"], True, None)
    assert [op["instance_name"] for op in ops] == ["db1", "web10", "web2"]
    assert all(op["OP_ID"] == "OP_INSTANCE_FAILOVER" and op["ignore_consistency"]
               and "iallocator" not in op for op in ops)
    assert failover_ops(["x"], False, "hail")[0]["iallocator"] == "hail"


# -- console ports ----------------------------------------------------------------------------
def test_port_decisions() -> None:
    assert network_port.wants_port({"vnc_bind_address": "0.0.0.0"})
    assert not network_port.wants_port({"vnc_bind_address": ""})
    assert network_port.decide(None, True) == network_port.ALLOCATE
    assert network_port.decide(11003, True) == network_port.KEEP
    assert network_port.decide(11003, False) == network_port.KEEP  # freed by remove only
    assert network_port.decide(None, False) == network_port.KEEP


def test_pool_is_shared_by_mirrors_and_consoles() -> None:
    cluster = Cluster(drbd_port_first=11000, drbd_port_last=11003)
    mirrored = Instance(name="m", disk_template="drbd")
    mirrored.disks = [Disk(size=8, logical_id=DrbdId(port=11000, path="d0.drbd"))]
    console = Instance(name="v", network_port=11001)
    cfg = ConfigData(cluster=cluster, instances={mirrored.uuid: mirrored,
                                                 console.uuid: console})
    assert drbd.used_ports(cfg) == {11000, 11001}
    assert drbd.allocate_ports(cfg, 2) == [11002, 11003]
    with pytest.raises(errors.OpPrereqError, match="no free port"):
        drbd.allocate_ports(cfg, 3)


def test_assigned_vnc_port_busy_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(errors.HypervisorError,
                           match=f"VNC port {port} of instance g1 is busy"):
            display.check_assigned("127.0.0.1", port, set(), "g1")
    with pytest.raises(errors.HypervisorError, match="used by another instance"):
        display.check_assigned("127.0.0.1", port, {port}, "g1")
    assert display.check_assigned("127.0.0.1", port, set(), "g1") == port



def test_a_closed_console_connection_in_time_wait_does_not_make_the_port_busy() -> None:
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        conn.close()  # the server side closes first (QEMU ends): its end waits in TIME_WAIT
        client.close()
    assert display.check_assigned("127.0.0.1", port, set(), "g1") == port


# -- dates in lists ---------------------------------------------------------------------------
def test_list_shows_timestamps_as_dates_and_json_keeps_numbers(
        capsys: pytest.CaptureFixture[str]) -> None:
    stamp = 1359110772.5
    assert format_time(stamp) == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
    assert format_time(None) is None
    opts = SimpleNamespace(output="name,ctime", separator="|", no_headers=True, units=None,
                           json=False)
    print_list(opts, [{"name": "g1", "ctime": stamp}], ["name"], {}, set(), set())
    assert capsys.readouterr().out.strip() == f"g1|{format_time(stamp)}"
    opts.json = True
    print_list(opts, [{"name": "g1", "ctime": stamp}], ["name"], {}, set(), set())
    assert str(stamp) in capsys.readouterr().out


# -- the transfer (real qemu-nbd / qemu-img) --------------------------------------------------
def test_export_and_fetch_copy_bytes_and_holes(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.img", tmp_path / "dst.img"
    with open(src, "wb") as f:
        f.truncate(8 << 20)
        f.seek(3 << 20)
        f.write(os.urandom(100_000))
    with open(dst, "wb") as f:
        f.write(b"\xff" * (8 << 20))  # old contents must be overwritten, holes included
    exports = transfer.Exports(tmp_path / "run")

    async def run() -> bool:
        port = await exports.start("d1", str(src), "127.0.0.1")
        try:
            await transfer.fetch(transfer.nbd_uri("127.0.0.1", port, "d1"), str(dst))
            with pytest.raises(errors.StorageError, match="failed"):
                await transfer.fetch(transfer.nbd_uri("127.0.0.1", port, "other"), str(dst))
        finally:
            stopped = await exports.stop("d1")
        return stopped and not await exports.stop("d1")

    assert asyncio.run(run())
    assert src.read_bytes() == dst.read_bytes()
    assert list((tmp_path / "run" / "exports").iterdir()) == []


def test_nbd_uri_brackets_ipv6() -> None:
    assert transfer.nbd_uri("2001:db8::1", 10809, "u") == "nbd://[2001:db8::1]:10809/move-u"
