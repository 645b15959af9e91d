"""RAPI writes on one instance follow the web manager's roles (herd.objects.access): a users
file ``write`` user may do everything, as in Ganeti; a user without it may power, tag, ...
an instance its grants or owner tags allow, and nothing else."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from herd import errors
from herd.objects.access import ACTIONS
from herd.rapi.app import INSTANCE_WRITES
from herd.rapi.routing import ROUTES
from tests.rapi_apps import rapi_app

INSTANCES = {"mine": ["herd:owner:alice"], "granted": [], "other": []}


class Master:
    def __init__(self) -> None:
        self.submitted: list[list[dict[str, Any]]] = []

    async def call(self, method: str, _timeout: float | None = None, **args: Any) -> Any:
        if method == "query_cluster":
            return {"access_grants": [{"role": "operator", "subject": "@ops",
                                       "path": "/instances/granted"}],
                    "access_groups": {"ops": ["alice"]}}
        if method == "query_instances":
            names = args.get("names") or list(INSTANCES)
            for name in names:
                if name not in INSTANCES:
                    raise errors.NotFoundError(f"instance '{name}' does not exist")
            return [{"name": n, "pnode.group": "default", "tags": INSTANCES[n]} for n in names]
        if method == "submit_job":
            self.submitted.append(args["ops"])
            return len(self.submitted)
        raise errors.HerdError(f"unexpected {method}")

    def close(self) -> None:
        pass


def auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def api(tmp_path: Path) -> tuple[TestClient, Master]:
    app, master = rapi_app(tmp_path, "admin pw write\nalice apw\nreader rpw read\n", Master())
    return TestClient(app), master


def test_every_entry_names_a_real_resource_method_and_action() -> None:
    routes = {r.template: r.resource for r in ROUTES}
    for (template, method), action in INSTANCE_WRITES.items():
        assert method in routes[template].methods(), (template, method)
        assert action in ACTIONS


def test_owner_may_start_own_instance_but_not_others(api: tuple[TestClient, Master]) -> None:
    client, master = api
    ok = client.put("/2/instances/mine/startup", headers=auth("alice", "apw"))
    assert ok.status_code == 200 and master.submitted[-1][0]["instance_name"] == "mine"
    for name in ("other", "missing"):
        refused = client.put(f"/2/instances/{name}/startup", headers=auth("alice", "apw"))
        assert refused.status_code == 403
    # the owner's user role does not allow removal; the group's operator grant does
    assert client.delete("/2/instances/mine", headers=auth("alice", "apw")).status_code == 403
    assert client.delete("/2/instances/granted",
                         headers=auth("alice", "apw")).status_code == 200
    assert len(master.submitted) == 2


def test_write_user_keeps_ganeti_rights_and_others_need_write_elsewhere(
        api: tuple[TestClient, Master]) -> None:
    client, master = api
    assert client.put("/2/instances/other/startup",
                      headers=auth("admin", "pw")).status_code == 200
    assert client.put("/2/instances/other/startup",
                      headers=auth("reader", "rpw")).status_code == 403  # a viewer
    assert client.put("/2/modify", json={}, headers=auth("alice", "apw")).status_code == 403
    assert client.put("/2/instances/mine/startup",
                      headers=auth("alice", "wrong")).status_code == 401
    assert len(master.submitted) == 1
