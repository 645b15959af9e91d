"""HTTP errors in Ganeti's JSON shape: ``{"code": 404, "message": "Not Found", "explain": ...}``.

Ganeti's RAPI answers every error with the status code, the status's reason phrase and an
explanation: the handler's own text when it gave one, else the standard description of the
status (``No permission -- see authorization schemes`` for 401, ``Nothing matches the given
URI`` for 404, ...), exactly the texts of Python's ``http.HTTPStatus``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from herd import errors

REALM = "Ganeti Remote API"


class HttpError(Exception):
    def __init__(self, status: int, explain: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.status = HTTPStatus(status)
        self.explain = explain or self.status.description
        self.headers = headers or {}
        super().__init__(f"{self.status.value} {self.status.phrase}: {self.explain}")

    def body(self) -> dict[str, Any]:
        return {"code": self.status.value, "message": self.status.phrase,
                "explain": self.explain}


def unauthorized() -> HttpError:
    return HttpError(401, headers={"WWW-Authenticate": f'Basic realm="{REALM}"'})


def forbidden() -> HttpError:
    return HttpError(403)


def not_found(explain: str | None = None) -> HttpError:
    return HttpError(404, explain)


def bad_request(explain: str) -> HttpError:
    return HttpError(400, explain)


def from_herd(exc: errors.HerdError) -> HttpError:
    """A masterd answer that failed: unknown objects are 404 (Ganeti's default text), bad
    input 400 with the message, masterd unreachable 502, anything else 500."""
    if isinstance(exc, errors.NotFoundError):
        return HttpError(404)
    if isinstance(exc, errors.OpPrereqError):
        return HttpError(400, exc.message)
    if isinstance(exc, errors.RpcError):
        return HttpError(502, exc.message)
    return HttpError(500, exc.message)
