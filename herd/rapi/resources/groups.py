"""Node group resources: /2/groups and /2/groups/NAME."""

from __future__ import annotations

from typing import Any

from herd import errors
from herd.rapi import convert
from herd.rapi.errors import HttpError
from herd.rapi.resources.tags import TagsResource
from herd.rapi.routing import Req, Resource, rename_alias, resource


async def _templates(req: Req) -> list[str]:
    return list((await req.call("query_cluster"))["enabled_disk_templates"])


@resource("/2/groups")
class Groups(Resource):
    DOC = {"GET": "List node groups ([{name, uri}]; with bulk=1 every group's fields).",
           "POST": "Add a node group (job id)."}
    QUERY = {"GET": ("bulk",), "POST": ("dry-run",)}
    BODY = {"POST": "OP_GROUP_ADD"}
    BODY_EXTRA = {"POST": {"name": {"type": "string"}}}

    async def GET(self, req: Req) -> Any:
        rows = await req.call("query_groups")
        if req.bulk:
            templates = await _templates(req)
            return [convert.group(r, templates) for r in rows]
        return [{"name": r["name"], "uri": f"/2/groups/{r['name']}"} for r in rows]

    async def POST(self, req: Req) -> Any:
        body = req.body_dict()
        rename_alias(body, "name", "group_name")
        return await req.submit(req.opcode("OP_GROUP_ADD", body))


@resource("/2/groups/[group_name]")
class Group(Resource):
    DOC = {"GET": "One node group's fields.", "DELETE": "Remove the group (job id)."}
    QUERY = {"DELETE": ("dry-run",)}

    async def GET(self, req: Req) -> Any:
        try:
            rows = await req.master.call("query_groups", names=[req.items[0]])
        except errors.NotFoundError:
            raise HttpError(404) from None
        return convert.group(rows[0], await _templates(req))

    async def DELETE(self, req: Req) -> Any:
        return await req.submit(req.opcode("OP_GROUP_REMOVE", group_name=req.items[0]))


def _group_op(op_id: str, doc: str) -> type[Resource]:
    async def put(self: Resource, req: Req) -> Any:
        body = req.body_dict()
        if op_id == "OP_GROUP_ASSIGN_NODES":
            body.setdefault("force", req.force)
        return await req.submit(req.opcode(op_id, body, group_name=req.items[0]))

    return type(op_id, (Resource,), {"PUT": put, "DOC": {"PUT": doc}, "BODY": {"PUT": op_id}})


resource("/2/groups/[group_name]/modify")(
    _group_op("OP_GROUP_SET_PARAMS", "Modify the group's parameters (job id)."))
resource("/2/groups/[group_name]/rename")(
    _group_op("OP_GROUP_RENAME", "Rename the group (body: new_name; job id)."))
resource("/2/groups/[group_name]/assign-nodes")(
    _group_op("OP_GROUP_ASSIGN_NODES", "Move nodes into the group (body: nodes; job id)."))


@resource("/2/groups/[group_name]/tags")
class GroupTags(TagsResource):
    KIND = "nodegroup"
