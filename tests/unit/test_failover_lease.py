"""master-failover knows a cut-off master still holds its role once its lease is seen renewed
(herd.logic.failover.lease_renewed), instead of waiting the lease out."""

from __future__ import annotations

from herd.logic.failover import lease_renewed


def test_an_unrenewed_lease_never_looks_renewed() -> None:
    # etcd's whole seconds: 4.9 s left shows as 4, 2.0 s later 2.9 s shows as 2 (or 3 rounded
    # up): never more than the earlier look allows
    assert not lease_renewed((10.0, 4, 7), (12.0, 2, 7))
    assert not lease_renewed((10.0, 5, 7), (12.0, 3, 7))
    assert not lease_renewed((10.0, 5, 7), (10.5, 5, 7))  # too close to tell
    assert not lease_renewed((10.0, 4, 7), (20.0, -1, 7))  # expired


def test_a_renewed_lease_in_the_same_term_is_seen() -> None:
    assert lease_renewed((10.0, 4, 7), (12.5, 4, 7))
    assert lease_renewed((10.0, 4, 7), (13.0, 5, 7))


def test_a_new_leader_renews_every_lease_so_a_new_term_proves_nothing() -> None:
    assert not lease_renewed((10.0, 4, 7), (13.0, 5, 8))
    assert not lease_renewed((10.0, 4, 0), (13.0, 5, 0))  # a term etcd did not say
