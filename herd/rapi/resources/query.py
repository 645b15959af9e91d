"""/2/query/RESOURCE and /2/query/RESOURCE/fields: Ganeti's query2 over RAPI.

GET takes ``fields=a,b``; PUT takes a body ``{"fields": [...], "qfilter": FILTER}`` (``filter``
is the older name). The answer is ``{"fields": [field definitions], "data": [[[status, value],
...], ...]}``; status 0 is a normal value, 1 an unknown field, 2 no data (the node did not
answer or the value needs a running instance). Filters use Ganeti's operators: ``|``, ``&``,
``!``, ``?``, ``=``, ``!=``, ``=~``, ``<``, ``>``, ``<=``, ``>=``, ``=[]``.
"""

from __future__ import annotations

import re
from typing import Any

from herd import fields as registry
from herd.rapi import convert
from herd.rapi.auth import ACCESS_READ
from herd.rapi.errors import HttpError, bad_request
from herd.rapi.routing import Req, Resource, resource

RS_NORMAL, RS_UNKNOWN, RS_NODATA = 0, 1, 2

#: The resources /2/query answers, and their fields (one registry: herd.fields).
FIELDS = registry.REGISTRIES


def _known(what: str, name: str) -> bool:
    return FIELDS[what].known(name)


def field_def(what: str, name: str) -> dict[str, str]:
    return FIELDS[what].definition(name)


#: masterd's query of each resource that computes the fields it is given, and its arguments
#: beside them (live: the nodes are asked, only if a field asked for needs them).
_QUERIES: dict[str, tuple[str, dict[str, Any]]] = {
    "instance": ("query_instances", {"names": None, "live": True}),
    "node": ("query_nodes", {"names": None, "live": True}),
    "group": ("query_groups", {}),
    "network": ("query_networks", {}),
}


async def _rows(req: Req, what: str, fields: list[str]) -> list[dict[str, Any]]:
    """Rows holding ``fields`` only: masterd computes those and asks the nodes only if one
    of them needs live data. Jobs are kept whole by masterd and converted here."""
    if what in _QUERIES:
        method, args = _QUERIES[what]
        return await req.call(method, fields=fields, **args)
    rows = await req.call("query_jobs")
    return [convert.job(r, tuple(FIELDS["job"].fields)) for r in rows]


def _value(what: str, row: dict[str, Any], name: str) -> list[Any]:
    found = FIELDS[what].lookup(name)
    if found is None:
        return [RS_UNKNOWN, None]
    if name not in row:
        return [RS_NODATA, None]
    value = row[name]
    if value is None and found.live is not None:
        return [RS_NODATA, None]
    return [RS_NORMAL, value]


_CMP = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b, ">": lambda a, b: a > b,
        "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}


def check_filter(what: str, flt: Any) -> list[str]:
    """Validate a filter; return the fields it uses."""
    if flt is None:
        return []
    if not isinstance(flt, list) or not flt or not isinstance(flt[0], str):
        raise bad_request(f"Invalid filter: {flt!r}")
    op, args = flt[0], flt[1:]
    if op in ("|", "&"):
        return [f for sub in args for f in check_filter(what, sub)]
    if op == "!":
        if len(args) != 1:
            raise bad_request("Invalid filter: '!' takes one operand")
        return check_filter(what, args[0])
    if op == "?":
        if len(args) != 1 or not isinstance(args[0], str):
            raise bad_request("Invalid filter: '?' takes one field name")
        fields = [args[0]]
    elif op in (*_CMP, "=~", "=[]"):
        if len(args) != 2 or not isinstance(args[0], str):
            raise bad_request(f"Invalid filter: '{op}' takes a field name and a value")
        if op == "=~":
            try:
                re.compile(str(args[1]))
            except re.error as exc:
                raise bad_request(f"Invalid regular expression '{args[1]}': {exc}") from None
        fields = [args[0]]
    else:
        raise bad_request(f"Unknown filter operator '{op}'")
    for name in fields:
        if not _known(what, name):
            raise bad_request(f"Unknown field '{name}' in filter")
    return fields


def matches(flt: Any, row: dict[str, Any]) -> bool:
    if flt is None:
        return True
    op, args = flt[0], flt[1:]
    if op == "|":
        return any(matches(sub, row) for sub in args)
    if op == "&":
        return all(matches(sub, row) for sub in args)
    if op == "!":
        return not matches(args[0], row)
    value = row.get(args[0])
    if op == "?":
        return bool(value)
    if op == "=~":
        return isinstance(value, str) and re.search(str(args[1]), value) is not None
    if op == "=[]":
        return isinstance(value, list) and args[1] in value
    try:
        return bool(_CMP[op](value, args[1]))
    except TypeError:
        return False


def _resource(req: Req) -> str:
    what = req.items[0]
    if what not in FIELDS:
        raise HttpError(404, f"Resource '{what}' can not be queried; available: "
                             f"{', '.join(sorted(FIELDS))}")
    return what


def _fields_arg(req: Req) -> list[str] | None:
    text = req.str_arg("fields")
    return [f for f in text.split(",") if f] if text is not None else None


async def run_query(req: Req, what: str, fields: list[str], flt: Any) -> dict[str, Any]:
    used = check_filter(what, flt)
    rows = await _rows(req, what, [*fields, *used])
    return {"fields": [field_def(what, f) for f in fields],
            "data": [[_value(what, row, f) for f in fields]
                     for row in rows if matches(flt, row)]}


@resource("/2/query/[resource]")
class Query(Resource):
    PUT_ACCESS = ACCESS_READ  # a query, whatever the method
    DOC = {"GET": "Query a resource (instance, node, group, job): fields=a,b.",
           "PUT": "Query with a body {fields, qfilter}."}
    QUERY = {"GET": ("fields",)}
    BODY_SCHEMA = {"PUT": {"type": "object", "properties": {
        "fields": {"anyOf": [{"type": "array", "items": {"type": "string"}},
                             {"type": "string"}]},
        "qfilter": {"type": "array", "nullable": True},
        "filter": {"type": "array", "nullable": True}}}}

    async def GET(self, req: Req) -> Any:
        what = _resource(req)
        fields = _fields_arg(req)
        if not fields:
            raise bad_request("Missing the required 'fields' parameter")
        return await run_query(req, what, fields, None)

    async def PUT(self, req: Req) -> Any:
        what = _resource(req)
        body = req.body_dict()
        fields = body.get("fields", _fields_arg(req))
        if isinstance(fields, str):
            fields = [f for f in fields.split(",") if f]
        if not isinstance(fields, list) or not fields or \
                not all(isinstance(f, str) for f in fields):
            raise bad_request("Parameter 'fields' must be a non-empty list of field names")
        flt = body.get("qfilter", body.get("filter"))
        return await run_query(req, what, fields, flt)


@resource("/2/query/[resource]/fields")
class QueryFields(Resource):
    DOC = {"GET": "Field definitions of a resource (optionally fields=a,b)."}
    QUERY = {"GET": ("fields",)}

    async def GET(self, req: Req) -> Any:
        what = _resource(req)
        fields = _fields_arg(req) or sorted(FIELDS[what].fields)
        return {"fields": [field_def(what, f) for f in fields]}
