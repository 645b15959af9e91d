"""RAPI under attack or clumsy use (issue 9, items 4 and 11), without a cluster: every bad
request is a 4xx in Ganeti's error shape and queues nothing; repeated failed logins from one
client are slowed while the right password still works from others."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from herd import errors
from herd.jobs import limits
from herd.rapi import app as rapi_app
from herd.rapi import openapi, throttle
from herd.rapi.app import RapiApp, nesting_depth
from herd.rapi.throttle import Failures, Policy, record_failure, wait_before_check
from tests.rapi.test_rapi_unit import ADMIN, FakeMaster, basic
from tests.rapi_apps import rapi_app as scratch_app

JSON_HEADERS = {**ADMIN, "Content-Type": "application/json"}
ERROR_KEYS = {"code", "message", "explain"}


@pytest.fixture
def rapi(tmp_path: Path) -> Iterator[tuple[RapiApp, FakeMaster]]:
    yield scratch_app(tmp_path, "admin {cleartext}pw write\nreader rpw read\n", FakeMaster())


@pytest.fixture
def client(rapi: tuple[RapiApp, FakeMaster]) -> TestClient:
    return TestClient(rapi[0], raise_server_exceptions=False)


def assert_error(answer: Any, status: int, *words: str) -> dict[str, Any]:
    assert answer.status_code == status, (answer.status_code, answer.text)
    body = answer.json()
    assert set(body) == ERROR_KEYS and body["code"] == status, body
    for word in words:
        assert word in body["explain"], body
    return body


# -- item 4: no 5xx from bad input ------------------------------------------------------------
REASON_PATHS = [("PUT", "/2/instances/x/modify"), ("PUT", "/2/instances/x/migrate"),
                ("PUT", "/2/instances/x/failover"), ("POST", "/2/instances/x/replace-disks"),
                ("POST", "/2/instances/x/recreate-disks"), ("POST", "/2/nodes/n/modify")]


@pytest.mark.parametrize(("method", "path"), REASON_PATHS)
def test_a_reason_that_is_no_list_is_400(client: TestClient, rapi: Any, method: str,
                                         path: str) -> None:
    for reason in (None, 1, True, "why", [1, 2], [["a", "b"]]):
        body = {"reason": reason}
        if path.endswith("replace-disks"):
            body["mode"] = "replace_auto"
        answer = client.request(method, path, content=json.dumps(body), headers=JSON_HEADERS)
        assert_error(answer, 400, "'reason'", json.dumps(reason), "[source, reason, timestamp]")
    assert rapi[1].submitted == []
    body = {"reason": [["me", "maintenance", 1700000000000000000]]}
    if path.endswith("replace-disks"):
        body["mode"] = "replace_auto"
    answer = client.request(method, path, content=json.dumps(body), headers=JSON_HEADERS)
    assert answer.status_code == 200, answer.text
    assert rapi[1].submitted[0][0]["reason"][0] == ["me", "maintenance", 1700000000000000000]


def test_job_ids_outside_the_queues_range_are_404(client: TestClient) -> None:
    for job_id in ("99999999999999999999999999999", "9223372036854775808", "+1", "1_0",
                   "\u0661", "-1", "0x10"):
        assert_error(client.get(f"/2/jobs/{job_id}", headers=ADMIN), 404)
        assert_error(client.delete(f"/2/jobs/{job_id}", headers=ADMIN), 404)
    assert_error(client.get("/2/jobs/9223372036854775807", headers=ADMIN), 404)  # in range


def test_deeply_nested_json_is_400_before_parsing(client: TestClient, rapi: Any) -> None:
    for text in ("[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000,
                 "[" * 100_000):
        answer = client.post("/2/instances", content=text, headers=JSON_HEADERS)
        assert_error(answer, 400, "nested", f"at most {rapi_app.MAX_DEPTH}")
    assert rapi[1].submitted == []


def test_nesting_depth_ignores_brackets_in_strings() -> None:
    assert nesting_depth(b"1") == 0
    assert nesting_depth(b'{"a": [1, {"b": []}]}') == 4
    assert nesting_depth(b'["[[[[", "\\"[[[", "{{{\\\\"]') == 1
    assert nesting_depth(b'{"x": "]]]]", "y": [[]]}') == 3


def test_bodies_over_the_limit_are_413_without_being_read(client: TestClient,
                                                          rapi: Any) -> None:
    big = b'{"__version__": 1, "name": "' + b"a" * rapi_app.MAX_BODY + b'"}'
    answer = client.post("/2/instances", content=big, headers=JSON_HEADERS)
    assert_error(answer, 413, f"{len(big)} bytes", "1 MiB")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        yield b'{"__version__": 1, "name": "'
        for _ in range(rapi_app.MAX_BODY // 65536 + 1):
            yield b"a" * 65536
        yield b'"}'

    answer = client.post("/2/instances", content=chunks(), headers=JSON_HEADERS)
    assert_error(answer, 413, f"more than {rapi_app.MAX_BODY} bytes")
    assert rapi[1].submitted == []


def test_a_job_too_large_to_store_is_413(client: TestClient, rapi: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_JOB_BYTES", 4096)
    body = {"__version__": 1, "name": "big", "disk_template": "diskless",
            "tags": [f"tag{i:05d}" for i in range(600)]}
    answer = client.post("/2/instances", content=json.dumps(body), headers=JSON_HEADERS)
    assert_error(answer, 413, "job too large", "at most 4096 bytes")
    assert rapi[1].submitted == []


def test_job_size_check() -> None:
    limits.check_job_size([{"OP_ID": "OP_TEST_DELAY"}])
    with pytest.raises(errors.ParameterError, match=r"job too large: .* at most 1048576"):
        limits.check_job_size([{"OP_ID": "OP_TAGS_SET", "tags": ["x" * 100] * 11_000}])


def test_jobs_for_objects_that_do_not_exist_are_refused_before_queuing(
        client: TestClient, rapi: Any) -> None:
    # '..' is no instance name (400 where the name rule is checked first) nor an instance
    answer = client.get("/2/instances/%2e%2e/info", headers=ADMIN)
    assert_error(answer, answer.status_code if answer.status_code in (400, 404) else 404)
    assert_error(client.get("/2/instances/nosuch/info", headers=ADMIN), 404)
    assert_error(client.put("/2/instances/nosuch/startup", headers=ADMIN), 404)
    assert_error(client.post("/2/nodes/nosuch/modify", json={}, headers=ADMIN), 404)
    for index in ("-1", "+1", "16", "1_0", "99999999999999999999"):
        answer = client.post(f"/2/instances/x/disk/{index}/grow", json={"amount": 1},
                             headers=ADMIN)
        assert_error(answer, 404)
    assert_error(client.post("/2/instances/nosuch/disk/0/grow", json={"amount": 1},
                             headers=ADMIN), 404)
    assert rapi[1].submitted == []
    assert client.post("/2/instances/x/disk/0/grow", json={"amount": 1},
                       headers=ADMIN).json() == 1
    assert client.get("/2/instances/i1/info", headers=ADMIN).json() == 2


def test_cancel_answers_what_the_openapi_says(client: TestClient, rapi: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    async def cancel(method: str, _timeout: float | None = None, **args: Any) -> Any:
        assert method == "cancel_job" and args == {"job_id": 5}
        return [False, "Job 5 has finished: it cannot be canceled"]

    monkeypatch.setattr(rapi[1], "call", cancel)
    answer = client.delete("/2/jobs/5", headers=ADMIN)
    assert answer.json() == [False, "Job 5 has finished: it cannot be canceled"]
    schema = openapi.document()["paths"]["/2/jobs/{job_id}"]["delete"]["responses"]["200"][
        "content"]["application/json"]["schema"]
    assert schema["type"] == "array" and schema["minItems"] == schema["maxItems"] == 2
    assert {s["type"] for s in schema["items"]["anyOf"]} == {"boolean", "string"}


def test_openapi_lists_every_status_the_server_answers() -> None:
    doc = openapi.document()
    for path, entry in doc["paths"].items():
        for method, op in entry.items():
            codes = set(op["responses"])
            assert {"200", "400", "401", "403", "404", "413", "415", "429", "502"} <= codes, \
                (path, method)
            assert "500" not in codes
    create = doc["paths"]["/2/instances"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert create["additionalProperties"] is False and "__version__" in create["properties"]
    assert create["properties"]["pnode"] == {"type": "string", "nullable": True}


# -- item 11: failed logins are slowed --------------------------------------------------------
POLICY = Policy(free=5, user_free=20, base=1.0, cap=60.0, forget=900.0)


def test_backoff_decision_per_address() -> None:
    now = 1000.0
    assert wait_before_check(now, None, None, POLICY) == 0
    rec = None
    for i in range(4):
        rec = record_failure(rec, now + i, POLICY)
    assert rec == Failures(4, now + 3)
    assert wait_before_check(now + 3, rec, None, POLICY) == 0  # 4 failures are free
    rec = record_failure(rec, now + 4, POLICY)  # the 5th: wait 1 s
    assert wait_before_check(now + 4, rec, None, POLICY) == pytest.approx(1.0)
    assert wait_before_check(now + 5.01, rec, None, POLICY) == 0
    for _ in range(5):
        rec = record_failure(rec, now + 10, POLICY)
    assert wait_before_check(now + 10, rec, None, POLICY) == pytest.approx(32.0)
    for _ in range(50):
        rec = record_failure(rec, now + 10, POLICY)
    assert wait_before_check(now + 10, rec, None, POLICY) == pytest.approx(60.0)  # capped
    # forgotten after a quiet while
    assert wait_before_check(now + 10 + 901, rec, None, POLICY) == 0
    assert record_failure(rec, now + 10 + 901, POLICY).count == 1


def test_backoff_per_user_spares_clients_that_never_failed() -> None:
    now = 50.0
    user = Failures(count=25, last=now)  # a user name under attack from many addresses
    assert wait_before_check(now, None, user, POLICY) == 0  # a clean client is checked
    failed_once = Failures(count=1, last=now - 1)
    assert wait_before_check(now, failed_once, user, POLICY) == pytest.approx(32.0)


def test_wrong_passwords_are_slowed_and_others_still_log_in(rapi: Any) -> None:
    app, master = rapi
    attacker = TestClient(app, client=("192.0.2.66", 40000))
    started = time.monotonic()
    statuses = [attacker.get("/2/info", headers=basic("admin", f"guess{i}")).status_code
                for i in range(500)]
    elapsed = time.monotonic() - started
    # 5 guesses are checked at once, then one after 1 s, 2 s, 4 s, ... of waiting
    checked = statuses.count(401)
    assert POLICY.free <= checked <= POLICY.free + 1 + math.log2(elapsed + 1), statuses[:20]
    assert statuses[:POLICY.free + 1] == [401] * POLICY.free + [429]
    assert statuses.count(429) == 500 - checked
    answer = attacker.get("/2/info", headers=basic("admin", "nope"))
    body = assert_error(answer, 429, "Too many failed logins")
    assert body["message"] == "Too Many Requests"
    assert 1 <= int(answer.headers["retry-after"]) <= 60
    # the right password from the attacker's address waits too (it is not even checked) ...
    assert attacker.get("/version", headers=basic("admin", "pw")).status_code == 429
    # ... but works from every other client, for this user and for others
    admin = TestClient(app, client=("198.51.100.7", 40001))
    assert admin.get("/version", headers=basic("admin", "pw")).status_code == 200
    assert admin.get("/version", headers=basic("reader", "rpw")).status_code == 200
    assert elapsed < 30
    assert master.submitted == []


def test_many_addresses_guessing_one_user_do_not_lock_it_out(rapi: Any) -> None:
    app, _ = rapi
    for i in range(POLICY.user_free + 5):  # each address fails once: no address back-off
        bot = TestClient(app, client=(f"203.0.113.{i + 1}", 40000))
        assert bot.get("/version", headers=basic("admin", "x")).status_code == 401
    again = TestClient(app, client=("203.0.113.1", 40000))
    assert again.get("/version", headers=basic("admin", "y")).status_code == 429
    owner = TestClient(app, client=("198.51.100.9", 40000))
    assert owner.get("/version", headers=basic("admin", "pw")).status_code == 200


def test_throttle_tables_are_bounded() -> None:
    table = throttle.LoginThrottle(POLICY, max_entries=100)
    for i in range(1000):
        table.failed(f"10.0.{i // 256}.{i % 256}", f"user{i}", 1.0 + i / 1000)
    assert len(table.by_address) == 100 and len(table.by_user) == 100
    assert "10.0.3.231" in table.by_address  # the newest stay


def test_an_old_field_name_is_checked_not_dropped(client: TestClient, rapi: Any) -> None:
    """Found by fuzzing: {"name": {}, "group_name": null} queued a job, the alias dropped."""
    answer = client.post("/2/groups", json={"name": {}, "group_name": None}, headers=ADMIN)
    assert_error(answer, 400, "'name'", "expected a string")
    answer = client.post("/2/instances", headers=ADMIN, json={
        "__version__": 1, "name": "a1", "instance_name": "b1", "disk_template": "diskless"})
    assert_error(answer, 400, "'name'", "'instance_name'", "disagree")
    assert rapi[1].submitted == []
    assert client.post("/2/groups", json={"name": "g1"}, headers=ADMIN).status_code == 200
    assert rapi[1].submitted[0][0]["group_name"] == "g1"
