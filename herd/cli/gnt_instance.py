"""gnt-instance: instance commands (Ganeti's names, options, fields and output)."""

from __future__ import annotations

import sys
import time

from herd import errors
from herd.cli import moves
from herd.cli.client import MasterClient
from herd.cli.common import (
    add_list_fields_command,
    command_main,
    list_fields,
    print_registry_list,
    submit_or_run,
)
from herd.cli.formatting import format_info
from herd.cli.instance_changes import add_change_commands
from herd.cli.options import (
    JOB_OPTIONS,
    LIST_OPTIONS,
    HerdArgumentParser,
    add_common_options,
    parse_disk_option,
    parse_net_option,
)
from herd.cli.tags import add_tag_commands
from herd.fields import INSTANCE as INSTANCE_FIELDS
from herd.units import format_size

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing costs each gnt-* command ~2 ms at start
    from typing import Any

PROG = "gnt-instance"

DEFAULT_FIELDS = ["name", "hypervisor", "os", "pnode", "status", "oper_ram"]
# -- add/remove ----------------------------------------------------------------------------------
def cmd_add(opts: Any) -> int:
    if opts.sd_size is not None and opts.disks:
        raise errors.ParameterError("-s/--os-size and --disk are mutually exclusive")
    if not opts.disk_template:
        raise errors.ParameterError("a disk template is required (-t diskless|file|drbd)")
    if opts.sd_size is not None:
        disks: list[dict[str, Any]] = [{"size": opts.sd_size}]
    else:
        disks = parse_disk_option(opts.disks) if opts.disks else []
    if opts.no_nics and opts.nics:
        raise errors.ParameterError("--no-nics and --net are mutually exclusive")
    nics = [] if opts.no_nics else (parse_net_option(opts.nics) if opts.nics else [{}])
    hypervisor, hvparams = opts.hypervisor
    pnode, snode = opts.node if opts.node else (None, None)
    op: dict[str, Any] = {
        "OP_ID": "OP_INSTANCE_CREATE", "instance_name": opts.instance, "mode": "create",
        "disk_template": opts.disk_template, "disks": disks, "nics": nics,
        "os_type": opts.os, "osparams": opts.osparams, "beparams": opts.beparams,
        "hvparams": hvparams, "hypervisor": hypervisor, "pnode": pnode, "snode": snode,
        "iallocator": opts.iallocator,
        "start": opts.start and not opts.no_install, "no_install": opts.no_install,
        "ip_check": opts.ip_check, "name_check": opts.name_check,
        "wait_for_sync": opts.wait_for_sync, "force_variant": opts.force_variant,
        "tags": opts.tags.split(",") if opts.tags else [],
    }
    submit_or_run(opts, [op])
    return 0


def cmd_remove(opts: Any) -> int:
    submit_or_run(opts, [{"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": opts.instance,
                          "ignore_failures": opts.ignore_failures,
                          "shutdown_timeout": opts.shutdown_timeout}])
    return 0


# -- power -----------------------------------------------------------------------------------
def cmd_startup(opts: Any) -> int:
    ops = [{"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": name, "force": opts.force,
            "hvparams": opts.hvparams, "beparams": opts.beparams,
            "no_remember": opts.no_remember, "startup_paused": opts.startup_paused}
           for name in opts.instances]
    for op in ops:
        submit_or_run(opts, [op])
    return 0


def cmd_shutdown(opts: Any) -> int:
    # Ganeti: --timeout is the time to wait for a clean shutdown; 0 means a hard stop.
    timeout = opts.timeout if opts.shutdown_timeout is None else opts.shutdown_timeout
    for name in opts.instances:
        submit_or_run(opts, [{"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": name,
                              "timeout": timeout, "no_remember": opts.no_remember,
                              "force": opts.force}])
    return 0


def cmd_reboot(opts: Any) -> int:
    for name in opts.instances:
        submit_or_run(opts, [{"OP_ID": "OP_INSTANCE_REBOOT", "instance_name": name,
                              "reboot_type": opts.reboot_type,
                              "ignore_secondaries": opts.ignore_secondaries,
                              "shutdown_timeout": opts.shutdown_timeout}])
    return 0


