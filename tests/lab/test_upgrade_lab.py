"""gnt-cluster upgrade in a real lab: a two-node cluster made by the previous commit's code
(OLD_COMMIT, Herd 0.1.0, ``git archive``d) with a writer guest on each node is upgraded to this
tree's code; the guests' QEMU processes stay the same and keep writing, every daemon runs the
new code, verify is clean. Before that the upgrade refuses a version missing on the nodes and a
downgrade across a config schema; after it, a third node whose noded speaks an older node-RPC
protocol (a copy of this tree with the constant changed) is refused by ``gnt-node add`` with one
line naming both versions, and nothing was signed for it. Last, an upgrade back to 0.1.0 (the
same config schema) is killed while it switches node2 and ``--resume`` finishes it.

Each lab node runs the code its ``current`` version points at (herd.lab.versions: a wrapper
per version running the venv's interpreter on that tree), as a real node runs
/opt/herd/current. Guests: real busybox guests under TCG.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd import __version__, upgrade
from herd.fileutil import read_pid
from herd.lab.cluster import lab_cluster
from herd.lab.single import build_test_guest
from herd.lab.versions import install_tree
from herd.version import RPC_VERSION
from tests.lab.conftest import LabCluster

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
#: The commit before gnt-cluster upgrade existed (Herd 0.1.0): the code the cluster is made by.
OLD_COMMIT = "dd365721ee9c68794114c6d30b686f9f95c8a941"
OLD_VERSION = "0.1.0"
ACK = re.compile(rb"HERD_ACK seq=(\d+)")
ADD = ("gnt-instance", "add", "-t", "file", "-o", "busybox+writer", "-s", "32M",
       "--no-name-check", "--no-ip-check")


def copy_tree(dest: Path, changes: dict[str, tuple[str, str]]) -> Path:
    """This tree's code, OS definitions and pyproject at ``dest``, with ``changes``: file ->
    (regex of the one line to replace, its new text)."""
    for part in ("herd", "os"):
        shutil.copytree(REPO / part, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", dest)
    for rel, (pattern, line) in changes.items():
        path = dest / rel
        text, count = re.subn(pattern, line, path.read_text(), flags=re.M)
        assert count == 1, (rel, pattern)
        path.write_text(text)
    return dest


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    base = tmp_path_factory.mktemp("versions")
    old = base / "old"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", OLD_COMMIT, "herd", "os",
                              "pyproject.toml"], capture_output=True, check=False)
    if archive.returncode != 0:
        pytest.skip(f"not a git checkout holding {OLD_COMMIT[:10]}: "
                    f"{archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    yield {
        "old": old,
        "new": REPO,
        # the same code claiming an older node-RPC protocol (a node not yet upgraded)
        "older_protocol": copy_tree(base / "older-protocol", {
            "herd/__init__.py": (r"^__version__ = .*$", '__version__ = "0.1.99"'),
            "herd/version.py": (r"^RPC_VERSION = \d+$", f"RPC_VERSION = {RPC_VERSION - 1}")}),
        # a version reading only an older config schema than the cluster's
        "old_schema": copy_tree(base / "old-schema", {
            "herd/__init__.py": (r"^__version__ = .*$", '__version__ = "0.0.9"'),
            "herd/config/layout.py": (r"^LAYOUT_VERSION = \d+$", "LAYOUT_VERSION = 0")}),
    }


def acks(cluster: LabCluster, node: str, name: str) -> list[int]:
    path = cluster.lab.node(node).paths.instance_run_dir / f"{name}.serial.log"
    return [int(s) for s in ACK.findall(path.read_bytes())] if path.exists() else []


def wait_acks(cluster: LabCluster, node: str, name: str, beyond: int,
              timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = acks(cluster, node, name)
        if seen and seen[-1] > beyond:
            return seen[-1]
        time.sleep(0.2)
    raise AssertionError(f"{name} on {node} does not write beyond seq {beyond}")


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_upgrade_keeps_guests_running_and_an_older_protocol_cannot_join(
        trees: dict[str, Path]) -> None:
    kernel, initrd = build_test_guest()
    with lab_cluster(3, start_daemons=False) as lab:
        for name in ("node1", "node2"):
            root = lab.node(name).root
            assert install_tree(root, trees["old"], make_current=True) == OLD_VERSION
            assert install_tree(root, trees["new"]) == __version__
            assert install_tree(root, trees["old_schema"]) == "0.0.9"
        assert install_tree(lab.node("node3").root, trees["older_protocol"]) == "0.1.99"
        lab.start_daemons()
        cluster = LabCluster(lab, kernel, initrd)
        assert cluster.gnt("gnt-cluster", "version").stdout.startswith(
            f"Software version: {OLD_VERSION}\n")  # the lab's commands are the node's version
        cluster.init()
        # TCG: this host's /dev/kvm passes the boot-sector probe, yet kernels hang on it
        cluster.gnt("gnt-cluster", "modify", "-H", "kvm:kvm_flag=disabled")
        cluster.add_node("node2")
        cluster.gnt(*ADD, "-n", "node1", "w1")
        cluster.gnt(*ADD, "-n", "node2", "w2")
        guests = {"w1": "node1", "w2": "node2"}
        qemu = {g: read_pid(lab.node(n).paths.instance_run_dir / f"{g}.pid")
                for g, n in guests.items()}
        assert all(qemu.values()), qemu
        seen = {g: wait_acks(cluster, n, g, 3) for g, n in guests.items()}
        noded = {n: read_pid(lab.node(n).paths.pid_file("noded")) for n in ("node1", "node2")}
        masterd = read_pid(lab.node("node1").paths.pid_file("masterd"))

        # -- the new code drives the upgrade (the old one has no 'upgrade' command) ----------
        new_cli = str(upgrade.versions_dir(lab.node("node1").root) / __version__ / "bin" /
                      "gnt-cluster")
        line = one_line(lab.run("node1", new_cli, "upgrade", "--to", "0.3.0", check=False))
        assert line == ("gnt-cluster: error: Herd 0.3.0 is not installed on node1.example.com, "
                        f"node2.example.com (installed there: 0.0.9, {OLD_VERSION}, "
                        f"{__version__}); install it on every node first "
                        "(/opt/herd/versions/0.3.0)"), line
        line = one_line(lab.run("node1", new_cli, "upgrade", "--to", "0.0.9", check=False))
        assert "cannot go to Herd 0.0.9: it reads config schema 0, the cluster's " \
               "configuration is at schema 1" in line, line
        line = one_line(lab.run("node1", new_cli, "upgrade", "--resume", check=False))
        assert "there is no upgrade to resume" in line, line

        began = time.monotonic()
        out = lab.run("node1", new_cli, "upgrade", "--to", __version__).stdout
        took = time.monotonic() - began
        assert out.splitlines() == [
            f"Upgrading node node2.example.com to Herd {__version__} (was {OLD_VERSION})",
            f"Upgrading node node1.example.com to Herd {__version__} (was {OLD_VERSION})",
            f"Cluster upgraded to Herd {__version__}; run 'gnt-cluster verify'"], out
        assert not (lab.node("node1").paths.data_dir / upgrade.INTENT_FILE).exists()

        # -- the guests never stopped: same QEMU, still writing ------------------------------
        for guest, node in guests.items():
            assert read_pid(lab.node(node).paths.instance_run_dir / f"{guest}.pid") == \
                qemu[guest]
            wait_acks(cluster, node, guest, acks(cluster, node, guest)[-1])
            assert acks(cluster, node, guest)[-1] > seen[guest]
        # -- every daemon is a new process of the new code -----------------------------------
        for node in ("node1", "node2"):
            pid = read_pid(lab.node(node).paths.pid_file("noded"))
            assert pid != noded[node]
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert f"PYTHONPATH={REPO}".encode() in environ, node
        new_masterd = read_pid(lab.node("node1").paths.pid_file("masterd"))
        assert new_masterd != masterd
        assert f"PYTHONPATH={REPO}".encode() in \
            Path(f"/proc/{new_masterd}/environ").read_bytes().split(b"\0")
        # the commands are the new version's now; nodes announce it (pings)
        assert cluster.gnt("gnt-cluster", "version").stdout.startswith(
            f"Software version: {__version__}\n")
        again = cluster.gnt("gnt-cluster", "upgrade", "--to", __version__).stdout
        assert again.strip() == f"Every node runs Herd {__version__}; nothing to do"
        verify = cluster.gnt("gnt-cluster", "verify", check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "ERROR" not in verify.stdout + verify.stderr
        assert "runs Herd" not in verify.stdout + verify.stderr
        assert set(cluster.instances()) == {"w1", "w2"}
        assert all(row["status"] == "running" for row in cluster.instances().values())

        # -- a node of an older node-RPC protocol cannot join --------------------------------
        node3 = lab.node("node3")
        proc = lab.run("node1", "gnt-node", "add", "-s", node3.secondary_ip, "--join-token",
                       cluster.token("node3"), node3.fqdn, check=False)
        line = one_line(proc)
        assert (f"node node3.example.com runs an older Herd: node RPC protocol "
                f"{RPC_VERSION - 1} (Herd 0.1.99), this master speaks protocol {RPC_VERSION} "
                f"(Herd {__version__}); upgrade that node first") in line, line
        assert not node3.paths.node_cert.exists() and not node3.paths.ca_cert.exists()
        assert "node3.example.com" not in cluster.nodes()

        # -- an upgrade cut short is finished by --resume (here back to 0.1.0: same schema) --
        proc = lab.popen("node1", new_cli, "upgrade", "--to", OLD_VERSION)
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()
        proc.kill()  # the command dies while node2 is being switched
        proc.wait()
        assert first.startswith("Upgrading node node2.example.com"), first
        assert upgrade.read_intent(lab.node("node1").paths.data_dir)["to"] == OLD_VERSION
        line = one_line(lab.run("node1", new_cli, "upgrade", "--to", "0.0.9", check=False))
        assert f"an upgrade to Herd {OLD_VERSION} is unfinished" in line, line
        out = lab.run("node1", new_cli, "upgrade", "--resume").stdout
        assert out.splitlines()[-1] == (f"Cluster upgraded to Herd {OLD_VERSION}; run "
                                        "'gnt-cluster verify'"), out
        assert not (lab.node("node1").paths.data_dir / upgrade.INTENT_FILE).exists()
        for guest, node in guests.items():
            assert read_pid(lab.node(node).paths.instance_run_dir / f"{guest}.pid") == \
                qemu[guest]
            wait_acks(cluster, node, guest, acks(cluster, node, guest)[-1])
        assert cluster.gnt("gnt-cluster", "version").stdout.startswith(
            f"Software version: {OLD_VERSION}\n")
        print(f"upgrade of 2 nodes took {took:.1f} s")
