"""Who may do what (herd.objects.access), web sessions and their expiry (herd.web.sessions),
the instance list's search, sort and paging (herd.web.listing), and grants kept in the config
(OP_CLUSTER_SET_PARAMS on the in-process cluster)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from herd import errors
from herd.objects import access
from herd.objects.access import CLUSTER, Grant, Principal, Target, allowed, role_on
from herd.web import listing
from herd.web.app import origin_user, possible_actions, safe_next
from herd.web.sessions import IDLE_TIMEOUT, SessionStore, expired
from tests.harness import InProcessCluster, scratch_root

WEB1 = Target(group="default", instance="web1", tags=())
OWNED = Target(group="default", instance="mine", tags=("herd:owner:alice", "x"))
TEAM = Target(group="default", instance="team", tags=("herd:owner:@devs",))
OTHER_GROUP = Target(group="dmz", instance="gw", tags=())


def p(name: str = "alice", groups: tuple[str, ...] = (), base: str | None = None
      ) -> Principal:
    return Principal(name, frozenset(groups), base)


@pytest.mark.parametrize(("options", "role"), [
    ({"write"}, "operator"), ({"read", "write"}, "operator"), ({"read"}, "viewer"),
    (set(), None)])
def test_users_file_options_give_a_base_role(options: set[str], role: str | None) -> None:
    assert access.base_role(options) == role


def test_no_grant_no_role_nothing_allowed() -> None:
    assert role_on(p(), WEB1, []) is None
    assert not allowed(p(), "view", WEB1, [])
    assert not allowed(p(), "view", CLUSTER, [])


def test_grants_are_inherited_downwards_never_upwards() -> None:
    on_group = [Grant("user", "alice", "/groups/default")]
    assert allowed(p(), "power", WEB1, on_group)
    assert not allowed(p(), "power", OTHER_GROUP, on_group)
    assert not allowed(p(), "view", CLUSTER, on_group)  # not the whole cluster
    on_instance = [Grant("viewer", "alice", "/instances/web1")]
    assert allowed(p(), "view", WEB1, on_instance)
    assert not allowed(p(), "power", WEB1, on_instance)
    assert not allowed(p(), "view", OTHER_GROUP, on_instance)
    on_root = [Grant("operator", "alice", "/")]
    assert all(allowed(p(), "migrate", t, on_root) for t in (WEB1, OTHER_GROUP, CLUSTER))
    assert not allowed(p(), "admin", CLUSTER, on_root)


def test_highest_role_wins_and_groups_count() -> None:
    grants = [Grant("viewer", "alice", "/"), Grant("operator", "@devs", "/groups/dmz")]
    assert role_on(p(groups=("devs",)), OTHER_GROUP, grants) == "operator"
    assert role_on(p(groups=("devs",)), WEB1, grants) == "viewer"
    assert role_on(p(), OTHER_GROUP, grants) == "viewer"  # not in the group
    assert role_on(p(base="operator"), WEB1, [Grant("viewer", "alice")]) == "operator"


def test_owner_tags_give_the_user_role_on_that_instance_only() -> None:
    assert role_on(p(), OWNED, []) == "user"
    assert allowed(p(), "power", OWNED, [])
    assert not allowed(p(), "remove", OWNED, [])
    assert not allowed(p("bob"), "view", OWNED, [])
    assert allowed(p("bob", ("devs",)), "power", TEAM, [])
    assert not allowed(p("bob"), "view", TEAM, [])
    # ownership never lowers a role given otherwise
    assert role_on(p(), OWNED, [Grant("admin", "alice")]) == "admin"
    # a tag that names nobody owns nothing
    assert access.owners(["herd:owner:", "herd:owner:x", "owner:y"]) == {"x"}


def test_viewer_sees_but_may_not_act_and_unknown_actions_are_refused() -> None:
    viewer = p(base="viewer")
    assert allowed(viewer, "view", WEB1, [])
    assert not any(allowed(viewer, a, WEB1, []) for a in access.ACTIONS if a != "view")
    assert not allowed(p(base="operator"), "reformat-the-world", WEB1, [])


@pytest.mark.parametrize(("role", "subject", "path", "message"), [
    ("boss", "alice", "/", "invalid role 'boss': allowed are viewer, user, operator, admin"),
    ("user", "al ice", "/", "invalid grant subject 'al ice'"),
    ("user", "@", "/", "invalid grant subject '@'"),
    ("user", "alice", "/nodes/n1", "invalid grant path '/nodes/n1': allowed are /, "
                                   "/groups/GROUP and /instances/INSTANCE"),
    ("user", "alice", "/instances/", "invalid grant path '/instances/'"),
])
def test_bad_grants_are_refused_naming_the_value(role: str, subject: str, path: str,
                                                 message: str) -> None:
    with pytest.raises(errors.ParameterError, match="^" + message.replace("(", r"\(")
                       .replace(")", r"\)").replace(".", r"\.")):
        access.check_grant(role, subject, path)


def test_a_stored_invalid_grant_is_skipped_not_fatal() -> None:
    grants = access.parse_grants([{"role": "user", "subject": "a", "path": "/"},
                                  {"role": "god", "subject": "b", "path": "/"}])
    assert grants == [Grant("user", "a", "/")]


# -- sessions -----------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_session_expires_after_idle_time_and_each_use_restarts_the_clock() -> None:
    assert not expired(0, IDLE_TIMEOUT - 1) and expired(0, IDLE_TIMEOUT)
    clock = Clock()
    store = SessionStore(idle=60, clock=clock)
    token, session = store.create("alice")
    assert session.csrf and session.csrf != token
    clock.now += 59
    assert store.get(token) is session  # used: idle clock restarts
    clock.now += 59
    assert store.get(token) is session
    clock.now += 60
    assert store.get(token) is None  # idle for 60 s: gone for good
    clock.now -= 30
    assert store.get(token) is None
    assert len(store) == 0


def test_logout_and_unknown_tokens() -> None:
    store = SessionStore()
    token, _ = store.create("alice")
    other, _ = store.create("alice")
    assert store.get("made-up") is None and store.get(None) is None
    store.drop(token)
    assert store.get(token) is None and store.get(other) is not None
    store.drop_user("alice")
    assert store.get(other) is None


def test_session_repr_shows_no_token() -> None:
    store = SessionStore()
    token, session = store.create("alice")
    assert token not in repr(session) and session.csrf not in repr(session)


@pytest.mark.parametrize(("target", "expected"), [
    ("/ui/instances?q=x", "/ui/instances?q=x"), ("https://evil.example/", "/ui/"),
    ("//evil.example/ui/", "/ui/"), ("/ui/login", "/ui/"), (None, "/ui/"),
    ("/ui/\\evil", "/ui/")])
def test_after_login_only_pages_of_this_ui(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_origin_user_from_the_audit_stamp() -> None:
    assert origin_user({"origin": "via=rapi user=alice uid=0 from=127.0.0.1"}) == "alice"
    assert origin_user({"origin": None}) is None


# -- the instance list ----------------------------------------------------------------------
ROWS = [{"name": f"web{i}.example.com", "status": "running" if i % 2 else "ADMIN_down",
         "pnode": f"node{i % 3}", "os": "debian" if i < 5 else "busybox",
         "be/vcpus": i % 4 + 1, "be/memory": 128 * i, "disk_usage": 0,
         "tags": [f"herd:owner:{'alice' if i < 3 else 'bob'}", f"n:{i}"]} for i in range(12)]


def names(page: listing.Page) -> list[str]:
    return [r["name"] for r in page.rows]


def test_search_by_column_and_anywhere() -> None:
    cols = listing.INSTANCE_COLUMNS
    assert names(listing.page(ROWS, cols, query="owner:alice")) == [
        "web0.example.com", "web1.example.com", "web2.example.com"]
    assert names(listing.page(ROWS, cols, query="node:node1 status:running")) == [
        "web1.example.com", "web7.example.com"]
    assert names(listing.page(ROWS, cols, query="os:busy tag:n:1")) == [
        "web10.example.com", "web11.example.com"]
    assert listing.page(ROWS, cols, query="web1").total == 3  # web1, web10, web11
    assert listing.page(ROWS, cols, query="nothing-like-this").total == 0


def test_sort_numeric_and_descending_and_unknown_column() -> None:
    cols = listing.INSTANCE_COLUMNS
    by_mem = listing.page(ROWS, cols, sort="memory", descending=True)
    assert names(by_mem)[:2] == ["web11.example.com", "web10.example.com"]  # 1408 > 1280
    assert listing.page(ROWS, cols, sort="bogus").sort == "name"


def test_pages_are_clamped() -> None:
    cols = listing.INSTANCE_COLUMNS
    second = listing.page(ROWS, cols, number=2, per_page=5)
    assert (second.page, second.pages, len(second.rows)) == (2, 3, 5)
    last = listing.page(ROWS, cols, number=99, per_page=5)
    assert (last.page, len(last.rows)) == (3, 2)
    assert listing.page([], cols).pages == 1


# -- grants in the config -------------------------------------------------------------------
@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[InProcessCluster]:
    with scratch_root(tmp_path) as root, InProcessCluster(root, nodes=1) as c:
        yield c


def test_grants_and_groups_are_config_changed_by_jobs(cluster: InProcessCluster) -> None:
    grant = {"role": "user", "subject": "@devs", "path": "/groups/default"}
    done = cluster.run({"OP_ID": "OP_CLUSTER_SET_PARAMS", "add_grants": [grant],
                        "access_groups": {"devs": ["bob", "alice", "bob"]}})
    assert done.status == "success", done.log
    saved = cluster.saved_config().cluster
    assert saved.access_grants == [grant]
    assert saved.access_groups == {"devs": ["alice", "bob"]}
    again = cluster.run({"OP_ID": "OP_CLUSTER_SET_PARAMS", "add_grants": [grant]})
    assert again.status == "success" and cluster.config.cluster.access_grants == [grant]
    gone = cluster.run({"OP_ID": "OP_CLUSTER_SET_PARAMS", "remove_grants": [grant],
                        "access_groups": {"devs": []}})
    assert gone.status == "success", gone.log
    assert cluster.saved_config().cluster.access_grants == []
    assert cluster.saved_config().cluster.access_groups == {}


@pytest.mark.parametrize(("change", "message"), [
    ({"add_grants": [{"role": "root", "subject": "a", "path": "/"}]}, "invalid role 'root'"),
    ({"remove_grants": [{"role": "user", "subject": "a", "path": "/"}]},
     "no grant of role user to a on / to remove"),
    ({"access_groups": {"bad group": ["a"]}}, "invalid grant subject '@bad group'"),
])
def test_bad_grant_changes_fail_and_change_nothing(cluster: InProcessCluster,
                                                   change: dict[str, object],
                                                   message: str) -> None:
    before = cluster.saved_config().serial_no
    outcome = cluster.run({"OP_ID": "OP_CLUSTER_SET_PARAMS", **change})
    assert outcome.status == "error"
    assert message in " ".join(outcome.log) + str(outcome.results)
    assert cluster.saved_config().serial_no == before


# -- gnt-cluster grant/revoke/set-group -----------------------------------------------------
def test_cli_grant_commands_submit_the_config_change(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from herd.cli import gnt_cluster

    submitted: list[list[dict[str, object]]] = []
    monkeypatch.setattr(gnt_cluster, "submit_or_run",
                        lambda opts, ops: submitted.append(ops))
    assert gnt_cluster.main(["grant", "user", "@devs", "/groups/default"]) == 0
    assert gnt_cluster.main(["revoke", "admin", "alice"]) == 0
    assert gnt_cluster.main(["set-group", "devs", "alice", "bob"]) == 0
    assert submitted == [
        [{"OP_ID": "OP_CLUSTER_SET_PARAMS",
          "add_grants": [{"role": "user", "subject": "@devs", "path": "/groups/default"}]}],
        [{"OP_ID": "OP_CLUSTER_SET_PARAMS",
          "remove_grants": [{"role": "admin", "subject": "alice", "path": "/"}]}],
        [{"OP_ID": "OP_CLUSTER_SET_PARAMS", "access_groups": {"devs": ["alice", "bob"]}}]]
    assert gnt_cluster.main(["grant", "boss", "alice"]) != 0  # refused before any job
    assert "invalid role 'boss': allowed are viewer, user, operator, admin" in \
        capsys.readouterr().err
    assert len(submitted) == 3


def test_an_instance_grant_follows_the_instance_not_its_name() -> None:
    grant = Grant("user", "bob", "/instances/web1", uuid="u-1")
    same = Target(group="default", instance="web1", uuid="u-1")
    renamed = Target(group="default", instance="www1", uuid="u-1")
    successor = Target(group="default", instance="web1", uuid="u-2")  # removed, re-created
    assert allowed(p("bob"), "power", same, [grant])
    assert allowed(p("bob"), "power", renamed, [grant])
    assert not allowed(p("bob"), "view", successor, [grant])


def test_grant_on_an_instance_is_stored_with_its_uuid(cluster: InProcessCluster) -> None:
    from tests.harness import create_op

    name = "vm1.example.com"
    assert cluster.run(create_op(name, template="diskless")).status == "success"
    uuid = cluster.config.find_instance(name).uuid
    grant = {"role": "user", "subject": "bob", "path": f"/instances/{name}"}
    done = cluster.run({"OP_ID": "OP_CLUSTER_SET_PARAMS", "add_grants": [grant]})
    assert done.status == "success", done.log
    assert cluster.saved_config().cluster.access_grants == [{**grant, "uuid": uuid}]
    missing = cluster.run({"OP_ID": "OP_CLUSTER_SET_PARAMS", "add_grants": [
        {**grant, "path": "/instances/ghost"}]})
    assert missing.status == "error"
    assert "cannot grant on /instances/ghost: instance 'ghost' does not exist" in \
        str(missing.results)
    gone = cluster.run({"OP_ID": "OP_CLUSTER_SET_PARAMS", "remove_grants": [grant]})
    assert gone.status == "success" and cluster.config.cluster.access_grants == []


@pytest.mark.parametrize(("row", "possible"), [
    ({"status": "running", "admin_up": True}, {"stop", "reboot"}),
    ({"status": "ADMIN_down", "admin_up": False}, {"start"}),
    ({"status": "ERROR_down", "admin_up": True}, {"start", "stop"}),  # stop: mark it down
])
def test_power_buttons_that_make_sense(row: dict[str, object], possible: set[str]) -> None:
    assert possible_actions(row) == possible
