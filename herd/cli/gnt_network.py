"""gnt-network: IPv4 networks with an address pool, connected to node groups (Ganeti's
commands, options, fields and output)."""

from __future__ import annotations

import sys
import textwrap
from typing import Any

from herd import errors
from herd.cli.client import MasterClient
from herd.cli.common import (
    add_list_fields_command,
    command_main,
    list_fields,
    print_registry_list,
    submit_or_run,
)
from herd.cli.options import (
    JOB_OPTIONS,
    LIST_OPTIONS,
    NIC_MODES,
    HerdArgumentParser,
    add_common_options,
    parse_keyval,
    split_escaped,
)
from herd.cli.tags import add_tag_commands
from herd.fields import NETWORK as NETWORK_FIELDS

PROG = "gnt-network"

DEFAULT_FIELDS = ["name", "network", "gateway", "mac_prefix", "group_list", "tags"]


def _ips(text: str | None) -> list[str] | None:
    """``--add-reserved-ips a,b`` as a list (None when not given), as Ganeti splits it."""
    if text is None:
        return None
    return [ip for ip in split_escaped(text) if ip]


def _query(names: list[str] | None, fields: list[str] | None = None) -> list[dict[str, Any]]:
    with MasterClient() as client:
        return client.call("query_networks", names=names or None,  # type: ignore[no-any-return]
                           fields=fields)


def _for_table(row: dict[str, Any]) -> dict[str, Any]:
    """The list fields as Ganeti's table shows them (``--json`` keeps them as lists)."""
    out = dict(row)
    if "group_list" in row:
        out["group_list"] = ", ".join(f"{g} ({m}, {lk}, {v})"
                                      for g, m, lk, v in row["group_list"])
    for key in ("inst_list", "tags"):
        if key in row:
            out[key] = ",".join(row[key])
    return out


def cmd_list(opts: Any) -> int:
    fields = list_fields(opts, NETWORK_FIELDS, DEFAULT_FIELDS)
    rows = _query(opts.networks, fields)
    if not opts.json:
        rows = [_for_table(r) for r in rows]
    print_registry_list(opts, rows, fields, NETWORK_FIELDS)
    return 0


def info_lines(row: dict[str, Any], used: dict[str, list[tuple[int, str]]]) -> list[str]:
    """``gnt-network info`` of one network, in Ganeti's layout; ``used``: instance -> its
    (NIC index, address) on this network."""
    size = row["free_count"] + row["reserved_count"]
    out = [f"Network name: {row['name']}", f"UUID: {row['uuid']}",
           f"Serial number: {row['serial_no']}", f"  Subnet: {row['network']}",
           f"  Gateway: {row['gateway']}", f"  IPv6 Subnet: {row['network6']}",
           f"  IPv6 Gateway: {row['gateway6']}", f"  Mac Prefix: {row['mac_prefix']}",
           f"  Size: {size}",
           f"  Free: {row['free_count']} ({100.0 * row['free_count'] / size:.2f}%)",
           "  Usage map:"]
    for idx, line in enumerate(textwrap.wrap(row["map"], width=64)):
        out.append(f"     {str(idx * 64).rjust(3)} {line.ljust(64)} {idx * 64 + 63}")
    out.append("         (X) used    (.) free")
    if row["external_reservations"]:
        out.append("  externally reserved IPs:")
        out += [f"    {line}" for line in textwrap.wrap(row["external_reservations"], 64)]
    if row["group_list"]:
        out.append("  connected to node groups:")
        out += [f"    {g} (mode:{m} link:{lk} vlan:{v})" for g, m, lk, v in row["group_list"]]
    else:
        out.append("  not connected to any node group")
    if row["inst_list"]:
        out.append(f"  used by {len(row['inst_list'])} instances:")
        for name in row["inst_list"]:
            out.append(f"    {name}: " + ", ".join(f"{i}:{ip}" for i, ip in used.get(name, [])))
    else:
        out.append("  not used by any instances")
    return out