def cmd_activate_disks(opts: Any) -> int:
    result = submit_or_run(opts, [{"OP_ID": "OP_INSTANCE_ACTIVATE_DISKS",
                                   "instance_name": opts.instance,
                                   "ignore_size": opts.ignore_size,
                                   "wait_for_sync": opts.wait_for_sync}])
    if result:
        for node, iv_name, path in result[0]:
            print(f"{node}:{iv_name}:{path}")
    return 0


def cmd_deactivate_disks(opts: Any) -> int:
    submit_or_run(opts, [{"OP_ID": "OP_INSTANCE_DEACTIVATE_DISKS",
                          "instance_name": opts.instance, "force": opts.force}])
    return 0


# -- moves ---------------------------------------------------------------------------------
def cmd_failover(opts: Any) -> int:
    submit_or_run(opts, [{"OP_ID": "OP_INSTANCE_FAILOVER", "instance_name": opts.instance,
                          "ignore_consistency": opts.ignore_consistency,
                          "shutdown_timeout": opts.shutdown_timeout,
                          "target_node": opts.target_node}])
    return 0


def cmd_migrate(opts: Any) -> int:
    op: dict[str, Any] = {"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": opts.instance,
                          "cleanup": opts.cleanup, "allow_failover": opts.allow_failover,
                          "target_node": opts.target_node}
    if opts.non_live:
        op["mode"] = "non-live"
    elif opts.migration_mode:
        op["mode"] = opts.migration_mode
    result = submit_or_run(opts, [op])
    if result and isinstance(result[0], dict) and result[0].get("total_time_ms") is not None:
        stats = result[0]
        print(f"Migration done in {stats['total_time_ms'] / 1000:.2f} s, guest paused for "
              f"{stats.get('guest_pause_ms', stats.get('downtime_ms', '?'))} ms")
    return 0


def cmd_modify(opts: Any) -> int:
    op: dict[str, Any] = {"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": opts.instance,
                          "force": opts.force, "beparams": opts.beparams,
                          "hvparams": opts.hvparams, "osparams": opts.osparams,
                          "wait_for_sync": opts.wait_for_sync}
    if opts.disk_template:
        op["disk_template"] = opts.disk_template
    if opts.node:
        op["remote_node"] = opts.node
    if opts.nics:
        op["nics"] = parse_net_option(opts.nics, modify=True)
    if opts.disks:
        op["disks"] = parse_disk_option(opts.disks, modify=True)
    if opts.hotplug:
        op["hotplug"] = True
    if opts.hotplug_if_possible:
        op["hotplug_if_possible"] = True
    submit_or_run(opts, [op])
    return 0


def cmd_recreate_disks(opts: Any) -> int:
    op: dict[str, Any] = {"OP_ID": "OP_INSTANCE_RECREATE_DISKS",
                          "instance_name": opts.instance}
    if opts.disks:
        op["disks"] = [int(d.split(":")[0]) for d in opts.disks]
    if opts.nodes:
        op["nodes"] = opts.nodes.split(":")
    if opts.iallocator:
        op["iallocator"] = opts.iallocator
    submit_or_run(opts, [op])
    return 0


def cmd_replace_disks(opts: Any) -> int:
    modes = [m for m, flag in (("replace_on_primary", opts.on_primary),
                               ("replace_on_secondary", opts.on_secondary),
                               ("replace_auto", opts.auto),
                               ("replace_new_secondary",
                                opts.new_secondary or opts.iallocator)) if flag]
    if len(modes) != 1 or (opts.new_secondary and opts.iallocator):
        raise errors.ParameterError("give exactly one of -p, -s, -a, --new-secondary NODE, "
                                    "-I/--iallocator NAME")
    op: dict[str, Any] = {"OP_ID": "OP_INSTANCE_REPLACE_DISKS",
                          "instance_name": opts.instance, "mode": modes[0],
                          "early_release": opts.early_release}
    if opts.new_secondary:
        op["remote_node"] = opts.new_secondary
    if opts.iallocator:
        op["iallocator"] = opts.iallocator
    if opts.disks:
        op["disks"] = _disk_indexes(opts.disks)
    submit_or_run(opts, [op])
    return 0


def _disk_indexes(text: str) -> list[int]:
    """--disks 0,1: disk indexes, as Ganeti's replace-disks takes them."""
    out = []
    for part in text.split(","):
        if not part.strip().isdigit():
            raise errors.ParameterError(f"invalid disk index '{part}' in --disks '{text}': "
                                        "allowed are comma-separated numbers, e.g. 0,1")
        out.append(int(part))
    return out


