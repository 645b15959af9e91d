"""gnt-cluster upgrade's decisions (herd.upgrade), the node's switch of ``current``, checkout
versions (herd.lab.versions) and the config schema migration (herd.config.layout.migrate)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from herd import upgrade
from herd.config import layout
from herd.lab.versions import install_tree
from herd.node.upgrade import switch
from herd.paths import HerdPaths
from herd.upgrade import Survey, UpgradeRefused

REPO = Path(__file__).resolve().parents[2]
NEW = {"herd": "0.3.0", "rpc": 4, "config": 2}


def nodes(*specs: str) -> list[dict]:
    """``name:M`` master, ``name:C`` candidate, ``name:O`` offline, ``name`` plain."""
    out = []
    for spec in specs:
        name, _, role = spec.partition(":")
        out.append({"name": name, "master": role == "M", "master_candidate": role in "MC"
                    and role != "", "offline": role == "O"})
    return out


def test_order_is_plain_nodes_then_candidates_then_the_master_and_skips_offline() -> None:
    order = upgrade.upgrade_order(nodes("n1:M", "n5", "n2:C", "n4:O", "n3"))
    assert order == ["n3", "n5", "n2", "n1"]


def test_refused_when_a_node_lacks_the_target_naming_nodes_and_versions() -> None:
    surveys = {"n1": Survey({"0.2.0": {}, "0.3.0": NEW}), "n2": Survey({"0.2.0": {}}),
               "n3": Survey()}
    line = upgrade.refusal("0.3.0", surveys, 1)
    assert line == ("Herd 0.3.0 is not installed on n2, n3 (installed there: 0.2.0); install "
                    "it on every node first (/opt/herd/versions/0.3.0)")
    assert "\n" not in line


def test_refused_downgrade_across_a_config_schema() -> None:
    old = {"herd": "0.1.0", "rpc": 3, "config": 1}
    surveys = {n: Survey({"0.1.0": old, "0.3.0": NEW}) for n in ("n1", "n2")}
    line = upgrade.refusal("0.1.0", surveys, 2)
    assert line is not None and "Herd 0.1.0" in line and "schema 1" in line \
        and "schema 2" in line and "downgrade" in line
    # a downgrade within one schema is allowed (a bug-fix release back)
    assert upgrade.refusal("0.1.0", surveys, 1) is None
    assert upgrade.refusal("0.3.0", surveys, 1) is None  # the new code migrates 1 -> 2


def test_refused_when_nodes_hold_different_builds_of_the_target() -> None:
    other = dict(NEW, rpc=5)
    line = upgrade.refusal("0.3.0", {"n1": Survey({"0.3.0": NEW}),
                                     "n2": Survey({"0.3.0": other})}, 1)
    assert line is not None and "different builds of Herd 0.3.0" in line


def test_pending_are_nodes_not_running_the_target_in_order() -> None:
    order = ["n3", "n2", "n1"]
    running = {"n3": "0.3.0", "n2": "0.2.0", "n1": None}
    currents = {"n3": "0.3.0", "n2": "0.3.0", "n1": "0.2.0"}
    assert upgrade.pending(order, running, currents, "0.3.0") == ["n2", "n1"]
    # switched but its noded still runs the old code (cut between switch and restart)
    assert upgrade.pending(["n3"], {"n3": "0.2.0"}, {"n3": "0.3.0"}, "0.3.0") == ["n3"]
    assert upgrade.pending(order, dict.fromkeys(order, "0.3.0"), dict.fromkeys(order, "0.3.0"),
                           "0.3.0") == []


def test_target_from_options_and_intent() -> None:
    assert upgrade.choose_target("0.3.0", False, None) == "0.3.0"
    assert upgrade.choose_target(None, True, {"to": "0.3.0"}) == "0.3.0"
    assert upgrade.choose_target("0.3.0", False, {"to": "0.3.0"}) == "0.3.0"  # same again
    with pytest.raises(UpgradeRefused, match="no upgrade to resume"):
        upgrade.choose_target(None, True, None)
    with pytest.raises(UpgradeRefused, match=r"upgrade to Herd 0\.3\.0 is unfinished"):
        upgrade.choose_target("0.4.0", False, {"to": "0.3.0"})
    with pytest.raises(UpgradeRefused, match="exactly one of"):
        upgrade.choose_target("0.3.0", True, None)
    with pytest.raises(UpgradeRefused, match=r"invalid version '0\.3; rm -rf /'"):
        upgrade.choose_target("0.3; rm -rf /", False, None)


def test_intent_file_read_tolerates_junk(tmp_path: Path) -> None:
    assert upgrade.read_intent(tmp_path) is None
    (tmp_path / upgrade.INTENT_FILE).write_text("{not json")
    assert upgrade.read_intent(tmp_path) is None
    (tmp_path / upgrade.INTENT_FILE).write_text(json.dumps({"to": "0.3.0", "pid": 1}))
    assert upgrade.read_intent(tmp_path) == {"to": "0.3.0", "pid": 1}


def test_survey_command_runs_in_sh_and_parses(tmp_path: Path) -> None:
    """The survey is plain shell (old nodes have no Herd code for it): run it for real."""
    root = tmp_path / "root"
    for version, desc in (("0.2.0", {"herd": "0.2.0", "rpc": 3, "config": 1}), ("0.3.0", NEW)):
        d = upgrade.versions_dir(root) / version
        d.mkdir(parents=True)
        (d / upgrade.VERSION_FILE).write_text(json.dumps(desc, indent=1) + "\n")
    (upgrade.versions_dir(root) / "broken").mkdir()
    (upgrade.versions_dir(root) / "broken" / upgrade.VERSION_FILE).write_text("{")
    upgrade.current_link(root).symlink_to("versions/0.2.0")
    out = subprocess.run(["sh", "-c", upgrade.survey_command()], env={"HERD_ROOT": str(root)},
                         capture_output=True, text=True, check=True).stdout
    survey = upgrade.parse_survey(out)
    assert survey.current == "0.2.0"
    assert survey.installed == {"0.2.0": {"herd": "0.2.0", "rpc": 3, "config": 1}, "0.3.0": NEW}
    empty = subprocess.run(["sh", "-c", upgrade.survey_command()],
                           env={"HERD_ROOT": str(tmp_path / "none")}, capture_output=True,
                           text=True, check=True).stdout
    assert upgrade.parse_survey(empty) == Survey()


def test_switch_command_uses_the_targets_code_else_the_running_one(tmp_path: Path) -> None:
    """Run for real in sh over fake interpreters that say which one ran: a target with the
    switch code does it itself; an older target (no herd.node.upgrade) is switched to by the
    code the node runs now."""
    root = tmp_path
    for version, has_switch in (("0.1.0", False), ("0.2.0", True)):
        bindir = upgrade.versions_dir(root) / version / "bin"
        bindir.mkdir(parents=True)
        (bindir / "python").write_text(
            '#!/bin/sh\nif [ "$1" = -c ]; then exit ' + ("0" if has_switch else "1") +
            f'; fi\necho {version} "$@"\n')
        (bindir / "python").chmod(0o755)
    upgrade.current_link(root).symlink_to("versions/0.2.0")

    def run(version: str) -> str:
        return subprocess.run(["sh", "-c", upgrade.switch_command(version)],
                              env={"HERD_ROOT": str(root)}, capture_output=True, text=True,
                              check=True).stdout.strip()
    assert run("0.2.0") == "0.2.0 -m herd.node.upgrade switch 0.2.0"
    assert run("0.1.0") == "0.2.0 -m herd.node.upgrade switch 0.1.0"
    # switched already (an upgrade cut short): current is the old one, the helper still works
    upgrade.current_link(root).unlink()
    upgrade.current_link(root).symlink_to("versions/0.1.0")
    assert subprocess.run(["sh", "-c", upgrade.switch_command("0.1.0", helper="0.2.0")],
                          env={"HERD_ROOT": str(root)}, capture_output=True, text=True,
                          check=True).stdout.strip() == "0.2.0 -m herd.node.upgrade switch 0.1.0"


def test_switch_points_current_at_an_installed_version_only(tmp_path: Path) -> None:
    p = HerdPaths(tmp_path)
    for version in ("0.2.0", "0.3.0"):
        bindir = upgrade.versions_dir(tmp_path) / version / "bin"
        bindir.mkdir(parents=True)
        (bindir / "python").write_text("#!/bin/sh\n")
    switch(p, "0.2.0")
    switch(p, "0.3.0")
    link = upgrade.current_link(tmp_path)
    assert link.is_symlink() and str(link.readlink()) == "versions/0.3.0"
    assert upgrade.current_python(tmp_path) == link / "bin" / "python"
    with pytest.raises(UpgradeRefused, match=r"Herd 0\.9\.0 is not installed here"):
        switch(p, "0.9.0")
    assert str(link.readlink()) == "versions/0.3.0"


def test_a_checkout_installed_as_a_version_runs_its_own_code(tmp_path: Path) -> None:
    """The wrapper runs the tree's code even from inside another checkout, and so
    do the processes it starts (PYTHONSAFEPATH: no working directory on their path)."""
    tree = tmp_path / "tree"
    shutil.copytree(REPO / "herd", tree / "herd",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tree)
    init = tree / "herd" / "__init__.py"
    init.write_text('__version__ = "7.7.7"\n')
    root = tmp_path / "root"
    assert install_tree(root, tree) == "7.7.7"
    assert upgrade.current_link(root).resolve() == upgrade.versions_dir(root) / "7.7.7"
    desc = json.loads((upgrade.versions_dir(root) / "7.7.7" / "version.json").read_text())
    assert desc == {"herd": "7.7.7", "rpc": upgrade.describe()["rpc"],
                    "config": layout.LAYOUT_VERSION}
    bindir = upgrade.current_link(root) / "bin"
    out = subprocess.run([str(bindir / "python"), "-c", "import herd; print(herd.__file__)"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(tree / "herd" / "__init__.py")
    child = ("import subprocess, sys; print(subprocess.run([sys.executable, '-c', "
             "'import herd; print(herd.__file__)'], capture_output=True, text=True).stdout)")
    out = subprocess.run([str(bindir / "python"), "-c", child], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == str(tree / "herd" / "__init__.py")
    out = subprocess.run([str(bindir / "gnt-cluster"), "version"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[:3] == ["Software version: 7.7.7",
                                    f"Internode protocol: {desc['rpc']}",
                                    f"Configuration format: {desc['config']}"]


def test_migration_runs_each_step_and_refuses_gaps_and_newer() -> None:
    texts = {layout.CLUSTER_KEY: '{"a":1}', layout.PREFIX + "nodes/u1": '{"old":1}'}

    def one_to_two(t: dict[str, str]) -> dict[str, str]:
        out = {k: v.replace('"old"', '"new"') for k, v in t.items()}
        out[layout.PREFIX + "nodes/u2"] = "{}"
        return out

    migrated = layout.migrate(texts, 1, target=2, migrations={1: one_to_two})
    assert migrated[layout.PREFIX + "nodes/u1"] == '{"new":1}'
    change = layout.change_between(texts, migrated)
    assert set(change.puts) == {layout.PREFIX + "nodes/u1", layout.PREFIX + "nodes/u2"}
    assert change.deletes == []
    assert layout.change_between(migrated, texts).deletes == [layout.PREFIX + "nodes/u2"]
    assert layout.migrate(texts, 2, target=2) == texts
    with pytest.raises(layout.DamagedConfig, match="from schema 2 to 3"):
        layout.migrate(texts, 1, target=3, migrations={1: one_to_two})
    with pytest.raises(layout.DamagedConfig, match="schema 3, this code reads up to 2"):
        layout.migrate(texts, 3, target=2)
    # every schema this code reads has its way up from 1
    assert sorted(layout.MIGRATIONS) == list(range(1, layout.LAYOUT_VERSION))
