"""An OpenAPI 3 description of the RAPI, built from the registered resources (served by
herd-rapi at ``/openapi.json``)."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any

from herd import __version__
from herd.rapi.auth import ACCESS_WRITE
from herd.rapi.routing import ROUTES, Resource

_ERROR = {"type": "object", "required": ["code", "message", "explain"],
          "properties": {"code": {"type": "integer"}, "message": {"type": "string"},
                         "explain": {"type": "string"}}}
_JOB_ID = {"type": "integer", "description": "Id of the submitted job (poll /2/jobs/ID)."}
#: Ganeti's boolean query arguments are integers (0 false, anything else true).
_FLAG = {"type": "integer"}
_QUERY_SCHEMAS: dict[str, dict[str, Any]] = {
    "bulk": _FLAG, "dry-run": _FLAG, "force": _FLAG, "static": _FLAG, "no_remember": _FLAG,
    "ignore_size": _FLAG, "ignore_secondaries": _FLAG, "nostartup": _FLAG,
    "auto_promote": _FLAG, "allocatable": _FLAG, "ignore_consistency": _FLAG, "live": _FLAG,
    "tag": {"type": "array", "items": {"type": "string"}},
}
#: Every error status an operation can answer (beside its own 200), with its meaning.
_ERRORS = ((400, "Bad request: a parameter or the body is invalid"),
           (401, "Unauthorized: no or wrong credentials"),
           (403, "Forbidden: the user lacks the access the operation needs"),
           (404, "Not found: no such resource, or the object named in the URL does not exist"),
           (408, "The body did not arrive in time"),
           (413, "Body (or the job it makes) too large"),
           (415, "Body not application/json"),
           (429, "Too many failed logins from this client; see Retry-After"),
           (501, "Method not supported for this path"),
           (502, "The master daemon could not be reached"))


def _json_type(hint: Any) -> dict[str, Any]:
    """The JSON schema of an opcode field's type hint (None in a union makes it nullable)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        others = [a for a in args if a is not type(None)]
        schemas = [_json_type(a) for a in others]
        out = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
        if any(not s for s in schemas):
            out = {}
        if type(None) in args and out:
            out = {**out, "nullable": True}
        return out
    if origin is typing.Literal:
        return {"enum": list(args)}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if hint is str:
        return {"type": "string"}
    if origin is list or hint is list:
        inner = _json_type(args[0]) if args else {}
        return {"type": "array", "items": inner} if inner else {"type": "array"}
    if origin is dict or hint is dict:
        return {"type": "object"}
    return {}


#: The reason trail a body may carry: [source, reason, timestamp] entries.
_REASON = {"type": "array", "items": {"type": "array", "minItems": 3, "maxItems": 3}}


def _opcode_schema(op_id: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A body holding an opcode's fields (unknown fields are refused with 400)."""
    from herd.opcodes.base import _REGISTRY  # here: the document is made on request

    cls = _REGISTRY.get(op_id)
    if cls is None:
        return {"type": "object"}
    fields = getattr(cls, "FIELDS", None)
    hints = typing.get_type_hints(cls)
    props = {f.name: _json_type(hints[f.name]) for f in dataclasses.fields(cls)
             if f.name != "params"}
    description = op_id
    if fields is not None:  # an operation Herd does not carry out yet
        description = f"{op_id}: not supported by this version (the job fails with " \
                      "OpPrereqError)"
        props.update({f: {} for f in fields})
    props["reason"] = _REASON
    props.update(extra or {})
    return {"type": "object", "description": description, "properties": props,
            "additionalProperties": False}


def _body_schema(cls: type[Resource], method: str) -> dict[str, Any] | None:
    if method in cls.BODY_SCHEMA:
        return cls.BODY_SCHEMA[method]
    if method in cls.BODY:
        return _opcode_schema(cls.BODY[method], cls.BODY_EXTRA.get(method))
    return None


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for route in ROUTES:
        template = re.sub(r"\[([a-z_]+)\]", r"{\1}", route.template)
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                  for n in re.findall(r"\{([a-z_]+)\}", template)]
        entry: dict[str, Any] = {}
        cls = route.resource
        for method in cls.methods():
            query = [{"name": q, "in": "query", "required": False,
                      "schema": _QUERY_SCHEMAS.get(q, {"type": "string"}),
                      **({"style": "form", "explode": True} if q == "tag" else {})}
                     for q in cls.QUERY.get(method, ())]
            query.append({"name": "reason", "in": "query", "required": False,
                          "schema": {"type": "string"}})
            if method in cls.RESULT:
                result = cls.RESULT[method]
            elif cls.access(method) == ACCESS_WRITE and method != "GET":
                result = _JOB_ID
            else:
                result = {}
            errors = dict(_ERRORS)
            errors.update(cls.ERRORS.get(method, {}))
            op: dict[str, Any] = {
                "summary": cls.DOC.get(method, ""),
                "parameters": params + query,
                "security": [{"basic": []}],
                "x-ganeti-access": cls.access(method),
                "responses": {
                    "200": {"description": "OK", "content": {"application/json": {
                        "schema": result}}},
                    **{str(code): {"description": text, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Error"}}}}
                       for code, text in sorted(errors.items())}},
            }
            body = _body_schema(cls, method)
            if body is not None:
                required = method in cls.BODY_REQUIRED
                if not required and method in cls.BODY:  # null is taken as {} (Ganeti's rule)
                    body = {**body, "nullable": True}
                op["requestBody"] = {"required": required, "content": {"application/json": {
                    "schema": body}}}
            entry[method.lower()] = op
        paths[template] = entry
    return {
        "openapi": "3.0.3",
        "info": {"title": "Herd RAPI (Ganeti remote API version 2)", "version": __version__,
                 "description": "Ganeti's RAPI v2 as served by Herd's herd-rapi. Writes "
                                "answer with a job id; errors are {code, message, explain}."},
        "components": {"securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
                       "schemas": {"Error": _ERROR}},
        "paths": paths,
    }
