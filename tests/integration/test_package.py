"""The Debian package: built from the checkout by tools/build-deb (make deb), then looked at
as dpkg would install it: control fields, files, a relocated virtualenv that runs, units that
systemd-analyze accepts, man pages and completions for every gnt-* command."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd import __version__, upgrade
from herd.cli.manpage import COMMANDS

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    out = tmp_path_factory.mktemp("deb")
    # xz as the package has it (dpkg-deb -Zxz), at level 0: the same files in the same
    # format, built in ~5 s instead of ~28 s (the compression level is all that differs)
    env = dict(os.environ, DPKG_DEB_COMPRESSOR_LEVEL="0")
    proc = subprocess.run([str(ROOT / "tools/build-deb"), str(out)], capture_output=True,
                          text=True, cwd=ROOT, check=False, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    deb = Path(proc.stdout.strip().splitlines()[-1])
    root = tmp_path_factory.mktemp("root")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    # what the postinst does: unpack the version beside others, point current at it
    versions = root / "opt/herd/versions"
    versions.mkdir(parents=True)
    subprocess.run(["tar", "-C", str(versions), "-xf",
                    str(root / f"usr/lib/herd/herd-{__version__}.tar")], check=True)
    (root / "opt/herd/current").symlink_to(f"versions/{__version__}")
    yield deb, root


def test_control_names_what_a_node_needs(package: tuple[Path, Path]) -> None:
    deb, _ = package
    fields = dict(line.split(": ", 1) for line in subprocess.run(
        ["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True
    ).stdout.splitlines() if ": " in line and not line.startswith(" "))
    assert fields["Package"] == "herd"
    depends = [d.split()[0] for d in fields["Depends"].split(", ")]
    for needed in ("python3", "qemu-system-x86", "qemu-utils", "etcd-server", "lvm2",
                   "iproute2", "nftables"):
        assert needed in depends, needed
    conffiles = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True,
                               check=True).stdout
    assert b"conffiles" in conffiles


def dpkg_files(deb: Path) -> set[str]:
    """The paths the package itself holds (dpkg owns and replaces them)."""
    out = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[5].removeprefix("./").rstrip("/") for line in out.splitlines()}


def test_commands_run_from_the_relocated_virtualenv(package: tuple[Path, Path]) -> None:
    """The virtualenv is a version under /opt/herd/versions (herd.upgrade), unpacked by the
    postinst from a tar: no file of the package, so the next package leaves it in place."""
    _, root = package
    venv = root / "opt/herd/versions" / __version__
    for command in (*COMMANDS, "herd-noded", "herd-masterd", "herd-rapi", "herd-watcher",
                    "herd-cleaner", "herd-daemon-util"):
        link = root / "usr/sbin" / command
        assert link.is_symlink() and \
            str(link.readlink()) == f"/opt/herd/current/bin/{command}"
        script = venv / "bin" / command
        assert script.read_text().startswith(f"#!/opt/herd/versions/{__version__}/bin/python"), \
            command
    assert not any(f.startswith("opt") for f in dpkg_files(package[0]))
    cfg = (venv / "pyvenv.cfg").read_text()
    assert "home = /usr/bin\n" in cfg  # Debian's python3, which the package depends on
    leftovers = subprocess.run(["grep", "-rlI", "/tmp/herd-deb.", str(venv / "bin")],
                               capture_output=True, text=True, check=False).stdout
    assert leftovers == ""  # no path of the build's staging directory
    desc = json.loads((venv / "version.json").read_text())
    assert desc == upgrade.describe()  # what gnt-cluster upgrade compares
    proc = subprocess.run([str(venv / "bin/python"), "-m", "herd.cli.gnt_instance",
                           "add", "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "--disk-template" in proc.stdout, proc.stderr
    assert (root / "usr/share/herd/os/busybox/create").is_file()
    assert (root / "etc/logrotate.d/herd").is_file()


def test_units_pass_systemd_analyze_verify(package: tuple[Path, Path],
                                           tmp_path: Path) -> None:
    """Verified inside a copy of the package's root, completed with the host's targets and
    /bin/kill (the units refer to them), so that nothing is installed on this machine."""
    _, root = package
    vroot = tmp_path / "vroot"
    shutil.copytree(root, vroot, symlinks=True)
    units = sorted(p.name for p in (vroot / "lib/systemd/system").iterdir())
    assert {"herd.target", "herd-noded.service", "herd-masterd.service", "herd-rapi.service",
            "herd-watcher.timer", "herd-cleaner.timer"} <= set(units)
    for target in Path("/lib/systemd/system").glob("*.target"):
        shutil.copy(target, vroot / "lib/systemd/system" / target.name)
    (vroot / "bin").mkdir(exist_ok=True)
    shutil.copy("/bin/kill", vroot / "bin/kill")
    proc = subprocess.run(["systemd-analyze", "verify", f"--root={vroot}",
                           *(f"lib/systemd/system/{u}" for u in units)],
                          capture_output=True, text=True, cwd=vroot, check=False)
    assert proc.returncode == 0 and proc.stdout + proc.stderr == "", proc.stderr
    noded = (vroot / "lib/systemd/system/herd-noded.service").read_text()
    assert "KillMode=process" in noded  # guests outlive a noded restart


def test_man_pages_and_completion_for_every_command(package: tuple[Path, Path]) -> None:
    _, root = package
    for command in COMMANDS:
        text = gzip.decompress((root / f"usr/share/man/man8/{command}.8.gz").read_bytes())
        assert text.startswith(f".TH {command.upper()} 8 ".encode())
    completion = root / "usr/share/bash-completion/completions/gnt-instance"
    words = subprocess.run(
        ["bash", "-c", f"source {completion}; COMP_WORDS=(gnt-instance ad); COMP_CWORD=1; "
         "_herd_gnt_instance; echo ${COMPREPLY[@]}; COMP_WORDS=(gnt-instance add --disk-t); "
         "COMP_CWORD=2; _herd_gnt_instance; echo ${COMPREPLY[@]}"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    assert words == ["add add-tags", "--disk-template"]
