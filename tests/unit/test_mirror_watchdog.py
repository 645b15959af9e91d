"""The link watchdog picks exactly the replication sockets whose peer stopped answering."""

from __future__ import annotations

import json
from pathlib import Path

from herd.storage.mirror.watchdog import Link, primary_links, stuck_sockets

HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
          "timeout inode\n")


def row(local: str, remote: str, state: str = "01", unacked: int = 0,
        retransmits: int = 0) -> str:
    def hexep(ep: str) -> str:
        ip, port = ep.split(":")
        return "".join(f"{int(p):02X}" for p in reversed(ip.split("."))) + f":{int(port):04X}"

    return (f"   0: {hexep(local)} {hexep(remote)} {state} {unacked:08X}:00000000 01:00000010 "
            f"{retransmits:08X}     0        0 1234 1 0000000000000000 20 4 1 10 -1\n")


LINK = Link("203.0.113.2", "203.0.113.3", 11000)


def test_a_silent_peer_with_unacked_data_is_stuck() -> None:
    table = HEADER + row("203.0.113.2:40000", "203.0.113.3:11000", unacked=4096,
                         retransmits=3)
    [sock] = stuck_sockets(table, {LINK})
    assert sock.local == ("203.0.113.2", 40000) and sock.remote == ("203.0.113.3", 11000)
    assert sock.retransmits == 3 and sock.unacked == 4096


def test_healthy_idle_foreign_and_closing_sockets_are_left_alone() -> None:
    table = HEADER + "".join([
        row("203.0.113.2:40001", "203.0.113.3:11000", unacked=4096, retransmits=2),  # not yet
        row("203.0.113.2:40002", "203.0.113.3:11000", unacked=0, retransmits=5),  # nothing owed
        row("203.0.113.2:40003", "203.0.113.3:11001", unacked=4096, retransmits=9),  # other port
        row("198.51.100.2:40004", "203.0.113.3:11000", unacked=4096, retransmits=9),  # other src
        row("203.0.113.2:40005", "203.0.113.3:11000", state="04", unacked=1, retransmits=9),
    ])
    assert stuck_sockets(table, {LINK}) == []


def test_links_come_from_primary_runtime_files_only(tmp_path: Path) -> None:
    def runtime(key: str, role: str, target: str | None, port: int) -> None:
        disk = {"uuid": key, "port": port, "local_ip": "203.0.113.2", "peer_ip": "203.0.113.3"}
        (tmp_path / f"{key}.json").write_text(json.dumps(
            {"role": role, "target": target, "disk": disk}))

    runtime("a", "primary", "nbd", 11000)
    runtime("b", "primary", "dead", 11001)  # degraded start: no connection to watch
    runtime("c", "secondary", None, 11002)
    assert primary_links(tmp_path) == {LINK}
    assert primary_links(tmp_path / "missing") == set()


def test_watchdog_sees_a_role_change_made_within_one_clock_tick(tmp_path: Path) -> None:
    from herd.fileutil import atomic_write_json
    from herd.storage.mirror.watchdog import LinkWatchdog

    disk = {"uuid": "a", "port": 11000, "local_ip": "203.0.113.2", "peer_ip": "203.0.113.3"}
    dog = LinkWatchdog(tmp_path)
    atomic_write_json(tmp_path / "a.json", {"role": "secondary", "disk": disk})
    assert dog._refresh_links() == set()
    # a migration's hand-over rewrites the file at once: the directory's mtime may not move
    atomic_write_json(tmp_path / "a.json", {"role": "primary", "target": "nbd", "disk": disk})
    assert dog._refresh_links() == {LINK}


def test_established_replication_sockets_get_keep_alive_once() -> None:
    from herd.storage.mirror import tcp_table
    from herd.storage.mirror.watchdog import to_arm

    link = Link("203.0.113.2", "203.0.113.3", 11000, pid=4242)
    sockets = tcp_table.parse(HEADER + "".join([
        row("203.0.113.2:40001", "203.0.113.3:11000"),  # idle, established: inode 1234
        row("203.0.113.2:40002", "203.0.113.3:11001"),  # another disk's port
        row("203.0.113.2:40003", "203.0.113.3:11000", state="08"),  # closing
    ]))
    assert sockets[0].inode == 1234
    assert to_arm(sockets, {link}, armed=set()) == [(4242, 1234)]
    assert to_arm(sockets, {link}, armed={1234}) == []  # done already
    assert to_arm(sockets, {Link("203.0.113.2", "203.0.113.3", 11000)}, set()) == []  # no pid


def test_keep_alive_is_set_on_a_socket_another_descriptor_holds() -> None:
    """The watchdog's way into QEMU's socket (pidfd_getfd), tried on this process's own
    unconnected TCP socket: no traffic, the same kernel calls."""
    import os
    import socket

    from herd.storage.mirror import keepalive

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        inode = os.fstat(sock.fileno()).st_ino
        assert keepalive.socket_fd(os.getpid(), inode) == sock.fileno()
        assert keepalive.arm(os.getpid(), inode)
        assert keepalive.armed(os.getpid(), inode) == (1, keepalive.IDLE, keepalive.INTERVAL,
                                                        keepalive.COUNT)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == keepalive.COUNT
    assert not keepalive.arm(os.getpid(), 999_999_999)  # no such socket: nothing to do
