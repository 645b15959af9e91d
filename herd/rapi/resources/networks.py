"""Network resources: /2/networks and /2/networks/NAME[/modify|/connect|/disconnect|/rename|
/tags], with Ganeti's bodies (``lib/rapi/rlib2.py``) so that Ganeti's Python client's
CreateNetwork, ConnectNetwork, ModifyNetwork, ... work unchanged."""

from __future__ import annotations

from typing import Any

from herd import errors
from herd.rapi.errors import HttpError
from herd.rapi.resources.tags import TagsResource
from herd.rapi.routing import Req, Resource, rename_alias, resource

#: Ganeti's N_FIELDS and the common fields: what GET /2/networks?bulk=1 gives per network.
N_FIELDS = ("name", "network", "gateway", "network6", "gateway6", "mac_prefix", "free_count",
            "reserved_count", "map", "group_list", "inst_list", "external_reservations",
            "ctime", "mtime", "uuid", "serial_no", "tags")


def network(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row.get(key) for key in N_FIELDS}


@resource("/2/networks")
class Networks(Resource):
    DOC = {"GET": "List networks ([{name, uri}]; with bulk=1 every network's fields).",
           "POST": "Add a network (job id)."}
    QUERY = {"GET": ("bulk",), "POST": ("dry-run",)}
    BODY = {"POST": "OP_NETWORK_ADD"}
    BODY_EXTRA = {"POST": {"name": {"type": "string"}}}

    async def GET(self, req: Req) -> Any:
        # names only: no address pool is worked out
        rows = await req.call("query_networks", fields=list(N_FIELDS) if req.bulk else ["name"])
        if req.bulk:
            return [network(r) for r in rows]
        return [{"name": r["name"], "uri": f"/2/networks/{r['name']}"} for r in rows]

    async def POST(self, req: Req) -> Any:
        body = req.body_dict()
        rename_alias(body, "name", "network_name")
        return await req.submit(req.opcode("OP_NETWORK_ADD", body))


@resource("/2/networks/[network_name]")
class NetworkResource(Resource):
    DOC = {"GET": "One network's fields.", "DELETE": "Remove the network (job id)."}
    QUERY = {"DELETE": ("dry-run",)}

    async def GET(self, req: Req) -> Any:
        try:
            rows = await req.master.call("query_networks", names=[req.items[0]],
                                         fields=list(N_FIELDS))
        except errors.NotFoundError:
            raise HttpError(404) from None
        return network(rows[0])

    async def DELETE(self, req: Req) -> Any:
        return await req.submit(req.opcode("OP_NETWORK_REMOVE", network_name=req.items[0]))


def _network_op(op_id: str, doc: str) -> type[Resource]:
    async def put(self: Resource, req: Req) -> Any:
        return await req.submit(req.opcode(op_id, req.body_dict(),
                                           network_name=req.items[0]))

    return type(op_id, (Resource,), {"PUT": put, "DOC": {"PUT": doc}, "BODY": {"PUT": op_id},
                                     "QUERY": {"PUT": ("dry-run",)}})


resource("/2/networks/[network_name]/modify")(_network_op(
    "OP_NETWORK_SET_PARAMS", "Modify the network (gateway, reserved IPs, MAC prefix, IPv6; "
    "job id)."))
resource("/2/networks/[network_name]/connect")(_network_op(
    "OP_NETWORK_CONNECT", "Connect the network to a node group (body: group_name, "
    "network_mode, network_link, network_vlan; job id)."))
resource("/2/networks/[network_name]/disconnect")(_network_op(
    "OP_NETWORK_DISCONNECT", "Disconnect the network from a node group (body: group_name; "
    "job id)."))
resource("/2/networks/[network_name]/rename")(_network_op(
    "OP_NETWORK_RENAME", "Rename the network (body: new_name; job id)."))


@resource("/2/networks/[network_name]/tags")
class NetworkTags(TagsResource):
    KIND = "network"
