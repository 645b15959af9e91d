"""gnt-instance grow-disk, rename and reinstall: Ganeti's arguments, options and output."""

from __future__ import annotations

import sys

from herd import errors
from herd.cli.client import MasterClient
from herd.cli.common import submit_or_run
from herd.cli.options import JOB_OPTIONS, add_common_options
from herd.units import parse_size

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing costs each gnt-* command ~2 ms at start
    from typing import Any


def _ask(question: str) -> bool:
    """Ganeti's y/[n] prompt; without a terminal it is a refusal that says to pass -f."""
    if not sys.stdin.isatty():
        raise errors.OpPrereqError("this command asks for confirmation and there is no "
                                   "terminal to ask on; pass -f to go ahead")
    return input(f"{question}\ny/[n]: ").strip().lower() in ("y", "yes")


def cmd_grow_disk(opts: Any) -> int:
    try:
        disk = int(opts.disk)
    except ValueError:
        raise errors.ParameterError(f"invalid disk index '{opts.disk}': expected a number "
                                    "(0 for the first disk)") from None
    amount = parse_size(opts.amount, "amount")
    submit_or_run(opts, [{"OP_ID": "OP_INSTANCE_GROW_DISK", "instance_name": opts.instance,
                          "disk": disk, "amount": amount, "absolute": opts.absolute,
                          "wait_for_sync": opts.wait_for_sync}])
    return 0


def cmd_rename(opts: Any) -> int:
    result = submit_or_run(opts, [{"OP_ID": "OP_INSTANCE_RENAME",
                                   "instance_name": opts.instance, "new_name": opts.new_name,
                                   "ip_check": opts.ip_check, "name_check": opts.name_check}])
    if result:
        print(f"Instance '{opts.instance}' renamed to '{result[0]}'")
    return 0


def _select_os() -> str:
    """Ganeti's --select-os: the valid OSes of the cluster, numbered, and the admin's pick."""
    with MasterClient() as client:
        found = client.call("query_os")
    choices = []
    for name in sorted(found):
        per_node = found[name]
        if not all(d is not None and d.get("valid") for d in per_node.values()):
            continue
        variants = next(iter(per_node.values())).get("variants") or []
        choices += [f"{name}+{v}" for v in variants] or [name]
    if not choices:
        raise errors.OpPrereqError("no valid OS on the cluster's nodes (see gnt-os diagnose)")
    if not sys.stdin.isatty():
        raise errors.OpPrereqError("--select-os asks which OS to use and there is no terminal "
                                   "to ask on; give the OS with -o OS")
    print("Available OS templates:")
    for number, name in enumerate(choices):
        print(f"{number}: {name}")
    answer = input("Enter OS template number (or x to abort): ").strip()
    if answer.isdigit() and int(answer) < len(choices):
        return choices[int(answer)]
    raise errors.OpPrereqError(f"no OS chosen ('{answer}'): aborted")


def cmd_reinstall(opts: Any) -> int:
    os_name = _select_os() if opts.select_os else opts.os
    if len(opts.instances) > 1 and not opts.force_multiple:
        raise errors.ParameterError("reinstalling several instances needs --force-multiple")
    for name in opts.instances:
        if not opts.force and not _ask(f"This will reinstall the instance '{name}' and "
                                       "remove all data. Continue?"):
            return 1
        op: dict[str, Any] = {"OP_ID": "OP_INSTANCE_REINSTALL", "instance_name": name}
        if os_name:
            op["os_type"] = os_name
        if opts.osparams:
            op["osparams"] = opts.osparams
        if opts.force_variant:
            op["force_variant"] = True
        submit_or_run(opts, [op])
    return 0


def cmd_change_group(opts: Any) -> int:
    """gnt-instance change-group [--to GROUP]... [-I NAME] INSTANCE: the planning job, then
    the move job it submitted, followed (with --submit only its id is printed)."""
    from herd.cli.gnt_group import follow_jobs

    submit_only, opts.submit_only = opts.submit_only, False
    result = submit_or_run(opts, [{"OP_ID": "OP_INSTANCE_CHANGE_GROUP",
                                   "instance_name": opts.instance,
                                   "target_groups": opts.to or None,
                                   "iallocator": opts.iallocator,
                                   "early_release": opts.early_release}])
    opts.submit_only = submit_only
    return follow_jobs(opts, result)


def add_change_commands(sub: Any) -> None:
    """Add grow-disk, rename, reinstall and change-group to gnt-instance's subcommands."""
    cg = sub.add_parser("change-group", help="move an instance to another node group")
    cg.add_argument("instance")
    cg.add_argument("--to", dest="to", action="append", default=[], metavar="GROUP",
                    help="a group it may go to (repeatable; default: any other group)")
    cg.add_argument("-I", "--iallocator", dest="iallocator", default=None)
    cg.add_argument("--early-release", dest="early_release", action="store_true")
    add_common_options(cg, *JOB_OPTIONS)
    cg.set_defaults(func=cmd_change_group)

    grow = sub.add_parser("grow-disk", help="grow one disk of an instance")
    grow.add_argument("instance")
    grow.add_argument("disk", help="the disk's index (0 is the first)")
    grow.add_argument("amount", help="the increase (or with --absolute the new size), "
                                     "e.g. 512M, 2G; MiB without a unit")
    add_common_options(grow, "no_wait_for_sync", *JOB_OPTIONS)
    grow.add_argument("--absolute", dest="absolute", action="store_true",
                      help="AMOUNT is the new size, not the increase")
    grow.set_defaults(func=cmd_grow_disk)

    ren = sub.add_parser("rename", help="give an instance a new name")
    ren.add_argument("instance")
    ren.add_argument("new_name")
    add_common_options(ren, "no_ip_check", "no_name_check", *JOB_OPTIONS)
    ren.set_defaults(func=cmd_rename)

    rei = sub.add_parser("reinstall", help="write the instance's disks anew with its OS")
    rei.add_argument("instances", nargs="+")
    add_common_options(rei, "os_type", "osparams", "force", *JOB_OPTIONS)
    rei.add_argument("--select-os", dest="select_os", action="store_true",
                     help="choose the OS from a list")
    rei.add_argument("--force-variant", dest="force_variant", action="store_true")
    rei.add_argument("--force-multiple", dest="force_multiple", action="store_true")
    rei.set_defaults(func=cmd_reinstall)
