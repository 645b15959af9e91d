"""gnt-node: node commands (Ganeti's names, fields and output)."""

from __future__ import annotations

import os
import sys
from typing import Any

from herd import errors
from herd.cli import moves
from herd.cli.client import MasterClient
from herd.cli.common import (
    add_list_fields_command,
    command_main,
    list_fields,
    print_list,
    print_registry_list,
    submit_or_run,
)
from herd.cli.formatting import format_info
from herd.cli.options import (
    JOB_OPTIONS,
    LIST_OPTIONS,
    HerdArgumentParser,
    add_common_options,
    yes_no,
)
from herd.cli.tags import add_tag_commands
from herd.fields import NODE as NODE_FIELDS

PROG = "gnt-node"

DEFAULT_FIELDS = ["name", "dtotal", "dfree", "mtotal", "mnode", "mfree", "pinst_cnt",
                  "sinst_cnt"]


def cmd_list(opts: Any) -> int:
    fields = list_fields(opts, NODE_FIELDS, DEFAULT_FIELDS)
    with MasterClient() as client:  # the nodes are asked only for live fields
        rows = client.call("query_nodes", names=opts.nodes or None, live=True, fields=fields)
    print_registry_list(opts, rows, fields, NODE_FIELDS)
    return 0


def cmd_info(opts: Any) -> int:
    with MasterClient() as client:
        rows = client.call("query_nodes", names=opts.nodes or None, live=True)
    out = []
    for row in rows:
        accel = row.get("hv_accel")
        out.append({
            "Node name": row["name"],
            "primary ip": row["pip"],
            "secondary ip": row["sip"],
            "master candidate": row["master_candidate"],
            "drained": row["drained"],
            "offline": row["offline"],
            "master_capable": row["master_capable"],
            "vm_capable": row["vm_capable"],
            "primary for instances": row["pinst_list"],
            "secondary for instances": row["sinst_list"],
            "node parameters": row["ndparams"],
            "hypervisor": {
                "name": "kvm",
                "accelerator": accel or "unknown (node unreachable)",
                "kvm usable": row.get("kvm_usable"),
                "kvm detail": row.get("kvm_reason"),
                "qemu version": row.get("qemu_version"),
            },
            "memory (MiB)": {"total": row["mtotal"], "node": row["mnode"],
                             "free": row["mfree"]},
            "file storage (MiB)": {"total": row.get("file_storage_total", row["dtotal"]),
                                   "free": row.get("file_storage_free", row["dfree"])},
        })
        if row.get("vg_name"):
            out[-1][f"volume group {row['vg_name']} (MiB)"] = {
                "total": row["dtotal"], "free": row["dfree"],
                "LV activation": row.get("lvm_activation") or row.get("vg_error") or "unknown",
                "activation detail": row.get("lvm_reason")}
    print(format_info(out))
    return 0


def join_token(option: str | None, environ: dict[str, str], stdin: Any) -> str | None:
    """The join token: ``--join-token TOKEN``, ``--join-token -`` (read from standard input),
    or ``HERD_JOIN_TOKEN``. The last two keep it off the command line, where other users of
    the machine see it (ps). It travels to masterd over its socket and is never stored."""
    if option == "-":
        return stdin.readline().strip() or None
    return option or environ.get("HERD_JOIN_TOKEN") or None


def cmd_add(opts: Any) -> int:
    token = join_token(opts.join_token, dict(os.environ), sys.stdin)
    op: dict[str, Any] = {"OP_ID": "OP_NODE_ADD", "node_name": opts.node,
                          "secondary_ip": opts.secondary_ip, "readd": opts.readd,
                          "group": opts.nodegroup, "join_token": token,
                          "master_capable": yes_no(opts.master_capable, "--master-capable"),
                          "vm_capable": yes_no(opts.vm_capable, "--vm-capable")}
    submit_or_run(opts, [op])
    return 0


def cmd_remove(opts: Any) -> int:
    submit_or_run(opts, [{"OP_ID": "OP_NODE_REMOVE", "node_name": opts.node}])
    return 0


