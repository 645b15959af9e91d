"""Instance resources: /2/instances and everything under /2/instances/NAME."""

from __future__ import annotations

from typing import Any

from herd import errors
from herd.rapi import convert
from herd.rapi.errors import HttpError, bad_request
from herd.rapi.resources.tags import TagsResource
from herd.rapi.routing import Req, Resource, rename_alias, resource
from herd.units import parse_size

#: Ganeti's OP_INSTANCE_CREATE fields Herd does not have, with the value that means "not
#: used": given with that value they are ignored, given otherwise the request is refused.
_CREATE_IGNORED: dict[str, Any] = {
    "conflicts_check": True, "identify_defaults": False, "opportunistic_locking": False,
    "ignore_ipolicy": False, "compress": "none", "instance_communication": False,
    "src_node_uuid": None, "source_handshake": None,
    "source_x509_ca": None, "source_instance_name": None, "source_shutdown_timeout": None,
    "helper_startup_timeout": None, "helper_shutdown_timeout": None, "pnode_uuid": None,
    "snode_uuid": None, "osparams_private": None, "osparams_secret": None,
    "hvparams_private": None, "zeroing_timeout_fixed": None, "zeroing_timeout_per_mib": None,
}


#: Ganeti's most disks an instance can have: a higher index names no disk.
MAX_DISKS = 16


def _ignorable(key: str, value: Any) -> bool:
    default = _CREATE_IGNORED[key]
    return value == default or (default is None and value in ({}, [], ""))


def create_opcode(req: Req) -> dict[str, Any]:
    body = req.body_dict(allow_none=False)
    version = body.pop("__version__", 0)
    if version == 0:
        raise bad_request("Instance creation request version 0 is no longer supported")
    if version != 1:
        raise bad_request(f"Unsupported request data version {version}")
    return req.opcode("OP_INSTANCE_CREATE", create_body(body))


def create_body(body: dict[str, Any]) -> dict[str, Any]:
    """A create request's body as OP_INSTANCE_CREATE's fields (Ganeti's old names renamed,
    its fields Herd lacks dropped when they hold the value that means "not used")."""
    for old, new in (("name", "instance_name"), ("os", "os_type")):
        rename_alias(body, old, new)
    for key in list(body):
        if key in _CREATE_IGNORED:
            if not _ignorable(key, body[key]):
                raise bad_request(f"Invalid body parameters: parameter '{key}' is not "
                                  "supported by Herd")
            del body[key]
    if isinstance(body.get("nics"), list):
        body["nics"] = [_nic(n) for n in body["nics"]]
    return body


def _nic(nic: Any) -> Any:
    if isinstance(nic, dict) and "bridge" in nic:  # Ganeti's old name for the link
        nic = dict(nic)
        bridge = nic.pop("bridge")
        nic.setdefault("link", bridge)
    return nic


async def instance_row(req: Req, name: str, live: bool = True) -> dict[str, Any]:
    return await req.one_row("query_instances", name, live)


@resource("/2/instances")
class Instances(Resource):
    DOC = {"GET": "List instances ([{id, uri}]; with bulk=1 every instance's fields).",
           "POST": "Create an instance (request version 1: __version__=1; job id)."}
    QUERY = {"GET": ("bulk",), "POST": ("dry-run",)}
    BODY = {"POST": "OP_INSTANCE_CREATE"}
    BODY_REQUIRED = frozenset({"POST"})  # create_opcode refuses a missing body
    BODY_EXTRA = {"POST": {"__version__": {"type": "integer", "enum": [1]},
                           "name": {"type": "string"}, "os": {"type": "string"},
                           **{key: {} for key in _CREATE_IGNORED}}}

    async def GET(self, req: Req) -> Any:
        if req.bulk:
            return await req.kept_answer("instances-bulk", "query_instances", _bulk,
                                         names=None, live=True,
                                         fields=list(convert.I_QUERY_FIELDS))
        # names only: the config answers, no node is asked
        return await req.kept_answer("instances", "query_instances", _links, names=None,
                                     live=False, fields=["name"])

    async def POST(self, req: Req) -> Any:
        return await req.submit(create_opcode(req))


def _bulk(row: dict[str, Any]) -> dict[str, Any]:
    return convert.instance(row)


def _links(row: dict[str, Any]) -> dict[str, str]:
    return {"id": row["name"], "uri": f"/2/instances/{row['name']}"}


@resource("/2/instances-multi-alloc")
class InstancesMultiAlloc(Resource):
    DOC = {"POST": "Allocate several instances (job id)."}
    BODY = {"POST": "OP_INSTANCE_MULTI_ALLOC"}

    async def POST(self, req: Req) -> Any:
        body = req.body_dict()
        if isinstance(body.get("instances"), list):
            body["instances"] = [
                create_body({k: v for k, v in i.items() if k != "__version__"})
                if isinstance(i, dict) else i for i in body["instances"]]
        return await req.submit(req.opcode("OP_INSTANCE_MULTI_ALLOC", body))


