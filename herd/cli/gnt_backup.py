"""gnt-backup: export instances to a node's export directory and import them (Ganeti's names,
options and output). An export copied to another cluster's node (scp of its directory) is
imported there: that is how an instance moves between clusters."""

from __future__ import annotations

import sys
from typing import Any

from herd import errors
from herd.cli.common import command_main, submit_or_run
from herd.cli.formatting import format_table
from herd.cli.options import (
    JOB_OPTIONS,
    HerdArgumentParser,
    add_common_options,
    parse_disk_option,
    parse_net_option,
    resolve_fields,
)

PROG = "gnt-backup"

LIST_FIELDS = {"node": "Node", "export": "Export"}


def export_opcode(opts: Any) -> dict[str, Any]:
    """OP_BACKUP_EXPORT from the options of ``gnt-backup export``."""
    if not opts.node:
        raise errors.ParameterError("a target node is required (-n NODE)")
    return {"OP_ID": "OP_BACKUP_EXPORT", "instance_name": opts.instance,
            "target_node": opts.node, "shutdown": opts.shutdown,
            "shutdown_timeout": opts.shutdown_timeout, "remove_instance": opts.remove_instance,
            "ignore_remove_failures": opts.ignore_remove_failures, "mode": "local",
            "compress": opts.compress}


def import_opcode(opts: Any) -> dict[str, Any]:
    """OP_INSTANCE_CREATE (mode import) from the options of ``gnt-backup import``: what is
    not given (OS, disks, NICs, parameters) comes from the export, as in Ganeti."""
    if opts.sd_size is not None and opts.disks:
        raise errors.ParameterError("-s/--os-size and --disk are mutually exclusive")
    if not opts.disk_template:
        raise errors.ParameterError("a disk template is required (-t diskless|file|plain|drbd)")
    if not opts.src_dir:
        raise errors.ParameterError("the export to import is required (--src-dir DIR)")
    if opts.no_nics and opts.nics:
        raise errors.ParameterError("--no-nics and --net are mutually exclusive")
    if opts.sd_size is not None:
        disks: list[dict[str, Any]] = [{"size": opts.sd_size}]
    else:
        disks = parse_disk_option(opts.disks) if opts.disks else []
    hypervisor, hvparams = opts.hypervisor
    pnode, snode = opts.node if opts.node else (None, None)
    return {
        "OP_ID": "OP_INSTANCE_CREATE", "instance_name": opts.instance, "mode": "import",
        "src_node": opts.src_node, "src_path": opts.src_dir,
        "disk_template": opts.disk_template, "disks": disks,
        "nics": parse_net_option(opts.nics) if opts.nics else [],
        "os_type": opts.os, "osparams": opts.osparams, "beparams": opts.beparams,
        "hvparams": hvparams, "hypervisor": hypervisor, "pnode": pnode, "snode": snode,
        "iallocator": opts.iallocator, "start": opts.start and not opts.no_install,
        "no_install": opts.no_install, "ip_check": opts.ip_check,
        "name_check": opts.name_check, "wait_for_sync": opts.wait_for_sync,
        "force_variant": opts.force_variant,
        "tags": opts.tags.split(",") if opts.tags else [],
    }


def cmd_export(opts: Any) -> int:
    submit_or_run(opts, [export_opcode(opts)])
    return 0


def cmd_import(opts: Any) -> int:
    submit_or_run(opts, [import_opcode(opts)])
    return 0


def list_rows(result: dict[str, Any]) -> tuple[list[dict[str, str]], list[str]]:
    """Rows (node, export) of OP_BACKUP_QUERY's answer, and the nodes that did not answer."""
    rows, failed = [], []
    for node in sorted(result):
        names = result[node]
        if names is False:
            failed.append(node)
            continue
        rows += [{"node": node, "export": name} for name in sorted(names)]
    return rows, failed


def cmd_list(opts: Any) -> int:
    fields = resolve_fields(opts.output, list(LIST_FIELDS))
    unknown = [f for f in fields if f not in LIST_FIELDS]
    if unknown:
        raise errors.ParameterError(f"unknown field(s) {', '.join(unknown)}; allowed: "
                                    f"{', '.join(LIST_FIELDS)}")
    result = (submit_or_run(opts, [{"OP_ID": "OP_BACKUP_QUERY", "nodes": opts.nodes or [],
                                    "use_locking": False}]) or [{}])[0]
    rows, failed = list_rows(result)
    for node in failed:
        print(f"Cannot query node {node}", file=sys.stderr)
    for line in format_table(fields, LIST_FIELDS, [[r[f] for f in fields] for r in rows],
                             separator=opts.separator, header=not opts.no_headers,
                             units=None, unit_fields=set(), numeric_fields=set()):
        print(line)
    return 1 if failed else 0


def cmd_list_fields(opts: Any) -> int:
    if not opts.no_headers:
        print("Name   Type Title Description")
    for name, title in LIST_FIELDS.items():
        print(f"{name:<6} Text {title:<5} {'Node name' if name == 'node' else 'Export name'}")
    return 0


def cmd_remove(opts: Any) -> int:
    submit_or_run(opts, [{"OP_ID": "OP_BACKUP_REMOVE", "instance_name": opts.instance}])
    return 0


def build_parser() -> HerdArgumentParser:
    parser = HerdArgumentParser(prog=PROG, description="Instance export and import")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    exp = sub.add_parser("export", help="export an instance to a node's export directory")
    exp.add_argument("instance")
    add_common_options(exp, "node", "shutdown_timeout", *JOB_OPTIONS)
    exp.add_argument("--noshutdown", dest="shutdown", action="store_false", default=True,
                     help="do not shut a running instance down: pause it during the copy")
    exp.add_argument("--remove-instance", dest="remove_instance", action="store_true")
    exp.add_argument("--ignore-remove-failures", dest="ignore_remove_failures",
                     action="store_true")
    exp.add_argument("--transport-compression", dest="compress", default="none",
                     metavar="MODE", help="only 'none'")
    exp.set_defaults(func=cmd_export)

    imp = sub.add_parser("import", help="create an instance from an export")
    imp.add_argument("instance")
    add_common_options(imp, "disk_template", "os_type", "os_size", "disk", "net", "no_nics",
                       "backend", "hypervisor", "osparams", "node_placement", "no_start",
                       "no_install", "no_ip_check", "no_name_check", "no_wait_for_sync",
                       *JOB_OPTIONS)
    imp.add_argument("--src-node", dest="src_node", default=None, metavar="NODE")
    imp.add_argument("--src-dir", dest="src_dir", default=None, metavar="DIR")
    imp.add_argument("--force-variant", dest="force_variant", action="store_true")
    imp.add_argument("--tags", dest="tags", default=None)
    imp.add_argument("-I", "--iallocator", dest="iallocator", default=None)
    imp.set_defaults(func=cmd_import)

    lst = sub.add_parser("list", help="list the exports on the nodes")
    lst.add_argument("--node", dest="nodes", action="append", default=[], metavar="NODE")
    add_common_options(lst, "no_headers", "separator", "output")
    lst.set_defaults(func=cmd_list)

    fields = sub.add_parser("list-fields", help="list the fields of 'list'")
    add_common_options(fields, "no_headers", "separator")
    fields.set_defaults(func=cmd_list_fields)

    rem = sub.add_parser("remove", help="remove the exports of an instance")
    rem.add_argument("instance")
    add_common_options(rem, *JOB_OPTIONS)
    rem.set_defaults(func=cmd_remove)
    return parser


def main(argv: list[str] | None = None) -> int:
    return command_main(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
