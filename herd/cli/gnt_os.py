"""gnt-os: OS definitions available on the nodes."""

from __future__ import annotations

import sys
from typing import Any

from herd.cli.client import MasterClient
from herd.cli.common import command_main
from herd.cli.options import HerdArgumentParser

PROG = "gnt-os"


def _valid_everywhere(per_node: dict[str, Any]) -> bool:
    return all(d is not None and d.get("valid") for d in per_node.values())


def cmd_list(opts: Any) -> int:
    with MasterClient() as client:
        found = client.call("query_os")
    if not opts.no_headers:
        print("Name")
    for name in sorted(found):
        per_node = found[name]
        if not _valid_everywhere(per_node):
            continue
        variants = next(iter(per_node.values()))["variants"]
        if variants:
            for variant in variants:
                print(f"{name}+{variant}")
        else:
            print(name)
    return 0


def cmd_diagnose(opts: Any) -> int:
    with MasterClient() as client:
        found = client.call("query_os")
    bad = False
    for name in sorted(found):
        per_node = found[name]
        valid = _valid_everywhere(per_node)
        bad = bad or not valid
        print(f"OS: {name} [global status: {'valid' if valid else 'invalid'}]")
        for node, definition in sorted(per_node.items()):
            if definition is None:
                print(f"  Node: {node}, status: invalid - OS not found")
            elif definition["valid"]:
                print(f"  Node: {node}, status: valid - {definition['path']}")
            else:
                print(f"  Node: {node}, status: invalid - {definition['error']} "
                      f"({definition['path']})")
            if definition:
                print(f"    API versions: {', '.join(map(str, definition['api_versions']))}")
                print(f"    variants: {', '.join(definition['variants']) or '(none)'}")
                print("    parameters: " + (", ".join(
                    f"{p} ({doc})" for p, doc in definition["parameters"]) or "(none)"))
        print()
    return 1 if bad else 0


def build_parser() -> HerdArgumentParser:
    parser = HerdArgumentParser(prog=PROG, description="OS definitions")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    lst = sub.add_parser("list", help="list the valid OS definitions")
    lst.add_argument("--no-headers", dest="no_headers", action="store_true")
    lst.set_defaults(func=cmd_list)
    diag = sub.add_parser("diagnose", help="show the OS definitions of every node")
    diag.set_defaults(func=cmd_diagnose)
    return parser


def main(argv: list[str] | None = None) -> int:
    return command_main(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