@resource("/2/instances/[instance_name]")
class Instance(Resource):
    DOC = {"GET": "One instance's fields.", "DELETE": "Remove the instance (job id)."}
    QUERY = {"DELETE": ("dry-run",)}
    BODY = {"DELETE": "OP_INSTANCE_REMOVE"}

    async def GET(self, req: Req) -> Any:
        return convert.instance(await instance_row(req, req.items[0]))

    async def DELETE(self, req: Req) -> Any:
        return await req.submit(req.opcode("OP_INSTANCE_REMOVE", req.body_dict(),
                                           instance_name=req.items[0]))


@resource("/2/instances/[instance_name]/info")
class InstanceInfo(Resource):
    DOC = {"GET": "Detailed information, computed by a job (job id); static=1 skips the "
                  "nodes."}
    QUERY = {"GET": ("static",)}

    async def GET(self, req: Req) -> Any:
        op = req.opcode("OP_INSTANCE_QUERY_DATA", instance_names=[req.items[0]],
                        static=req.bool_arg("static"))
        return await req.submit(op)


@resource("/2/instances/[instance_name]/reboot")
class InstanceReboot(Resource):
    DOC = {"POST": "Reboot (type=soft|hard|full; job id)."}
    QUERY = {"POST": ("type", "ignore_secondaries", "dry-run")}

    async def POST(self, req: Req) -> Any:
        body = req.body_dict()
        body.setdefault("reboot_type", req.str_arg("type", "hard"))
        body.setdefault("ignore_secondaries", req.bool_arg("ignore_secondaries"))
        return await req.submit(req.opcode("OP_INSTANCE_REBOOT", body,
                                           instance_name=req.items[0]))


@resource("/2/instances/[instance_name]/shutdown")
class InstanceShutdown(Resource):
    DOC = {"PUT": "Shut the instance down (job id)."}
    QUERY = {"PUT": ("dry-run", "no_remember")}
    BODY = {"PUT": "OP_INSTANCE_SHUTDOWN"}

    async def PUT(self, req: Req) -> Any:
        body = req.body_dict()
        body.setdefault("no_remember", req.bool_arg("no_remember"))
        return await req.submit(req.opcode("OP_INSTANCE_SHUTDOWN", body,
                                           instance_name=req.items[0]))


@resource("/2/instances/[instance_name]/startup")
class InstanceStartup(Resource):
    DOC = {"PUT": "Start the instance (job id)."}
    QUERY = {"PUT": ("force", "dry-run", "no_remember")}

    async def PUT(self, req: Req) -> Any:
        op = req.opcode("OP_INSTANCE_STARTUP", instance_name=req.items[0], force=req.force,
                        no_remember=req.bool_arg("no_remember"))
        return await req.submit(op)


@resource("/2/instances/[instance_name]/reinstall")
class InstanceReinstall(Resource):
    DOC = {"POST": "Install the OS again (body: os, start, osparams; job id)."}
    QUERY = {"POST": ("os", "nostartup")}
    BODY_SCHEMA = {"POST": {"type": "object", "additionalProperties": False, "properties": {
        "os": {"type": "string"}, "start": {"type": "boolean"}, "osparams": {"type": "object"}}}}

    async def POST(self, req: Req) -> Any:
        name = req.items[0]
        if req.body is not None:
            body = req.body_dict()
            unknown = set(body) - {"os", "start", "osparams"}
            if unknown:
                raise bad_request(f"Invalid body parameters: unknown {', '.join(unknown)}")
            os_name, start, osparams = body.get("os"), body.get("start", True), \
                body.get("osparams")
        else:
            os_name, start, osparams = req.str_arg("os"), not req.bool_arg("nostartup"), None
        reinstall: dict[str, Any] = {"os_type": os_name} if os_name else {}
        if osparams:
            reinstall["osparams"] = osparams
        reinstall_op = req.opcode("OP_INSTANCE_REINSTALL", reinstall, instance_name=name)
        from herd.opcodes.instance_extra import is_backed  # here: see herd.rapi.routing

        if not is_backed("OP_INSTANCE_REINSTALL"):
            # never stop an instance for an operation that cannot follow
            return await req.submit(reinstall_op)
        ops = [req.opcode("OP_INSTANCE_SHUTDOWN", instance_name=name), reinstall_op]
        if start:
            ops.append(req.opcode("OP_INSTANCE_STARTUP", instance_name=name))
        return await req.submit(*ops)


@resource("/2/instances/[instance_name]/replace-disks")
class InstanceReplaceDisks(Resource):
    DOC = {"POST": "Replace disks of a mirrored instance (job id)."}
    BODY = {"POST": "OP_INSTANCE_REPLACE_DISKS"}

    async def POST(self, req: Req) -> Any:
        body = req.body_dict()
        if req.body is None:  # Ganeti 2.4's query arguments
            for key in ("mode", "remote_node", "iallocator", "disks"):
                value = req.str_arg(key)
                if value is not None:
                    body[key] = value
        disks = body.get("disks")
        if isinstance(disks, str):
            try:
                body["disks"] = [int(d) for d in disks.split(",") if d.strip()]
            except ValueError:
                raise bad_request(f"Invalid disk indexes '{disks}'") from None
        return await req.submit(req.opcode("OP_INSTANCE_REPLACE_DISKS", body,
                                           instance_name=req.items[0]))


