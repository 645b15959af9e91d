"""Cluster-wide resources: /, /version, /2, /2/info, /2/features, /2/os, /2/tags, /2/modify,
/2/redistribute-config."""

from __future__ import annotations

from typing import Any

from herd import paths
from herd.hypervisor import base as hvbase
from herd.rapi import convert
from herd.rapi.resources.tags import TagsResource
from herd.rapi.routing import Req, Resource, resource

#: Ganeti's feature strings: the request and result formats this server accepts.
FEATURES = ["instance-create-reqv1", "instance-reinstall-reqv1", "node-migrate-reqv1",
            "node-evac-res1"]
HYPERVISORS = ("kvm", "fake")


def hypervisor_defaults() -> dict[str, dict[str, Any]]:
    p = paths.current()
    return {name: type(hvbase.get_hypervisor(name, p)).parameter_defaults()
            for name in HYPERVISORS}


@resource("/")
class Root(Resource):
    DOC = {"GET": "No function; kept for old clients (returns null)."}

    async def GET(self, req: Req) -> Any:
        return None


@resource("/version")
class Version(Resource):
    DOC = {"GET": "The remote API version: 2."}

    async def GET(self, req: Req) -> Any:
        return 2


@resource("/2")
class V2(Resource):
    DOC = {"GET": "No function; kept for old clients (returns null)."}

    async def GET(self, req: Req) -> Any:
        return None


@resource("/2/info")
class Info(Resource):
    DOC = {"GET": "Cluster information."}

    async def GET(self, req: Req) -> Any:
        info = await req.call("query_cluster")
        return convert.cluster_info(info, hypervisor_defaults())


@resource("/2/features")
class Features(Resource):
    DOC = {"GET": "Optional features of this server."}

    async def GET(self, req: Req) -> Any:
        return list(FEATURES)


@resource("/2/os")
class OperatingSystems(Resource):
    DOC = {"GET": "OS definitions (with variants) valid on every node."}

    async def GET(self, req: Req) -> Any:
        found = await req.call("query_os")
        names: list[str] = []
        for name, per_node in sorted(found.items()):
            definitions = list(per_node.values())
            if not definitions or any(d is None or not d.get("valid") for d in definitions):
                continue
            variants = definitions[0].get("variants") or []
            names += [f"{name}+{v}" for v in variants] if variants else [name]
        return names


@resource("/2/tags")
class ClusterTags(TagsResource):
    KIND = "cluster"


@resource("/2/modify")
class ClusterModify(Resource):
    DOC = {"PUT": "Modify cluster parameters (body: OP_CLUSTER_SET_PARAMS fields; job id)."}
    BODY = {"PUT": "OP_CLUSTER_SET_PARAMS"}

    async def PUT(self, req: Req) -> Any:
        return await req.submit(req.opcode("OP_CLUSTER_SET_PARAMS", req.body_dict()))


@resource("/2/redistribute-config")
class RedistributeConfig(Resource):
    DOC = {"PUT": "Push the configuration to every node (job id)."}

    async def PUT(self, req: Req) -> Any:
        return await req.submit(req.opcode("OP_CLUSTER_REDIST_CONF"))
