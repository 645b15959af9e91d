"""The RAPI ASGI application: routing, authentication, body decoding, errors.

The order of checks is Ganeti's: an unknown path is 404 and an unsupported method 501 before
anyone is asked for credentials; then authentication (401 with the realm ``Ganeti Remote API``,
403 without the needed access); then the body, which must be ``application/json`` (415) and
valid JSON (400); then the resource. Every error is Ganeti's ``{code, message, explain}``.

Ganeti has no answer for what would hurt the server, so Herd adds three: a body larger than
:data:`MAX_BODY` is refused with 413 (by its Content-Length before it is read, else as soon as
the bytes read pass the limit: a 41.6 MB body once went into the job queue and made job
listings fail for everyone); JSON nested deeper than :data:`MAX_DEPTH` is 400 before it is
parsed (Python's parser would recurse until it fails); and repeated failed logins from one
client are answered 429 for a while (:mod:`herd.rapi.throttle`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from herd import errors
from herd.config.facts import read_facts
from herd.objects import access
from herd.objects.access import base_role as users_file_role
from herd.paths import HerdPaths
from herd.rapi import convert, openapi, resources  # noqa: F401 - registers the resources
from herd.rapi.auth import ACCESS_READ, ACCESS_WRITE, UsersFile, authenticate
from herd.rapi.errors import HttpError, bad_request, forbidden, from_herd
from herd.rapi.master import MasterPool
from herd.rapi.routing import Encoded, Req, encode_body, json_body, match
from herd.rapi.throttle import LoginThrottle
from herd.rpc.answer_cache import AnswerCache

log = logging.getLogger("herd.rapi")

JSON = "application/json"
SERVER = "Herd RAPI"
#: The largest request body accepted (Ganeti's largest real bodies are a few KiB).
MAX_BODY = 1024 * 1024
#: The deepest nesting of JSON arrays and objects accepted in a body (Ganeti's bodies nest
#: 3 deep; query filters a few more).
MAX_DEPTH = 64
#: How long a client may take to send its body.
BODY_TIMEOUT = 30.0

#: RAPI writes on one instance that users without write access may make when their role on
#: that instance allows the action (herd.objects.access.ACTIONS); any other write still needs
#: a users-file ``write`` user, as in Ganeti.
INSTANCE_WRITES: dict[tuple[str, str], str] = {
    ("/2/instances/[instance_name]/startup", "PUT"): "power",
    ("/2/instances/[instance_name]/shutdown", "PUT"): "power",
    ("/2/instances/[instance_name]/reboot", "POST"): "power",
    ("/2/instances/[instance_name]/tags", "PUT"): "tags",
    ("/2/instances/[instance_name]/tags", "DELETE"): "tags",
    ("/2/instances/[instance_name]/modify", "PUT"): "modify",
    ("/2/instances/[instance_name]/rename", "PUT"): "modify",
    ("/2/instances/[instance_name]/reinstall", "POST"): "modify",
    ("/2/instances/[instance_name]/activate-disks", "PUT"): "modify",
    ("/2/instances/[instance_name]/deactivate-disks", "PUT"): "modify",
    ("/2/instances/[instance_name]/migrate", "PUT"): "migrate",
    ("/2/instances/[instance_name]/failover", "PUT"): "migrate",
    ("/2/instances/[instance_name]/move", "PUT"): "migrate",
    ("/2/instances/[instance_name]", "DELETE"): "remove",
}

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in the JSON text ``raw`` (brackets inside strings do
    not count), computed without parsing so that a hostile body cannot exhaust the stack."""
    brackets = _JSON_STRING.sub(b'""', raw).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for char in brackets:
        if char in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def json_response(value: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    return body_response(json_body(value), status, headers)


def body_response(body: bytes, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=JSON,
                    headers={"Server": SERVER, **(headers or {})})


def error_response(exc: HttpError) -> Response:
    return json_response(exc.body(), exc.status.value, exc.headers)


class RapiApp:
    def __init__(self, paths: HerdPaths, require_auth: bool = True) -> None:
        self.paths = paths
        #: False: the daemon was started with --allow-anonymous-read (for this run only)
        self.forced_anonymous = not require_auth
        self._facts_seen: tuple[int, bool] | None = None
        self.users = UsersFile(paths.rapi_users_file)
        #: list bodies kept with masterd's etags (Req.kept_answer)
        self.kept = AnswerCache()
        # big answers used and dropped (the web manager's lists) count for the heap release
        # of the kept bodies' upkeep (herd.daemons.rapi: answer_cache.tidy)
        self.master = MasterPool(paths.master_socket, on_big_answer=self.kept.note_churn)
        self.logins = LoginThrottle()
        self._web: Any = None

    @property
    def web(self) -> Any:
        """The web manager (herd.web) under /ui: same port, certificate, users and masterd.
        Built at its first request: it loads Jinja2 and its templates (about 5 MiB resident)
        that a RAPI used only by scripts never needs."""
        if self._web is None:
            from herd.web.app import WebUI

            self._web = WebUI(self.users, lambda: self.master, self.logins,
                               paths=self.paths)
        return self._web

    @property
    def require_auth(self) -> bool:
        """Whether GETs need credentials: the cluster's ``rapi_anonymous_reads`` (gnt-cluster
        modify --rapi-anonymous-reads), read from the facts file masterd rewrites on every
        config change, re-read only when that file changed."""
        if self.forced_anonymous:
            return False
        try:
            stamp = self.paths.cluster_facts_file.stat().st_mtime_ns
        except OSError:
            return True
        if self._facts_seen is None or self._facts_seen[0] != stamp:
            facts = read_facts(self.paths) or {}
            self._facts_seen = (stamp, bool(facts.get("rapi_anonymous_reads")))
        return not self._facts_seen[1]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if path == "/ui" or path.startswith("/ui/"):
            await self.web(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            response = await self.handle(request)
        except ClientDisconnect:
            return  # nobody left to answer
        except HttpError as exc:
            response = error_response(exc)
        except errors.HerdError as exc:
            response = error_response(from_herd(exc))
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            response = error_response(HttpError(500))
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        method = request.method.upper()
        path = request.url.path
        if path == "/openapi.json" and method == "GET":
            return json_response(openapi.document())
        if path == "/metrics" and method == "GET":
            if self.require_auth:
                client = request.client.host if request.client else ""
                authenticate(self.users, request.headers.get("authorization"), ACCESS_READ,
                             self.logins, client)
            return await self.metrics()
        found = match(path)
        if found is None:
            raise HttpError(404)
        cls, items, template = found
        if method not in cls.methods():
            raise HttpError(501, f"Method {method} is unsupported for path {path}")
        access = cls.access(method)
        user = None
        if self.require_auth or access != ACCESS_READ:
            client = request.client.host if request.client else ""
            action = INSTANCE_WRITES.get((template, method))
            if action is None:
                user = authenticate(self.users, request.headers.get("authorization"), access,
                                    self.logins, client)
            else:  # a write user may, as in Ganeti; others by their role on the instance
                user = authenticate(self.users, request.headers.get("authorization"),
                                    ACCESS_READ, self.logins, client)
                await self._check_instance_role(user, action, items[0])
        body = await self._body(request)
        query = parse_qs(request.url.query, keep_blank_values=True)
        handler_name = template.strip("/").replace("/", "_").replace("[", "") \
            .replace("]", "").replace("-", "_") or "root"
        peer = request.client
        known = self.users.get(user) if user else None
        req = Req(method=method, path=path, items=items, query=query, body=body,
                  master=self.master, user=user, handler_name=handler_name,
                  template=template, client=f"{peer.host}:{peer.port}" if peer else "",
                  base_role=users_file_role(known.options) if known else None,
                  kept=self.kept)
        result = await getattr(cls(), method)(req)
        if isinstance(result, Encoded):
            return body_response(result.body)
        return body_response(await encode_body(result))

    async def _check_instance_role(self, name: str, action: str, instance: str) -> None:
        """403 unless ``name`` has write access (Ganeti's operator) or a role on the instance
        that allows ``action`` (herd.objects.access: grants, owner tags)."""
        user = self.users.get(name)
        if user is not None and user.may(ACCESS_WRITE):
            return
        cluster = await self.master.call("query_cluster")
        try:
            rows = await self.master.call("query_instances", names=[instance], live=False)
        except errors.NotFoundError:
            rows = []
        if rows:
            groups = access.groups_of(name, cluster.get("access_groups") or {})
            who = access.Principal(name, groups, access.base_role(user.options if user else ()))
            target = access.instance_target(rows[0])
            if access.allowed(who, action, target,
                              access.parse_grants(cluster.get("access_grants") or [])):
                return
        log.warning("user '%s' may not %s instance %s", name, action, instance)
        raise forbidden()  # the same answer for an instance that does not exist

    async def metrics(self) -> Response:
        """``/metrics`` (herd.rapi.metrics): one look at nodes, instances, jobs and masterd's
        own counts, all read-only queries."""
        from herd.rapi import metrics

        cluster, nodes, instances, jobs, master = await asyncio.gather(
            self.master.call("query_cluster"),
            self.master.call("query_nodes", names=None, live=True),
            self.master.call("query_instances", names=None, live=True),
            self.master.call("query_jobs"),
            self.master.call("query_metrics"))
        body = metrics.render(cluster["name"],
                              [{**convert.node(n), "reachable": n.get("reachable")} for n in nodes],
                              [convert.instance(i) for i in instances], jobs, master)
        return Response(body, media_type=metrics.CONTENT_TYPE, headers={"Server": SERVER})

    @staticmethod
    async def _body(request: Request) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            raise too_large(int(length))
        raw = bytearray()
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                async for chunk in request.stream():
                    raw += chunk
                    if len(raw) > MAX_BODY:
                        raise too_large(None)
        except TimeoutError:
            raise HttpError(408, f"The request body did not arrive within {BODY_TIMEOUT:.0f} "
                                 "seconds") from None
        if not raw.strip():
            return None
        ctype = request.headers.get("content-type", "application/octet-stream")
        if ctype.split(";")[0].strip().lower() != JSON:
            raise HttpError(415)
        depth = nesting_depth(bytes(raw))
        if depth > MAX_DEPTH:
            raise bad_request(f"JSON data nested {depth} levels deep; at most {MAX_DEPTH} "
                              "are allowed")
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise bad_request("Unable to parse JSON data") from None

    def close(self) -> None:
        self.master.close()


def too_large(length: int | None) -> HttpError:
    size = f"{length} bytes" if length is not None else f"more than {MAX_BODY} bytes"
    return HttpError(413, f"Request body of {size}; at most {MAX_BODY} bytes (1 MiB) are "
                          "accepted")


def build_app(paths: HerdPaths, require_auth: bool = True) -> RapiApp:
    return RapiApp(paths, require_auth)
