"""The web manager's further pages: live job panels (server-sent events) and job cancel, the
instance page's operator actions (migrate, failover, modify, rename, reinstall, remove), the
nodes list and node page, and the audit log.

Kept apart from :mod:`herd.web.app` (which registers these handlers) so that the decisions are
pure functions with unit tests: a form's values in, an opcode or a message per field out (a bad
value is shown next to its field and no job is queued); a job's changes in, the events a
browser is sent out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response, StreamingResponse

from herd import errors, names
from herd.objects import params
from herd.units import format_size

if TYPE_CHECKING:
    from herd.web.app import Context

PREFIX = "/ui"
FINAL = frozenset({"success", "error", "canceled"})
#: How long one long poll of masterd waits (its handler caps it at 60 s); between two polls the
#: stream sends a comment so that proxies and the browser see it is alive.
WAIT = 20.0
#: The job list's stream re-reads the listed jobs at least this often (it long-polls one).
LIST_WAIT = 2.0
#: A stream closes after this long without ``end``: the browser's EventSource opens it again
#: (after ``retry`` ms, from the whole log), so no connection outlives a herd-rapi restart's
#: grace or a session's end for long.
MAX_STREAM = 300.0
RETRY_MS = 1000


@dataclasses.dataclass(frozen=True)
class Action:
    """An instance action of the page: the permission (herd.objects.access.ACTIONS) it needs,
    the fields of its form, and how the user confirms it: ``None`` (no confirmation),
    ``"check"`` (a box to tick: it interrupts the guest) or ``"name"`` (type the instance's
    name: it destroys data)."""

    need: str
    label: str
    fields: tuple[str, ...] = ()
    confirm: str | None = None
    explain: str = ""


ACTIONS: dict[str, Action] = {
    "migrate": Action("migrate", "Migrate", (), None,
                      "Move the running instance to its secondary node without stopping it."),
    "failover": Action("migrate", "Fail over", (), "check",
                       "Stop the instance and start it on its secondary node."),
    "modify": Action("modify", "Modify", ("memory", "vcpus"), None,
                     "Change memory and vCPUs; a running instance uses them after its next "
                     "restart."),
    "rename": Action("modify", "Rename", ("new_name",), None, "Give the instance a new name."),
    "reinstall": Action("modify", "Reinstall", (), "name",
                        "Write the disks anew with the OS: everything on them is lost."),
    "remove": Action("remove", "Remove", (), "name",
                     "Stop the instance and delete it with its disks: this cannot be undone."),
}


def check_action(action: str, name: str, form: Mapping[str, str], row: Mapping[str, Any]
                 ) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The opcode for a valid action form on instance ``name`` (its query row ``row``), or
    None and a one-line message per bad field (``confirm`` for a missing confirmation)."""
    spec = ACTIONS[action]
    get = {k: str(form.get(k) or "").strip() for k in (*spec.fields, "confirm")}
    bad: dict[str, str] = {}
    if spec.confirm == "check" and get["confirm"] != "yes":
        bad["confirm"] = f"tick the box to confirm: {action} interrupts {name}"
    elif spec.confirm == "name" and get["confirm"] != name:
        bad["confirm"] = (f"type the instance's name {name} to confirm"
                          + (f" (you typed {get['confirm']!r})" if get["confirm"] else ""))
    op: dict[str, Any] = {"instance_name": name}
    if action == "migrate":
        op["OP_ID"] = "OP_INSTANCE_MIGRATE"
    elif action == "failover":
        op["OP_ID"] = "OP_INSTANCE_FAILOVER"
    elif action == "modify":
        op.update(OP_ID="OP_INSTANCE_SET_PARAMS", beparams=_modify_beparams(get, row, bad))
        if not op["beparams"] and not bad:
            bad["memory"] = "nothing to change: give a new memory size or vCPU count"
    elif action == "rename":
        op["OP_ID"] = "OP_INSTANCE_RENAME"
        try:
            op["new_name"] = names.check(names.INSTANCE, get["new_name"])
        except errors.ParameterError as exc:
            bad["new_name"] = exc.message
        else:
            if op["new_name"] == name:
                bad["new_name"] = f"the new name must differ from {name}"
    elif action == "reinstall":
        op["OP_ID"] = "OP_INSTANCE_REINSTALL"
    elif action == "remove":
        op["OP_ID"] = "OP_INSTANCE_REMOVE"
    return (None, bad) if bad else (op, {})


