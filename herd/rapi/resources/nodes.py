"""Node resources: /2/nodes and everything under /2/nodes/NAME."""

from __future__ import annotations

from typing import Any

from herd.rapi import convert
from herd.rapi.auth import ACCESS_WRITE
from herd.rapi.errors import bad_request
from herd.rapi.resources.tags import TagsResource
from herd.rapi.routing import Req, Resource, resource

_ROLES = ("master", "master-candidate", "regular", "drained", "offline")


async def node_row(req: Req, name: str, live: bool = True) -> dict[str, Any]:
    return await req.one_row("query_nodes", name, live)


@resource("/2/nodes")
class Nodes(Resource):
    DOC = {"GET": "List nodes ([{id, uri}]; with bulk=1 every node's fields)."}
    QUERY = {"GET": ("bulk",)}

    async def GET(self, req: Req) -> Any:
        if req.bulk:
            return await req.kept_answer("nodes-bulk", "query_nodes", _bulk, names=None,
                                         live=True, fields=list(convert.N_FIELDS))
        return await req.kept_answer("nodes", "query_nodes", _links, names=None, live=False,
                                     fields=["name"])


def _bulk(row: dict[str, Any]) -> dict[str, Any]:
    return convert.node(row)


def _links(row: dict[str, Any]) -> dict[str, str]:
    return {"id": row["name"], "uri": f"/2/nodes/{row['name']}"}


@resource("/2/nodes/[node_name]")
class Node(Resource):
    DOC = {"GET": "One node's fields."}

    async def GET(self, req: Req) -> Any:
        return convert.node(await node_row(req, req.items[0]), single=True)


@resource("/2/nodes/[node_name]/role")
class NodeRole(Resource):
    DOC = {"GET": "The node's role: master, master-candidate, regular, drained or offline.",
           "PUT": "Change the role (body: the role as a JSON string; job id)."}
    QUERY = {"PUT": ("force", "auto_promote")}
    BODY_SCHEMA = {"PUT": {"type": "string", "enum": list(_ROLES)}}

    async def GET(self, req: Req) -> Any:
        return convert.node_role(await node_row(req, req.items[0], live=False))

    async def PUT(self, req: Req) -> Any:
        role = req.body
        if not isinstance(role, str) or role not in _ROLES:
            raise bad_request(f"Can't set '{role}' role")
        if role == "master":
            raise bad_request("Can't set 'master' role; use 'gnt-cluster master-failover'")
        flags = {"master-candidate": {"master_candidate": True, "offline": False,
                                      "drained": False},
                 "regular": {"master_candidate": False, "offline": False, "drained": False},
                 "drained": {"drained": True},
                 "offline": {"offline": True}}[role]
        op = req.opcode("OP_NODE_SET_PARAMS", node_name=req.items[0], force=req.force,
                        auto_promote=req.bool_arg("auto_promote"), **flags)
        return await req.submit(op)


@resource("/2/nodes/[node_name]/modify")
class NodeModify(Resource):
    DOC = {"POST": "Modify the node's parameters (body: OP_NODE_SET_PARAMS fields; job id)."}
    BODY = {"POST": "OP_NODE_SET_PARAMS"}

    async def POST(self, req: Req) -> Any:
        return await req.submit(req.opcode("OP_NODE_SET_PARAMS", req.body_dict(),
                                           node_name=req.items[0]))


@resource("/2/nodes/[node_name]/migrate")
class NodeMigrate(Resource):
    DOC = {"POST": "Migrate every primary instance away (job id)."}
    BODY = {"POST": "OP_NODE_MIGRATE"}

    async def POST(self, req: Req) -> Any:
        body = req.body_dict()
        if req.body is None:  # Ganeti 2.4's query arguments
            if req.str_arg("mode") is not None:
                body["mode"] = req.str_arg("mode")
            elif req.str_arg("live") is not None:
                body["mode"] = "live" if req.bool_arg("live") else "non-live"
        return await req.submit(req.opcode("OP_NODE_MIGRATE", body, node_name=req.items[0]))


@resource("/2/nodes/[node_name]/evacuate")
class NodeEvacuate(Resource):
    DOC = {"POST": "Move instances off the node (job id)."}
    BODY = {"POST": "OP_NODE_EVACUATE"}

    async def POST(self, req: Req) -> Any:
        return await req.submit(req.opcode("OP_NODE_EVACUATE", req.body_dict(),
                                           node_name=req.items[0]))


@resource("/2/nodes/[node_name]/powercycle")
class NodePowercycle(Resource):
    DOC = {"POST": "Power-cycle the node (job id)."}
    QUERY = {"POST": ("force",)}

    async def POST(self, req: Req) -> Any:
        return await req.submit(req.opcode("OP_NODE_POWERCYCLE", node_name=req.items[0],
                                           force=req.force))


@resource("/2/nodes/[node_name]/storage")
class NodeStorage(Resource):
    GET_ACCESS = ACCESS_WRITE  # as Ganeti: it blocks other operations
    DOC = {"GET": "Storage units of the node (storage_type, output_fields; job id)."}
    QUERY = {"GET": ("storage_type", "output_fields")}

    async def GET(self, req: Req) -> Any:
        fields = req.str_arg("output_fields")
        if fields is None:
            raise bad_request("Missing the required 'output_fields' parameter")
        op = req.opcode("OP_NODE_QUERY_STORAGE", nodes=[req.items[0]],
                        storage_type=req.str_arg("storage_type"),
                        name=req.str_arg("name"), output_fields=fields.split(","))
        return await req.submit(op)


@resource("/2/nodes/[node_name]/storage/modify")
class NodeStorageModify(Resource):
    DOC = {"PUT": "Modify a storage unit (storage_type, name, allocatable; job id)."}
    QUERY = {"PUT": ("storage_type", "name", "allocatable")}

    async def PUT(self, req: Req) -> Any:
        changes = {}
        if req.str_arg("allocatable") is not None:
            changes["allocatable"] = req.bool_arg("allocatable")
        op = req.opcode("OP_NODE_MODIFY_STORAGE", node_name=req.items[0],
                        storage_type=req.str_arg("storage_type"), name=req.str_arg("name"),
                        changes=changes)
        return await req.submit(op)


@resource("/2/nodes/[node_name]/storage/repair")
class NodeStorageRepair(Resource):
    DOC = {"PUT": "Repair a storage unit (storage_type, name; job id)."}
    QUERY = {"PUT": ("storage_type", "name", "ignore_consistency")}

    async def PUT(self, req: Req) -> Any:
        op = req.opcode("OP_REPAIR_NODE_STORAGE", node_name=req.items[0],
                        storage_type=req.str_arg("storage_type"), name=req.str_arg("name"),
                        ignore_consistency=req.bool_arg("ignore_consistency"))
        return await req.submit(op)


@resource("/2/nodes/[node_name]/tags")
class NodeTags(TagsResource):
    KIND = "node"
