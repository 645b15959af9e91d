"""Resources and the request context they receive.

A resource is a class with one async method per HTTP method it supports (``GET``, ``PUT``,
``POST``, ``DELETE``) and the access each needs (``GET_ACCESS`` read, the others write, as in
Ganeti). ``@resource(pattern)`` registers it; groups in the pattern become ``req.items``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from herd import errors
from herd.jobs.limits import check_job_size
from herd.rapi.auth import ACCESS_READ, ACCESS_WRITE
from herd.rapi.errors import HttpError, bad_request, from_herd
from herd.rapi.master import MasterPool
from herd.rpc import master_protocol as proto
from herd.rpc.answer_cache import AnswerCache

METHODS = ("GET", "PUT", "POST", "DELETE")
#: URL parameters naming an object, and the masterd query that finds it.
_URL_OBJECTS = {"instance_name": "query_instances", "node_name": "query_nodes",
                "group_name": "query_groups", "network_name": "query_networks"}
#: (whether it exists is all that is asked: the name field alone, no node asked)
_QUERY_ARGS: dict[str, dict[str, Any]] = {
    "query_instances": {"live": False, "fields": ["name"]},
    "query_nodes": {"live": False, "fields": ["name"]},
    "query_groups": {"fields": ["name"]}}
_NAME = r"([^/]+)"
#: Answers with more rows than this are JSON-encoded off the event loop.
BIG_ANSWER_ROWS = 200
#: ... or of this many bytes of masterd's answer (about as many instance rows)
BIG_ANSWER_BYTES = 128 * 1024


def json_text(value: Any) -> str:
    """``value`` as the JSON text of a response body."""
    return json.dumps(value, default=str)


def json_body(value: Any) -> bytes:
    """A response body: ``value`` as JSON."""
    return json_text(value).encode()


def rows_body(result: Any, row: Callable[[Any], Any]) -> bytes:
    """:func:`json_body` of ``[row(r) for r in result]`` (a list answer of masterd, decoded or
    a ``master_protocol.ListResult``), one batch of rows at a time: decoded, converted,
    encoded and dropped. The same bytes as one json.dumps of the whole list; but herd-rapi
    never holds 20,000 decoded rows and their conversions at once, which had left ~40 MiB of
    Python's small-object pools fragmented for good after a few bulk lists. For a worker
    thread (seconds of CPU at 20,000 rows)."""
    pieces = [json_text([row(r) for r in batch])[1:-1] for batch in proto.batches_of(result)]
    return ("[" + ", ".join(p for p in pieces if p) + "]").encode()


async def build_rows_body(result: Any, row: Callable[[Any], Any]) -> bytes:
    """:func:`rows_body`, in a worker thread when the answer is big (other clients' requests
    are not held up behind it)."""
    big = (result.size > BIG_ANSWER_BYTES if isinstance(result, proto.ListResult)
           else len(result) > BIG_ANSWER_ROWS)
    return await asyncio.to_thread(rows_body, result, row) if big else rows_body(result, row)


class Encoded:
    """A resource's answer already encoded (a kept list body, see :meth:`Req.kept_answer`)."""

    __slots__ = ("body",)

    def __init__(self, body: bytes) -> None:
        self.body = body


async def encode_body(value: Any) -> bytes:
    """:func:`json_body`; a list of thousands of rows is encoded in a worker thread, so that
    the other clients' requests are not held up behind it."""
    if isinstance(value, list) and len(value) > BIG_ANSWER_ROWS:
        return await asyncio.to_thread(json_body, value)
    return json_body(value)


class Resource:
    GET_ACCESS: ClassVar[str | None] = ACCESS_READ
    PUT_ACCESS: ClassVar[str | None] = ACCESS_WRITE
    POST_ACCESS: ClassVar[str | None] = ACCESS_WRITE
    DELETE_ACCESS: ClassVar[str | None] = ACCESS_WRITE
    #: Short description for the OpenAPI document, per method.
    DOC: ClassVar[dict[str, str]] = {}
    #: Query parameters and body fields each method takes (for the OpenAPI document).
    QUERY: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: The opcode whose fields a method's body holds, and body fields beside them.
    BODY: ClassVar[dict[str, str]] = {}
    BODY_EXTRA: ClassVar[dict[str, dict[str, Any]]] = {}
    #: Methods whose body must be there: the others take no body, or JSON null, as {} (as
    #: Ganeti's FillOpcode does), and the OpenAPI document says so (nullable).
    BODY_REQUIRED: ClassVar[frozenset[str]] = frozenset()
    #: A method's body schema when it is not an opcode's fields.
    BODY_SCHEMA: ClassVar[dict[str, dict[str, Any]]] = {}
    #: The schema of a method's answer when it is not the default (a job id for writes).
    RESULT: ClassVar[dict[str, dict[str, Any]]] = {}
    #: Error statuses particular to a method (beside those every method can answer).
    ERRORS: ClassVar[dict[str, dict[int, str]]] = {}

    @classmethod
    def methods(cls) -> list[str]:
        return [m for m in METHODS if hasattr(cls, m)]

    @classmethod
    def access(cls, method: str) -> str | None:
        return getattr(cls, f"{method}_ACCESS")


