"""The web manager's further pages: pure decisions (action forms, cancel rights, events, the
audit log's rows) and, over HTTP without a browser, the job stream, cancel and the operator
action forms (herd.web.actions) against an in-process stand-in for masterd."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from herd.web import actions, listing
from tests.rapi_apps import rapi_app
from tests.unit.test_web_app import ROWS, Master, csrf, login

ROW = {"name": "vm1", "be/memory": 128, "be/vcpus": 1}


def test_modify_checks_each_field_and_keeps_only_changes() -> None:
    op, bad = actions.check_action("modify", "vm1", {"memory": "lots", "vcpus": "0"}, ROW)
    assert op is None and set(bad) == {"memory", "vcpus"}
    assert "lots" in bad["memory"] and "at least 1" in bad["vcpus"]
    op, bad = actions.check_action("modify", "vm1", {"memory": "256M", "vcpus": "1"}, ROW)
    assert bad == {} and op == {"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "vm1",
                                "beparams": {"memory": 256}}
    op, bad = actions.check_action("modify", "vm1", {"memory": "128", "vcpus": "1"}, ROW)
    assert op is None and "nothing to change" in bad["memory"]


def test_remove_and_reinstall_need_the_typed_name_failover_a_tick() -> None:
    for action in ("remove", "reinstall"):
        op, bad = actions.check_action(action, "vm1", {"confirm": "vm2"}, ROW)
        assert op is None and "type the instance's name vm1" in bad["confirm"]
        assert "'vm2'" in bad["confirm"]
        op, bad = actions.check_action(action, "vm1", {"confirm": "vm1"}, ROW)
        assert bad == {} and op is not None and op["instance_name"] == "vm1"
    assert actions.check_action("failover", "vm1", {}, ROW)[0] is None
    op, _ = actions.check_action("failover", "vm1", {"confirm": "yes"}, ROW)
    assert op == {"OP_ID": "OP_INSTANCE_FAILOVER", "instance_name": "vm1"}
    op, _ = actions.check_action("migrate", "vm1", {}, ROW)
    assert op == {"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": "vm1"}


def test_rename_checks_the_new_name() -> None:
    assert "new_name" in actions.check_action("rename", "vm1", {"new_name": "bad name!"},
                                              ROW)[1]
    assert "must differ" in actions.check_action("rename", "vm1", {"new_name": "vm1"},
                                                 ROW)[1]["new_name"]
    op, _ = actions.check_action("rename", "vm1", {"new_name": "vm2.example.com"}, ROW)
    assert op == {"OP_ID": "OP_INSTANCE_RENAME", "instance_name": "vm1",
                  "new_name": "vm2.example.com"}


def test_actions_ask_the_roles_of_access() -> None:
    from herd.objects.access import ACTIONS as NEEDS

    assert {a: s.need for a, s in actions.ACTIONS.items()} == {
        "migrate": "migrate", "failover": "migrate", "modify": "modify", "rename": "modify",
        "reinstall": "modify", "remove": "remove"}
    assert all(NEEDS[s.need] == "operator" for s in actions.ACTIONS.values())


def test_cancel_is_the_submitters_or_an_operators() -> None:
    job = {"status": "running", "origin": "via=rapi user=alice from=10.0.0.1"}
    assert actions.may_cancel("alice", job, operator=False)
    assert not actions.may_cancel("bob", job, operator=False)
    assert actions.may_cancel("bob", job, operator=True)
    assert not actions.may_cancel("alice", {**job, "status": "success"}, operator=True)


def test_events_and_log_lines() -> None:
    assert actions.sse("log", {"lines": ["a\nb"]}) == 'event: log\ndata: {"lines":["a\\nb"]}\n\n'
    lines, serial = actions.log_lines([(3, 0, 1.0, "message", "one"),
                                       (5, 0, 2.0, "message", "two")], lambda t: f"t{t}")
    assert lines == ["t1.0 one", "t2.0 two"] and serial == 5


def test_audit_rows_filter_by_user_and_instance() -> None:
    jobs = [{"id": 1, "status": "success", "origin": "via=rapi user=alice from=10.0.0.1",
             "ops": [{"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "web1"}],
             "summary": ["INSTANCE_STARTUP(web1)"]},
            {"id": 2, "status": "error", "origin": "via=cli user=root uid=0",
             "ops": [{"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": "db1"}],
             "summary": ["INSTANCE_REMOVE(db1)"]}, None]
    rows = actions.audit_rows(jobs)
    assert [r["id"] for r in rows] == [2, 1]
    assert rows[1]["user"] == "alice" and rows[1]["address"] == "10.0.0.1"
    assert [r["id"] for r in actions.audit_rows(jobs, user="ALI")] == [1]
    assert [r["id"] for r in actions.audit_rows(jobs, instance="db")] == [2]
    assert actions.audit_rows(jobs, user="alice", instance="db") == []


def test_node_columns_sort_and_usage() -> None:
    nodes = [{"name": "n2", "mfree": 10, "tags": []}, {"name": "n1", "mfree": 20, "tags": []}]
    result = listing.page(nodes, listing.NODE_COLUMNS, sort="mfree", descending=True)
    assert [r["name"] for r in result.rows] == ["n1", "n2"]
    assert actions.usage(1024, 4096) == "1.0G of 4.0G (25%)"
    assert actions.usage(None, 4096) == "?"


class LiveMaster(Master):
    """Adds a job that runs two log lines then succeeds, and cancel."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0
        self.cancelled: list[int] = []

    async def call(self, method: str, _timeout: float | None = None, **args: Any) -> Any:
        if method == "wait_for_job_change":
            self.waits += 1
            if self.waits == 1:
                return {"status": "running", "log": [(1, 0, 1.0, "message", "step one")]}
            self.job_status = "success"
            return {"status": "success", "log": [(2, 0, 2.0, "message", "step two")]}
        if method == "cancel_job":
            self.cancelled.append(args["job_id"])
            return [True, "canceled"]
        return await super().call(method, _timeout, **args)


