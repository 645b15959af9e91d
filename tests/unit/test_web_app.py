"""The web manager's sessions and forms over HTTP, without a browser: cookie flags, CSRF on
every POST (log-in included), Origin, idle expiry, security headers, nothing secret in logs.
The real RapiApp (which hands /ui to herd.web) over an in-process stand-in for masterd."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from herd.paths import HerdPaths
from herd.web.sessions import SessionStore
from tests.rapi_apps import rapi_app

ROWS = [{"name": "vm1", "pnode.group": "default", "tags": ["herd:owner:alice"],
         "status": "ADMIN_down", "pnode": "n1", "os": "debian", "admin_up": False,
         "be/vcpus": 1, "be/memory": 128, "disk_usage": 0}]


class Master:
    def __init__(self) -> None:
        self.jobs: list[list[dict[str, Any]]] = []
        self.job_status = "running"

    async def call(self, method: str, _timeout: float | None = None, **args: Any) -> Any:
        if method == "query_cluster":
            return {"name": "c1", "master": "n1", "access_grants": [], "access_groups": {}}
        if method == "query_instances":
            names = args.get("names")
            return [r for r in ROWS if not names or r["name"] in names]
        if method == "query_nodes":
            return [{"name": "n1", "offline": False, "drained": False}]
        if method == "query_jobs":
            return [{"id": 7, "status": self.job_status, "ops": [
                {"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "vm1"}],
                "opstatus": [self.job_status], "opresult": [None], "oplog": [[]],
                "summary": ["INSTANCE_STARTUP(vm1)"], "received_ts": 1.0, "end_ts": None,
                "origin": "via=rapi user=alice"}]
        if method == "query_quotas":
            return []
        if method == "submit_many":
            self.jobs.extend(args["jobs"])
            return [[True, len(self.jobs)] for _ in args["jobs"]]
        raise AssertionError(f"unexpected {method}")

    def close(self) -> None:
        pass


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ui(tmp_path: Path) -> tuple[TestClient, Master, Clock]:
    app, master = rapi_app(tmp_path, "alice s3cret-pw\noper operpw write\n", Master())
    clock = Clock()
    app.web.sessions = SessionStore(idle=600, clock=clock)
    return TestClient(app, base_url="https://herd.test"), master, clock


def login(client: TestClient, user: str = "alice", password: str = "s3cret-pw") -> Any:
    page = client.get("/ui/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    return client.post("/ui/login", data={"username": user, "password": password,
                                           "csrf": token.group(1), "next": "/ui/instances"},
                       follow_redirects=False)


def csrf(client: TestClient) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/ui/").text)
    assert found is not None
    return found.group(1)


def test_login_sets_a_strict_cookie_and_goes_where_asked(ui: Any) -> None:
    client, _, _ = ui
    answer = login(client)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/instances"
    cookie = answer.headers["set-cookie"]
    for flag in ("HttpOnly", "Secure", "SameSite=strict", "Path=/ui/"):
        assert flag.lower() in cookie.lower()
    page = client.get("/ui/instances")
    assert page.status_code == 200 and "vm1" in page.text
    for header in ("content-security-policy", "x-content-type-options", "x-frame-options"):
        assert header in page.headers
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_login_form_needs_its_token_and_same_origin(ui: Any) -> None:
    client, _, _ = ui
    client.get("/ui/login")
    refused = client.post("/ui/login", data={"username": "alice", "password": "s3cret-pw",
                                             "csrf": "guess"})
    assert refused.status_code == 403 and "form expired" in refused.text
    page = client.get("/ui/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    cross = client.post("/ui/login", data={"username": "alice", "password": "s3cret-pw",
                                           "csrf": token},
                        headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    assert "herd_session" not in client.cookies


def test_wrong_password_says_so_and_logs_no_password(ui: Any,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    client, _, _ = ui
    caplog.set_level(logging.DEBUG)
    answer = login(client, password="not-the-password")
    assert answer.status_code == 401 and "Wrong user name or password." in answer.text
    assert login(client).status_code == 303
    text = caplog.text
    assert "not-the-password" not in text and "s3cret-pw" not in text
    assert client.cookies["herd_session"] not in text


def test_every_post_needs_the_session_token(ui: Any) -> None:
    client, master, _ = ui
    login(client, "oper", "operpw")
    token = csrf(client)
    for data, headers in (({}, {}), ({"csrf": "wrong"}, {}),
                          ({"csrf": token}, {"Origin": "https://evil.example"})):
        answer = client.post("/ui/instances/vm1/start", data=data, headers=headers,
                             follow_redirects=False)
        assert answer.status_code == 403
    assert master.jobs == []
    ok = client.post("/ui/instances/vm1/start", data={"csrf": token}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/ui/instances/vm1?job=1"
    by_header = client.post("/ui/instances/vm1/start", headers={"X-CSRF-Token": token},
                            follow_redirects=False)
    assert by_header.status_code == 303
    assert master.jobs == [[{"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "vm1"}]] * 2


def test_destructive_actions_ask_first(ui: Any) -> None:
    client, master, _ = ui
    login(client)  # the owner of vm1
    token = csrf(client)
    ask = client.post("/ui/instances/vm1/stop", data={"csrf": token})
    assert ask.status_code == 200 and 'id="confirm"' in ask.text and master.jobs == []
    done = client.post("/ui/instances/vm1/stop", data={"csrf": token, "confirm": "yes"},
                       follow_redirects=False)
    assert done.status_code == 303
    assert master.jobs == [[{"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "vm1"}]]
    bad = client.post("/ui/instances/vm1/format", data={"csrf": token})
    assert bad.status_code == 404 and "allowed are start, stop, reboot" in bad.text


def test_idle_session_ends_and_logout_ends_it_at_once(ui: Any) -> None:
    client, _, clock = ui
    login(client)
    clock.now += 599
    assert client.get("/ui/", follow_redirects=False).status_code == 200
    clock.now += 600
    gone = client.get("/ui/instances", follow_redirects=False)
    assert gone.status_code == 303
    assert gone.headers["location"] == "/ui/login?next=%2Fui%2Finstances"
    fragment = client.get("/ui/jobs/1/panel", headers={"HX-Request": "true"},
                          follow_redirects=False)  # htmx polling a job: the whole page goes
    assert fragment.status_code == 200 and fragment.headers["hx-redirect"] == "/ui/login"
    login(client)
    out = client.post("/ui/logout", data={"csrf": csrf(client)}, follow_redirects=False)
    assert out.status_code == 303
    client.cookies.clear()
    assert client.get("/ui/", follow_redirects=False).status_code == 303


def test_user_removed_from_the_users_file_is_logged_out(ui: Any, tmp_path: Path) -> None:
    client, _, _ = ui
    login(client)
    users = HerdPaths(tmp_path).rapi_users_file
    users.write_text("oper operpw write\n# alice left\n")
    assert client.get("/ui/", follow_redirects=False).status_code == 303


def test_oversized_or_unsized_forms_are_refused_unread(ui: Any) -> None:
    client, _, _ = ui
    big = client.post("/ui/login", content=b"x" * (256 * 1024 + 1),
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert big.status_code == 413

    def chunks() -> Any:
        yield b"username=alice"

    unsized = client.post("/ui/login", content=chunks(),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert unsized.status_code == 411
    static = client.get("/ui/static/herd.css")
    assert static.status_code == 200 and "cache-control" not in static.headers


def test_job_panel_streams_while_running_and_reloads_the_page_when_done(ui: Any) -> None:
    client, master, _ = ui
    login(client)  # alice submitted job 7 on her vm1
    running = client.get("/ui/jobs/7/panel?refresh=1", headers={"HX-Request": "true"})
    assert 'data-events="/ui/jobs/7/events"' in running.text  # live by server-sent events
    assert 'data-refresh="1"' in running.text and "hx-refresh" not in running.headers
    master.job_status = "success"
    done = client.get("/ui/jobs/7/panel?refresh=1", headers={"HX-Request": "true"})
    assert "data-events" not in done.text and done.headers["hx-refresh"] == "true"
    on_job_page = client.get("/ui/jobs/7/panel", headers={"HX-Request": "true"})
    assert "hx-refresh" not in on_job_page.headers  # the job page updates in place
