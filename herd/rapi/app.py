"""The RAPI ASGI application: routing, authentication, body decoding, errors.

The order of checks is Ganeti's: an unknown path is 404 and an unsupported method 501 before
anyone is asked for credentials; then authentication (401 with the realm ``Ganeti Remote API``,
403 without the needed access); then the body, which must be ``application/json`` (415) and
valid JSON (400); then the resource. Every error is Ganeti's ``{code, message, explain}``.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from herd import errors
from herd.paths import HerdPaths
from herd.rapi import openapi, resources  # noqa: F401 - registers the resources
from herd.rapi.auth import ACCESS_READ, UsersFile, authenticate
from herd.rapi.errors import HttpError, bad_request, from_herd
from herd.rapi.master import MasterPool
from herd.rapi.routing import Req, match

log = logging.getLogger("herd.rapi")

JSON = "application/json"
SERVER = "Herd RAPI"


def json_response(value: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(value, default=str).encode()
    return Response(body, status_code=status, media_type=JSON,
                    headers={"Server": SERVER, **(headers or {})})


def error_response(exc: HttpError) -> Response:
    return json_response(exc.body(), exc.status.value, exc.headers)


class RapiApp:
    def __init__(self, paths: HerdPaths, require_auth: bool = True) -> None:
        self.paths = paths
        self.require_auth = require_auth
        self.users = UsersFile(paths.rapi_users_file)
        self.master = MasterPool(paths.master_socket)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            response = await self.handle(request)
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
        found = match(path)
        if found is None:
            raise HttpError(404)
        cls, items, template = found
        if method not in cls.methods():
            raise HttpError(501, f"Method {method} is unsupported for path {path}")
        access = cls.access(method)
        user = None
        if self.require_auth or access != ACCESS_READ:
            user = authenticate(self.users, request.headers.get("authorization"), access)
        body = await self._body(request)
        query = parse_qs(request.url.query, keep_blank_values=True)
        handler_name = template.strip("/").replace("/", "_").replace("[", "") \
            .replace("]", "").replace("-", "_") or "root"
        req = Req(method=method, path=path, items=items, query=query, body=body,
                  master=self.master, user=user, handler_name=handler_name)
        result = await getattr(cls(), method)(req)
        return json_response(result)

    @staticmethod
    async def _body(request: Request) -> Any:
        raw = await request.body()
        if not raw.strip():
            return None
        ctype = request.headers.get("content-type", "application/octet-stream")
        if ctype.split(";")[0].strip().lower() != JSON:
            raise HttpError(415)
        try:
            return json.loads(raw)
        except ValueError:
            raise bad_request("Unable to parse JSON data") from None

    def close(self) -> None:
        self.master.close()


def build_app(paths: HerdPaths, require_auth: bool = True) -> RapiApp:
    return RapiApp(paths, require_auth)
