"""Installed Herd versions for a checkout or lab node: the layout of herd.upgrade without a
package.

A version is a code tree (a checkout, a ``git archive`` of an older commit, a copy with a
changed constant) run by the venv's interpreter: ``versions/V/bin/python`` is a two-line shell
wrapper putting that tree on PYTHONPATH (and, by PYTHONSAFEPATH, not the working directory,
which may be another checkout), and each command of the tree's pyproject is a
wrapper calling its entry point through it. Everything started from a wrapper (daemons started
by herd-daemon-util, the restarter of herd.node.upgrade) inherits those variables, so a lab node
whose ``current`` points at a version runs that code, and another lab node another one.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

from herd import upgrade

#: Printed by the tree's own code: works for trees older than herd.upgrade.
_DESCRIBE = ("import json, herd, herd.version, herd.config.layout as l; print(json.dumps("
             "{'herd': herd.__version__, 'rpc': herd.version.RPC_VERSION, "
             "'config': l.LAYOUT_VERSION}))")


def describe_tree(tree: Path, python: Path) -> dict[str, object]:
    """The version.json of the code at ``tree``, as that code says it."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([str(python), "-c", _DESCRIBE], env=env, capture_output=True,
                         text=True, check=True, cwd=tree).stdout
    return json.loads(out)


def install_tree(root: Path, tree: Path, python: Path | None = None,
                 make_current: bool = False) -> str:
    """Install the code at ``tree`` as a version of the node whose root is ``root``; return
    the version. ``current`` is set when asked, or when the node has none yet."""
    python = python or Path(sys.executable)  # the venv's, not resolved: keep the venv
    tree = tree.resolve()
    desc = describe_tree(tree, python)
    version = upgrade.check_version_name(str(desc["herd"]))
    target = upgrade.versions_dir(root) / version
    bindir = target / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    _script(bindir / "python",
            f"PYTHONPATH={shlex.quote(str(tree))} PYTHONSAFEPATH=1 exec {shlex.quote(str(python))} "
            "\"$@\"")
    scripts = tomllib.loads((tree / "pyproject.toml").read_text())["project"]["scripts"]
    for name, entry in scripts.items():
        module, func = entry.split(":")
        code = f"import sys; from {module} import {func}; sys.argv[0] = {name!r}; " \
               f"sys.exit({func}())"
        _script(bindir / name, f"exec \"$(dirname \"$0\")/python\" -c {shlex.quote(code)} \"$@\"")
    (target / upgrade.VERSION_FILE).write_text(json.dumps(desc) + "\n")
    link = upgrade.current_link(root)
    if make_current or not link.exists():
        tmp = link.with_name(link.name + ".new")
        tmp.unlink(missing_ok=True)
        os.symlink(os.path.relpath(target, link.parent), tmp)
        os.replace(tmp, link)
    return version


def _script(path: Path, line: str) -> None:
    path.write_text(f"#!/bin/sh\n{line}\n")
    path.chmod(0o755)
