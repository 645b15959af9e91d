"""What all gnt-* commands share: running a command with clean errors, submitting jobs and
following them, and printing lists.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

from herd import errors
from herd.cli.client import MasterClient
from herd.cli.formatting import format_json, format_table, format_time
from herd.cli.options import add_common_options, resolve_fields
from herd.jobs import states as q

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing costs each gnt-* command ~2 ms at start
    from typing import Any


class CommandFailed(Exception):
    """A command ends with a message already printed and an exit code."""

    def __init__(self, code: int = 1) -> None:
        super().__init__(code)
        self.code = code


def quiet_herd_logs() -> None:
    """Library modules log for daemons; a command says what matters itself: Herd's loggers
    get a handler that drops everything and do not pass records on (else logging would print
    their warnings on stderr)."""
    import logging

    logger = logging.getLogger("herd")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
    logger.propagate = False


class _QuietLogsOnLibraryImport:
    """A finder on ``sys.meta_path`` that finds nothing: the first Herd module a command
    imports after it started (library code a subcommand loads where it needs it) sets Herd's
    loggers quiet before that module loads.

    So a command that only talks to masterd never imports ``logging`` (with traceback,
    threading, string and weakref: a few milliseconds of every command's start, issue 17),
    and one that runs library code in-process still prints none of its log records. It stays
    in ``sys.meta_path``, idle, once done: the import system walks that list while it calls
    a finder, and a finder removing itself would make it skip the next one."""

    def __init__(self) -> None:
        self.done = False

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if not self.done and name.startswith("herd."):
            self.done = True
            quiet_herd_logs()


def run_command(prog: str, fn: Callable[[], int | None]) -> int:
    """Run a command; any Herd error becomes one line on stderr and exit code 1."""
    if "logging" in sys.modules:  # the command's modules brought it: quiet Herd's now
        quiet_herd_logs()
    elif not any(isinstance(f, _QuietLogsOnLibraryImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietLogsOnLibraryImport())
    try:
        return fn() or 0
    except CommandFailed as exc:
        return exc.code
    except errors.HerdError as exc:
        print(f"{prog}: error: {exc.message}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def command_main(prog: str, build_parser: Callable[[], Any],
                 argv: list[str] | None = None) -> int:
    """The body of every gnt-* entry point: parse, run the chosen subcommand."""
    opts = build_parser().parse_args(argv)
    return run_command(prog, lambda: opts.func(opts))


def op_common(opts: Any) -> dict[str, Any]:
    """The opcode fields every command sets from its options (dry run, priority, debug)."""
    out: dict[str, Any] = {}
    if getattr(opts, "dry_run", False):
        out["dry_run"] = True
    if getattr(opts, "priority", None) is not None:
        out["priority"] = opts.priority
    if getattr(opts, "debug", 0):
        out["debug_level"] = int(opts.debug)
    return out


def print_feedback(entry: Sequence[Any]) -> None:
    """Print a job log entry as Ganeti does; errors are left to the command's final line."""
    _serial, _op_index, ts, kind, message = entry
    if kind != "error":
        print(f"{time.ctime(ts)} {message}", flush=True)


def wait_for_job(client: MasterClient, job_id: int,
                 feedback: Callable[[Sequence[Any]], None] = print_feedback) -> dict[str, Any]:
    """Follow a job, printing its log, until it ends; return the final job.

    masterd is asked to answer only with log entries or the end of the job (``until_final``,
    which brings the final job along); a masterd from before that option refuses it, and is
    then asked as before (every status change, then the job)."""
    status: str | None = None
    serial = 0
    until_final = True
    while True:
        args: dict[str, Any] = {"job_id": job_id, "prev_status": status,
                                "prev_serial": serial, "timeout": 30}
        try:
            change = client.call("wait_for_job_change", **args, until_final=until_final) \
                if until_final else client.call("wait_for_job_change", **args)
        except errors.ParameterError as exc:
            if not until_final or "until_final" not in exc.message:
                raise
            until_final = False
            continue
        if change is None:
            continue
        for entry in change["log"]:
            serial = max(serial, entry[0])
            feedback(entry)
        status = change["status"]
        if status in q.FINAL_STATES:
            job = change.get("job")
            return job if isinstance(job, dict) else client.call("query_jobs", ids=[job_id])[0]


def job_error(job: dict[str, Any]) -> errors.HerdError:
    for status, result in zip(job["opstatus"], job["opresult"], strict=False):
        if status == q.ERROR and isinstance(result, list) and len(result) == 2:
            message = result[1][0] if result[1] else "unknown error"
            return errors.from_dict({"code": result[0], "message": message})
        if status == q.CANCELED:
            return errors.JobCanceled(f"job {job['id']} was canceled")
    return errors.OpExecError(f"job {job['id']} failed")


def submit_or_run(opts: Any, ops: list[dict[str, Any]],
                  client: MasterClient | None = None) -> list[Any] | None:
    """Ganeti's SubmitOrSend: with --submit print the job id and return; otherwise wait.

    Returns the opcode results of a successful job; raises the job's error otherwise.
    """
    common = op_common(opts)
    ops = [dict(common, **op) for op in ops]
    own = client is None
    client = client or MasterClient()
    try:
        job_id = client.call("submit_job", ops=ops)
        if getattr(opts, "submit_only", False):
            print(f"JobID: {job_id}")
            return None
        if getattr(opts, "print_jobid", False):
            print(f"JobID: {job_id}")
        job = wait_for_job(client, job_id)
        if job["status"] != q.SUCCESS:
            raise job_error(job)
        return job["opresult"]
    finally:
        if own:
            client.close()


def print_list(opts: Any, rows: list[dict[str, Any]], default_fields: Sequence[str],
               titles: dict[str, str], unit_fields: set[str], numeric_fields: set[str],
               known_fields: Callable[[str], bool] | None = None,
               time_fields: frozenset[str] = frozenset({"ctime", "mtime"})) -> None:
    """A list command's output; ``time_fields`` (timestamps) are shown as dates in the
    table, as Ganeti does, and stay numbers in --json (as RAPI keeps them)."""
    fields = resolve_fields(getattr(opts, "output", None), default_fields)
    if known_fields is not None:
        unknown = [f for f in fields if not known_fields(f)]
        if unknown:
            raise errors.ParameterError(f"unknown field(s) {', '.join(unknown)}; "
                                        "see 'list-fields'")
    print_rows(opts, rows, fields, titles, unit_fields, numeric_fields, time_fields)


def print_rows(opts: Any, rows: list[dict[str, Any]], fields: Sequence[str],
               titles: dict[str, str], unit_fields: set[str], numeric_fields: set[str],
               time_fields: frozenset[str] = frozenset({"ctime", "mtime"})) -> None:
    """The table (or --json) of ``fields`` of ``rows``."""
    table = [[row.get(f) for f in fields] for row in rows]
    if getattr(opts, "json", False):
        print(format_json(fields, table))
        return
    table = [[format_time(v) if f in time_fields else v for f, v in zip(fields, row, strict=True)]
             for row in table]
    lines = format_table(fields, titles, table, separator=opts.separator,
                         header=not opts.no_headers, units=opts.units,
                         unit_fields=unit_fields, numeric_fields=numeric_fields)
    for line in lines:
        print(line)


def list_fields(opts: Any, registry: Any, default_fields: Sequence[str]) -> list[str]:
    """The fields ``-o`` asks for (``+a,b`` adds to the defaults), checked against the field
    registry (herd.fields) before anything is asked of masterd."""
    fields = resolve_fields(getattr(opts, "output", None), default_fields)
    unknown = [f for f in fields if not registry.known(f)]
    if unknown:
        raise errors.ParameterError(f"unknown field(s) {', '.join(unknown)}; "
                                    "see 'list-fields'")
    return fields


def print_registry_list(opts: Any, rows: list[dict[str, Any]], fields: list[str],
                        registry: Any) -> None:
    """A list command's table, with titles, units and alignment from the field registry."""
    print_rows(opts, rows, fields, registry.titles(fields), registry.unit_fields(fields),
               registry.numeric_fields(fields),
               frozenset(f for f in fields if (d := registry.lookup(f)) and d.kind == "timestamp"))


def add_list_fields_command(sub: Any, registry: Any) -> None:
    """A command's ``list-fields [FIELD...]``, with Ganeti's --no-headers and --separator:
    the fields of ``registry`` (herd.fields) as :func:`print_fields` prints them. One place,
    so that every gnt-* command lists its fields alike (gnt-group's and gnt-network's had
    kept their own tables without the options)."""
    parser = sub.add_parser("list-fields", help="list the available fields")
    parser.add_argument("fields", nargs="*", metavar="FIELD")
    add_common_options(parser, "no_headers", "separator")
    parser.set_defaults(func=lambda opts: print_fields(opts, registry))


def print_fields(opts: Any, registry: Any) -> int:
    """``list-fields [FIELD...]``: Ganeti's table of name, type, title and description."""
    from herd.fields import KIND_NAMES

    names = list(getattr(opts, "fields", None) or sorted(registry.fields))
    unknown = [n for n in names if not registry.known(n)]
    if unknown:
        raise errors.ParameterError(f"unknown field(s) {', '.join(unknown)}")
    rows = []
    for name in names:
        d = registry.definition(name)
        rows.append([d["name"], KIND_NAMES.get(d["kind"], d["kind"]), d["title"], d["doc"]])
    headers = {"name": "Name", "type": "Type", "title": "Title", "doc": "Description"}
    for line in format_table(list(headers), headers, rows,
                             separator=getattr(opts, "separator", None),
                             header=not getattr(opts, "no_headers", False), units=None,
                             unit_fields=set(), numeric_fields=set()):
        print(line)
    return 0
