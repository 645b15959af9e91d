"""masterd's list answers (herd.daemons.lists, issue 17): kept while the config generation
and what the nodes said are the same, never after either changed; computed in pieces and again
when the config changed between them. On an in-process cluster (tests.harness: real node
services on the fake hypervisor)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from herd import errors
from herd.daemons import lists
from herd.daemons.lists import ListAnswers, query_key
from herd.logic.query import query_instances
from herd.rpc import master_protocol as proto
from tests.harness import InProcessCluster, create_op, node_name, scratch_root

N1, N2 = node_name(1), node_name(2)
ROWS = {"names": None, "live": True, "fields": ["name", "status", "tags"]}


@pytest.fixture()
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessCluster]:
    with scratch_root(tmp_path_factory.mktemp("lists")) as root, \
            InProcessCluster(root, nodes=2) as c:
        for index, node in enumerate((N1, N2, N1)):
            outcome = c.run(create_op(f"i{index}.example.com", node=node, start=index < 2,
                                      template="diskless"))
            assert outcome.error is None, outcome.error
        yield c


def _answer(cluster: InProcessCluster, answers: ListAnswers, args: dict[str, Any] = ROWS,
            etag: str | None = None, method: str = "query_instances") -> dict[str, Any]:
    line = cluster.wait(answers.answer(method, dict(args), etag))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    return json.loads(line)  # type: ignore[no-any-return]


def test_a_kept_answer_is_served_again_until_the_config_changes(
        cluster: InProcessCluster) -> None:
    answers = ListAnswers(lambda: cluster.ctx)
    first = _answer(cluster, answers)
    assert first["result"] == [
        {"name": "i0.example.com", "status": "running", "tags": []},
        {"name": "i1.example.com", "status": "running", "tags": []},
        {"name": "i2.example.com", "status": "ADMIN_down", "tags": []}]
    cluster.clear_calls()
    again = _answer(cluster, answers)
    assert again == first  # same etag: kept, not computed again
    # ... but the nodes were asked again: no answer predates its request
    assert sorted(cluster.all_calls()) == [(N1, "instance_list"), (N2, "instance_list")]
    assert _answer(cluster, answers, etag=first["etag"]) == \
        {"ok": True, "etag": first["etag"], "same": True}
    outcome = cluster.run({"OP_ID": "OP_TAGS_SET", "kind": "instance",
                           "name": "i2.example.com", "tags": ["blue"]})
    assert outcome.error is None, outcome.error
    changed = _answer(cluster, answers, etag=first["etag"])
    assert changed["etag"] != first["etag"] and changed["result"][2]["tags"] == ["blue"]
    assert changed["result"] == cluster.wait(query_instances(cluster.ctx, None, True,
                                                             ROWS["fields"]))


def test_what_the_nodes_say_is_never_older_than_the_request(
        cluster: InProcessCluster) -> None:
    """A guest that stops without a job (no config change) shows at once."""
    answers = ListAnswers(lambda: cluster.ctx)
    first = _answer(cluster, answers)
    generation = cluster.store.generation
    fake = cluster.nodes[N2].service.hypervisor("fake")
    cluster.wait(fake.stop("i1.example.com", 5))
    after = _answer(cluster, answers, etag=first["etag"])
    assert cluster.store.generation == generation
    assert after["result"][1]["status"] == "ERROR_down" and after["etag"] != first["etag"]


def test_config_only_queries_never_ask_the_nodes(cluster: InProcessCluster) -> None:
    answers = ListAnswers(lambda: cluster.ctx)
    cluster.clear_calls()
    names = {"names": None, "live": False, "fields": ["name"]}
    assert [r["name"] for r in _answer(cluster, answers, names)["result"]] == \
        ["i0.example.com", "i1.example.com", "i2.example.com"]
    nodes = _answer(cluster, answers, {"live": False, "fields": ["name"]}, method="query_nodes")
    assert nodes["result"] == [{"name": N1}, {"name": N2}]
    assert cluster.all_calls() == []


def test_only_opcodes_that_may_change_objects_make_answers_old(
        cluster: InProcessCluster) -> None:
    """A read-only opcode (no exclusive lock) leaves kept answers valid; a failed one, which
    may have changed objects in memory before failing, does not."""
    generation = cluster.store.generation
    outcome = cluster.run({"OP_ID": "OP_TEST_DELAY", "duration": 0, "on_master": True,
                           "on_nodes": [], "repeat": 0})
    assert outcome.error is None and cluster.store.generation == generation
    outcome = cluster.run({"OP_ID": "OP_TAGS_SET", "kind": "instance",
                           "name": "nosuch.example.com", "tags": ["x"]})
    assert outcome.error is not None and cluster.store.generation > generation


def test_rows_are_computed_again_when_the_config_changes_between_pieces(
        cluster: InProcessCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lists, "PIECE_ROWS", 1)
    monkeypatch.setattr(lists, "SLICE", -1.0)  # let other work run after every row
    answers = ListAnswers(lambda: cluster.ctx)
    encodes = [0]
    real = ListAnswers._encode

    async def counting(*args: Any) -> str | None:
        encodes[0] += 1
        if encodes[0] == 1:  # a job saves while the first row is out
            asyncio.get_running_loop().call_soon(cluster.store.note_change)
        return await real(*args)

    monkeypatch.setattr(ListAnswers, "_encode", staticmethod(counting))
    answer = _answer(cluster, answers)
    assert encodes[0] == 2  # the first pass saw the config change and was dropped
    assert answer["result"] == cluster.wait(query_instances(cluster.ctx, None, True,
                                                            ROWS["fields"]))
    monkeypatch.setattr(lists, "ATTEMPTS", 0)  # never calm: computed at once, not kept
    line = cluster.wait(answers.answer("query_instances", {"fields": ["name"]}))
    assert json.loads(line) == {"ok": True, "result": [{"name": f"i{n}.example.com"}
                                                       for n in range(3)]}


def test_errors_and_bad_arguments(cluster: InProcessCluster) -> None:
    answers = ListAnswers(lambda: cluster.ctx)
    with pytest.raises(errors.NotFoundError):
        cluster.wait(answers.answer("query_instances", {"names": ["nosuch"]}))
    with pytest.raises(errors.ParameterError, match="fields must be a list of strings"):
        query_key("query_instances", fields="name")
    with pytest.raises(errors.ParameterError, match="live must be true or false"):
        query_key("query_instances", live="yes")
    with pytest.raises(TypeError):
        query_key("query_instances", colour="blue")
    assert query_key("query_nodes", names=[], fields=["a"]) == \
        ("query_nodes", None, True, ("a",))


def test_the_answer_lines_decode_as_the_protocol_says() -> None:
    line = proto.answer_line('[{"a":1}]', "e-1")
    assert json.loads(line) == {"ok": True, "etag": "e-1", "result": [{"a": 1}]}
    assert json.loads(proto.answer_line("[]")) == {"ok": True, "result": []}


TRICKY_ROWS: list[Any] = [
    {"name": "a], {\"b\": [", "tags": ["x,y", "]"], "n": 1.5, "none": None},
    {"name": "ünïcødé \u2028", "nested": [[1, [2]], {"k": []}]},
    *({"name": f"i{n}.example.com", "n": n} for n in range(450)),
]


@pytest.mark.parametrize("rows", [[], [1], TRICKY_ROWS], ids=["empty", "one", "tricky"])
def test_a_list_answer_is_decoded_a_batch_at_a_time_to_the_same_rows(rows: list[Any]) -> None:
    """RAPI decodes masterd's list answers a batch of rows at a time (memory: see
    master_protocol.result_batches); whatever the rows hold, the same rows come out, from
    both ways masterd writes a list answer."""
    for line in (proto.answer_line(proto.encode_json(rows), "e-7"),
                 proto.encode_in_pieces({"ok": True, "result": rows})):
        head, text, start = proto.decode_head(line)
        assert text is not None  # the rows are left undecoded
        assert head == {k: v for k, v in json.loads(line).items() if k != "result"}
        batches = list(proto.result_batches(text, start, batch=200))
        assert all(len(b) == 200 for b in batches[:-1]) and all(batches)
        assert [r for b in batches for r in b] == rows


def test_answers_that_are_not_list_answers_are_decoded_whole() -> None:
    error = proto.encode({"ok": False, "error": {"code": "X", "message": 'a "result":[1]}'}})
    assert proto.decode_head(error) == (json.loads(error), None, -1)
    same = proto.same_line("e-1")
    assert proto.decode_head(same) == ({"ok": True, "etag": "e-1", "same": True}, None, -1)
    spaced = b'{"ok": true, "result": [1, 2]}\n'  # not how masterd writes: still understood
    assert proto.decode_head(spaced) == ({"ok": True, "result": [1, 2]}, None, -1)
    assert list(proto.batches_of([1, 2, 3], batch=2)) == [[1, 2], [3]]


def test_rapi_builds_the_same_body_a_batch_at_a_time() -> None:
    from herd.rapi.master import _decode_lazily
    from herd.rapi.routing import json_body, rows_body

    def row(r: Any) -> Any:
        return {"id": r["name"], "seen": r.get("n")}

    dict_rows = [r for r in TRICKY_ROWS if isinstance(r, dict)]
    whole = json_body([row(r) for r in dict_rows])
    lazy = _decode_lazily(proto.answer_line(proto.encode_json(dict_rows), "e-1"))
    assert isinstance(lazy["result"], proto.ListResult)
    assert rows_body(lazy["result"], row) == whole  # byte for byte
    assert rows_body(dict_rows, row) == whole
    assert rows_body([], row) == json_body([]) == b"[]"


class _KeptMaster:
    """RAPI's masterd: the list answers above, over no socket."""

    def __init__(self, answers: ListAnswers) -> None:
        self.answers = answers
        self.same = 0

    async def call(self, method: str, _timeout: float | None = None, **args: Any) -> Any:
        return json.loads(await self.answers.answer(method, args))["result"]

    async def call_kept(self, method: str, etag: str | None,
                        **args: Any) -> tuple[str | None, Any, bool]:
        from herd.rapi.master import _decode_lazily  # as the real client decodes it

        answer = _decode_lazily(await self.answers.answer(method, args, etag))
        self.same += bool(answer.get("same"))
        return answer.get("etag"), answer.get("result"), bool(answer.get("same"))

    def close(self) -> None:
        pass


