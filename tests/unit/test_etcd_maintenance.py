"""Which etcd members masterd defragments, and in which order (herd.etcd.maintenance)."""

from __future__ import annotations

from herd.etcd.maintenance import MemberState, defrag_order, defrag_wanted

MIB = 1 << 20


def test_only_a_file_mostly_free_and_big_enough_to_matter_is_defragmented() -> None:
    assert defrag_wanted(400 * MIB, 100 * MIB)
    assert not defrag_wanted(400 * MIB, 300 * MIB)  # only a quarter free
    assert not defrag_wanted(60 * MIB, 1 * MIB)  # mostly free, but 59 MiB is not worth a stall
    assert not defrag_wanted(400 * MIB, 0)  # a member that does not say what it uses
    assert defrag_wanted(4 * MIB, 1 * MIB, min_bytes=1 * MIB)


def member(id_: int, leader: bool = False, own: bool = False, in_use: int = 10) -> MemberState:
    return MemberState(id=id_, url=f"https://192.0.2.{id_}:2379", db_size=200 * MIB,
                       in_use=in_use * MIB, leader=leader, own=own)


def test_followers_go_first_the_masters_own_member_next_and_the_leader_last() -> None:
    members = [member(1, leader=True), member(2, own=True), member(3), member(4, in_use=190)]
    assert [m.id for m in defrag_order(members)] == [3, 2, 1]
    # the master's member leading: it is the leader, so it goes last
    members = [member(1, leader=True, own=True), member(2), member(3)]
    assert [m.id for m in defrag_order(members)] == [2, 3, 1]