def cmd_modify(opts: Any) -> int:
    op: dict[str, Any] = {"OP_ID": "OP_NODE_SET_PARAMS", "node_name": opts.node,
                          "force": opts.force, "auto_promote": opts.auto_promote,
                          "offline": yes_no(opts.offline, "--offline"),
                          "drained": yes_no(opts.drained, "--drained"),
                          "master_candidate": yes_no(opts.master_candidate,
                                                      "--master-candidate"),
                          "master_capable": yes_no(opts.master_capable, "--master-capable"),
                          "vm_capable": yes_no(opts.vm_capable, "--vm-capable"),
                          "secondary_ip": opts.secondary_ip}
    submit_or_run(opts, [op])
    return 0


VOLUME_FIELDS = ["node", "phys", "vg", "name", "size", "instance"]
VOLUME_TITLES = {"node": "Node", "phys": "PhysDev", "vg": "VG", "name": "Name", "size": "Size",
                 "instance": "Instance", "disk": "Disk", "exists": "Exists"}


def cmd_volumes(opts: Any) -> int:
    with MasterClient() as client:
        rows = client.call("query_volumes", names=opts.nodes or None)
    print_list(opts, rows, VOLUME_FIELDS, VOLUME_TITLES, {"size"}, {"size"},
               known_fields=lambda f: f in VOLUME_TITLES)
    return 0


def cmd_list_storage(opts: Any) -> int:
    """Ganeti's list-storage: a job (OP_NODE_QUERY_STORAGE) whose rows are printed with the
    storage fields' titles; ``-t`` picks lvm-vg or file (default: lvm-vg when the cluster has
    a volume group)."""
    from herd.cli.options import resolve_fields
    from herd.logic.storage_units import (
        DEFAULT_STORAGE_FIELDS,
        STORAGE_FIELDS,
        STORAGE_UNIT_FIELDS,
        check_storage_fields,
    )

    fields = check_storage_fields(resolve_fields(opts.output, DEFAULT_STORAGE_FIELDS))
    op = {"OP_ID": "OP_NODE_QUERY_STORAGE", "nodes": opts.nodes,
          "storage_type": opts.storage_type, "output_fields": fields}
    result = submit_or_run(opts, [op])
    if result is None:
        return 0
    rows = [dict(zip(fields, values, strict=True)) for values in result[0]]
    opts.output = ",".join(fields)
    print_list(opts, rows, fields, STORAGE_FIELDS, set(STORAGE_UNIT_FIELDS),
               set(STORAGE_UNIT_FIELDS))
    return 0


def cmd_migrate(opts: Any) -> int:
    op: dict[str, Any] = {"OP_ID": "OP_NODE_MIGRATE", "node_name": opts.node}
    if opts.non_live:
        op["mode"] = "non-live"
    elif opts.migration_mode:
        op["mode"] = opts.migration_mode
    submit_or_run(opts, [op])
    return 0


def cmd_evacuate(opts: Any) -> int:
    if opts.primary_only and opts.secondary_only:
        raise errors.ParameterError("-p and -s are mutually exclusive")
    mode = "primary-only" if opts.primary_only else \
        "secondary-only" if opts.secondary_only else "all"
    submit_or_run(opts, [{"OP_ID": "OP_NODE_EVACUATE", "node_name": opts.node, "mode": mode,
                          "remote_node": opts.new_secondary,
                          "iallocator": opts.iallocator,
                          "early_release": opts.early_release}])
    return 0


