"""The web manager's routes: log-in, overview, instances, instance page, jobs.

Every page reads Herd's own state through masterd's query calls (the ones RAPI and the CLI
use: no cache to go stale) and every action is an ordinary job submitted on behalf of the
logged-in user, so the audit line and ``gnt-job list`` name who did it. Who may see and do what
is :func:`herd.objects.access.allowed`, asked for each object shown and each action taken: a
button a user may not press is not rendered, and a forged POST is refused all the same.

Security: the session cookie is ``HttpOnly; Secure; SameSite=Strict``; every POST must carry
the session's CSRF token (form field ``csrf`` or header ``X-CSRF-Token``) and, when the browser
sends one, an ``Origin`` equal to this server's; answers carry a strict Content-Security-Policy
(scripts and styles only from /ui/static/), so no page runs inline script.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from herd import errors
from herd.objects import access
from herd.objects.access import Principal, Target, instance_target
from herd.paths import HerdPaths
from herd.rapi.auth import UsersFile, check_password
from herd.rapi.throttle import LoginThrottle
from herd.units import format_size
from herd.web import actions, consoles, graphs, listing, wizard
from herd.web.sessions import COOKIE, LOGIN_COOKIE, Session, SessionStore, new_token, same_token

log = logging.getLogger("herd.web")

HERE = Path(__file__).resolve().parent
PREFIX = "/ui"
#: The largest form body taken (a bulk action on MAX_PER_PAGE instances fits).
MAX_FORM = 256 * 1024
FINAL_JOB_STATES = frozenset({"success", "error", "canceled"})
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
                    "X-Frame-Options": "DENY"}


#: Instance actions the pages offer: the permission they need, the opcode, and whether the
#: user must confirm first (what interrupts a running guest).
INSTANCE_ACTIONS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "start": ("power", {"OP_ID": "OP_INSTANCE_STARTUP"}, False),
    "stop": ("power", {"OP_ID": "OP_INSTANCE_SHUTDOWN"}, True),
    "reboot": ("power", {"OP_ID": "OP_INSTANCE_REBOOT", "reboot_type": "hard"}, True),
}


#: What access checks (instance_target, Context.is_mine) read of an instance row.
ACCESS_FIELDS = ("name", "uuid", "tags", "pnode.group")


def origin_user(job: dict[str, Any]) -> str | None:
    """The user in a job's origin stamp (``via=rapi user=alice ...``, herd.jobs.audit)."""
    for part in str(job.get("origin") or "").split():
        key, _, value = part.partition("=")
        if key == "user":
            return value
    return None


