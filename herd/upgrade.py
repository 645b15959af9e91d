"""``gnt-cluster upgrade``: where several Herd versions live on a node, and the decisions of a
rolling upgrade (which nodes, in which order, when to refuse, what is left at ``--resume``).

How versions coexist on a node (Ganeti keeps ``/usr/lib/ganeti/VERSION`` and switches the
``/etc/ganeti/lib`` symlink; Herd does the same under one directory)::

    /opt/herd/versions/VERSION/          one installed version: bin/python imports its Herd,
        bin/python, bin/gnt-*, ...       bin/ holds its commands and daemons
        version.json                     {"herd": VERSION, "rpc": protocol, "config": schema}
    /opt/herd/current -> versions/VERSION   what this node runs: the systemd units and the
                                         /usr/sbin links go through it

The Debian package unpacks its virtualenv into ``versions/VERSION`` from its postinst, so
the directory is no file of the package and installing the next version's package leaves
the running one in place; ``current`` is set only on a first install, and afterwards only by
``gnt-cluster upgrade``. A checkout or lab node gets the same layout under its HERD_ROOT,
where ``bin/python`` is a two-line wrapper running the venv's interpreter with the checkout
on PYTHONPATH (herd.lab.versions). A node without ``current`` (a plain checkout) runs the
interpreter that started it, as before.

The upgrade itself is driven from the master by the CLI (it outlives masterd's restart),
using only calls every version has: masterd's ``query_nodes``/``query_cluster``/
``node_command`` and noded's ``ping`` (which announces the node's Herd and protocol). The
switch on a node is run by the *target* version's own code (``versions/V/bin/python -m
herd.node.upgrade``), so a node running an older Herd needs nothing new (a target from
before the command, a downgrade, is switched to by the driving version's code). Nodes go one
at a time, the master last; each node's noded is restarted on the new code while its guests,
storage daemons and etcd member keep running (they are in sessions or scopes of their own;
noded's unit has KillMode=process). The config is migrated, if its schema changed, by the
new masterd when it loads it (herd.config.layout.migrate). An intent file on the master
records the target, so ``--resume`` continues an interrupted upgrade with the nodes not yet
running the target.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Relative to a node's root ("/" on a real node, HERD_ROOT on a lab node).
VERSIONS_REL = "opt/herd/versions"
CURRENT_REL = "opt/herd/current"
VERSION_FILE = "version.json"
#: On the master, under the data directory: the upgrade under way (for --resume).
INTENT_FILE = "upgrade-intent.json"

_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+~_-]{0,63}$")


class UpgradeRefused(Exception):
    """The upgrade cannot be done; the message is one line saying why and what to do."""


def versions_dir(root: Path) -> Path:
    return root / VERSIONS_REL


def current_link(root: Path) -> Path:
    return root / CURRENT_REL


def current_python(root: Path) -> Path | None:
    """The interpreter of the version this node runs, or None on a node without versions."""
    python = current_link(root) / "bin" / "python"
    return python if python.exists() else None


def describe() -> dict[str, Any]:
    """This code's version.json: its Herd version, node-RPC protocol and config schema."""
    from herd import __version__
    from herd.config.layout import LAYOUT_VERSION
    from herd.version import RPC_VERSION

    return {"herd": __version__, "rpc": RPC_VERSION, "config": LAYOUT_VERSION}


def check_version_name(version: str) -> str:
    """A version as given to --to; one line naming it and what is allowed otherwise."""
    if not _VERSION.match(version):
        raise UpgradeRefused(f"invalid version {version!r}: a version starts with a digit and "
                             "has up to 64 of [0-9A-Za-z.+~_-]")
    return version


# -- what a node has installed (a shell command every node can run, and its output) -------------
def survey_command() -> str:
    """Shell, run through ``gnt-cluster command``'s RPC: it needs no Herd code on the node,
    so it works on nodes of any version."""
    return ('d="${HERD_ROOT:-}/opt/herd"; for f in "$d"/versions/*/version.json; do '
            '[ -f "$f" ] && { printf "installed "; tr -d "\\n" < "$f"; echo; }; done; '
            'printf "current %s\\n" "$(readlink "$d/current" 2>/dev/null)"')


@dataclass
class Survey:
    """One node's installed versions (version -> its version.json) and its ``current``."""

    installed: dict[str, dict[str, Any]] = field(default_factory=dict)
    current: str | None = None