def cmd_info(opts: Any) -> int:
    with MasterClient() as client:
        rows = client.call("query_networks", names=opts.networks or None)
        users = sorted({n for r in rows for n in r["inst_list"]})
        insts = client.call("query_instances", names=users, live=False) if users else []
    for row in rows:
        used: dict[str, list[tuple[int, str]]] = {}
        for inst in insts:
            for idx, (ip, net) in enumerate(zip(inst.get("nic.ips") or [],
                                                inst.get("nic.networks") or [], strict=False)):
                if net == row["uuid"]:
                    used.setdefault(inst["name"], []).append((idx, ip))
        print("\n".join(info_lines(row, used)))
    return 0


def cmd_add(opts: Any) -> int:
    if not opts.network:
        raise errors.ParameterError("the --network option must be given (an IPv4 subnet "
                                    "from /16 to /30, such as 192.0.2.0/24)")
    op = {"OP_ID": "OP_NETWORK_ADD", "network_name": opts.name, "network": opts.network,
          "gateway": opts.gateway, "network6": opts.network6, "gateway6": opts.gateway6,
          "mac_prefix": opts.mac_prefix, "add_reserved_ips": _ips(opts.add_reserved_ips),
          "conflicts_check": opts.conflicts_check,
          "tags": [t for t in (opts.tags or "").split(",") if t]}
    submit_or_run(opts, [op])
    return 0


def cmd_modify(opts: Any) -> int:
    changes = {"gateway": opts.gateway, "network6": opts.network6, "gateway6": opts.gateway6,
               "mac_prefix": opts.mac_prefix,
               "add_reserved_ips": _ips(opts.add_reserved_ips),
               "remove_reserved_ips": _ips(opts.remove_reserved_ips)}
    if all(v is None for v in changes.values()):
        raise errors.ParameterError("please give at least one of the parameters to modify")
    submit_or_run(opts, [{"OP_ID": "OP_NETWORK_SET_PARAMS", "network_name": opts.name,
                          **changes}])
    return 0


def cmd_remove(opts: Any) -> int:
    submit_or_run(opts, [{"OP_ID": "OP_NETWORK_REMOVE", "network_name": opts.name,
                          "force": opts.force}])
    return 0


def _all_groups() -> list[str]:
    with MasterClient() as client:
        return [g["name"] for g in client.call("query_groups")]


def connect_args(args: list[str], nicparams: dict[str, Any] | None) -> tuple[list[str],
                                                                             dict[str, Any]]:
    """(groups, netparams) of ``connect``: ``-N mode=M,link=L[,vlan=V] NET [GROUP...]``, or
    Ganeti 2.x's positional ``NET GROUP MODE LINK`` (accepted when -N is not given)."""
    if nicparams is None and len(args) == 4 and args[2] in NIC_MODES:
        return [args[1]], {"mode": args[2], "link": args[3], "vlan": ""}
    given = dict(nicparams or {})
    unknown = sorted(set(given) - {"mode", "link", "vlan"})
    if unknown:
        raise errors.ParameterError(f"unknown network parameter(s) {', '.join(unknown)} in "
                                    "-N: allowed are mode, link, vlan")
    mode = given.get("mode") or "bridged"
    if mode not in NIC_MODES:
        raise errors.ParameterError(f"invalid mode '{mode}' in -N: allowed are "
                                    f"{', '.join(NIC_MODES)}")
    if not given.get("link"):
        raise errors.ParameterError("connect needs the link: -N mode=bridged,link=BRIDGE")
    return args[1:], {"mode": mode, "link": str(given["link"]),
                      "vlan": str(given.get("vlan") or "")}


def cmd_connect(opts: Any) -> int:
    nicparams = parse_keyval(opts.nicparams, option="-N") if opts.nicparams else None
    groups, netparams = connect_args([opts.name, *opts.groups], nicparams)
    groups = groups or _all_groups()
    ops = [{"OP_ID": "OP_NETWORK_CONNECT", "network_name": opts.name, "group_name": group,
            "network_mode": netparams["mode"], "network_link": netparams["link"],
            "network_vlan": netparams["vlan"], "conflicts_check": opts.conflicts_check}
           for group in groups]
    submit_or_run(opts, ops)
    return 0


def cmd_disconnect(opts: Any) -> int:
    groups = opts.groups or _all_groups()
    submit_or_run(opts, [{"OP_ID": "OP_NETWORK_DISCONNECT", "network_name": opts.name,
                          "group_name": group} for group in groups])
    return 0