# -- queries ---------------------------------------------------------------------------------
def cmd_list(opts: Any) -> int:
    fields = list_fields(opts, INSTANCE_FIELDS, DEFAULT_FIELDS)
    with MasterClient() as client:  # masterd computes these fields only
        rows = client.call("query_instances", names=opts.instances or None, live=True,
                           fields=fields)
    print_registry_list(opts, rows, fields, INSTANCE_FIELDS)
    return 0


def _state_line(row: dict[str, Any]) -> str:
    actual = {True: "up", False: "down", None: "unknown"}[row.get("oper_state")]
    if row.get("runtime") and row["runtime"].get("state") == "paused":
        actual = "paused"
    return f"configured to be {row['admin_state']}, actual state is {actual}"


def mirror_state_text(state: dict[str, Any]) -> str:
    """DRBD-like words for a mirrored disk's state, as gnt-instance info shows them."""
    if state.get("error"):
        return f"unknown ({state['error']})"
    role = state.get("role")
    if role != "primary":
        return "not active" if role == "down" else f"{role}"
    if state.get("in_sync"):
        return "connected, in sync"
    if state.get("degraded") or not state.get("connected"):
        return "degraded (secondary not connected)"
    percent = state.get("sync_percent")
    text = f"connected, resync {percent:.1f}%" if percent is not None else "connected, resync"
    speed = state.get("speed_bps")
    if speed:
        text += f" at {speed / 1048576:.1f} MiB/s"
    eta = state.get("eta_seconds")
    if eta is not None:
        text += f", {eta:.0f} s left"
    return text


def instance_info_data(row: dict[str, Any]) -> dict[str, Any]:
    hv = row["hvparams"]
    custom_hv = row["custom_hvparams"]
    runtime = row.get("runtime") or {}
    disks = []
    mirror = row.get("disk.mirror") or []
    for index, disk in enumerate(row["disks"]):
        entry: dict[str, Any] = {
            f"disk/{index}": f"{disk['dev_type']}, size {format_size(disk['size'])}",
            "access mode": disk["mode"],
            "logical_id": _display_id(disk),
            "name": disk["name"],
            "UUID": disk["uuid"],
        }
        if disk["dev_type"] == "drbd":
            entry["nodes"] = f"primary {row['pnode']}, secondary {', '.join(row['snodes'])}"
            if index < len(mirror):
                entry["mirror"] = mirror_state_text(mirror[index])
        disks.append(entry)
    nics = []
    for index, nic in enumerate(row["nics"]):
        nics.append({f"nic/{index}": "", "MAC": nic["mac"], "IP": nic["ip"],
                     "mode": nic["mode"], "link": nic["link"], "name": nic["name"],
                     "UUID": nic["uuid"]})
        if nic.get("network"):  # Ganeti shows the network by name
            names = row.get("nic.networks.names") or []
            nics[-1]["network"] = names[index] if index < len(names) else nic["network"]
    return {
        "Instance name": row["name"],
        "UUID": row["uuid"],
        "Serial number": row["serial_no"],
        "Creation time": time.ctime(row["ctime"]),
        "Modification time": time.ctime(row["mtime"]),
        "State": _state_line(row),
        "Nodes": [{"primary": row["pnode"], "group": row["pnode.group"]},
                  {"secondaries": ", ".join(row["snodes"])}],
        "Operating system": row["os"],
        "Operating system parameters": row["osparams"],
        "Allocated network port": row["network_port"],
        "Hypervisor": row["hypervisor"],
        "Hypervisor parameters": {
            k: (f"{v}" if k in custom_hv else f"default ({v})") for k, v in sorted(hv.items())},
        "Back-end parameters": {
            "always_failover": row["be/always_failover"],
            "auto_balance": row["be/auto_balance"],
            "maxmem": row["be/maxmem"], "minmem": row["be/minmem"], "vcpus": row["be/vcpus"],
        },
        "Runtime": {"memory": runtime.get("memory"), "vcpus": runtime.get("vcpus"),
                    "accelerator": runtime.get("accel"), "pid": runtime.get("pid")},
        "NICs": nics,
        "Disk template": row["disk_template"],
        "Disks": disks,
    }


