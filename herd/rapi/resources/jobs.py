"""Job resources: /2/jobs, /2/jobs/ID (GET, DELETE to cancel), /2/jobs/ID/wait."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from herd import errors
from herd.rapi import convert
from herd.rapi.auth import ACCESS_WRITE
from herd.rapi.errors import HttpError, bad_request
from herd.rapi.routing import Req, Resource, resource

#: How long one /wait request waits for a change before answering null (Ganeti: 10 s).
WAIT_TIMEOUT = 10.0
_FINAL = ("success", "error", "canceled")


#: The largest job id (the queue keeps ids in SQLite's 64-bit integers).
MAX_JOB_ID = 2**63 - 1


def _job_id(text: str) -> int:
    """The job id of a URL: ASCII digits within the queue's range, else 404 (Ganeti's route
    takes digits only; a 29-digit id once reached the queue and overflowed into a 500)."""
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > MAX_JOB_ID:
        raise HttpError(404)
    return int(text)


async def _job(req: Req, job_id: int) -> dict[str, Any]:
    rows = await req.call("query_jobs", ids=[job_id])
    if not rows or rows[0] is None:
        raise HttpError(404)
    return rows[0]


@resource("/2/jobs")
class Jobs(Resource):
    DOC = {"GET": "List jobs ([{id, uri}]; with bulk=1 the jobs' fields)."}
    QUERY = {"GET": ("bulk",)}

    async def GET(self, req: Req) -> Any:
        rows = await req.call("query_jobs")
        if req.bulk:
            return [convert.job(r, convert.J_FIELDS_BULK) for r in rows]
        return [{"id": r["id"], "uri": f"/2/jobs/{r['id']}"} for r in rows]


@resource("/2/jobs/[job_id]")
class Job(Resource):
    DOC = {"GET": "The job's fields.", "DELETE": "Cancel a job that has not started: "
                                                 "[success, message]."}
    #: Ganeti answers a cancel with its client's (success, message) pair, not a job id.
    RESULT = {"DELETE": {"type": "array", "minItems": 2, "maxItems": 2,
                         "items": {"anyOf": [{"type": "boolean"}, {"type": "string"}]},
                         "description": "[true, message] when the job was canceled, "
                                        "[false, message] when it could not be"}}

    async def GET(self, req: Req) -> Any:
        return convert.job(await _job(req, _job_id(req.items[0])))

    async def DELETE(self, req: Req) -> Any:
        job_id = _job_id(req.items[0])
        try:
            return await req.master.call("cancel_job", job_id=job_id)
        except errors.NotFoundError:
            raise HttpError(404) from None


@resource("/2/jobs/[job_id]/wait")
class JobWait(Resource):
    GET_ACCESS = ACCESS_WRITE  # as Ganeti: it keeps a server-side process busy
    BODY_SCHEMA = {"GET": {"type": "object", "properties": {
        "fields": {"type": "array", "items": {"type": "string"}},
        "previous_job_info": {"type": "array", "nullable": True},
        "previous_log_serial": {"type": "integer", "nullable": True}}}}
    DOC = {"GET": "Wait for a change of the job (body: fields, previous_job_info, "
                  "previous_log_serial): {job_info, log_entries} or null after 10 s."}

    async def GET(self, req: Req) -> Any:
        job_id = _job_id(req.items[0])
        body = req.body_dict()
        fields = body.get("fields")
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise bad_request("Parameter 'fields' must be a list of strings")
        known = (*convert.J_FIELDS, "opstart", "opexec", "opend", "priority")
        unknown = [f for f in fields if f not in known]
        if unknown:
            raise bad_request(f"Unknown job field(s): {', '.join(unknown)}")
        prev_info = body.get("previous_job_info")
        prev_serial = body.get("previous_log_serial") or 0
        if not isinstance(prev_serial, int):
            raise bad_request("Parameter 'previous_log_serial' must be an integer")
        deadline = time.monotonic() + WAIT_TIMEOUT
        while True:
            data = await _job(req, job_id)
            info = convert.job_field_values(data, fields)
            entries = [convert.log_entry(e) for op_log in data.get("oplog", [])
                       for e in op_log if e[0] > prev_serial]
            entries.sort(key=lambda e: e[0])
            if info != prev_info or entries or data["status"] in _FINAL:
                return {"job_info": info, "log_entries": entries}
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            prev_status = data["status"]
            try:
                changed = await req.master.call(
                    "wait_for_job_change", _timeout=remaining + 30, job_id=job_id,
                    prev_status=prev_status, prev_serial=prev_serial, timeout=remaining)
            except errors.NotFoundError:
                raise HttpError(404) from None
            except errors.HerdError as exc:
                raise HttpError(502, exc.message) from None
            if changed is None:
                # nothing in time; one last look in case a field changed without the status
                await asyncio.sleep(0)
                data = await _job(req, job_id)
                info = convert.job_field_values(data, fields)
                if info != prev_info:
                    return {"job_info": info, "log_entries": []}
                return None