def _address_options(cmd: Any, *, modify: bool) -> None:
    cmd.add_argument("--gateway", dest="gateway", default=None,
                     help="the default gateway" + ("; none removes it" if modify else ""))
    cmd.add_argument("--network6", dest="network6", default=None, metavar="NETWORK6",
                     help="an IPv6 subnet, informational (no pool; for hooks and EUI-64)")
    cmd.add_argument("--gateway6", dest="gateway6", default=None, metavar="GATEWAY6",
                     help="the IPv6 gateway, informational")
    cmd.add_argument("--mac-prefix", dest="mac_prefix", default=None, metavar="MACPREFIX",
                     help="NICs on the network get MACs under this prefix (aa:bb:cc)")
    cmd.add_argument("--add-reserved-ips", dest="add_reserved_ips", default=None,
                     metavar="RESERVEDIPS", help="addresses kept out of the pool (a,b,...)")


def build_parser() -> HerdArgumentParser:
    parser = HerdArgumentParser(prog=PROG, description="Network operations")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add = sub.add_parser("add", help="add an IPv4 network (subnet /16 to /30) with an "
                         "address pool")
    add.add_argument("name", metavar="NETWORK")
    add.add_argument("--network", dest="network", default=None, metavar="NETWORK",
                     help="the subnet in CIDR form (mandatory)")
    _address_options(add, modify=False)
    add.add_argument("--no-conflicts-check", dest="conflicts_check", action="store_false",
                     default=True, help="do not reserve the nodes' addresses in the subnet")
    add.add_argument("--tags", dest="tags", default=None, metavar="TAG,...")
    add_common_options(add, *JOB_OPTIONS)
    add.set_defaults(func=cmd_add)

    lst = sub.add_parser("list", help="list networks")
    lst.add_argument("networks", nargs="*", metavar="NETWORK")
    add_common_options(lst, *LIST_OPTIONS)
    lst.add_argument("-v", "--verbose", dest="verbose", action="store_true")
    lst.set_defaults(func=cmd_list)
    add_list_fields_command(sub, NETWORK_FIELDS)
    info = sub.add_parser("info", help="show detailed information")
    info.add_argument("networks", nargs="*", metavar="NETWORK")
    info.set_defaults(func=cmd_info)

    modify = sub.add_parser("modify", help="change a network's gateway, reserved addresses, "
                            "MAC prefix or IPv6 data")
    modify.add_argument("name", metavar="NETWORK")
    _address_options(modify, modify=True)
    modify.add_argument("--remove-reserved-ips", dest="remove_reserved_ips", default=None,
                        metavar="RESERVEDIPS", help="addresses given back to the pool")
    add_common_options(modify, *JOB_OPTIONS)
    modify.set_defaults(func=cmd_modify)

    remove = sub.add_parser("remove", help="remove a network connected to no group")
    remove.add_argument("name", metavar="NETWORK")
    add_common_options(remove, "force", *JOB_OPTIONS)
    remove.set_defaults(func=cmd_remove)

    conn = sub.add_parser("connect", help="connect a network to node groups (all groups when "
                          "none is named) with -N mode=...,link=...[,vlan=...]")
    conn.add_argument("name", metavar="NETWORK")
    conn.add_argument("groups", nargs="*", metavar="GROUP")
    conn.add_argument("-N", "--nic-parameters", dest="nicparams", default=None,
                      metavar="mode=MODE,link=LINK[,vlan=VLAN]")
    conn.add_argument("--no-conflicts-check", dest="conflicts_check", action="store_false",
                      default=True)
    add_common_options(conn, *JOB_OPTIONS)
    conn.set_defaults(func=cmd_connect)

    disc = sub.add_parser("disconnect", help="disconnect a network from node groups (all "
                          "groups when none is named)")
    disc.add_argument("name", metavar="NETWORK")
    disc.add_argument("groups", nargs="*", metavar="GROUP")
    add_common_options(disc, *JOB_OPTIONS)
    disc.set_defaults(func=cmd_disconnect)
    add_tag_commands(sub, "network", "NETWORK")
    return parser


def main(argv: list[str] | None = None) -> int:
    return command_main(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