def build_parser() -> HerdArgumentParser:
    parser = HerdArgumentParser(prog=PROG, description="Node operations")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    lst = sub.add_parser("list", help="list nodes")
    lst.add_argument("nodes", nargs="*")
    add_common_options(lst, *LIST_OPTIONS)
    lst.set_defaults(func=cmd_list)
    add_list_fields_command(sub, NODE_FIELDS)
    info = sub.add_parser("info", help="show detailed information")
    info.add_argument("nodes", nargs="*")
    info.set_defaults(func=cmd_info)

    add = sub.add_parser("add", help="add a node (give the token herd-join-token printed on it)")
    add.add_argument("node")
    add.add_argument("-s", "--secondary-ip", dest="secondary_ip", default=None)
    add.add_argument("--join-token", dest="join_token", default=None,
                     help="the token printed by herd-join-token on the new node; '-' "
                          "reads it from standard input (or set HERD_JOIN_TOKEN: both keep "
                          "it out of the process list)")
    add.add_argument("--readd", action="store_true")
    add.add_argument("-g", "--node-group", dest="nodegroup", default=None)
    add.add_argument("--master-capable", dest="master_capable", default=None)
    add.add_argument("--vm-capable", dest="vm_capable", default=None)
    add_common_options(add, *JOB_OPTIONS)
    add.set_defaults(func=cmd_add)

    remove = sub.add_parser("remove", help="remove a node without instances")
    remove.add_argument("node")
    add_common_options(remove, *JOB_OPTIONS)
    remove.set_defaults(func=cmd_remove)

    modify = sub.add_parser("modify", help="change a node's role or parameters")
    modify.add_argument("node")
    modify.add_argument("-O", "--offline", dest="offline", default=None, metavar="yes|no")
    modify.add_argument("-D", "--drained", dest="drained", default=None, metavar="yes|no")
    modify.add_argument("-C", "--master-candidate", dest="master_candidate", default=None,
                        metavar="yes|no")
    modify.add_argument("--master-capable", dest="master_capable", default=None)
    modify.add_argument("--vm-capable", dest="vm_capable", default=None)
    modify.add_argument("-s", "--secondary-ip", dest="secondary_ip", default=None)
    modify.add_argument("--auto-promote", dest="auto_promote", action="store_true")
    add_common_options(modify, "force", *JOB_OPTIONS)
    modify.set_defaults(func=cmd_modify)

    vol = sub.add_parser("volumes", help="list the disk volumes of instances on nodes")
    vol.add_argument("nodes", nargs="*")
    add_common_options(vol, *LIST_OPTIONS)
    vol.set_defaults(func=cmd_volumes)

    stor = sub.add_parser("list-storage", help="list the storage units of nodes (Ganeti's "
                          "fields: node, type, name, size, used, free, allocatable)")
    stor.add_argument("nodes", nargs="*")
    stor.add_argument("-t", "--storage-type", dest="storage_type", default=None,
                      metavar="STORAGE_TYPE", help="lvm-vg or file (default: lvm-vg when the "
                      "cluster has a volume group, else file)")
    add_common_options(stor, *LIST_OPTIONS)
    stor.set_defaults(func=cmd_list_storage)

    mig = sub.add_parser("migrate", help="migrate all primary instances of a node")
    mig.add_argument("node")
    add_common_options(mig, "force", *JOB_OPTIONS)
    mig.add_argument("--non-live", dest="non_live", action="store_true")
    mig.add_argument("--migration-mode", dest="migration_mode", default=None,
                     choices=("live", "non-live"))
    mig.set_defaults(func=cmd_migrate)

    fo = sub.add_parser("failover", help="fail over all primary instances of a node to their "
                        "secondaries (one job per instance)")
    fo.add_argument("node")
    add_common_options(fo, "force", *JOB_OPTIONS)
    fo.add_argument("--ignore-consistency", dest="ignore_consistency", action="store_true")
    fo.add_argument("-I", "--iallocator", dest="iallocator", default=None)
    fo.set_defaults(func=moves.cmd_node_failover)

    evac = sub.add_parser("evacuate", help="move all instances (or copies) off a node")
    evac.add_argument("node")
    add_common_options(evac, "force", *JOB_OPTIONS)
    evac.add_argument("-p", "--primary-only", dest="primary_only", action="store_true")
    evac.add_argument("-s", "--secondary-only", dest="secondary_only", action="store_true")
    evac.add_argument("-n", "--new-secondary", dest="new_secondary", default=None)
    evac.add_argument("-I", "--iallocator", dest="iallocator", default=None)
    evac.add_argument("--early-release", dest="early_release", action="store_true")
    evac.set_defaults(func=cmd_evacuate)
    add_tag_commands(sub, "node", "NODE")
    return parser


def main(argv: list[str] | None = None) -> int:
    return command_main(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
