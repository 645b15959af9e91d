"""gnt-group: node group commands (Ganeti's names, options, fields and output), and the
submitted-jobs follow-up that gnt-instance change-group shares."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from herd import errors
from herd.cli.client import MasterClient
from herd.cli.common import (
    add_list_fields_command,
    command_main,
    job_error,
    list_fields,
    print_registry_list,
    submit_or_run,
    wait_for_job,
)
from herd.cli.formatting import format_info
from herd.cli.options import (
    JOB_OPTIONS,
    LIST_OPTIONS,
    HerdArgumentParser,
    add_common_options,
    keyval_type,
    parse_keyval,
    split_escaped,
)
from herd.cli.tags import add_tag_commands
from herd.fields import GROUP as GROUP_FIELDS
from herd.jobs import states as q
from herd.units import parse_size

PROG = "gnt-group"

DEFAULT_FIELDS = ["name", "node_cnt", "pinst_cnt", "alloc_policy", "ndparams"]
ISPEC_KEYS = ("memory-size", "cpu-count", "disk-count", "disk-size", "nic-count",
              "spindle-use")
_SIZE_KEYS = ("memory-size", "disk-size")


# -- option parsing (pure) -----------------------------------------------------------------------
def parse_ispec(text: str, where: str) -> dict[str, int]:
    """``memory-size=1G,cpu-count=2,...``: sizes take units, the rest are integers."""
    out: dict[str, int] = {}
    for key, value in parse_keyval(text, option=where).items():
        if key not in ISPEC_KEYS:
            raise errors.ParameterError(f"unknown spec '{key}' in {where}; known: "
                                        f"{', '.join(ISPEC_KEYS)}")
        if key in _SIZE_KEYS:
            out[key] = parse_size(str(value), key)
        else:
            try:
                out[key] = int(str(value))
            except ValueError:
                raise errors.ParameterError(f"invalid value '{value}' for {key} in {where}: "
                                            "expected an integer") from None
    return out


def parse_bounds_specs(text: str) -> list[dict[str, dict[str, int]]]:
    """``--ipolicy-bounds-specs min:k=v,.../max:k=v,...[//min:.../max:...]``: each pair must
    give all six keys on both sides (checked by masterd, which names the missing ones)."""
    pairs = []
    for chunk in text.split("//"):
        pair: dict[str, dict[str, int]] = {}
        for part in chunk.split("/"):
            side, sep, values = part.partition(":")
            if not sep or side not in ("min", "max"):
                raise errors.ParameterError(
                    f"invalid bounds spec '{part}' in --ipolicy-bounds-specs: expected "
                    "min:key=value,.../max:key=value,...")
            if side in pair:
                raise errors.ParameterError(f"'{side}' given twice in one bounds pair")
            pair[side] = parse_ispec(values, f"--ipolicy-bounds-specs {side}")
        if set(pair) != {"min", "max"}:
            raise errors.ParameterError("every bounds pair of --ipolicy-bounds-specs needs "
                                        "both min: and max:")
        pairs.append(pair)
    return pairs


def ipolicy_from(opts: Any) -> dict[str, Any] | None:
    """The ipolicy changes the --ipolicy-* options give ("default" resets a key)."""
    out: dict[str, Any] = {}
    if opts.ipolicy_bounds_specs is not None:
        out["minmax"] = None if opts.ipolicy_bounds_specs == "default" else \
            parse_bounds_specs(opts.ipolicy_bounds_specs)
    if opts.ipolicy_disk_templates is not None:
        out["disk-templates"] = None if opts.ipolicy_disk_templates == "default" else \
            [t for t in split_escaped(opts.ipolicy_disk_templates) if t]
    for key, value in (("vcpu-ratio", opts.ipolicy_vcpu_ratio),
                       ("spindle-ratio", opts.ipolicy_spindle_ratio)):
        if value is not None:
            out[key] = None if value == "default" else value
    return out or None


def diskparams_from(values: Sequence[str]) -> dict[str, Any] | None:
    """Repeated ``-D template:key=value,...``."""
    out: dict[str, Any] = {}
    for text in values:
        template, sep, rest = text.partition(":")
        if not sep or not template:
            raise errors.ParameterError(f"invalid disk parameters '{text}': expected "
                                        "TEMPLATE:key=value,...")
        if template in out:
            raise errors.ParameterError(f"disk parameters of {template} given twice")
        out[template] = parse_keyval(rest, option=f"-D {template}")
    return out or None


def _params_op(op_id: str, opts: Any) -> dict[str, Any]:
    return {"OP_ID": op_id, "group_name": opts.group, "alloc_policy": opts.alloc_policy,
            "ndparams": opts.ndparams, "diskparams": diskparams_from(opts.diskparams),
            "ipolicy": ipolicy_from(opts), "hv_state": opts.hv_state,
            "disk_state": opts.disk_state}


# -- commands ------------------------------------------------------------------------------------
def cmd_add(opts: Any) -> int:
    submit_or_run(opts, [_params_op("OP_GROUP_ADD", opts)])
    return 0


def cmd_modify(opts: Any) -> int:
    result = submit_or_run(opts, [_params_op("OP_GROUP_SET_PARAMS", opts)])
    if result and result[0]:
        print("Modified node group " + opts.group)
        for name, value in result[0]:
            print(f" - {name} -> {value}")
    return 0


def cmd_remove(opts: Any) -> int:
    submit_or_run(opts, [{"OP_ID": "OP_GROUP_REMOVE", "group_name": opts.group}])
    return 0


def cmd_rename(opts: Any) -> int:
    submit_or_run(opts, [{"OP_ID": "OP_GROUP_RENAME", "group_name": opts.group,
                          "new_name": opts.new_name}])
    return 0


def cmd_assign_nodes(opts: Any) -> int:
    submit_or_run(opts, [{"OP_ID": "OP_GROUP_ASSIGN_NODES", "group_name": opts.group,
                          "nodes": opts.nodes, "force": opts.force}])
    return 0


def follow_jobs(opts: Any, result: list[Any] | None) -> int:
    """Wait for the jobs an operation submitted (its result ``{"jobs": [[ok, id], ...]}``),
    as Ganeti's JobExecutor does; every failure is reported, the exit code is 1 if any."""
    if not result or not result[0]:
        return 0
    submitted = result[0].get("jobs") or []
    if not submitted:
        print("No jobs were needed: nothing to move")
        return 0
    failed = 0
    with MasterClient() as client:
        for ok, job_id in submitted:
            if not ok:
                print(f"Job submission failed: {job_id}", file=sys.stderr)
                failed += 1
                continue
            if getattr(opts, "submit_only", False):
                print(f"JobID: {job_id}")
                continue
            job = wait_for_job(client, job_id)
            if job["status"] != q.SUCCESS:
                print(f"{PROG}: job {job_id} failed: {job_error(job).message}",
                      file=sys.stderr)
                failed += 1
    return 1 if failed else 0


def cmd_evacuate(opts: Any) -> int:
    op = {"OP_ID": "OP_GROUP_EVACUATE", "group_name": opts.group,
          "iallocator": opts.iallocator, "target_groups": opts.to or None,
          "early_release": opts.early_release, "sequential": opts.sequential,
          "force_failover": opts.force_failover}
    # the planning job is waited for even with --submit: its result names the move jobs
    submit_only, opts.submit_only = opts.submit_only, False
    result = submit_or_run(opts, [op])
    opts.submit_only = submit_only
    return follow_jobs(opts, result)


def _rows(names: list[str] | None, fields: list[str] | None = None) -> list[dict[str, Any]]:
    with MasterClient() as client:
        return client.call("query_groups", names=names or None,  # type: ignore[no-any-return]
                           fields=fields)


def cmd_list(opts: Any) -> int:
    fields = list_fields(opts, GROUP_FIELDS, DEFAULT_FIELDS)
    print_registry_list(opts, _rows(opts.groups, fields), fields, GROUP_FIELDS)
    return 0


def cmd_info(opts: Any) -> int:
    out = []
    for row in _rows(opts.groups):
        out.append({
            "Node group": row["name"],
            "UUID": row["uuid"],
            "Serial number": row["serial_no"],
            "Allocation policy": row["alloc_policy"],
            "Nodes": row["node_list"],
            "Primary instances": row["pinst_list"],
            "Node parameters": row["ndparams"],
            "Disk parameters": {t: v for t, v in row["diskparams"].items() if v} or {},
            "Instance policy": row["ipolicy"],
            "Tags": row["tags"],
        })
    print(format_info(out))
    return 0


def _ratio(text: str) -> str | float:
    if text == "default":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid ratio '{text}': expected a number or "
                                         "'default'") from None