def _modify_beparams(get: Mapping[str, str], row: Mapping[str, Any], bad: dict[str, str]
                     ) -> dict[str, Any]:
    """The changed backend parameters, each checked by the same function masterd's modify
    uses (herd.objects.params.check_beparams); unchanged values are left out."""
    changed: dict[str, Any] = {}
    for field, key, current in (("memory", "memory", row.get("be/memory")),
                                ("vcpus", "vcpus", row.get("be/vcpus"))):
        raw = get.get(field, "")
        if not raw:
            continue
        try:
            value = params.check_beparams({key: raw})
        except errors.ParameterError as exc:
            bad[field] = exc.message
            continue
        number = value["maxmem"] if key == "memory" else value["vcpus"]
        if number != current:
            changed[key] = number
    return changed


def may_cancel(ctx_user: str, job: Mapping[str, Any], operator: bool) -> bool:
    """A queued or running job may be cancelled by the user that submitted it or an
    operator (``gnt-job cancel`` is root's, RAPI's write users')."""
    if job.get("status") in FINAL:
        return False
    return operator or origin_user(job) == ctx_user


def origin_user(job: Mapping[str, Any]) -> str | None:
    """The user in a job's origin stamp (``via=rapi user=alice ...``, herd.jobs.audit)."""
    return origin_fields(job).get("user")