def test_rapi_sends_its_kept_body_while_masterd_says_same(
        cluster: InProcessCluster, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    from herd.paths import HerdPaths
    from herd.rapi import convert
    from herd.rapi.app import RapiApp

    converted = [0]
    real = convert.instance

    def counting(row: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        converted[0] += 1
        return real(row, *args, **kwargs)

    monkeypatch.setattr(convert, "instance", counting)
    paths = HerdPaths(tmp_path)
    paths.rapi_users_file.parent.mkdir(parents=True)
    paths.rapi_users_file.write_text("admin {cleartext}pw write\n")
    app = RapiApp(paths)
    master = _KeptMaster(ListAnswers(lambda: cluster.ctx))
    app.master = master  # type: ignore[assignment]

    def get(path: str) -> bytes:
        async def one() -> bytes:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="https://rapi") as c:
                answer = await c.get(path, headers={"Authorization": "Basic YWRtaW46cHc="})
                assert answer.status_code == 200, answer.text
                return answer.content
        return cluster.wait(one())

    first = get("/2/instances?bulk=1")
    assert converted[0] == 3 and [r["name"] for r in json.loads(first)] == \
        [f"i{n}.example.com" for n in range(3)]
    assert get("/2/instances?bulk=1") == first and converted[0] == 3 and master.same == 1
    names = get("/2/instances")  # another body of the same query method: kept apart
    assert json.loads(names)[0] == {"id": "i0.example.com", "uri": "/2/instances/i0.example.com"}
    outcome = cluster.run({"OP_ID": "OP_TAGS_SET", "kind": "instance",
                           "name": "i0.example.com", "tags": ["red"]})
    assert outcome.error is None, outcome.error
    changed = json.loads(get("/2/instances?bulk=1"))
    assert converted[0] == 6 and changed[0]["tags"] == ["red"]