def _add_params_options(cmd: Any) -> None:
    cmd.add_argument("--node-parameters", dest="ndparams", type=keyval_type, default=None)
    cmd.add_argument("--alloc-policy", dest="alloc_policy", default=None,
                     metavar="POLICY", help="preferred, last_resort or unallocable")
    cmd.add_argument("-D", "--disk-parameters", dest="diskparams", action="append",
                     default=[], metavar="TEMPLATE:KEY=VALUE,...")
    cmd.add_argument("--ipolicy-bounds-specs", dest="ipolicy_bounds_specs", default=None,
                     metavar="min:K=V,.../max:K=V,...[//...]")
    cmd.add_argument("--ipolicy-disk-templates", dest="ipolicy_disk_templates", default=None,
                     metavar="TEMPLATE,...")
    cmd.add_argument("--ipolicy-vcpu-ratio", dest="ipolicy_vcpu_ratio", type=_ratio,
                     default=None)
    cmd.add_argument("--ipolicy-spindle-ratio", dest="ipolicy_spindle_ratio", type=_ratio,
                     default=None)
    cmd.add_argument("--hypervisor-state", dest="hv_state", type=keyval_type, default=None)
    cmd.add_argument("--disk-state", dest="disk_state", type=keyval_type, default=None)


def build_parser() -> HerdArgumentParser:
    parser = HerdArgumentParser(prog=PROG, description="Node group operations")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add = sub.add_parser("add", help="create an empty node group")
    add.add_argument("group")
    _add_params_options(add)
    add_common_options(add, *JOB_OPTIONS)
    add.set_defaults(func=cmd_add)

    modify = sub.add_parser("modify", help="change a node group's parameters")
    modify.add_argument("group")
    _add_params_options(modify)
    add_common_options(modify, *JOB_OPTIONS)
    modify.set_defaults(func=cmd_modify)

    remove = sub.add_parser("remove", help="remove an empty node group")
    remove.add_argument("group")
    add_common_options(remove, *JOB_OPTIONS)
    remove.set_defaults(func=cmd_remove)

    rename = sub.add_parser("rename", help="rename a node group")
    rename.add_argument("group")
    rename.add_argument("new_name")
    add_common_options(rename, *JOB_OPTIONS)
    rename.set_defaults(func=cmd_rename)

    assign = sub.add_parser("assign-nodes", help="move nodes into a node group")
    assign.add_argument("group")
    assign.add_argument("nodes", nargs="+", metavar="NODE")
    add_common_options(assign, "force", *JOB_OPTIONS)
    assign.set_defaults(func=cmd_assign_nodes)

    evac = sub.add_parser("evacuate", help="move every instance of a group to other groups")
    evac.add_argument("group")
    evac.add_argument("-I", "--iallocator", dest="iallocator", default=None)
    evac.add_argument("--to", dest="to", action="append", default=[], metavar="GROUP")
    evac.add_argument("--sequential", dest="sequential", action="store_true")
    evac.add_argument("--force-failover", dest="force_failover", action="store_true")
    evac.add_argument("--early-release", dest="early_release", action="store_true")
    add_common_options(evac, "force", *JOB_OPTIONS)
    evac.set_defaults(func=cmd_evacuate)

    lst = sub.add_parser("list", help="list node groups")
    lst.add_argument("groups", nargs="*", metavar="GROUP")
    add_common_options(lst, *LIST_OPTIONS)
    lst.set_defaults(func=cmd_list)
    add_list_fields_command(sub, GROUP_FIELDS)
    info = sub.add_parser("info", help="show node groups' details")
    info.add_argument("groups", nargs="*", metavar="GROUP")
    info.set_defaults(func=cmd_info)
    add_tag_commands(sub, "nodegroup", "GROUP")
    return parser


def main(argv: list[str] | None = None) -> int:
    return command_main(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
