"""RAPI without a cluster: the users file, authentication, routing, error shapes, request
checks, conversions and the placeholder opcodes, against an in-process stand-in for masterd."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from herd import errors
from herd.opcodes import opcode_from_dict
from herd.opcodes.instance_extra import UnbackedOpCode, is_backed
from herd.paths import HerdPaths
from herd.rapi import auth, convert
from herd.rapi.app import RapiApp
from herd.rapi.resources.query import check_filter, matches


class FakeMaster:
    """Answers like masterd; records submitted jobs. Knows the instances i1 and x and the
    node n."""

    INSTANCES = ("i1", "x")
    NODES = ("n",)

    def __init__(self) -> None:
        self.submitted: list[list[dict[str, Any]]] = []

    async def call(self, method: str, _timeout: float | None = None, **args: Any) -> Any:
        if method == "submit_job":
            for op in args["ops"]:
                opcode_from_dict(op)
            self.submitted.append(args["ops"])
            return len(self.submitted)
        if method in ("query_instances", "query_nodes"):
            known = self.INSTANCES if method == "query_instances" else self.NODES
            names = args.get("names")
            if names:
                missing = [n for n in names if n not in known]
                if missing:
                    raise errors.NotFoundError(f"'{missing[0]}' does not exist")
                return [{"name": n} for n in names]
            return []
        if method == "query_jobs":
            if any(i > 2**63 - 1 for i in args.get("ids") or ()):
                raise OverflowError("Python int too large to convert to SQLite INTEGER")
            return [None for _ in args.get("ids") or ()]
        if method == "query_tags":
            return ["a", "b"]
        if method == "query_cluster":  # the grants a non-write user's instance write needs
            return {"access_grants": [], "access_groups": {}}
        raise errors.HerdError(f"unexpected {method}")

    def close(self) -> None:
        pass


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


ADMIN = basic("admin", "pw")
READER = basic("reader", "rpw")


@pytest.fixture
def api(tmp_path: Path) -> tuple[TestClient, FakeMaster, Path]:
    paths = HerdPaths(tmp_path)
    paths.rapi_users_file.parent.mkdir(parents=True)
    paths.rapi_users_file.write_text(
        "# comment\nadmin {cleartext}pw write\nreader rpw read\n"
        f"jessica {{HA1}}{auth.ha1('jessica', 'jpw')} read,write\n")
    app = RapiApp(paths)
    master = FakeMaster()
    app.master = master  # type: ignore[assignment]
    return TestClient(app), master, paths.rapi_users_file


def test_users_file_format_and_passwords() -> None:
    users = auth.parse_users("# c\n\njack abc123\nfred {cleartext}foo555\n"
                             "jessica {HA1}7046452df2cbb530877058712cf17bd4 write\n"
                             "mon {ha1}X read,write\n")
    assert sorted(users) == ["fred", "jack", "jessica", "mon"]
    assert auth.check_password(users["jack"], "abc123")
    assert auth.check_password(users["fred"], "foo555")
    assert not auth.check_password(users["fred"], "{cleartext}foo555")
    assert users["jessica"].options == {"write"} and users["mon"].options == {"read", "write"}
    assert users["jack"].may("read") and not users["jack"].may("write")
    assert auth.ha1("jack", "abc123") == \
        __import__("hashlib").md5(b"jack:Ganeti Remote API:abc123").hexdigest()


def test_auth_errors_have_ganetis_shape(api: Any) -> None:
    client, master, _ = api
    answer = client.get("/2/info")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Basic realm="Ganeti Remote API"'
    assert answer.json() == {"code": 401, "message": "Unauthorized",
                             "explain": "No permission -- see authorization schemes"}
    assert client.get("/2/info", headers=basic("admin", "nope")).status_code == 401
    assert client.get("/2/info", headers=basic("ghost", "pw")).status_code == 401
    answer = client.put("/2/instances/x/startup", headers=READER)
    assert answer.status_code == 403 and answer.json()["message"] == "Forbidden"
    assert client.get("/version", headers=basic("jessica", "jpw")).json() == 2
    assert master.submitted == []


def test_users_file_is_reread(api: Any) -> None:
    client, _, users_file = api
    assert client.get("/version", headers=basic("new", "x")).status_code == 401
    users_file.write_text(users_file.read_text() + "new x\n")
    assert client.get("/version", headers=basic("new", "x")).status_code == 200
    users_file.unlink()
    assert client.get("/version", headers=ADMIN).status_code == 401


def test_routing_and_body_errors(api: Any) -> None:
    client, master, _ = api
    assert client.get("/2/nosuch", headers=ADMIN).json() == \
        {"code": 404, "message": "Not Found", "explain": "Nothing matches the given URI"}
    assert client.get("/2/instances/nosuch", headers=ADMIN).status_code == 404
    answer = client.delete("/2/info", headers=ADMIN)
    assert answer.status_code == 501
    assert answer.json()["explain"] == "Method DELETE is unsupported for path /2/info"
    answer = client.post("/2/instances", content=b"{nope",
                         headers={**ADMIN, "Content-Type": "application/json"})
    assert answer.json() == {"code": 400, "message": "Bad Request",
                             "explain": "Unable to parse JSON data"}
    answer = client.post("/2/instances", content=b"{}",
                         headers={**ADMIN, "Content-Type": "text/plain"})
    assert answer.status_code == 415
    answer = client.post("/2/instances", json={"name": "x"}, headers=ADMIN)
    assert answer.status_code == 400 and "version 0" in answer.json()["explain"]
    answer = client.post("/2/instances", json={"__version__": 1, "name": "x", "bogus": 1,
                                               "disk_template": "diskless"}, headers=ADMIN)
    assert answer.status_code == 400 and "bogus" in answer.json()["explain"]
    answer = client.get("/2/instances?bulk=yes", headers=ADMIN)
    assert answer.status_code == 400
    assert master.submitted == []


def test_writes_answer_with_a_job_id(api: Any) -> None:
    client, master, _ = api
    answer = client.post("/2/instances?dry-run=1&reason=because", headers=ADMIN, json={
        "__version__": 1, "mode": "create", "name": "i1", "os": "busybox+default",
        "disk_template": "file", "disks": [{"size": "8G"}], "nics": [{"bridge": "br1"}],
        "conflicts_check": True})
    assert answer.status_code == 200 and answer.json() == 1  # a JSON number, as Ganeti 3.0
    op = master.submitted[0][0]
    assert op["instance_name"] == "i1" and op["os_type"] == "busybox+default"
    assert op["dry_run"] is True and op["disks"] == [{"size": "8G"}]
    assert op["nics"] == [{"link": "br1"}]
    assert op["reason"][0][:2] == ["gnt:user", "because"]
    assert client.put("/2/tags?tag=x&tag=y", headers=ADMIN).json() == 2
    assert master.submitted[1][0] | {"reason": []} == {
        **master.submitted[1][0], "OP_ID": "OP_TAGS_SET", "kind": "cluster",
        "tags": ["x", "y"], "reason": []}
    assert client.get("/2/instances/i1/tags", headers=READER).json() == ["a", "b"]
    assert client.put("/2/instances/i1/migrate", json={"mode": "live"},
                      headers=ADMIN).status_code == 200
    assert client.put("/2/instances/i1/rename", json={"new_name": "i2", "bogus": 1},
                      headers=ADMIN).status_code == 400


def test_placeholder_opcodes_accept_ganetis_fields_only() -> None:
    op = opcode_from_dict({"OP_ID": "OP_NODE_POWERCYCLE", "node_name": "a", "force": True})
    assert isinstance(op, UnbackedOpCode) and not is_backed("OP_NODE_POWERCYCLE")
    assert op.to_dict()["force"] is True and op.summary() == "NODE_POWERCYCLE(a)"
    with pytest.raises(errors.ParameterError):
        opcode_from_dict({"OP_ID": "OP_NODE_POWERCYCLE", "force": True})
    assert is_backed("OP_INSTANCE_STARTUP") and is_backed("OP_GROUP_RENAME")
    # a real opcode module took the placeholder over, with Ganeti's fields and defaults
    for op_id in ("OP_INSTANCE_RENAME", "OP_INSTANCE_REINSTALL", "OP_INSTANCE_GROW_DISK"):
        assert is_backed(op_id)
    ren = opcode_from_dict({"OP_ID": "OP_INSTANCE_RENAME", "instance_name": "a",
                            "new_name": "b"})
    assert (ren.ip_check, ren.name_check) == (False, True)
    with pytest.raises(errors.ParameterError):
        opcode_from_dict({"OP_ID": "OP_INSTANCE_RENAME", "instance_name": "a"})


def test_job_conversion_and_filters() -> None:
    assert convert.timestamp(1795482107.012503) == [1795482107, 12503]
    assert convert.timestamp(None) is None
    assert convert.op_result("error", ["NotFoundError", ["no such"]]) == \
        ["OpPrereqError", ["no such", "unknown_entity"]]
    assert convert.op_result("success", ["x"]) == ["x"]
    row = {"name": "web1", "tags": ["a"], "oper_ram": 128}
    flt = ["&", ["=~", "name", "^web"], ["=[]", "tags", "a"], [">", "oper_ram", 64]]
    assert check_filter("instance", flt) == ["name", "tags", "oper_ram"]
    assert matches(flt, row) and not matches(["!", flt], row)
    with pytest.raises(Exception, match="Unknown field"):
        check_filter("instance", ["=", "nosuch", 1])


def test_openapi_document(api: Any) -> None:
    client, _, _ = api
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    post = doc["paths"]["/2/instances"]["post"]
    assert "instance_name" in post["requestBody"]["content"]["application/json"]["schema"][
        "properties"]
    assert json.dumps(doc)


def test_allocator_fields_reach_the_opcodes(api: Any) -> None:
    """RAPI's ``iallocator`` on instance creation, replace-disks and node evacuation: what
    Ganeti's clients send to place without naming nodes (Herd used to drop or refuse it)."""
    client, master, _ = api
    assert client.post("/2/instances", headers=ADMIN, json={
        "__version__": 1, "mode": "create", "name": "i9", "os": "busybox+default",
        "disk_template": "drbd", "disks": [{"size": 2048}], "nics": [{}],
        "iallocator": "hail"}).status_code == 200
    assert client.post("/2/instances/i1/replace-disks", headers=ADMIN, json={
        "mode": "replace_new_secondary", "iallocator": "hail"}).status_code == 200
    assert client.post("/2/nodes/n/evacuate", headers=ADMIN, json={
        "mode": "secondary-only", "iallocator": "."}).status_code == 200
    create, replace, evacuate = (job[0] for job in master.submitted)
    assert (create["iallocator"], create.get("pnode")) == ("hail", None)
    assert (replace["mode"], replace["iallocator"]) == ("replace_new_secondary", "hail")
    assert (evacuate["mode"], evacuate["iallocator"]) == ("secondary-only", ".")