@pytest.fixture
def live(tmp_path: Path) -> tuple[TestClient, LiveMaster]:
    app, master = rapi_app(tmp_path, "alice s3cret-pw\noper operpw write\nbob bobpw\n",
                           LiveMaster())
    return TestClient(app, base_url="https://herd.test"), master


def events(text: str) -> list[tuple[str, Any]]:
    out = []
    for block in text.split("\n\n"):
        found = re.match(r"event: (\w+)\ndata: (.*)", block)
        if found:
            out.append((found.group(1), json.loads(found.group(2))))
    return out


def test_job_stream_sends_log_lines_status_and_ends(live: tuple[TestClient, LiveMaster]
                                                    ) -> None:
    client, _ = live
    login(client)
    answer = client.get("/ui/jobs/7/events")
    assert answer.headers["content-type"].startswith("text/event-stream")
    got = events(answer.text)
    assert [e for e, _ in got] == ["log", "status", "log", "status", "end"]
    assert got[0][1]["reset"] and got[0][1]["lines"][0].endswith("step one")
    assert got[2][1]["lines"][0].endswith("step two") and not got[2][1]["reset"]
    assert got[-1][1]["status"] == "success"


def test_cancel_by_submitter_not_by_another_user(live: tuple[TestClient, LiveMaster]) -> None:
    client, master = live
    login(client, "bob", "bobpw")
    answer = client.post("/ui/jobs/7/cancel", data={"csrf": csrf(client)},
                         follow_redirects=False)
    assert answer.status_code == 404  # bob may not even see alice's job on vm1
    client.cookies.clear()
    login(client)
    answer = client.post("/ui/jobs/7/cancel", data={"csrf": csrf(client)},
                         follow_redirects=False)
    assert answer.status_code == 303 and master.cancelled == [7]


def test_operator_action_form_bad_value_queues_nothing(live: tuple[TestClient, LiveMaster]
                                                       ) -> None:
    client, master = live
    login(client, "alice")
    answer = client.get("/ui/instances/vm1/do/modify")
    assert answer.status_code == 403  # the owner is a user, modify is an operator's
    client.cookies.clear()
    login(client, "oper", "operpw")
    token = csrf(client)
    answer = client.post("/ui/instances/vm1/do/modify",
                         data={"csrf": token, "memory": "12Q", "vcpus": "1"})
    assert answer.status_code == 400 and 'id="err-memory"' in answer.text
    assert master.jobs == []
    answer = client.post("/ui/instances/vm1/do/remove", data={"csrf": token, "confirm": "x"})
    assert answer.status_code == 400 and 'id="err-confirm"' in answer.text
    assert master.jobs == []
    answer = client.post("/ui/instances/vm1/do/remove", data={"csrf": token,
                                                              "confirm": "vm1"},
                         follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/jobs/1"
    assert master.jobs == [[{"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": "vm1"}]]
    assert ROWS[0]["name"] == "vm1"


def test_a_stream_ends_with_its_session(live: tuple[TestClient, LiveMaster]) -> None:
    """Logged out (or idle too long): the stream stops without ``end``; the browser's
    reconnect then meets the log-in redirect, which an EventSource does not follow."""
    from herd.web.sessions import SessionStore

    store = SessionStore(idle=10, clock=lambda: 0.0)
    _, session = store.create("alice")
    assert store.holds(session)
    store.drop_user("alice")
    assert not store.holds(session)
    client, _ = live
    login(client)
    client.app.web.sessions.holds = lambda _s: False  # type: ignore[attr-defined]
    got = client.get("/ui/jobs/7/events").text
    assert got.startswith("retry: ") and "event:" not in got