def cmd_info(opts: Any) -> int:
    with MasterClient() as client:
        rows = client.call("query_instances", names=opts.instances or None,
                           live=not opts.static)
    print(format_info([instance_info_data(r) for r in rows]))
    return 0


def cmd_console(opts: Any) -> int:
    from herd.cli.console import attach

    with MasterClient() as client:
        row = client.call("query_instances", names=[opts.instance], live=True)[0]
        node = client.call("query_nodes", names=[row["pnode"]], live=False)[0]
        cluster = client.call("query_cluster")
    if not row.get("oper_state"):
        raise errors.OpPrereqError(f"instance {row['name']} is not running, cannot get a "
                                   "console")
    if opts.show_command:
        print(f"herd console of {row['name']} on {node['name']} ({node['pip']})")
        return 0
    return attach(row["name"], node["pip"], cluster.get("noded_port", 1811))


def build_parser() -> HerdArgumentParser:
    parser = HerdArgumentParser(prog=PROG, description="Instance operations")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add = sub.add_parser("add", help="create an instance")
    add.add_argument("instance")
    add_common_options(add, "disk_template", "os_type", "os_size", "disk", "net", "no_nics",
                       "backend", "hypervisor", "osparams", "node_placement", "no_start",
                       "no_install", "no_ip_check", "no_name_check", "no_wait_for_sync",
                       *JOB_OPTIONS)
    add.add_argument("--force-variant", dest="force_variant", action="store_true")
    add.add_argument("--tags", dest="tags", default=None)
    add.add_argument("-I", "--iallocator", dest="iallocator", default=None)
    add.set_defaults(func=cmd_add)

    remove = sub.add_parser("remove", help="remove an instance and its disks")
    remove.add_argument("instance")
    add_common_options(remove, "force", "shutdown_timeout", *JOB_OPTIONS)
    remove.add_argument("--ignore-failures", dest="ignore_failures", action="store_true")
    remove.set_defaults(func=cmd_remove)

    for name in ("startup", "start"):
        start = sub.add_parser(name, help="start instances")
        start.add_argument("instances", nargs="+")
        add_common_options(start, "force", "backend", "hvparams", *JOB_OPTIONS)
        start.add_argument("--no-remember", dest="no_remember", action="store_true")
        start.add_argument("--paused", dest="startup_paused", action="store_true")
        start.set_defaults(func=cmd_startup)

    for name in ("shutdown", "stop"):
        stop = sub.add_parser(name, help="stop instances")
        stop.add_argument("instances", nargs="+")
        add_common_options(stop, "force", "timeout", *JOB_OPTIONS)
        stop.add_argument("--shutdown-timeout", dest="shutdown_timeout", type=int,
                          default=None, help="alias of --timeout; 0 means a hard stop")
        stop.add_argument("--no-remember", dest="no_remember", action="store_true")
        stop.set_defaults(func=cmd_shutdown)

    reboot = sub.add_parser("reboot", help="reboot instances")
    reboot.add_argument("instances", nargs="+")
    add_common_options(reboot, "force", "shutdown_timeout", *JOB_OPTIONS)
    reboot.add_argument("-t", "--type", dest="reboot_type", default="hard",
                        choices=("soft", "hard", "full"))
    reboot.add_argument("--ignore-secondaries", dest="ignore_secondaries", action="store_true")
    reboot.set_defaults(func=cmd_reboot)

    act = sub.add_parser("activate-disks", help="make the instance's disks available")
    act.add_argument("instance")
    add_common_options(act, "no_wait_for_sync", *JOB_OPTIONS)
    act.add_argument("--ignore-size", dest="ignore_size", action="store_true")
    act.set_defaults(func=cmd_activate_disks)

    deact = sub.add_parser("deactivate-disks", help="release the instance's disks")
    deact.add_argument("instance")
    add_common_options(deact, "force", *JOB_OPTIONS)
    deact.set_defaults(func=cmd_deactivate_disks)

    fo = sub.add_parser("failover", help="restart an instance on its secondary node")
    fo.add_argument("instance")
    add_common_options(fo, "force", "shutdown_timeout", *JOB_OPTIONS)
    fo.add_argument("--ignore-consistency", dest="ignore_consistency", action="store_true")
    fo.add_argument("-n", "--target-node", dest="target_node", default=None)
    fo.set_defaults(func=cmd_failover)

    mv = sub.add_parser("move", help="copy a non-mirrored instance to another node")
    mv.add_argument("instance")
    add_common_options(mv, "force", "shutdown_timeout", *JOB_OPTIONS)
    mv.add_argument("--ignore-consistency", dest="ignore_consistency", action="store_true",
                    help="go on when the instance cannot be shut down on its node")
    mv.add_argument("-n", "--target-node", dest="target_node", default=None, required=True,
                    metavar="NODE")
    mv.set_defaults(func=moves.cmd_move)

    mig = sub.add_parser("migrate", help="move a running instance to its secondary node")
    mig.add_argument("instance")
    add_common_options(mig, "force", *JOB_OPTIONS)
    mig.add_argument("--non-live", dest="non_live", action="store_true")
    mig.add_argument("--migration-mode", dest="migration_mode", default=None,
                     choices=("live", "non-live"))
    mig.add_argument("--cleanup", action="store_true")
    mig.add_argument("--allow-failover", dest="allow_failover", action="store_true")
    mig.add_argument("-n", "--target-node", dest="target_node", default=None)
    mig.set_defaults(func=cmd_migrate)

    mod = sub.add_parser("modify", help="change parameters or convert the disk template")
    mod.add_argument("instance")
    add_common_options(mod, "force", "backend", "hvparams", "osparams", "disk_template",
                       "node", "disk", "net", "no_wait_for_sync", *JOB_OPTIONS)
    mod.add_argument("--hotplug", action="store_true",
                     help="attach/detach NICs and disks of a running instance now")
    mod.add_argument("--hotplug-if-possible", dest="hotplug_if_possible", action="store_true",
                     help="as --hotplug (Herd's kvm hot-plugs every NIC and virtio disk)")
    mod.set_defaults(func=cmd_modify)

    rc = sub.add_parser("recreate-disks", help="create missing disks again (empty)")
    rc.add_argument("instance")
    add_common_options(rc, *JOB_OPTIONS)
    rc.add_argument("--disk", dest="disks", action="append", default=[],
                    metavar="N[:params]")
    rc.add_argument("-n", "--node", dest="nodes", default=None)
    rc.add_argument("-I", "--iallocator", dest="iallocator", default=None)
    rc.set_defaults(func=cmd_recreate_disks)

    rd = sub.add_parser("replace-disks", help="rebuild one side of the mirrored disks")
    rd.add_argument("instance")
    add_common_options(rd, *JOB_OPTIONS)
    rd.add_argument("-p", "--on-primary", dest="on_primary", action="store_true")
    rd.add_argument("-s", "--on-secondary", dest="on_secondary", action="store_true")
    rd.add_argument("-a", "--auto", dest="auto", action="store_true")
    rd.add_argument("-n", "--new-secondary", dest="new_secondary", default=None)
    rd.add_argument("-I", "--iallocator", dest="iallocator", default=None,
                    help="the allocator choosing the new secondary ('.': the default)")
    rd.add_argument("--disks", dest="disks", default=None)
    rd.add_argument("--early-release", dest="early_release", action="store_true")
    rd.set_defaults(func=cmd_replace_disks)

    lst = sub.add_parser("list", help="list instances")
    lst.add_argument("instances", nargs="*")
    add_common_options(lst, *LIST_OPTIONS)
    lst.set_defaults(func=cmd_list)

    add_list_fields_command(sub, INSTANCE_FIELDS)

    info = sub.add_parser("info", help="show detailed information")
    info.add_argument("instances", nargs="*")
    info.add_argument("-s", "--static", dest="static", action="store_true")
    info.add_argument("--all", dest="all", action="store_true")
    info.set_defaults(func=cmd_info)

    console = sub.add_parser("console", help="attach to the serial console (Ctrl+] detaches)")
    console.add_argument("instance")
    console.add_argument("--show-cmd", dest="show_command", action="store_true")
    console.set_defaults(func=cmd_console)
    add_change_commands(sub)
    add_tag_commands(sub, "instance", "INSTANCE")
    return parser


def main(argv: list[str] | None = None) -> int:
    return command_main(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())


def _display_id(disk: dict[str, Any]) -> str:
    from herd.objects import disk_ids  # info only: herd.objects costs every command ~30 ms

    return disk_ids.display(disk["dev_type"], disk["logical_id"])
