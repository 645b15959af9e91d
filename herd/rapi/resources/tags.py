"""Tags resources (/2/tags, /2/instances/NAME/tags, /2/nodes/NAME/tags, /2/groups/NAME/tags).

GET reads the tags; PUT adds and DELETE removes the tags named by ``tag`` query arguments
(``?tag=a&tag=b``, as Ganeti's client sends them; a JSON list body is accepted for PUT too) and
answers with the id of an OP_TAGS_SET/OP_TAGS_DEL job.
"""

from __future__ import annotations

from typing import Any, ClassVar

from herd.rapi.errors import bad_request
from herd.rapi.routing import Req, Resource


class TagsResource(Resource):
    KIND: ClassVar[str] = "cluster"
    DOC = {"GET": "List the tags.", "PUT": "Add the tags given as tag=... (job id).",
           "DELETE": "Remove the tags given as tag=... (job id)."}
    QUERY = {"PUT": ("tag", "dry-run"), "DELETE": ("tag", "dry-run")}
    BODY_SCHEMA = {"PUT": {"type": "array", "items": {"type": "string"}, "nullable": True}}

    @classmethod
    def _name(cls, req: Req) -> str | None:
        return req.items[0] if req.items else None

    @classmethod
    def _tags(cls, req: Req, allow_body: bool) -> list[str]:
        tags = req.list_arg("tag")
        if allow_body and req.body is not None:
            if not isinstance(req.body, list) or not all(isinstance(t, str) for t in req.body):
                raise bad_request("Invalid body contents: expected a list of tags")
            tags += req.body
        return tags

    async def GET(self, req: Req) -> Any:
        return await req.call("query_tags", kind=self.KIND, name=self._name(req))

    async def PUT(self, req: Req) -> Any:
        op = req.opcode("OP_TAGS_SET", kind=self.KIND, name=self._name(req),
                        tags=self._tags(req, allow_body=True))
        return await req.submit(op)

    async def DELETE(self, req: Req) -> Any:
        op = req.opcode("OP_TAGS_DEL", kind=self.KIND, name=self._name(req),
                        tags=self._tags(req, allow_body=False))
        return await req.submit(op)
