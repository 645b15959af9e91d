"""Ganeti's tag commands, the same on gnt-cluster, gnt-node, gnt-instance and gnt-group:
``add-tags [--from FILE] [NAME] TAG...``, ``remove-tags [--from FILE] [NAME] TAG...``,
``list-tags [NAME]`` (and ``search-tags PATTERN`` on gnt-cluster). They submit Ganeti's
OP_TAGS_SET / OP_TAGS_DEL (one job), and read through OP_TAGS_GET's query."""

from __future__ import annotations

import argparse

from herd import errors
from herd.cli.client import MasterClient
from herd.cli.common import submit_or_run
from herd.cli.options import add_common_options

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing costs each gnt-* command ~2 ms at start
    from typing import Any


def _tags(opts: Any) -> list[str]:
    tags = list(opts.tags)
    if opts.tags_file:
        try:
            with open(opts.tags_file) as handle:
                tags += [line.strip() for line in handle if line.strip()]
        except OSError as exc:
            raise errors.ParameterError(f"cannot read tags from {opts.tags_file}: "
                                        f"{exc.strerror}") from None
    if not tags:
        raise errors.ParameterError("no tags given (as arguments or with --from FILE)")
    return tags


def _change(op_id: str, kind: str) -> Any:
    def run(opts: Any) -> int:
        op: dict[str, Any] = {"OP_ID": op_id, "kind": kind, "tags": _tags(opts)}
        if kind != "cluster":
            op["name"] = opts.name
        submit_or_run(opts, [op])
        return 0
    return run


def _list(kind: str) -> Any:
    def run(opts: Any) -> int:
        with MasterClient() as client:
            tags = client.call("query_tags", kind=kind,
                               name=getattr(opts, "name", None))
        for tag in sorted(tags):
            print(tag)
        return 0
    return run


def _search(opts: Any) -> int:
    results = submit_or_run(opts, [{"OP_ID": "OP_TAGS_SEARCH", "pattern": opts.pattern}])
    for path, tag in (results or [[]])[0]:
        print(f"{path} {tag}")
    return 0


def add_tag_commands(sub: argparse._SubParsersAction, kind: str, what: str | None) -> None:
    """Add the tag commands for ``kind``; ``what`` names the object argument (None for the
    cluster, which has no name)."""
    for command, op_id, verb in (("add-tags", "OP_TAGS_SET", "add"),
                                 ("remove-tags", "OP_TAGS_DEL", "remove")):
        cmd = sub.add_parser(command, help=f"{verb} tags")
        cmd.add_argument("--from", dest="tags_file", default=None, metavar="FILE",
                         help="also the tags in FILE, one per line")
        if what:
            cmd.add_argument("name", metavar=what)
        cmd.add_argument("tags", nargs="*", metavar="TAG")
        add_common_options(cmd, "submit", "print_jobid", "priority")
        cmd.set_defaults(func=_change(op_id, kind))
    listing = sub.add_parser("list-tags", help="list the tags")
    if what:
        listing.add_argument("name", metavar=what)
    listing.set_defaults(func=_list(kind))
    if kind == "cluster":
        search = sub.add_parser("search-tags", help="search tags of every object")
        search.add_argument("pattern")
        add_common_options(search, "submit", "print_jobid", "priority")
        search.set_defaults(func=_search)