def parse_survey(output: str) -> Survey:
    """Pure: the output of :func:`survey_command`; damaged version.json lines are skipped
    (that version then counts as not installed)."""
    out = Survey()
    for line in output.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "installed":
            try:
                desc = json.loads(rest)
            except ValueError:
                continue
            if isinstance(desc, dict) and isinstance(desc.get("herd"), str):
                out.installed[desc["herd"]] = desc
        elif kind == "current" and rest.strip():
            out.current = Path(rest.strip()).name
    return out


def switch_command(version: str, helper: str | None = None) -> str:
    """Shell run on a node to switch it to ``version``: by that version's own code, or, when
    it has none for it (a version from before ``gnt-cluster upgrade``: a downgrade), by the
    ``helper`` version's (the one driving the upgrade), else by the code the node runs now;
    the daemons then start from ``current`` whichever code switched it."""
    root = '"${HERD_ROOT:-}"'
    switch = f"-m herd.node.upgrade switch {shlex.quote(version)}"
    pythons = [f"{root}/{VERSIONS_REL}/{shlex.quote(v)}/bin/python"
               for v in (version, helper) if v] + [f"{root}/{CURRENT_REL}/bin/python"]
    tries = [f"if {py} -c 'import herd.node.upgrade' 2>/dev/null; then exec {py} {switch}; fi"
             for py in pythons[:-1]]
    return "; ".join([*tries, f"exec {pythons[-1]} {switch}"])


# -- decisions ------------------------------------------------------------------------------------
def upgrade_order(nodes: Iterable[Mapping[str, Any]]) -> list[str]:
    """Pure: the nodes to upgrade, one at a time: plain nodes, then master candidates, the
    master last (its masterd restarts onto the new code at the end, as in Ganeti). Offline
    nodes are left out (they get the new version when they come back: ``--resume``)."""
    def rank(node: Mapping[str, Any]) -> tuple[int, str]:
        return (2 if node.get("master") else 1 if node.get("master_candidate") else 0,
                str(node["name"]))
    return [str(n["name"]) for n in sorted(nodes, key=rank) if not n.get("offline")]


def refusal(target: str, surveys: Mapping[str, Survey], config_schema: int) -> str | None:
    """Pure: one line when the cluster cannot go to ``target``, else None.

    Refused: a node without ``target`` installed (name them and what they have); nodes whose
    copies of ``target`` disagree on protocol or schema (not the same build); a target that
    reads config schemas only below the cluster's (a downgrade across a schema change: the
    config cannot be migrated back)."""
    missing = sorted(n for n, s in surveys.items() if target not in s.installed)
    if missing:
        have = sorted({v for n in missing for v in surveys[n].installed})
        return (f"Herd {target} is not installed on {', '.join(missing)} (installed there: "
                f"{', '.join(have) or 'no versions'}); install it on every node first "
                f"(/{VERSIONS_REL}/{target})")
    descs = {json.dumps(s.installed[target], sort_keys=True) for s in surveys.values()}
    if len(descs) > 1:
        return (f"the nodes hold different builds of Herd {target} ({' / '.join(sorted(descs))}); "
                "install the same package on every node")
    if not surveys:
        return "the cluster has no online node to upgrade"
    desc = next(iter(surveys.values())).installed[target]
    schema = desc.get("config")
    if isinstance(schema, int) and schema < config_schema:
        return (f"cannot go to Herd {target}: it reads config schema {schema}, the cluster's "
                f"configuration is at schema {config_schema} (a downgrade across a config "
                "schema change is not possible)")
    return None


def pending(order: list[str], running: Mapping[str, str | None],
            currents: Mapping[str, str | None], target: str) -> list[str]:
    """Pure: the nodes of ``order`` still to do: their noded does not announce ``target``
    (None: did not answer) or their ``current`` does not point at it."""
    return [n for n in order if running.get(n) != target or currents.get(n) != target]


def choose_target(to: str | None, resume: bool, intent: Mapping[str, Any] | None) -> str:
    """Pure: the version to go to, from the options and the intent file left by an
    interrupted upgrade; one line when the combination makes no sense."""
    if (to is None) == (not resume):
        raise UpgradeRefused("give exactly one of --to VERSION and --resume")
    if resume:
        if not intent:
            raise UpgradeRefused("there is no upgrade to resume (no unfinished "
                                 "'gnt-cluster upgrade --to')")
        return check_version_name(str(intent["to"]))
    assert to is not None
    check_version_name(to)
    if intent and intent.get("to") != to:
        raise UpgradeRefused(f"an upgrade to Herd {intent.get('to')} is unfinished; finish it "
                             "with 'gnt-cluster upgrade --resume' first")
    return to


def read_intent(data_dir: Path) -> dict[str, Any] | None:
    try:
        raw = json.loads((data_dir / INTENT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) and isinstance(raw.get("to"), str) else None
