"""etcd membership decisions and a member's command line (herd.etcd.members), and the
client's pure encodings (herd.etcd.client)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from herd.etcd import members as em
from herd.etcd.client import Compare, Op, prefix_end

A, B, C, D = (em.peer_url(f"203.0.113.{i}") for i in (1, 2, 3, 4))


def member(i: int, url: str, name: str = "", learner: bool = False) -> em.Member:
    return em.Member(id=i, name=name, peer_urls=(url,), is_learner=learner)


def kinds(plan: em.Plan) -> list[tuple[str, str]]:
    return [(a.kind, a.name) for a in plan.actions]


def test_urls_use_primary_for_clients_and_secondary_for_peers() -> None:
    spec = em.first_member("node1.example.com", "198.51.100.1", "203.0.113.1", "cl")
    assert spec.client_url == "https://198.51.100.1:2379"
    assert spec.peer_url == "https://203.0.113.1:2380"
    assert spec.initial_cluster == "node1.example.com=https://203.0.113.1:2380"
    assert (spec.state, spec.cluster_token) == ("new", "herd-cl")


def test_argv_has_mutual_tls_on_both_ports_and_no_wildcard() -> None:
    spec = em.first_member("n1", "198.51.100.1", "203.0.113.1", "cl")
    tls = em.TlsFiles(Path("/s/node.pem"), Path("/s/node.key"), Path("/s/ca.pem"))
    argv = em.etcd_argv(spec, Path("/d"), tls, binary="/usr/bin/etcd")
    assert argv[0] == "/usr/bin/etcd"
    for flag in ("--client-cert-auth=true", "--peer-client-cert-auth=true",
                 "--trusted-ca-file=/s/ca.pem", "--peer-trusted-ca-file=/s/ca.pem",
                 "--cert-file=/s/node.pem", "--peer-key-file=/s/node.key",
                 "--listen-client-urls=https://198.51.100.1:2379",
                 "--listen-peer-urls=https://203.0.113.1:2380",
                 "--initial-cluster-state=new", "--data-dir=/d"):
        assert flag in argv
    joined = " ".join(argv)
    assert "0.0.0.0" not in joined and "http://" not in joined and "localhost" not in joined
    assert "--auto-tls" not in joined and "--enable-v2=true" not in joined


def test_spec_refuses_bad_state_and_names() -> None:
    with pytest.raises(ValueError, match="state 'maybe'"):
        em.MemberSpec("n", A, "https://x:2379", f"n={A}", state="maybe")
    with pytest.raises(ValueError, match="member name"):
        em.MemberSpec("a=b", A, "https://x:2379", "")
    spec = em.first_member("n1", "198.51.100.1", "203.0.113.1", "cl")
    import json

    assert em.MemberSpec.from_dict(json.loads(spec.to_json())) == spec


def test_plan_nothing_when_members_equal_candidates() -> None:
    members = [member(1, A, "a"), member(2, B, "b")]
    assert em.plan_membership(members, {"a": A, "b": B}).actions == []


def test_plan_adds_new_candidates_as_learners_then_promotes() -> None:
    plan = em.plan_membership([member(1, A, "a")], {"a": A, "b": B, "c": C})
    assert kinds(plan) == [("add", "b"), ("promote", "b"), ("add", "c"), ("promote", "c")]
    assert plan.actions[0].peer_url == B


def test_plan_promotes_a_learner_left_by_an_interrupted_change() -> None:
    plan = em.plan_membership([member(1, A, "a"), member(2, B, "", learner=True)],
                              {"a": A, "b": B})
    assert kinds(plan) == [("promote", "b")]
    assert plan.actions[0].member_id == 2


def test_plan_removes_demoted_members_after_adding_their_successor() -> None:
    members = [member(1, A, "a"), member(2, B, "b"), member(3, C, "c")]
    plan = em.plan_membership(members, {"a": A, "b": B, "d": D})
    assert kinds(plan) == [("add", "d"), ("promote", "d"), ("remove", "c")]
    assert plan.actions[-1].member_id == 3


def test_plan_never_removes_the_last_voter() -> None:
    plan = em.plan_membership([member(1, A, "a")], {"b": B})
    # b is added and promoted first, so a may go after it
    assert kinds(plan) == [("add", "b"), ("promote", "b"), ("remove", "a")]
    plan = em.plan_membership([member(1, A, "a"), member(2, B, "b", learner=True)], {})
    assert plan.actions == []
    assert any("no master candidate" in h for h in plan.held)


def test_plan_removes_learners_before_voters_and_keeps_one_voter() -> None:
    members = [member(1, A, "a"), member(2, B, "b", learner=True)]
    plan = em.plan_membership(members, {"c": C})
    assert kinds(plan) == [("add", "c"), ("promote", "c"), ("remove", "b"), ("remove", "a")]


def test_plan_matches_members_by_peer_url_not_name() -> None:
    # a member added but never started has no name yet
    plan = em.plan_membership([member(1, A, "a"), member(2, B, "")], {"a": A, "b": B})
    assert plan.actions == []


def test_initial_cluster_names_the_unstarted_member_by_its_node() -> None:
    members = [member(1, A, "a"), member(2, B, "b"), member(3, C, "", learner=True)]
    assert em.initial_cluster(members, {C: "c"}) == f"a={A},b={B},c={C}"
    with pytest.raises(ValueError, match="has not started"):
        em.initial_cluster(members, {})


def test_wanted_members_are_online_candidates() -> None:
    nodes = [{"name": "a", "secondary_ip": "203.0.113.1", "master_candidate": True},
             {"name": "b", "secondary_ip": "203.0.113.2", "master_candidate": True,
              "offline": True},
             {"name": "c", "secondary_ip": "203.0.113.3", "master_candidate": False}]
    assert em.wanted_members(nodes) == {"a": A}


def test_client_encodings() -> None:
    assert prefix_end("herd/") == b"herd0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff") == b"\0"
    cmp = Compare.mod_revision("k", "=", 7).to_json()
    assert cmp == {"key": base64.b64encode(b"k").decode(), "target": "MOD",
                   "result": "EQUAL", "mod_revision": "7"}
    assert Compare.value_is("k", "v").to_json()["value"] == base64.b64encode(b"v").decode()
    put = Op.put("k", "v", lease=5).to_json()["request_put"]
    assert put["lease"] == "5" and base64.b64decode(put["value"]) == b"v"
    rng = Op.get("p/", prefix=True).to_json()["request_range"]
    assert base64.b64decode(rng["range_end"]) == b"p0"
    assert "request_delete_range" in Op.delete("k").to_json()


def test_a_members_memory_limit_follows_its_data_and_never_starves_a_small_one(
        tmp_path: Path) -> None:
    """Go's soft limit (GOMEMLIMIT) makes a member give back the heap a burst of writes left
    (132 -> 49 MiB at 20,000 instances), but must stay above the live heap, which grows with
    the data: a floor for small clusters, a multiple of the database file beyond."""
    from herd.etcd.members import MEMORY_LIMIT_MIN, memory_env, memory_limit

    assert memory_limit(0) == MEMORY_LIMIT_MIN == 64 << 20
    assert memory_limit(19 << 20) == MEMORY_LIMIT_MIN  # 20,000 instances: a 19 MiB file
    assert memory_limit(100 << 20) == 300 << 20  # a big cluster gets room with its data
    assert memory_limit(-1) == MEMORY_LIMIT_MIN
    db = tmp_path / "db"
    env = memory_env(db)  # a new member: no file yet
    assert env["GOMEMLIMIT"] == str(64 << 20) and env["GOGC"] == "50"
    db.write_bytes(b"\0" * (30 << 20))
    assert memory_env(db)["GOMEMLIMIT"] == str(90 << 20)  # read again at each start
