"""gnt-job: the job queue (list, info, watch, cancel, archive)."""

from __future__ import annotations

import sys
import time
from typing import Any

from herd import errors
from herd.cli.client import MasterClient
from herd.cli.common import add_list_fields_command, command_main, print_list, wait_for_job
from herd.cli.formatting import format_info
from herd.cli.options import LIST_OPTIONS, HerdArgumentParser, add_common_options
from herd.fields import JOB as JOB_FIELDS

PROG = "gnt-job"
DEFAULT_FIELDS = ["id", "status", "summary"]
#: Titles from the one field registry (herd.fields.JOB)
TITLES = JOB_FIELDS.titles()


def _ids(values: list[str]) -> list[int]:
    out = []
    for value in values:
        if not value.isdigit():
            raise errors.ParameterError(f"invalid job id '{value}': expected a number")
        out.append(int(value))
    return out


def _fmt_ts(ts: float | None) -> str:
    if ts is None:
        return "N/A"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1e6):06d}"


def cmd_list(opts: Any) -> int:
    with MasterClient() as client:
        jobs = client.call("query_jobs", ids=_ids(opts.jobs) or None, archived=opts.archived)
    rows = []
    for job in jobs:
        if job is None:
            continue
        if opts.running and job["status"] != "running":
            continue
        if opts.pending and job["status"] not in ("queued", "waiting"):
            continue
        if opts.error and job["status"] != "error":
            continue
        row = dict(job)
        for key in ("received_ts", "start_ts", "end_ts"):
            row[key] = _fmt_ts(job[key])
        rows.append(row)
    print_list(opts, rows, DEFAULT_FIELDS, TITLES, set(), {"id", "priority"},
               known_fields=lambda f: f in TITLES)
    return 0


def cmd_info(opts: Any) -> int:
    with MasterClient() as client:
        jobs = client.call("query_jobs", ids=_ids(opts.jobs))
    out = []
    for job_id, job in zip(_ids(opts.jobs), jobs, strict=True):
        if job is None:
            out.append({"Job ID": job_id, "Status": "unknown (no such job)"})
            continue
        opcodes = []
        for index, op in enumerate(job["ops"]):
            opcodes.append({
                "OP_ID": op["OP_ID"],
                "Status": job["opstatus"][index],
                "Processing start": _fmt_ts(job["opstart"][index]),
                "Execution start": _fmt_ts(job["opexec"][index]),
                "Processing end": _fmt_ts(job["opend"][index]),
                "Input fields": {k: v for k, v in op.items() if k != "OP_ID"},
                "Result": job["opresult"][index],
                "Execution log": [f"{_fmt_ts(ts)} {kind} {msg}"
                                  for _serial, ts, kind, msg in job["oplog"][index]],
            })
        out.append({"Job ID": job["id"], "Status": job["status"],
                    "Origin": job.get("origin") or "unknown",
                    "Received": _fmt_ts(job["received_ts"]),
                    "Processing start": _fmt_ts(job["start_ts"]),
                    "Processing end": _fmt_ts(job["end_ts"]),
                    "Total processing time": (
                        f"{job['end_ts'] - job['start_ts']:.3f} seconds"
                        if job["end_ts"] and job["start_ts"] else "N/A"),
                    "Opcodes": opcodes})
    print(format_info(out))
    return 0


def cmd_watch(opts: Any) -> int:
    (job_id,) = _ids([opts.job])
    with MasterClient() as client:
        print(f"Output from job {job_id} follows")
        print("-----------------------------------")
        job = wait_for_job(client, job_id)
    return 0 if job["status"] == "success" else 1


def cmd_cancel(opts: Any) -> int:
    code = 0
    with MasterClient() as client:
        for job_id in _ids(opts.jobs):
            ok, message = client.call("cancel_job", job_id=job_id)
            print(message)
            code = code or (0 if ok else 1)
    return code


def cmd_archive(opts: Any) -> int:
    with MasterClient() as client:
        for job_id in _ids(opts.jobs):
            if not client.call("archive_job", job_id=job_id):
                print(f"Job {job_id} not archived (unknown or not finished)")
    return 0


def cmd_autoarchive(opts: Any) -> int:
    age = opts.age
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if age == "all":
        value = 0.0
    elif age[-1:] in seconds and age[:-1].isdigit():
        value = float(age[:-1]) * seconds[age[-1]]
    elif age.isdigit():
        value = float(age)
    else:
        raise errors.ParameterError(f"invalid age '{age}': use all or a number with s/m/h/d/w")
    with MasterClient() as client:
        count = client.call("autoarchive", age=value)
    print(f"Archived {count} jobs")
    return 0


def build_parser() -> HerdArgumentParser:
    parser = HerdArgumentParser(prog=PROG, description="Job queue operations")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    lst = sub.add_parser("list", help="list jobs")
    lst.add_argument("jobs", nargs="*")
    add_common_options(lst, *LIST_OPTIONS)
    lst.add_argument("--archived", action="store_true")
    lst.add_argument("--running", action="store_true")
    lst.add_argument("--pending", action="store_true")
    lst.add_argument("--error", action="store_true")
    lst.set_defaults(func=cmd_list)
    add_list_fields_command(sub, JOB_FIELDS)
    info = sub.add_parser("info", help="show job details")
    info.add_argument("jobs", nargs="+")
    info.set_defaults(func=cmd_info)
    watch = sub.add_parser("watch", help="follow a job's log until it ends")
    watch.add_argument("job")
    watch.set_defaults(func=cmd_watch)
    cancel = sub.add_parser("cancel", help="cancel queued or waiting jobs")
    cancel.add_argument("jobs", nargs="+")
    cancel.set_defaults(func=cmd_cancel)
    archive = sub.add_parser("archive", help="archive finished jobs")
    archive.add_argument("jobs", nargs="+")
    archive.set_defaults(func=cmd_archive)
    auto = sub.add_parser("autoarchive", help="archive finished jobs older than AGE")
    auto.add_argument("age")
    auto.set_defaults(func=cmd_autoarchive)
    return parser


def main(argv: list[str] | None = None) -> int:
    return command_main(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