@dataclass
class Route:
    template: str  # Ganeti's notation: /2/instances/[instance_name]
    regex: re.Pattern[str]
    resource: type[Resource]


ROUTES: list[Route] = []


def resource(template: str) -> Callable[[type[Resource]], type[Resource]]:
    pattern = re.sub(r"\[[a-z_]+\]", _NAME, template)
    regex = re.compile(f"^{pattern}$")

    def register(cls: type[Resource]) -> type[Resource]:
        ROUTES.append(Route(template, regex, cls))
        return cls
    return register


def match(path: str) -> tuple[type[Resource], tuple[str, ...], str] | None:
    for route in ROUTES:
        m = route.regex.match(path)
        if m:
            return route.resource, m.groups(), route.template
    return None


@dataclass
class Req:
    """What a resource method sees of its request."""

    method: str
    path: str
    items: tuple[str, ...]
    query: dict[str, list[str]]
    body: Any
    master: MasterPool
    user: str | None
    handler_name: str
    #: the client's address and port ("10.0.0.5:41234"), for the audit
    client: str = ""
    #: the route's template in Ganeti's notation (/2/instances/[instance_name]/...)
    template: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: the user's role from the users file (herd.objects.access.base_role), which masterd
    #: needs to tell an admin (not limited by quotas) from other users
    base_role: str | None = None
    #: list bodies kept with masterd's etag (see kept_answer); None: nothing is kept
    kept: AnswerCache | None = None

    # -- query parameters (Ganeti's rules: booleans are 0/1 integers) ---------------------------
    def _one(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def int_arg(self, name: str, default: int = 0) -> int:
        value = self._one(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise bad_request(f"Invalid value for parameter '{name}': '{value}' "
                              "(expected an integer)") from None

    def bool_arg(self, name: str, default: bool = False) -> bool:
        return bool(self.int_arg(name, int(default)))

    def str_arg(self, name: str, default: str | None = None) -> str | None:
        value = self._one(name)
        return default if value is None else value

    def list_arg(self, name: str) -> list[str]:
        return list(self.query.get(name, []))

    @property
    def bulk(self) -> bool:
        return self.bool_arg("bulk")

    @property
    def dry_run(self) -> bool:
        return self.bool_arg("dry-run")

    @property
    def force(self) -> bool:
        return self.bool_arg("force")

    # -- body -----------------------------------------------------------------------------------
    def body_dict(self, allow_none: bool = True) -> dict[str, Any]:
        if self.body is None and allow_none:
            return {}
        if not isinstance(self.body, dict):
            raise bad_request("Invalid body contents, not a dictionary")
        return dict(self.body)

    # -- masterd --------------------------------------------------------------------------------
    async def call(self, method: str, **args: Any) -> Any:
        try:
            return await self.master.call(method, **args)
        except errors.HerdError as exc:
            raise from_herd(exc) from None

    async def kept_answer(self, name: str, method: str, row: Callable[[Any], Any],
                          **args: Any) -> Encoded:
        """The list of ``row(r)`` for each row of masterd's list query, as a body kept with
        the etag of masterd's answer (herd.daemons.lists): while masterd says that etag is
        still the answer, the kept bytes are sent again without decoding, converting or
        encoding a row (sixteen clients asking for 200 instances in bulk cost RAPI that much
        each time). A new answer is decoded, converted and encoded a batch of rows at a time
        (:func:`rows_body`). ``name`` tells the resources' bodies apart."""
        call_kept = getattr(self.master, "call_kept", None)
        if self.kept is None or call_kept is None:  # (test doubles of masterd)
            return Encoded(await build_rows_body(await self.call(method, **args), row))
        key = (name, method, json.dumps(args, sort_keys=True))
        kept = self.kept.get(key)
        try:
            etag, result, same = await call_kept(method, kept.etag if kept else None, **args)
        except errors.HerdError as exc:
            raise from_herd(exc) from None
        if same and kept is not None:
            return Encoded(kept.body)
        body = await build_rows_body(result, row)
        if etag is not None:
            self.kept.store(key, None, body, etag)
        return Encoded(body)

    async def one_row(self, query: str, name: str, live: bool = True) -> dict[str, Any]:
        """The fields of one named object (query_instances, query_nodes): 404 if unknown."""
        try:
            rows = await self.master.call(query, names=[name], live=live)
        except errors.NotFoundError:
            raise HttpError(404) from None
        except errors.HerdError as exc:
            raise HttpError(502 if isinstance(exc, errors.RpcError) else 500, exc.message) \
                from None
        return rows[0]

    def on_behalf(self) -> dict[str, str]:
        """Whom masterd's audit names for this request's job (herd.jobs.audit)."""
        behalf = {"user": self.user or "anonymous", "address": self.client}
        if self.base_role:
            behalf["base_role"] = self.base_role
        return behalf

    def reason_trail(self) -> list[list[Any]]:
        now = time.time_ns()
        trail: list[list[Any]] = []
        user_reason = self.str_arg("reason")
        if user_reason:
            trail.append(["gnt:user", user_reason, now])
        trail.append([f"gnt:library:rlib2:{self.handler_name}", "", now])
        return trail

    def opcode(self, op_id: str, body: dict[str, Any] | None = None,
               **static: Any) -> dict[str, Any]:
        """An opcode dict from the body and the URL's values; unknown or badly typed fields
        are refused with 400 as Ganeti refuses them."""
        op: dict[str, Any] = {"OP_ID": op_id}
        for key, value in (body or {}).items():
            if key in static and static[key] != value:
                raise bad_request(f"Parameter '{key}' must not be given in the body "
                                  f"(it is '{static[key]}' from the URL)")
            op[key] = value
        op.update(static)
        if self.dry_run:
            op["dry_run"] = True
        op["reason"] = [*check_reason(op.get("reason", [])), *self.reason_trail()]
        # here, at the first write: herd-rapi at rest does without the opcodes (~0.9 MiB)
        from herd.opcodes import opcode_from_dict

        try:
            opcode_from_dict(op)
        except errors.HerdError as exc:
            raise bad_request(f"Invalid body parameters: {exc.message}") from None
        return op

    async def require_url_objects(self) -> None:
        """404 unless every object the URL names (instance, node, group) exists.

        Ganeti queues the job and lets it fail; Herd refuses it before queuing, so that a
        mistyped name (or a fuzzer, or a read-only user reading /info) leaves no failed job
        behind. The job still checks again when it runs."""
        params = re.findall(r"\[([a-z_]+)\]", self.template)
        for param, value in zip(params, self.items, strict=False):
            query = _URL_OBJECTS.get(param)
            if query is None:
                continue
            try:
                await self.master.call(query, names=[value], **_QUERY_ARGS.get(query, {}))
            except errors.NotFoundError:
                raise HttpError(404) from None
            except errors.HerdError as exc:
                raise from_herd(exc) from None

    async def submit(self, *ops: dict[str, Any]) -> int:
        """Submit one job; Ganeti's RAPI answers writes with the job id, a JSON number."""
        try:
            check_job_size(list(ops))
        except errors.ParameterError as exc:
            raise HttpError(413, exc.message) from None
        await self.require_url_objects()
        try:
            return int(await self.master.call("submit_job", ops=list(ops),
                                              on_behalf=self.on_behalf()))
        except errors.OpPrereqError as exc:
            raise bad_request(f"Invalid body parameters: {exc.message}") from None
        except errors.HerdError as exc:
            raise from_herd(exc) from None


Handler = Callable[[Req], Awaitable[Any]]


def rename_alias(body: dict[str, Any], old: str, new: str) -> None:
    """Move a field given by Ganeti's older name (``name`` for ``instance_name``, ...) to its
    new name. It must be a string, and must not contradict a value given under the new name
    (it was once dropped silently when both were there)."""
    if old not in body:
        return
    value = body.pop(old)
    if not isinstance(value, str):
        raise bad_request(f"Invalid body parameters: parameter '{old}' is "
                          f"{json.dumps(value)[:40]}; expected a string")
    current = body.get(new)
    if current is not None and current != value:
        raise bad_request(f"Invalid body parameters: '{old}' ({value!r}) and '{new}' "
                          f"({json.dumps(current)[:40]}) disagree; give one of them")
    body[new] = value


def check_reason(value: Any) -> list[Any]:
    """A body's ``reason``: Ganeti's reason trail, a list of [source, reason, timestamp]
    entries (a null, number or string here once ended in a TypeError and a 500)."""
    def entry_ok(entry: Any) -> bool:
        return isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str) \
            and isinstance(entry[1], str) and isinstance(entry[2], int) \
            and not isinstance(entry[2], bool)

    if not isinstance(value, list) or not all(entry_ok(e) for e in value):
        shown = json.dumps(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        raise bad_request(f"Invalid body parameters: parameter 'reason' is {shown}; expected "
                          "a list of [source, reason, timestamp] entries (strings, strings, "
                          "integer nanoseconds)")
    return value


def not_found_unless(condition: bool) -> None:
    if not condition:
        raise HttpError(404)