def origin_fields(job: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for part in str(job.get("origin") or "").split():
        key, sep, value = part.partition("=")
        if sep:
            out[key] = value
    return out


# -- server-sent events ---------------------------------------------------------------------
def sse(event: str, data: Any) -> str:
    """One server-sent event; ``data`` as JSON on one line (JSON escapes newlines)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def log_lines(entries: list[Any], fmt: Callable[[Any], str] = str) -> tuple[list[str], int]:
    """masterd's new log entries (serial, op index, time, type, message) as the panel's lines
    (``time message``, as the page renders them), and the last serial seen."""
    lines, serial = [], 0
    for entry in entries:
        serial = max(serial, int(entry[0]))
        lines.append(f"{fmt(entry[2])} {entry[4]}")
    return lines, serial


async def job_events(ctx: Context, job: dict[str, Any]) -> AsyncIterator[str]:
    """A job's stream: its status and each new log line as masterd reports them (the long
    poll ``gnt-job watch`` uses), then ``end`` with the final status and error."""
    from herd.web.app import fmt_time, job_error

    job_id = int(job["id"])
    status: str | None = None
    serial = 0
    deadline = time.monotonic() + MAX_STREAM
    yield f"retry: {RETRY_MS}\n\n"
    while time.monotonic() < deadline and ctx.web.sessions.holds(ctx.session):
        try:
            change = await ctx.web.call("wait_for_job_change", job_id=job_id,
                                        prev_status=status, prev_serial=serial, timeout=WAIT)
        except errors.NotFoundError:  # archived meanwhile
            yield sse("end", {"status": status or "", "error": ""})
            return
        if change is None:
            yield ": still waiting\n\n"
            continue
        lines, last = log_lines(change.get("log") or [], fmt_time)
        if lines or serial == 0:  # the first answer has the whole log: the page's is replaced
            yield sse("log", {"lines": lines, "reset": serial == 0 and status is None})
        serial = max(serial, last)
        if change["status"] != status:
            status = change["status"]
            yield sse("status", {"status": status})
        if status in FINAL:
            [final] = await ctx.web.call("query_jobs", ids=[job_id])
            yield sse("end", {"status": status, "error": job_error(final or {})})
            return


async def list_events(ctx: Context, ids: list[int]) -> AsyncIterator[str]:
    """The job list's stream: a ``status`` event for each listed job whose status changed,
    ``end`` once all are final."""
    known: dict[int, str] = {}
    deadline = time.monotonic() + MAX_STREAM
    yield f"retry: {RETRY_MS}\n\n"
    while time.monotonic() < deadline and ctx.web.sessions.holds(ctx.session):
        jobs = [j for j in await ctx.web.call("query_jobs", ids=ids) if j]
        for j in jobs:
            if known.get(j["id"]) != j["status"]:
                known[j["id"]] = j["status"]
                yield sse("status", {"id": j["id"], "status": j["status"]})
        running = [j for j in jobs if j["status"] not in FINAL]
        if not running:
            yield sse("end", {})
            return
        first = running[0]
        with contextlib.suppress(errors.NotFoundError):  # archived meanwhile: re-read
            await ctx.web.call("wait_for_job_change", job_id=first["id"],
                               prev_status=first["status"], prev_serial=1 << 62,
                               timeout=LIST_WAIT)


def stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def job_stream(ctx: Context) -> Response:
    job = await ctx.web._one_job(ctx)
    if job is None:
        return Response("no such job that you may see", 404, media_type="text/plain")
    return stream(job_events(ctx, job))


async def jobs_stream(ctx: Context) -> Response:
    raw = ctx.request.query_params.get("ids", "")
    ids = [int(i) for i in raw.split(",") if i.strip().isdigit()][:200]
    jobs = await ctx.web._visible_jobs(ctx, ids or None)
    if not ids:
        jobs = sorted(jobs, key=lambda j: j["id"], reverse=True)[:100]
    return stream(list_events(ctx, [j["id"] for j in jobs] or [0]))


async def job_cancel(ctx: Context, form: FormData) -> Response:
    job = await ctx.web._one_job(ctx)
    if job is None:
        return ctx.web.error(ctx, 404, "No such job that you may see.")
    if job["status"] in FINAL:
        return ctx.web.error(ctx, 409, f"Job {job['id']} has ended ({job['status']}): "
                             "only a queued or running job can be cancelled.")
    if not may_cancel(ctx.principal.name, job, ctx.may("modify")):
        return ctx.web.error(ctx, 403, f"You may not cancel job {job['id']}: only its "
                             "submitter or an operator may.")
    ok, message = await ctx.web.call("cancel_job", job_id=job["id"])
    if not ok:
        return ctx.web.error(ctx, 409, f"Job {job['id']} was not cancelled: {message}")
    return RedirectResponse(f"{PREFIX}/jobs/{job['id']}", 303)


# -- instance actions -----------------------------------------------------------------------
async def _instance(ctx: Context) -> tuple[dict[str, Any] | None, str, Response | None]:
    name = ctx.request.path_params["name"]
    action = ctx.request.path_params["action"]
    if action not in ACTIONS:
        return None, action, ctx.web.error(ctx, 404, f"Unknown action {action!r}: allowed are "
                                           f"{', '.join(ACTIONS)}")
    rows = await ctx.instances([name])
    if not rows:
        return None, action, ctx.web.error(ctx, 404, f"No instance {name} that you may see.")
    if not ctx.may_instance(ACTIONS[action].need, rows[0]):
        return None, action, ctx.web.error(ctx, 403, f"You may not {action} {name}.")
    return rows[0], action, None


def _form_page(ctx: Context, row: dict[str, Any], action: str, values: dict[str, str],
               problems: dict[str, str], status: int = 200) -> Response:
    return ctx.web.render("instance_action.html", status, ctx=ctx, inst=row, action=action,
                          spec=ACTIONS[action], values=values, problems=problems)


async def action_form(ctx: Context) -> Response:
    row, action, refused = await _instance(ctx)
    if refused is not None or row is None:
        return refused  # type: ignore[return-value]
    values = {"memory": format_size(int(row.get("be/memory") or 0)),
              "vcpus": str(row.get("be/vcpus") or ""), "new_name": row["name"]}
    return _form_page(ctx, row, action, values, {})


async def action_submit(ctx: Context, form: FormData) -> Response:
    row, action, refused = await _instance(ctx)
    if refused is not None or row is None:
        return refused  # type: ignore[return-value]
    values = {k: str(v) for k, v in form.items() if k != "csrf"}
    op, problems = check_action(action, row["name"], values, row)
    if op is None:
        return _form_page(ctx, row, action, values, problems, 400)
    [(ok, value)] = await ctx.submit([[op]])
    if not ok:  # masterd refused it (a quota, a policy): no job was queued
        return _form_page(ctx, row, action, values, {"form": str(value)}, 400)
    if action in ("rename", "remove"):
        return RedirectResponse(f"{PREFIX}/jobs/{value}", 303)
    return RedirectResponse(f"{PREFIX}/instances/{quote(row['name'])}?job={value}", 303)


def instance_actions(ctx: Context, row: dict[str, Any]) -> list[str]:
    """The actions this user may take on the instance (the page shows only those)."""
    return [a for a, spec in ACTIONS.items() if ctx.may_instance(spec.need, row)]


# -- nodes ----------------------------------------------------------------------------------
def usage(used: Any, total: Any) -> str:
    """``3.0G of 8.0G (37%)`` from MiB figures, or ``?`` when the node did not answer."""
    if not isinstance(used, int | float) or not isinstance(total, int | float) or total <= 0:
        return "?"
    return f"{format_size(int(used))} of {format_size(int(total))} ({100 * used / total:.0f}%)"


async def nodes(ctx: Context) -> Response:
    from herd.web import listing

    if not ctx.may("view"):
        return ctx.web.error(ctx, 403, "Only viewers of the whole cluster see its nodes.")
    rows = await ctx.web.call("query_nodes", names=None, live=True)
    result = listing.page_for(rows, listing.NODE_COLUMNS, ctx.request.query_params)
    return ctx.web.render("nodes.html", ctx=ctx, result=result, columns=listing.NODE_COLUMNS)


async def node(ctx: Context) -> Response:
    if not ctx.may("view"):
        return ctx.web.error(ctx, 403, "Only viewers of the whole cluster see its nodes.")
    name = ctx.request.path_params["name"]
    [row] = await ctx.web.call("query_nodes", names=[name], live=True)
    instances = [r for r in await ctx.instances()
                 if r.get("pnode") == row["name"] or row["name"] in (r.get("snodes") or [])]
    mem_used = (row["mtotal"] - row["mfree"]) if row.get("mtotal") is not None \
        and row.get("mfree") is not None else None
    disk_used = (row["dtotal"] - row["dfree"]) if row.get("dtotal") is not None \
        and row.get("dfree") is not None else None
    return ctx.web.render("node.html", ctx=ctx, node=row, instances=instances,
                          memory=usage(mem_used, row.get("mtotal")),
                          disk=usage(disk_used, row.get("dtotal")))


# -- audit log ------------------------------------------------------------------------------
def audit_rows(jobs: list[dict[str, Any]], user: str = "", instance: str = ""
               ) -> list[dict[str, Any]]:
    """Who did what when: one row per job, newest first, kept when its user contains ``user``
    and one of its instances contains ``instance`` (case-insensitive; empty: any)."""
    from herd.web.app import job_instances, job_summary

    out = []
    for job in jobs:
        if not job:
            continue
        fields = origin_fields(job)
        who = fields.get("user", "")
        targets = sorted(job_instances(job))
        if user and user.lower() not in who.lower():
            continue
        if instance and not any(instance.lower() in t.lower() for t in targets):
            continue
        out.append({"id": job["id"], "user": who, "via": fields.get("via", ""),
                    "address": fields.get("from", ""), "what": job_summary(job),
                    "instances": targets, "status": job.get("status"),
                    "received": job.get("received_ts"), "ended": job.get("end_ts")})
    out.sort(key=lambda r: r["id"], reverse=True)
    return out


async def audit(ctx: Context) -> Response:
    if not ctx.may("modify"):
        return ctx.web.error(ctx, 403, "Only operators and admins see the audit log.")
    q = ctx.request.query_params
    user, instance = q.get("user", "").strip(), q.get("instance", "").strip()
    rows = audit_rows(await ctx.web.call("query_jobs"), user, instance)
    return ctx.web.render("audit.html", ctx=ctx, rows=rows[:500], total=len(rows),
                          user_q=user, instance_q=instance)