def _simple(op_id: str, doc: str, method: str = "PUT") -> type[Resource]:
    async def handler(self: Resource, req: Req) -> Any:
        return await req.submit(req.opcode(op_id, req.body_dict(), instance_name=req.items[0]))

    return type(op_id, (Resource,), {method: handler, "DOC": {method: doc},
                                     "BODY": {method: op_id}})


resource("/2/instances/[instance_name]/recreate-disks")(
    _simple("OP_INSTANCE_RECREATE_DISKS", "Recreate missing disks (job id).", "POST"))
resource("/2/instances/[instance_name]/migrate")(
    _simple("OP_INSTANCE_MIGRATE", "Live-migrate to the secondary node (job id)."))
resource("/2/instances/[instance_name]/failover")(
    _simple("OP_INSTANCE_FAILOVER", "Fail over to the secondary node (job id)."))
resource("/2/instances/[instance_name]/move")(
    _simple("OP_INSTANCE_MOVE", "Move a non-mirrored instance to another node (body: "
            "target_node, shutdown_timeout, ignore_consistency; job id)."))
resource("/2/instances/[instance_name]/rename")(
    _simple("OP_INSTANCE_RENAME", "Rename the instance (body: new_name; job id)."))
resource("/2/instances/[instance_name]/modify")(
    _simple("OP_INSTANCE_SET_PARAMS", "Modify the instance's parameters (job id)."))


@resource("/2/instances/[instance_name]/activate-disks")
class InstanceActivateDisks(Resource):
    DOC = {"PUT": "Activate the disks (job id)."}
    QUERY = {"PUT": ("ignore_size",)}

    async def PUT(self, req: Req) -> Any:
        return await req.submit(req.opcode("OP_INSTANCE_ACTIVATE_DISKS",
                                           instance_name=req.items[0],
                                           ignore_size=req.bool_arg("ignore_size")))


@resource("/2/instances/[instance_name]/deactivate-disks")
class InstanceDeactivateDisks(Resource):
    DOC = {"PUT": "Deactivate the disks (job id)."}
    QUERY = {"PUT": ("force",)}

    async def PUT(self, req: Req) -> Any:
        return await req.submit(req.opcode("OP_INSTANCE_DEACTIVATE_DISKS",
                                           instance_name=req.items[0], force=req.force))


@resource("/2/instances/[instance_name]/disk/[disk_index]/grow")
class InstanceGrowDisk(Resource):
    DOC = {"POST": "Grow one disk (body: amount, e.g. 1024 or \"1G\"; job id)."}
    BODY = {"POST": "OP_INSTANCE_GROW_DISK"}

    async def POST(self, req: Req) -> Any:
        name, index = req.items
        # Ganeti's route takes digits only: -1, +1 or 1_0 match no resource
        if not index.isascii() or not index.isdigit() or int(index) >= MAX_DISKS:
            raise HttpError(404)
        disk = int(index)
        body = req.body_dict()
        if isinstance(body.get("amount"), str):
            try:
                body["amount"] = parse_size(body["amount"], "amount")
            except errors.ParameterError as exc:
                raise bad_request(f"Invalid body parameters: {exc.message}") from None
        return await req.submit(req.opcode("OP_INSTANCE_GROW_DISK", body, instance_name=name,
                                           disk=disk))


@resource("/2/instances/[instance_name]/prepare-export")
class InstancePrepareExport(Resource):
    DOC = {"PUT": "Prepare an export (mode=...; job id)."}
    QUERY = {"PUT": ("mode",)}

    async def PUT(self, req: Req) -> Any:
        return await req.submit(req.opcode("OP_BACKUP_PREPARE", instance_name=req.items[0],
                                           mode=req.str_arg("mode", "local")))


@resource("/2/instances/[instance_name]/export")
class InstanceExport(Resource):
    DOC = {"PUT": "Export the instance (job id)."}
    BODY = {"PUT": "OP_BACKUP_EXPORT"}
    BODY_EXTRA = {"PUT": {"destination": {"type": "string"}}}

    async def PUT(self, req: Req) -> Any:
        body = req.body_dict()
        rename_alias(body, "destination", "target_node")
        return await req.submit(req.opcode("OP_BACKUP_EXPORT", body,
                                           instance_name=req.items[0]))


@resource("/2/instances/[instance_name]/console")
class InstanceConsole(Resource):
    DOC = {"GET": "How to reach the instance's console."}
    ERRORS = {"GET": {503: "The instance has no console now (it is not running)"}}

    async def GET(self, req: Req) -> Any:
        row = await instance_row(req, req.items[0])
        if not row.get("console"):
            raise HttpError(503, "Instance console unavailable")
        return {"instance": row["name"], "kind": "message",
                "message": f"Instance {row['name']} has a serial console on node "
                           f"{row['pnode']}; run 'gnt-instance console {row['name']}' on "
                           "the master node to attach to it"}


@resource("/2/instances/[instance_name]/tags")
class InstanceTags(TagsResource):
    KIND = "instance"