def job_instances(job: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for op in job.get("ops") or []:
        if isinstance(op, dict):
            if isinstance(op.get("instance_name"), str):
                names.add(op["instance_name"])
            for inst in op.get("instances") or []:
                if isinstance(inst, dict) and isinstance(inst.get("instance_name"), str):
                    names.add(inst["instance_name"])
    return names


def job_summary(job: dict[str, Any]) -> str:
    summary = job.get("summary")
    if isinstance(summary, list):
        return ", ".join(str(s) for s in summary)
    return str(summary or "")


def job_error(job: dict[str, Any]) -> str:
    for result, status in zip(job.get("opresult") or [], job.get("opstatus") or [],
                              strict=False):
        if status == "error":
            if isinstance(result, list) and len(result) == 2:
                detail = result[1]
                return str(detail[0] if isinstance(detail, list) and detail else detail)
            return str(result)
    return ""


class Context:
    """One request's view of the cluster: who asks, the grants, the cluster info."""

    def __init__(self, web: WebUI, request: Request, session: Session,
                 principal: Principal, cluster: dict[str, Any]) -> None:
        self.web, self.request, self.session = web, request, session
        self.principal, self.cluster = principal, cluster
        self.grants = access.parse_grants(cluster.get("access_grants") or [])

    def may(self, action: str, target: Target = access.CLUSTER) -> bool:
        return access.allowed(self.principal, action, target, self.grants)

    def may_instance(self, action: str, row: dict[str, Any]) -> bool:
        return self.may(action, instance_target(row))

    def role(self, target: Target = access.CLUSTER) -> str | None:
        return access.role_on(self.principal, target, self.grants)

    async def instances(self, names: list[str] | None = None,
                        fields: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The instances (all, or those named) this user may see. An unknown name is simply
        not there: the answer must not tell an instance nobody showed you from one that does
        not exist. With ``fields``, rows hold those and what access checks read (masterd
        asks the nodes only if one of them is live); without, every field."""
        args: dict[str, Any] = {}
        if fields is not None:
            args["fields"] = list(dict.fromkeys([*ACCESS_FIELDS, *fields]))
        try:
            rows = await self.web.call("query_instances", names=names, live=True, **args)
        except errors.NotFoundError:
            if not names:
                raise
            return []
        return [r for r in rows if self.may_instance("view", r)]

    def is_mine(self, row: dict[str, Any]) -> bool:
        """Owned by tag, or granted by name: what the overview calls "my instances"."""
        subjects = self.principal.subjects()
        if subjects & access.owners(row.get("tags") or ()):
            return True
        target = instance_target(row)
        return any(g.path.startswith("/instances/") and g.subject in subjects
                   and g.applies_to(target) for g in self.grants)

    def job_visible(self, job: dict[str, Any], visible: set[str]) -> bool:
        if self.may("view"):
            return True
        return origin_user(job) == self.principal.name or bool(job_instances(job) & visible)

    async def submit(self, jobs: list[list[dict[str, Any]]]) -> list[tuple[bool, Any]]:
        peer = self.request.client
        behalf = {"user": self.principal.name, "address": peer.host if peer else ""}
        if self.principal.base_role:
            behalf["base_role"] = self.principal.base_role
        answer = await self.web.call("submit_many", jobs=jobs, on_behalf=behalf)
        return [(bool(ok), value) for ok, value in answer]


class WebUI:
    """The /ui/ application; herd-rapi hands it every request under /ui."""

    def __init__(self, users: UsersFile, master: Callable[[], Any], logins: LoginThrottle,
                 sessions: SessionStore | None = None, paths: HerdPaths | None = None) -> None:
        self.users = users
        #: the node's files: the node RPC client certificate the console relay connects with
        self.paths = paths
        self.tickets = consoles.TicketBook()
        #: herd-rapi's connection pool to masterd, asked for at each call (tests replace it)
        self.master = master
        self.logins = logins
        self.sessions = sessions or SessionStore()
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
            undefined=jinja2.StrictUndefined)
        self.env.globals.update(prefix=PREFIX, quote=quote, fmt_time=fmt_time,
                                job_summary=job_summary, job_error=job_error,
                                owners=lambda tags: sorted(access.owners(tags or ())),
                                actions=INSTANCE_ACTIONS, urlencode=urlencode,
                                job_submitter=origin_user, final=FINAL_JOB_STATES,
                                more_actions=actions.ACTIONS, fmt_size=format_size)
        page = self._page
        routes = [
            Route(f"{PREFIX}", lambda r: RedirectResponse(f"{PREFIX}/", 307)),
            Route(f"{PREFIX}/login", self.login_form, methods=["GET"]),
            Route(f"{PREFIX}/login", self.login, methods=["POST"]),
            Route(f"{PREFIX}/logout", self.logout, methods=["POST"]),
            Route(f"{PREFIX}/", page(self.overview), methods=["GET"]),
            Route(f"{PREFIX}/instances", page(self.instances), methods=["GET"]),
            Route(f"{PREFIX}/instances", page(self.bulk, post=True), methods=["POST"]),
            Route(f"{PREFIX}/instances/{{name}}", page(self.instance), methods=["GET"]),
            Route(f"{PREFIX}/instances/{{name}}/usage", page(self.instance_usage),
                  methods=["GET"]),
            Route(f"{PREFIX}/nodes/{{name}}/usage", page(self.node_usage), methods=["GET"]),
            Route(f"{PREFIX}/instances/{{name}}/console", page(self.console_page),
                  methods=["GET"]),
            Route(f"{PREFIX}/instances/{{name}}/vnc", page(self.vnc_page), methods=["GET"]),
            Route(f"{PREFIX}/instances/{{name}}/console/ticket",
                  page(self.console_ticket, post=True), methods=["POST"]),
            WebSocketRoute(f"{PREFIX}/instances/{{name}}/console/ws/{{kind}}",
                           self.console_ws),
            Route(f"{PREFIX}/instances/{{name}}/{{action}}", page(self.act, post=True),
                  methods=["POST"]),
            Route(f"{PREFIX}/create", page(self.create_form), methods=["GET"]),
            Route(f"{PREFIX}/create", page(self.create, post=True), methods=["POST"]),
            Route(f"{PREFIX}/jobs", page(self.jobs), methods=["GET"]),
            Route(f"{PREFIX}/jobs/{{job_id:int}}", page(self.job), methods=["GET"]),
            Route(f"{PREFIX}/jobs/{{job_id:int}}/panel", page(self.job_panel),
                  methods=["GET"]),
            # herd.web.actions: live jobs, cancel, operator actions, nodes, audit log
            Route(f"{PREFIX}/jobs/events", page(actions.jobs_stream), methods=["GET"]),
            Route(f"{PREFIX}/jobs/{{job_id:int}}/events", page(actions.job_stream),
                  methods=["GET"]),
            Route(f"{PREFIX}/jobs/{{job_id:int}}/cancel", page(actions.job_cancel, post=True),
                  methods=["POST"]),
            Route(f"{PREFIX}/instances/{{name}}/do/{{action}}", page(actions.action_form),
                  methods=["GET"]),
            Route(f"{PREFIX}/instances/{{name}}/do/{{action}}",
                  page(actions.action_submit, post=True), methods=["POST"]),
            Route(f"{PREFIX}/nodes", page(actions.nodes), methods=["GET"]),
            Route(f"{PREFIX}/nodes/{{name}}", page(actions.node), methods=["GET"]),
            Route(f"{PREFIX}/audit", page(actions.audit), methods=["GET"]),
            Mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        self.app = Starlette(routes=routes)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        static = scope.get("path", "").startswith(f"{PREFIX}/static/")

        async def send_secure(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {k.lower() for k, _ in headers}
                for key, value in SECURITY_HEADERS.items():
                    if static and key == "Cache-Control":
                        continue  # the vendored scripts and the style sheet may be cached
                    if key.lower().encode() not in present:
                        headers.append((key.lower().encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        if scope["type"] == "http" and scope.get("method") == "POST":
            refused = self._body_refused(scope)
            if refused is not None:
                await refused(scope, receive, send_secure)
                return
        await self.app(scope, receive, send_secure)

    @staticmethod
    def _body_refused(scope: dict[str, Any]) -> Response | None:
        """A form is a few hundred bytes (a bulk action on a page of instances a few KiB):
        a POST must say its length and stay under :data:`MAX_FORM`, before it is read (the
        log-in form takes anybody's POST)."""
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if not length.isdigit():
            return Response("a form must be sent with its Content-Length", 411,
                            media_type="text/plain")
        if int(length) > MAX_FORM:
            return Response(f"a form may have at most {MAX_FORM} bytes", 413,
                            media_type="text/plain")
        return None

    async def call(self, method: str, **args: Any) -> Any:
        return await self.master().call(method, **args)

    # -- rendering --------------------------------------------------------------------------
    def render(self, template: str, status: int = 200, ctx: Context | None = None,
               headers: dict[str, str] | None = None, **values: Any) -> HTMLResponse:
        if ctx is not None:
            values.setdefault("user", ctx.principal.name)
            values.setdefault("csrf", ctx.session.csrf)
            values.setdefault("cluster", ctx.cluster)
            values.setdefault("role", ctx.role())
        values.setdefault("user", None)
        values.setdefault("csrf", "")
        values.setdefault("cluster", {})
        values.setdefault("role", None)
        html = self.env.get_template(template).render(**values)
        return HTMLResponse(html, status_code=status, headers=headers)

    def error(self, ctx: Context | None, status: int, message: str) -> HTMLResponse:
        return self.render("error.html", status, ctx, message=message)

    # -- sessions, CSRF ---------------------------------------------------------------------
    def _session(self, request: HTTPConnection) -> Session | None:
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is not None and self.users.get(session.user) is None:
            self.sessions.drop_user(session.user)  # taken out of the users file
            return None
        return session

    @staticmethod
    def _origin_ok(request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None:
            return True  # a browser that sends none (old ones); the token is the check
        host = request.headers.get("host", "")
        return origin in (f"https://{host}", f"http://{host}")

    async def _csrf_ok(self, request: Request, session: Session) -> tuple[bool, FormData]:
        form = await request.form()
        given = request.headers.get("x-csrf-token") or form.get("csrf")
        return (self._origin_ok(request)
                and same_token(given if isinstance(given, str) else None, session.csrf)), form

    def _page(self, handler: Callable[..., Awaitable[Response]], post: bool = False
              ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a page: a session is needed (else the log-in page), POSTs need the CSRF token,
        masterd's errors become an error page."""

        async def endpoint(request: Request) -> Response:
            session = self._session(request)
            if session is None:
                if post:
                    return self.error(None, 403, "Your session has ended: log in again.")
                target = request.url.path + (f"?{request.url.query}" if request.url.query
                                             else "")
                if request.headers.get("hx-request"):
                    # htmx would follow a 303 and swap the log-in page into the fragment
                    return Response(status_code=200, headers={"HX-Redirect": f"{PREFIX}/login"})
                return RedirectResponse(f"{PREFIX}/login?{urlencode({'next': target})}", 303)
            form: FormData | None = None
            if post:
                ok, form = await self._csrf_ok(request, session)
                if not ok:
                    log.warning("refused a POST to %s by %s without a valid CSRF token",
                                request.url.path, session.user)
                    return self.error(None, 403, "Refused: the form's security token is "
                                      "missing or wrong. Reload the page and try again.")
            try:
                cluster = await self.call("query_cluster")
                ctx = Context(self, request, session, self._principal(session, cluster),
                              cluster)
                if post:
                    return await handler(ctx, form)
                return await handler(ctx)
            except errors.NotFoundError as exc:
                return self.error(None, 404, exc.message)
            except errors.HerdError as exc:
                return self.error(None, 502, f"The master daemon answered: {exc.message}")

        return endpoint

    def _principal(self, session: Session, cluster: dict[str, Any]) -> Principal:
        user = self.users.get(session.user)
        groups = access.groups_of(session.user, cluster.get("access_groups") or {})
        return Principal(session.user, groups, access.base_role(user.options if user else ()))

    # -- log-in -----------------------------------------------------------------------------
    def _login_page(self, request: Request, message: str = "", status: int = 200,
                    name: str = "") -> Response:
        token = request.cookies.get(LOGIN_COOKIE) or new_token()
        response = self.render("login.html", status, login_csrf=token, message=message,
                               next=safe_next(request.query_params.get("next")), name=name)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, secure=True, samesite="strict",
                            path=f"{PREFIX}/login")
        return response

    async def login_form(self, request: Request) -> Response:
        if self._session(request) is not None:
            return RedirectResponse(f"{PREFIX}/", 303)
        return self._login_page(request)

    async def login(self, request: Request) -> Response:
        form = await request.form()
        name = str(form.get("username") or "")
        password = str(form.get("password") or "")
        cookie = request.cookies.get(LOGIN_COOKIE)
        if not self._origin_ok(request) or not cookie \
                or not same_token(str(form.get("csrf") or ""), cookie):
            return self._login_page(request, "Refused: the log-in form expired. Try again.",
                                    403)
        client = request.client.host if request.client else ""
        now = time.monotonic()
        if self.logins.wait(client, name, now) > 0:
            return self._login_page(request, "Too many failed log-ins: try again later.", 429,
                                    name)
        user = self.users.get(name)
        if user is None or not check_password(user, password):
            self.logins.failed(client, name, now)
            log.info("failed web log-in for user %r from %s", name, client)
            return self._login_page(request, "Wrong user name or password.", 401, name)
        token, _ = self.sessions.create(name)
        log.info("web log-in of %s from %s", name, client)
        response = RedirectResponse(safe_next(str(form.get("next") or "")), 303)
        response.set_cookie(COOKIE, token, httponly=True, secure=True, samesite="strict",
                            path=f"{PREFIX}/")
        response.delete_cookie(LOGIN_COOKIE, path=f"{PREFIX}/login")
        return response

    async def logout(self, request: Request) -> Response:
        session = self._session(request)
        if session is not None:
            ok, _ = await self._csrf_ok(request, session)
            if not ok:
                return self.error(None, 403, "Refused: the form's security token is missing "
                                  "or wrong.")
            self.sessions.drop(request.cookies.get(COOKIE))
        response = RedirectResponse(f"{PREFIX}/login", 303)
        response.delete_cookie(COOKIE, path=f"{PREFIX}/")
        return response

    # -- pages ------------------------------------------------------------------------------
    async def overview(self, ctx: Context) -> Response:
        subjects = sorted(ctx.principal.subjects())
        nodes, rows, jobs, quotas = await asyncio.gather(
            self.call("query_nodes", names=None, live=False,
                      fields=["name", "offline", "drained"]),
            ctx.instances(fields=("status", "admin_up", "pnode")),
            self.call("query_jobs"), self.call("query_quotas", subjects=subjects))
        # usage vs quota: the user's own and its groups' (those with a quota or owning some)
        quotas = [q for q in quotas if q["subject"] in subjects
                  and any(r["limit"] is not None or r["used"] for r in q["resources"])]
        visible = {r["name"] for r in rows}
        mine = [r for r in rows if ctx.is_mine(r)]
        owned = bool(mine)
        failed = [j for j in jobs if j and j.get("status") == "error"
                  and ctx.job_visible(j, visible)]
        failed.sort(key=lambda j: j["id"], reverse=True)
        health = {
            "nodes": len(nodes), "offline": sum(1 for n in nodes if n.get("offline")),
            "drained": sum(1 for n in nodes if n.get("drained")),
            "instances": len(rows),
            "running": sum(1 for r in rows if r.get("status") == "running"),
            "down": sum(1 for r in rows if r.get("admin_up") and r.get("status") != "running"),
        }
        return self.render("overview.html", ctx=ctx, health=health,
                           mine=(mine or rows)[:20], owned=owned,
                           failed=failed[:10], show_nodes=ctx.may("view"), nodes=nodes,
                           quotas=quotas, fmt_size=format_size)

    async def instances(self, ctx: Context) -> Response:
        rows = await ctx.instances(fields=listing.INSTANCE_TABLE_FIELDS)
        result = listing.page_for(rows, listing.INSTANCE_COLUMNS, ctx.request.query_params)
        powerable = {r["name"] for r in result.rows if ctx.may_instance("power", r)}
        template = "instances_table.html" if ctx.request.headers.get("hx-request") \
            else "instances.html"
        return self.render(template, ctx=ctx, result=result, columns=listing.INSTANCE_COLUMNS,
                           powerable=powerable)

    async def instance(self, ctx: Context) -> Response:
        name = ctx.request.path_params["name"]
        rows = await ctx.instances([name])
        if not rows:
            return self.error(ctx, 404, f"No instance {name} that you may see.")
        row = rows[0]
        jobs = [j for j in await self.call("query_jobs") if j and name in job_instances(j)]
        jobs.sort(key=lambda j: j["id"], reverse=True)
        job_id = ctx.request.query_params.get("job")
        current = None
        if job_id and job_id.isdigit():
            current = next((j for j in jobs if j["id"] == int(job_id)), None)
        return self.render("instance.html", ctx=ctx, inst=row, jobs=jobs[:10],
                           possible=possible_actions(row),
                           may_console=ctx.may_instance("console", row)
                           and bool(row.get("oper_state")),
                           current=current, may_power=ctx.may_instance("power", row),
                           allowed_actions=actions.instance_actions(ctx, row),
                           final=FINAL_JOB_STATES)

    async def act(self, ctx: Context, form: FormData) -> Response:
        name = ctx.request.path_params["name"]
        action = ctx.request.path_params["action"]
        if action not in INSTANCE_ACTIONS:
            return self.error(ctx, 404, f"Unknown action {action!r}: allowed are "
                              f"{', '.join(INSTANCE_ACTIONS)}")
        rows = await ctx.instances([name])
        if not rows:
            return self.error(ctx, 404, f"No instance {name} that you may see.")
        need, _, confirm = INSTANCE_ACTIONS[action]
        if not ctx.may_instance(need, rows[0]):
            log.warning("refused %s of %s to %s (role %s)", action, name, ctx.principal.name,
                        ctx.role(instance_target(rows[0])))
            return self.error(ctx, 403, f"You may not {action} {name}.")
        if confirm and form.get("confirm") != "yes":
            return self.render("confirm.html", ctx=ctx, action=action, names=[name],
                               post_to=f"{PREFIX}/instances/{quote(name)}/{action}")
        [(ok, value)] = await ctx.submit([[instance_op(action, name)]])
        if not ok:
            return self.error(ctx, 400, f"The job was not accepted: {value}")
        return RedirectResponse(f"{PREFIX}/instances/{quote(name)}?job={value}", 303)

    async def bulk(self, ctx: Context, form: FormData) -> Response:
        action = str(form.get("action") or "")
        names = [str(n) for n in form.getlist("names")]
        if action not in INSTANCE_ACTIONS:
            return self.error(ctx, 400, f"Unknown action {action!r}: allowed are "
                              f"{', '.join(INSTANCE_ACTIONS)}")
        if not names:
            return self.error(ctx, 400, "Select at least one instance.")
        rows = {r["name"]: r for r in await ctx.instances(fields=())}
        need, _, confirm = INSTANCE_ACTIONS[action]
        refused = [n for n in names if n not in rows or not ctx.may_instance(need, rows[n])]
        if refused:
            return self.error(ctx, 403, f"You may not {action}: {', '.join(refused)}.")
        if confirm and form.get("confirm") != "yes":
            return self.render("confirm.html", ctx=ctx, action=action, names=names,
                               post_to=f"{PREFIX}/instances")
        answers = await ctx.submit([[instance_op(action, n)] for n in names])
        ids = [str(value) for ok, value in answers if ok]
        problems = [str(value) for ok, value in answers if not ok]
        if problems:
            return self.error(ctx, 400, "Not accepted: " + "; ".join(problems))
        return RedirectResponse(f"{PREFIX}/jobs?ids={','.join(ids)}", 303)

    # -- usage graphs (herd.web.graphs) -----------------------------------------------------
    def _usage(self, ctx: Context, answer: dict[str, Any], what: str) -> Response:
        now = time.time()
        return self.render("usage.html", ctx=ctx, graphs=graphs.graphs(answer, now),
                           answer=answer, what=what, refresh=graphs.REFRESH,
                           width=graphs.WIDTH, height=graphs.HEIGHT, now=now,
                           request_path=ctx.request.url.path)

    async def instance_usage(self, ctx: Context) -> Response:
        name = ctx.request.path_params["name"]
        if not await ctx.instances([name]):
            return self.error(ctx, 404, f"No instance {name} that you may see.")
        answer = await self.call("query_usage", instance=name)
        return self._usage(ctx, answer, name)

    async def node_usage(self, ctx: Context) -> Response:
        if not ctx.may("view"):
            return self.error(ctx, 403, "You may not see the nodes.")
        name = ctx.request.path_params["name"]
        answer = await self.call("query_usage", node=name)
        return self._usage(ctx, answer, name)

    # -- the creation wizard (herd.web.wizard) ------------------------------------------------
    async def _choices(self, ctx: Context) -> wizard.Choices | None:
        """What this user may choose, or None when it may create nowhere."""
        from herd.objects import params

        cluster = ctx.cluster
        nodes, groups, oses = await asyncio.gather(
            self.call("query_nodes", names=None, live=False), self.call("query_groups"),
            self.call("query_os"))
        everywhere = ctx.may("create")
        allowed = {g["name"] for g in groups
                   if everywhere or ctx.may("create", Target(group=g["name"]))}
        if not allowed:
            return None
        usable = tuple(sorted(n["name"] for n in nodes if n.get("group") in allowed
                              and n.get("vm_capable", True) and not n.get("offline")
                              and not n.get("drained")))
        os_names = []
        for name, per_node in sorted(oses.items()):
            found = [d for d in per_node.values() if d and d.get("valid", True)]
            if not found:
                continue
            variants = found[0].get("variants") or []
            os_names.extend(f"{name}+{v}" for v in variants) if variants \
                else os_names.append(name)
        templates = tuple(cluster.get("enabled_disk_templates") or ())
        ipolicy = next((g.get("ipolicy") for g in groups if g["name"] in allowed
                        and g.get("ipolicy")), None) or params.default_ipolicy(list(templates))
        be = (cluster.get("beparams") or {}).get("default") or {}
        nic = (cluster.get("nicparams") or {}).get("default") or {}
        return wizard.Choices(
            user=ctx.principal.name,
            owners=wizard.owner_choices(ctx.principal.name, ctx.principal.groups,
                                        ctx.may("modify")),
            os_names=tuple(os_names), templates=templates, nodes=usable,
            allocator=everywhere, bounds=wizard.Bounds.from_ipolicy(ipolicy),
            default_memory=int(be.get("maxmem") or 128), default_vcpus=int(be.get("vcpus") or 1),
            default_link=str(nic.get("link") or "br0"))

    async def _create_page(self, ctx: Context, choices: wizard.Choices, values: dict[str, str],
                           problems: dict[str, str], status: int = 200) -> Response:
        subjects = sorted(ctx.principal.subjects())
        quotas = [q for q in await self.call("query_quotas", subjects=subjects)
                  if any(r["limit"] is not None for r in q["resources"])]
        return self.render("create.html", status, ctx=ctx, choices=choices, values=values,
                           problems=problems, quotas=quotas, fmt_size=format_size,
                           auto=wizard.AUTO)

    async def create_form(self, ctx: Context) -> Response:
        choices = await self._choices(ctx)
        if choices is None:
            return self.error(ctx, 403, "You may not create instances.")
        values = {"owner": choices.user, "template": choices.templates[0] if choices.templates
                  else "", "memory": format_size(choices.default_memory),
                  "vcpus": str(choices.default_vcpus), "nics": "1",
                  "link": choices.default_link, "start": "on",
                  "disks": format_size(choices.bounds.disk_size[0]),
                  "os": choices.os_names[0] if choices.os_names else ""}
        return await self._create_page(ctx, choices, values, {})

    async def create(self, ctx: Context, form: FormData) -> Response:
        choices = await self._choices(ctx)
        if choices is None:
            return self.error(ctx, 403, "You may not create instances.")
        values = {k: str(v) for k, v in form.items() if k != "csrf"}
        op, problems = wizard.check_form(values, choices)
        if op is None:
            return await self._create_page(ctx, choices, values, problems, 400)
        [(ok, value)] = await ctx.submit([[op]])
        if not ok:  # masterd refused it (a quota, ...): no job was queued
            return await self._create_page(ctx, choices, values, {"form": str(value)}, 400)
        return RedirectResponse(f"{PREFIX}/jobs/{value}", 303)

    async def _visible_jobs(self, ctx: Context, ids: list[int] | None = None
                            ) -> list[dict[str, Any]]:
        jobs, rows = await asyncio.gather(self.call("query_jobs", ids=ids),
                                          ctx.instances(fields=()))
        visible = {r["name"] for r in rows}
        return [j for j in jobs if j and ctx.job_visible(j, visible)]

    async def jobs(self, ctx: Context) -> Response:
        raw = ctx.request.query_params.get("ids", "")
        ids = [int(i) for i in raw.split(",") if i.strip().isdigit()] or None
        jobs = await self._visible_jobs(ctx, ids)
        jobs.sort(key=lambda j: j["id"], reverse=ids is None)
        return self.render("jobs.html", ctx=ctx, jobs=jobs[:100], final=FINAL_JOB_STATES,
                           selected=bool(ids))

    async def _one_job(self, ctx: Context) -> dict[str, Any] | None:
        jobs = await self._visible_jobs(ctx, [int(ctx.request.path_params["job_id"])])
        return jobs[0] if jobs else None

    async def job(self, ctx: Context) -> Response:
        job = await self._one_job(ctx)
        if job is None:
            return self.error(ctx, 404, "No such job that you may see.")
        return self.render("job.html", ctx=ctx, job=job, final=FINAL_JOB_STATES, detail=True)

    async def job_panel(self, ctx: Context) -> Response:
        """The panel htmx polls while a job runs; when it ends and the page asked for it
        (``refresh=1``), the whole page reloads to show the object's new state."""
        job = await self._one_job(ctx)
        if job is None:
            return self.error(ctx, 404, "No such job that you may see.")
        q = ctx.request.query_params
        headers = {}
        if job["status"] in FINAL_JOB_STATES and q.get("refresh") == "1":
            headers["HX-Refresh"] = "true"
        return self.render("job_panel.html", ctx=ctx, job=job, final=FINAL_JOB_STATES,
                           detail=q.get("detail") == "1", refresh=q.get("refresh") == "1",
                           headers=headers)


    # -- consoles (herd.web.consoles) ------------------------------------------------------
    async def _console_row(self, ctx: Context, kind: str) -> dict[str, Any] | Response:
        """The instance if this user may open its ``kind`` console now, else the error page."""
        name = ctx.request.path_params["name"]
        rows = await ctx.instances([name])
        if not rows:
            return self.error(ctx, 404, f"No instance {name} that you may see.")
        row = rows[0]
        if not ctx.may_instance("console", row):
            log.warning("refused the console of %s to %s (role %s)", name,
                        ctx.principal.name, ctx.role(instance_target(row)))
            return self.error(ctx, 403, f"You may not open the console of {name}: it needs "
                              "the user role on the instance.")
        problem = consoles.placement(row, {str(row.get("pnode")): {"pip": "-"}}, kind).problem
        if problem:
            return self.error(ctx, 409, f"No console: {problem}.")
        return row

    async def console_page(self, ctx: Context) -> Response:
        row = await self._console_row(ctx, "serial")
        if isinstance(row, Response):
            return row
        return self.render("console.html", ctx=ctx, inst=row, kind="serial")

    async def vnc_page(self, ctx: Context) -> Response:
        row = await self._console_row(ctx, "vnc")
        if isinstance(row, Response):
            return row
        return self.render("vnc.html", ctx=ctx, inst=row, kind="vnc")

    async def console_ticket(self, ctx: Context, form: FormData) -> Response:
        """A one-time ticket (JSON) for the console page's WebSocket."""
        kind = str(form.get("kind") or "serial")
        if kind not in consoles.KINDS:
            return JSONResponse({"error": f"invalid console kind {kind!r}: allowed are "
                                          f"{', '.join(consoles.KINDS)}"}, 400)
        row = await self._console_row(ctx, kind)
        if isinstance(row, Response):
            return JSONResponse({"error": f"no console ticket for {ctx.principal.name}"},
                                row.status_code)
        ticket = self.tickets.issue(ctx.principal.name, row["name"], kind, time.monotonic())
        return JSONResponse({"ticket": ticket, "expires_in": self.tickets.lifetime})

    async def console_ws(self, ws: WebSocket) -> None:
        """The console WebSocket: Origin, session, then the ticket as the first message."""
        name, kind = ws.path_params["name"], ws.path_params["kind"]
        if not consoles.origin_matches(ws.headers.get("origin"), ws.headers.get("host", "")):
            log.warning("refused a console WebSocket for %s from origin %r", name,
                        ws.headers.get("origin"))
            await ws.close(code=consoles.CLOSE_REFUSED)
            return
        session = self._session(ws)
        if session is None or kind not in consoles.KINDS:
            await ws.close(code=consoles.CLOSE_REFUSED)
            return
        await ws.accept()
        try:
            token = await asyncio.wait_for(ws.receive_text(), 10)
            self.tickets.redeem(token, session.user, name, kind, time.monotonic())
        except consoles.TicketError as exc:
            log.warning("refused the %s console of %s to %s: %s", kind, name, session.user,
                        exc)
            await ws.close(code=consoles.CLOSE_REFUSED, reason=str(exc))
            return
        except (TimeoutError, WebSocketDisconnect, KeyError, RuntimeError):
            with contextlib.suppress(Exception):
                await ws.close(code=consoles.CLOSE_REFUSED, reason="no console ticket sent")
            return
        await ws.send_text("ok")
        try:
            reason = await consoles.relay(ws, kind, name, self._locator(name, kind),
                                          self._connector(), session.user)
        except errors.HerdError as exc:
            reason = exc.message
        log.info("%s console of %s for %s ended: %s", kind, name, session.user, reason)
        with contextlib.suppress(Exception):
            await ws.close(code=1000 if reason == "viewer left" else consoles.CLOSE_GONE,
                           reason=reason[:120])

    def _locator(self, name: str, kind: str) -> consoles.Locator:
        async def locate() -> consoles.Placement:
            try:
                rows = await self.call("query_instances", names=[name], live=True)
            except errors.NotFoundError:
                rows = []
            row = rows[0] if rows else None
            nodes: dict[str, dict[str, Any]] = {}
            if row is not None and row.get("pnode"):
                for node in await self.call("query_nodes", names=[row["pnode"]], live=False):
                    nodes[node["name"]] = node
            return consoles.placement(row, nodes, kind)
        return locate

    def _connector(self) -> consoles.Connector:
        async def connect(address: str, path: str) -> Any:
            from websockets.asyncio.client import connect as ws_connect

            from herd.rpc import tls

            if self.paths is None:
                raise errors.HerdError("this server has no node certificate to reach noded")
            cluster = await self.call("query_cluster")
            port = cluster.get("noded_port", 1811)
            host = f"[{address}]" if ":" in address else address
            ctx = tls.client_context(self.paths)
            return await ws_connect(f"wss://{host}:{port}{path}", ssl=ctx, max_size=None,
                                    ping_interval=None, open_timeout=10)
        return connect


def possible_actions(row: dict[str, Any]) -> set[str]:
    """The power actions that make sense in the instance's state (the page disables the
    others): start unless it runs, stop unless it is down and stays down, reboot if it runs.
    The job would refuse or do nothing otherwise; this only spares a useless click."""
    running = row.get("status") == "running" or bool(row.get("oper_state"))
    out = set()
    if not running:
        out.add("start")
    if running or row.get("admin_up"):
        out.add("stop")
    if running:
        out.add("reboot")
    return out


def instance_op(action: str, name: str) -> dict[str, Any]:
    return {**INSTANCE_ACTIONS[action][1], "instance_name": name}


def safe_next(target: str | None) -> str:
    """Where to go after log-in: only a path of this UI (no open redirect)."""
    if target and target.startswith(f"{PREFIX}/") and not target.startswith("//") \
            and "\\" not in target and not target.startswith(f"{PREFIX}/login"):
        return target
    return f"{PREFIX}/"


def fmt_time(ts: Any) -> str:
    if not ts:
        return ""
    if isinstance(ts, list | tuple):
        ts = ts[0]
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))
