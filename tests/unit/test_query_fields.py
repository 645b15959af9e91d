"""The one field registry (herd.fields) and queries that cost what they return.

Registry checks are pure; the query checks run masterd's queries on an in-process cluster
(tests.harness: real node services on the fake hypervisor) and count the node RPCs made.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from herd import errors
from herd import fields as registry
from herd.cli import common, gnt_group, gnt_instance, gnt_job, gnt_network, gnt_node
from herd.logic.query import query_instances, query_nodes
from herd.logic.querydata import query_groups
from herd.rapi import convert
from herd.rapi.resources import query as rapi_query
from herd.web import listing
from tests.harness import InProcessCluster, create_op, node_name, scratch_root

N1, N2 = node_name(1), node_name(2)
KINDS = {registry.TEXT, registry.BOOL, registry.NUMBER, registry.UNIT, registry.TIMESTAMP,
         registry.OTHER}


# -- the registry --------------------------------------------------------------------------------
@pytest.mark.parametrize("what", sorted(registry.REGISTRIES))
def test_every_field_has_a_title_a_kind_and_a_doc(what: str) -> None:
    reg = registry.REGISTRIES[what]
    assert "name" in reg.fields or "id" in reg.fields
    for name, f in reg.fields.items():
        assert f.name == name
        assert f.title and f.title.strip() == f.title, name
        assert f.kind in KINDS, (name, f.kind)
        assert len(f.doc) > 3, name
        assert f.live in (None, registry.LIVE_INSTANCES, registry.LIVE_MIRROR,
                          registry.LIVE_NODE), name
        assert f.definition() == {"name": name, "title": f.title, "kind": f.kind,
                                  "doc": f.doc}


def test_titles_and_kinds_are_ganetis() -> None:
    expected = {
        ("instance", "name"): ("Instance", "text"), ("instance", "pnode"):
        ("Primary_node", "text"), ("instance", "snodes"): ("Secondary_Nodes", "other"),
        ("instance", "oper_ram"): ("Memory", "unit"), ("instance", "status"): ("Status", "text"),
        ("instance", "be/memory"): ("ConfigMaxMem", "unit"),
        ("instance", "be/vcpus"): ("ConfigVCPUs", "number"),
        ("instance", "admin_state"): ("InstanceState", "text"),
        ("instance", "network_port"): ("Network_port", "other"),
        ("instance", "disk.sizes"): ("Disk_sizes", "other"),
        ("instance", "ctime"): ("CTime", "timestamp"),
        ("node", "name"): ("Node", "text"), ("node", "mfree"): ("MFree", "unit"),
        ("node", "pinst_cnt"): ("Pinst", "number"), ("node", "master"): ("IsMaster", "bool"),
        ("node", "sinst_list"): ("SecInstances", "other"),
        ("group", "name"): ("Group", "text"), ("group", "pinst_cnt"): ("Instances", "number"),
        ("job", "id"): ("ID", "number"), ("job", "received_ts"): ("Received", "other"),
    }
    for (what, name), (title, kind) in expected.items():
        f = registry.REGISTRIES[what].lookup(name)
        assert f is not None and (f.title, f.kind) == (title, kind), (what, name)


def test_dynamic_fields_are_built_on_lookup_and_unknown_names_are_not() -> None:
    inst = registry.INSTANCE
    assert inst.lookup("hv/kernel_path").title == "Kernel_path"  # type: ignore[union-attr]
    assert inst.lookup("hv/whatever").title == "hv/whatever"  # type: ignore[union-attr]
    assert inst.lookup("disk.size/3").kind == registry.UNIT  # type: ignore[union-attr]
    assert inst.lookup("nic.mac/0").title == "NicMAC/0"  # type: ignore[union-attr]
    for bad in ("bogus", "disk.size/x", "nic.foo/0", "hv/", "hv/A B"):
        assert inst.lookup(bad) is None, bad
        assert inst.definition(bad)["kind"] == registry.UNKNOWN
    assert [f.name for f in inst.resolve(["name", "bogus", "name", "os"])] == ["name", "os"]


def test_cli_rapi_and_web_take_their_titles_from_the_registry() -> None:
    for module in (gnt_instance, gnt_node, gnt_group, gnt_network):  # no second table of titles
        assert not hasattr(module, "TITLES") and not hasattr(module, "UNIT_FIELDS")
    assert registry.JOB.titles() == gnt_job.TITLES
    for what, reg in registry.REGISTRIES.items():
        for name in reg.fields:
            assert rapi_query.field_def(what, name) == reg.definition(name)
    # the web's columns are registry fields; a few carry a label that reads better on a page
    by_key = {c.key: c.label for c in listing.INSTANCE_COLUMNS}
    assert by_key["status"] == registry.INSTANCE.title("status")
    assert by_key["os"] == registry.INSTANCE.title("os")
    assert (by_key["name"], by_key["pnode"], by_key["memory"]) == ("Name", "Node", "Memory")
    assert all(registry.INSTANCE.title(f) for f in listing.INSTANCE_TABLE_FIELDS)
    # the CLI's table: titles and sizes as the registry says
    opts = SimpleNamespace(output=None, separator=None, no_headers=False, units="h",
                           json=False)
    fields = common.list_fields(opts, registry.INSTANCE, gnt_instance.DEFAULT_FIELDS)
    out = io.StringIO()
    with redirect_stdout(out):
        common.print_registry_list(opts, [{"name": "a", "oper_ram": 2048}], fields,
                                   registry.INSTANCE)
    header, row = out.getvalue().splitlines()
    assert header.split() == [registry.INSTANCE.title(f) for f in fields]
    assert row.split()[-1] == "2.0G"


def test_cli_refuses_unknown_fields_before_asking_masterd() -> None:
    opts = SimpleNamespace(output="+name,bogus")
    with pytest.raises(errors.ParameterError, match=r"unknown field.*bogus.*list-fields"):
        common.list_fields(opts, registry.INSTANCE, ["name"])
    out = io.StringIO()
    with redirect_stdout(out):
        common.print_fields(SimpleNamespace(fields=["name", "oper_ram"], separator="|",
                                            no_headers=False), registry.INSTANCE)
    assert out.getvalue().splitlines() == [
        "Name|Type|Title|Description", "name|Text|Instance|Instance name",
        "oper_ram|Storage size|Memory|Actual memory usage as seen by hypervisor"]


# -- queries on an in-process cluster -------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessCluster]:
    with scratch_root(tmp_path_factory.mktemp("fields")) as root, \
            InProcessCluster(root, nodes=2) as c:
        for index, node in enumerate((N1, N2, N1)):
            outcome = c.run(create_op(f"i{index}.example.com", node=node, start=index < 2,
                                       nics=[{}]))
            assert outcome.error is None, outcome.error
        yield c


def _rpcs(cluster: InProcessCluster, run: Any) -> tuple[Any, list[tuple[str, str]]]:
    cluster.clear_calls()
    result = cluster.wait(run)
    return result, cluster.all_calls()


def test_config_fields_ask_no_node(cluster: InProcessCluster) -> None:
    rows, calls = _rpcs(cluster, query_instances(
        cluster.ctx, None, True, ["name", "os", "be/memory", "disk.sizes", "pnode", "tags"]))
    assert calls == []
    assert [sorted(r) for r in rows] == \
        [sorted(["name", "os", "be/memory", "disk.sizes", "pnode", "tags"])] * 3
    assert [r["pnode"] for r in rows] == [N1, N2, N1]
    _, calls = _rpcs(cluster, query_nodes(cluster.ctx, None, True,
                                          ["name", "pinst_cnt", "role", "sinst_list"]))
    assert calls == []
    rows, calls = _rpcs(cluster, query_instances(cluster.ctx, None, False, None))
    assert calls == [] and "status" not in rows[0]


def test_live_fields_ask_each_primary_node_once(cluster: InProcessCluster) -> None:
    rows, calls = _rpcs(cluster, query_instances(cluster.ctx, None, True,
                                                 ["name", "status", "oper_ram"]))
    assert sorted(calls) == [(N1, "instance_list"), (N2, "instance_list")]
    assert [(r["name"], r["status"]) for r in rows] == [
        ("i0.example.com", "running"), ("i1.example.com", "running"),
        ("i2.example.com", "ADMIN_down")]
    assert rows[0]["oper_ram"] == 128 and rows[2]["oper_ram"] is None
    rows, calls = _rpcs(cluster, query_instances(cluster.ctx, ["i1.example.com"], True,
                                                 ["status"]))
    assert calls == [(N2, "instance_list")] and rows == [{"status": "running"}]
    rows, calls = _rpcs(cluster, query_nodes(cluster.ctx, [N2], True, ["mfree", "name"]))
    assert calls == [(N2, "node_info")] and rows[0]["mfree"] > 0


def test_a_node_that_does_not_answer_gives_no_data_not_a_guess(
        cluster: InProcessCluster) -> None:
    cluster.set_unreachable(N2)
    try:
        rows = cluster.wait(query_instances(cluster.ctx, None, True, ["status", "oper_state"]))
    finally:
        cluster.set_unreachable(N2, False)
    assert rows[1] == {"status": "ERROR_nodedown", "oper_state": None}
    assert rows[0] == {"status": "running", "oper_state": True}


def test_fields_not_asked_for_are_not_computed(cluster: InProcessCluster,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: Any) -> Any:
        raise AssertionError("computed a field nobody asked for")

    for expensive in ("hv", "be", "nics"):
        monkeypatch.setattr(registry.InstanceView, expensive, property(boom))
    monkeypatch.setattr(registry.NodeIndex, "lists", boom)
    rows = cluster.wait(query_instances(cluster.ctx, None, True,
                                        ["name", "status", "disk_usage", "snodes"]))
    assert [r["disk_usage"] for r in rows] == [64, 64, 64]
    cluster.wait(query_nodes(cluster.ctx, None, True, ["name", "mtotal", "role"]))
    with pytest.raises(AssertionError, match="nobody asked"):
        cluster.wait(query_instances(cluster.ctx, None, False, ["be/vcpus"]))


def test_each_field_alone_answers_what_the_full_row_holds(cluster: InProcessCluster) -> None:
    full = cluster.wait(query_instances(cluster.ctx, None, True, None))
    keys = sorted(full[0])
    assert {"hv/migration_mode", "disk.size/0", "nic.mac/0", "runtime"} <= set(keys)
    one_by_one = cluster.wait(query_instances(cluster.ctx, None, True, keys))
    assert json.loads(json.dumps(one_by_one)) == json.loads(json.dumps(full))
    nodes = cluster.wait(query_nodes(cluster.ctx, None, True, None))
    assert set(nodes[0]) == set(registry.NODE.fields)
    assert cluster.wait(query_nodes(cluster.ctx, None, True, list(nodes[0]))) == nodes
    groups = query_groups(cluster.ctx, None)
    assert groups[0]["pinst_list"] == ["i0.example.com", "i1.example.com", "i2.example.com"]
    assert query_groups(cluster.ctx, None, ["node_cnt"]) == [{"node_cnt": 2}]


class _RecordingMaster:
    """masterd for RAPI, answering from the in-process cluster and recording what it asked."""

    def __init__(self, cluster: InProcessCluster) -> None:
        self.cluster = cluster
        self.asked: list[tuple[str, dict[str, Any]]] = []

    async def call(self, method: str, _timeout: float | None = None, **args: Any) -> Any:
        self.asked.append((method, args))
        if method == "query_instances":
            return await query_instances(self.cluster.ctx, args.get("names"),
                                         args.get("live", True), args.get("fields"))
        if method == "query_nodes":
            return await query_nodes(self.cluster.ctx, args.get("names"),
                                     args.get("live", True), args.get("fields"))
        raise errors.HerdError(f"unexpected {method}")

    def close(self) -> None:
        pass


def test_rapi_lists_ask_for_what_they_answer(cluster: InProcessCluster, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Names-only lists never touch the nodes; bulk answers keep Ganeti's keys (encoded in
    a worker thread when long: here anything over 2 rows)."""
    import httpx

    from herd.paths import HerdPaths
    from herd.rapi import routing
    from herd.rapi.app import RapiApp

    monkeypatch.setattr(routing, "BIG_ANSWER_ROWS", 2)

    paths = HerdPaths(tmp_path)
    paths.rapi_users_file.parent.mkdir(parents=True)
    paths.rapi_users_file.write_text("admin {cleartext}pw write\n")
    app = RapiApp(paths)
    master = _RecordingMaster(cluster)
    app.master = master  # type: ignore[assignment]
    auth = {"Authorization": "Basic YWRtaW46cHc="}

    def get(path: str) -> Any:
        # the app's awaits run on the cluster's loop, where its locks and clients live
        async def one() -> Any:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="https://rapi") as c:
                return await c.get(path, headers=auth)
        cluster.clear_calls()
        answer = cluster.wait(one())
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert get("/2/instances") == [{"id": f"i{i}.example.com",
                                    "uri": f"/2/instances/i{i}.example.com"} for i in range(3)]
    assert cluster.all_calls() == [] and master.asked[-1][1]["fields"] == ["name"]
    assert [n["id"] for n in get("/2/nodes")] == [N1, N2] and cluster.all_calls() == []
    bulk = get("/2/instances?bulk=1")
    assert [list(r) for r in bulk] == [list(convert.I_FIELDS)] * 3
    assert bulk[0]["status"] == "running" and bulk[0]["beparams"]["memory"] == 128
    assert sorted(cluster.all_calls()) == [(N1, "instance_list"), (N2, "instance_list")]
    nodes = get("/2/nodes?bulk=1")
    assert [list(r) for r in nodes] == [list(convert.N_FIELDS)] * 2
    answer = get("/2/query/instance?fields=name,pnode,bogus")
    assert cluster.all_calls() == []
    assert [f["title"] for f in answer["fields"]] == ["Instance", "Primary_node", "bogus"]
    assert answer["data"][0] == [[0, "i0.example.com"], [0, N1], [1, None]]
    fields = get("/2/query/node/fields")["fields"]
    assert {f["name"] for f in fields} == set(registry.NODE.fields)
