"""An OpenAPI 3 description of the RAPI, built from the registered resources (served by
herd-rapi at ``/openapi.json``)."""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any

from herd import __version__
from herd.opcodes.base import _REGISTRY
from herd.rapi.auth import ACCESS_WRITE
from herd.rapi.routing import ROUTES

_ERROR = {"type": "object", "required": ["code", "message", "explain"],
          "properties": {"code": {"type": "integer"}, "message": {"type": "string"},
                         "explain": {"type": "string"}}}
_JOB_ID = {"type": "integer", "description": "Id of the submitted job (poll /2/jobs/ID)."}


def _json_type(hint: Any) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        return _json_type(args[0])
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if hint is str:
        return {"type": "string"}
    if origin is list or hint is list:
        return {"type": "array"}
    if origin is dict or hint is dict:
        return {"type": "object"}
    return {}


def _opcode_schema(op_id: str) -> dict[str, Any]:
    cls = _REGISTRY.get(op_id)
    if cls is None:
        return {"type": "object"}
    fields = getattr(cls, "FIELDS", None)
    if fields is not None:  # an operation Herd does not carry out yet
        return {"type": "object", "description": f"{op_id}: not supported by this version "
                "(the job fails with OpPrereqError)",
                "properties": {f: {} for f in fields}}
    hints = typing.get_type_hints(cls)
    props = {f.name: _json_type(hints[f.name]) for f in dataclasses.fields(cls)}
    return {"type": "object", "description": op_id, "properties": props}


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
                      "schema": {"type": "string"}} for q in cls.QUERY.get(method, ())]
            query.append({"name": "reason", "in": "query", "required": False,
                          "schema": {"type": "string"}})
            op: dict[str, Any] = {
                "summary": cls.DOC.get(method, ""),
                "parameters": params + query,
                "security": [{"basic": []}],
                "x-ganeti-access": cls.access(method),
                "responses": {
                    "200": {"description": "OK", "content": {"application/json": {
                        "schema": _JOB_ID if cls.access(method) == ACCESS_WRITE
                        and method != "GET" else {}}}},
                    **{str(code): {"description": text, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Error"}}}}
                       for code, text in ((400, "Bad request"), (401, "Unauthorized"),
                                          (403, "Forbidden"), (404, "Not found"),
                                          (415, "Body not application/json"),
                                          (501, "Method not supported"))}},
            }
            if method in cls.BODY:
                op["requestBody"] = {"content": {"application/json": {
                    "schema": _opcode_schema(cls.BODY[method])}}}
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
