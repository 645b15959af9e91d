"""Ganeti's hook scripts on a real three-node cluster: the scripts are real executables written
by the tests into each node's hooks directory, run by each node's noded.

One lab for the module; tests in file order. A recorder script, identical on every node (so
that verify's hooks comparison stays quiet), writes where it ran and its environment to a file
per node, hooks path and phase.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.conftest import LabCluster, joined_cluster

pytestmark = pytest.mark.slow

NODES = ("node1", "node2", "node3")
#: Short script timeout for the lab (masterd reads it at each hooks run).
TIMEOUT = 3
ADD = ("gnt-instance", "add", "-o", "busybox+default", "--no-name-check", "--no-ip-check")
RECORDED = ("instance-add", "instance-remove", "instance-migrate", "cluster-verify")

RECORDER = """#!/bin/sh
# records the node it ran on and its environment
node=$(cat "$GANETI_DATA_DIR/node-name")
env | sort > "{logdir}/$node.$GANETI_HOOKS_PATH.$GANETI_HOOKS_PHASE"
"""

#: In the spirit of the example in Ganeti's hooks document (the environment of an instance
#: startup): a plain POSIX script that logs every operation it sees with its whole environment.
LOG_EVERY_OPERATION = """#!/bin/sh
LOG={logdir}/operations.log
{{
  echo "$(date '+%F %T') $GANETI_OP_CODE $GANETI_HOOKS_PHASE ${{GANETI_INSTANCE_NAME:-}}"
  env | grep '^GANETI_' | sort | sed 's/^/  /'
}} >> "$LOG"
exit 0
"""


class HooksLab(LabCluster):
    def hooks_dir(self, node: str) -> Path:
        return self.lab.node(node).paths.hooks_dir

    def put(self, node: str, rel: str, text: str, mode: int = 0o755) -> Path:
        path = self.hooks_dir(node) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
        return path

    def remove(self, node: str, rel: str) -> None:
        (self.hooks_dir(node) / rel).unlink()


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hooklogs")
    path.chmod(0o777)
    return path


@pytest.fixture(scope="module")
def lab(logdir: Path) -> Iterator[HooksLab]:
    old = os.environ.get("HERD_HOOKS_TIMEOUT")
    os.environ["HERD_HOOKS_TIMEOUT"] = str(TIMEOUT)  # inherited by the lab's daemons
    try:
        with joined_cluster(3, HooksLab) as cluster:
            for node in NODES:
                for hpath in RECORDED:
                    for phase in ("pre", "post"):
                        cluster.put(node, f"{hpath}-{phase}.d/00-record",
                                    RECORDER.format(logdir=logdir))
            yield cluster
    finally:
        if old is None:
            os.environ.pop("HERD_HOOKS_TIMEOUT", None)
        else:
            os.environ["HERD_HOOKS_TIMEOUT"] = old


def clear(logdir: Path) -> None:
    for path in logdir.iterdir():
        if path.is_file():
            path.unlink()


def records(logdir: Path, hpath: str, phase: str) -> dict[str, dict[str, str]]:
    """node -> environment of the recorder's run for ``hpath`` and ``phase``."""
    out = {}
    suffix = f".{hpath}.{phase}"
    for path in logdir.glob(f"*{suffix}"):
        node = path.name.removesuffix(suffix)
        out[node] = dict(line.split("=", 1) for line in path.read_text().splitlines()
                         if "=" in line)
    return out


def disk_files(lab: HooksLab, node: str) -> set[Path]:
    """Every file under the node's file storage directory (disks are named by uuid)."""
    base = lab.lab.node(node).paths.file_storage_dir
    return {p for p in base.rglob("*") if p.is_file()} if base.exists() else set()


def test_hooks_run_on_the_right_nodes_with_ganetis_environment(lab: HooksLab,
                                                               logdir: Path) -> None:
    clear(logdir)
    lab.gnt(*ADD, "-t", "file", "-s", "16M", "--no-start", "-n", "node2.example.com", "h1")
    pre, post = records(logdir, "instance-add", "pre"), records(logdir, "instance-add", "post")
    # Ganeti's table: master, primary and secondaries in both phases; node3 is none of them
    assert set(pre) == set(post) == {"node1.example.com", "node2.example.com"}
    env = post["node2.example.com"]
    inst = next(i for i in lab.config()["instances"].values() if i["name"] == "h1")
    assert {k: env[k] for k in (
        "GANETI_HOOKS_VERSION", "GANETI_HOOKS_PATH", "GANETI_HOOKS_PHASE", "GANETI_OP_CODE",
        "GANETI_OBJECT_TYPE", "GANETI_CLUSTER", "GANETI_MASTER", "GANETI_INSTANCE_NAME",
        "GANETI_INSTANCE_PRIMARY", "GANETI_INSTANCE_DISK_TEMPLATE",
        "GANETI_INSTANCE_DISK_COUNT", "GANETI_INSTANCE_DISK0_SIZE",
        "GANETI_INSTANCE_NIC_COUNT", "GANETI_ADD_MODE")} == {
        "GANETI_HOOKS_VERSION": "2", "GANETI_HOOKS_PATH": "instance-add",
        "GANETI_HOOKS_PHASE": "post", "GANETI_OP_CODE": "OP_INSTANCE_CREATE",
        "GANETI_OBJECT_TYPE": "INSTANCE", "GANETI_CLUSTER": "cluster.example.com",
        "GANETI_MASTER": "node1.example.com", "GANETI_INSTANCE_NAME": "h1",
        "GANETI_INSTANCE_PRIMARY": "node2.example.com", "GANETI_INSTANCE_DISK_TEMPLATE": "file",
        "GANETI_INSTANCE_DISK_COUNT": "1", "GANETI_INSTANCE_DISK0_SIZE": "16",
        "GANETI_INSTANCE_NIC_COUNT": str(len(inst["nics"])), "GANETI_ADD_MODE": "create"}
    for idx, nic in enumerate(inst["nics"]):
        assert env[f"GANETI_INSTANCE_NIC{idx}_MAC"] == nic["mac"]
    # the post phase also sees the state after the operation
    assert env["GANETI_POST_INSTANCE_NAME"] == "h1"
    assert not any(k.startswith("GANETI_POST_") for k in pre["node1.example.com"])
    # the environment is Ganeti's only: nothing of the daemon's leaks in
    assert not any(k.startswith("HERD_") for k in env)
    assert env["PATH"] == "/sbin:/bin:/usr/sbin:/usr/bin"


def test_badly_named_or_non_executable_scripts_are_ignored(lab: HooksLab) -> None:
    lab.put("node1", "instance-add-pre.d/x.sh", "#!/bin/sh\necho no; exit 1\n")
    lab.put("node1", "instance-add-pre.d/noexec", "#!/bin/sh\necho no; exit 1\n", mode=0o644)
    try:
        lab.gnt(*ADD, "-t", "diskless", "--no-install", "--no-start", "-n", "node2", "h2")
    finally:
        lab.remove("node1", "instance-add-pre.d/x.sh")
        lab.remove("node1", "instance-add-pre.d/noexec")
    assert "h2" in lab.instances()


def test_failing_pre_hook_stops_the_add_and_changes_nothing(lab: HooksLab,
                                                            logdir: Path) -> None:
    lab.put("node1", "instance-add-pre.d/10-deny",
            "#!/bin/sh\necho \"instance $GANETI_INSTANCE_NAME is not in the inventory\"\n"
            "echo 'ask the inventory team'\nexit 1\n")
    clear(logdir)
    serial = lab.config()["serial_no"]
    files = disk_files(lab, "node2")
    try:
        proc = lab.gnt(*ADD, "-t", "file", "-s", "16M", "--no-start", "-n", "node2", "h3",
                       check=False)
    finally:
        lab.remove("node1", "instance-add-pre.d/10-deny")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "gnt-instance: error: pre hook instance-add-pre.d/10-deny failed on node "
        "node1.example.com, so INSTANCE_CREATE(h3) was not carried out (nothing was changed);"
        " its output:",
        "    instance h3 is not in the inventory",
        "    ask the inventory team"], proc.stderr
    assert "h3" not in lab.instances()
    assert lab.config()["serial_no"] == serial
    assert disk_files(lab, "node2") == files
    # the pre phase ran (on both nodes), the operation and its post phase did not
    assert set(records(logdir, "instance-add", "pre")) == {"node1.example.com",
                                                           "node2.example.com"}
    assert records(logdir, "instance-add", "post") == {}


def test_hanging_hook_is_killed_at_its_timeout_and_reported(lab: HooksLab,
                                                            logdir: Path) -> None:
    pidfile = logdir / "hang.pid"
    lab.put("node2", "instance-add-pre.d/20-hang",
            f"#!/bin/sh\necho $$ > {pidfile}\necho waiting for ever\nexec sleep 600\n")
    start = time.monotonic()
    try:
        proc = lab.gnt(*ADD, "-t", "file", "-s", "16M", "--no-start", "-n", "node2", "h4",
                       check=False)
    finally:
        lab.remove("node2", "instance-add-pre.d/20-hang")
    took = time.monotonic() - start
    assert proc.returncode == 1
    assert ("pre hook instance-add-pre.d/20-hang failed on node node2.example.com"
            in proc.stderr)
    assert "waiting for ever" in proc.stderr
    assert f"hook script timed out after {TIMEOUT} s and was killed (pid " in proc.stderr
    assert took < TIMEOUT + 20, took
    pid = int(pidfile.read_text())
    assert not Path(f"/proc/{pid}").exists() or \
        Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    assert "h4" not in lab.instances()


def test_failing_post_hook_is_a_warning_and_undoes_nothing(lab: HooksLab,
                                                           logdir: Path) -> None:
    lab.put("node2", "instance-remove-post.d/50-dns", "#!/bin/sh\necho 'DNS update failed'\n"
            "exit 1\n")
    clear(logdir)
    h1 = [d["logical_id"][1] for i in lab.config()["instances"].values() if i["name"] == "h1"
          for d in i["disks"]]
    assert h1 and all(lab.lab.node("node2").paths.file_storage_dir / rel in
                      disk_files(lab, "node2") for rel in h1)
    try:
        proc = lab.gnt("gnt-instance", "remove", "h1")
    finally:
        lab.remove("node2", "instance-remove-post.d/50-dns")
    assert ("WARNING: On node2.example.com script instance-remove-post.d/50-dns failed, "
            "output: DNS update failed") in proc.stdout
    assert "h1" not in lab.instances()
    assert not {lab.lab.node("node2").paths.file_storage_dir / rel for rel in h1} & \
        disk_files(lab, "node2")
    # instance-remove: pre on the master only, post on master and the instance's nodes
    assert set(records(logdir, "instance-remove", "pre")) == {"node1.example.com"}
    assert set(records(logdir, "instance-remove", "post")) == {"node1.example.com",
                                                               "node2.example.com"}


def test_migrate_post_hook_gets_the_new_primary(lab: HooksLab, logdir: Path) -> None:
    for node in NODES:
        lab.put(node, "instance-start-post.d/10-log", LOG_EVERY_OPERATION.format(logdir=logdir))
    lab.gnt(*ADD, "-t", "drbd", "-s", "32M", "--no-start", "-n", "node2:node3", "m1")
    lab.gnt("gnt-instance", "startup", "m1")
    # the logging example saw the startup on the master, the primary and the secondary
    log = (logdir / "operations.log").read_text()
    assert log.count("OP_INSTANCE_STARTUP post m1") == 3, log
    # every variable of the instance-start example in Ganeti's hooks document is there
    for name in ("CLUSTER", "DATA_DIR", "FORCE", "HOOKS_PATH", "HOOKS_PHASE",
                 "HOOKS_VERSION", "INSTANCE_DISK0_MODE", "INSTANCE_DISK0_SIZE",
                 "INSTANCE_DISK_COUNT", "INSTANCE_DISK_TEMPLATE", "INSTANCE_MEMORY",
                 "INSTANCE_NAME", "INSTANCE_NIC_COUNT", "INSTANCE_OS_TYPE", "INSTANCE_PRIMARY",
                 "INSTANCE_SECONDARY", "INSTANCE_STATUS", "INSTANCE_VCPUS", "MASTER",
                 "OBJECT_TYPE", "OP_CODE", "OP_TARGET"):
        assert f"  GANETI_{name}=" in log, name
    assert "  GANETI_HOOKS_PATH=instance-start" in log
    assert "  GANETI_INSTANCE_SECONDARY=node3.example.com" in log
    clear(logdir)
    lab.gnt("gnt-instance", "migrate", "-f", "m1")
    assert lab.instances()["m1"]["pnode"] == "node3.example.com"
    pre = records(logdir, "instance-migrate", "pre")
    post = records(logdir, "instance-migrate", "post")
    assert set(pre) == set(post) == {"node1.example.com", "node2.example.com",
                                     "node3.example.com"}
    for env in post.values():
        assert env["GANETI_OLD_PRIMARY"] == "node2.example.com"
        assert env["GANETI_NEW_PRIMARY"] == "node3.example.com"
        assert env["GANETI_INSTANCE_PRIMARY"] == "node2.example.com"  # as before the move
        assert env["GANETI_POST_INSTANCE_PRIMARY"] == "node3.example.com"
        assert env["GANETI_POST_INSTANCE_SECONDARY"] == "node2.example.com"
    # the guest may still be booting (ACPI ignored then): hard stop, as the hooks are the point
    lab.gnt("gnt-instance", "remove", "--shutdown-timeout", "0", "m1")
    for node in NODES:
        lab.remove(node, "instance-start-post.d/10-log")


def test_verify_runs_cluster_verify_hooks_and_compares_hook_files(lab: HooksLab,
                                                                 logdir: Path) -> None:
    lab.put("node3", "cluster-verify-post.d/10-disk",
            "#!/bin/sh\necho 'disk almost full'\necho '/srv at 97%'\nexit 1\n")
    changed = lab.hooks_dir("node2") / "instance-add-post.d/00-record"
    original = changed.read_text()
    changed.write_text(original + "# edited on node2 only\n")
    clear(logdir)
    try:
        proc = lab.gnt("gnt-cluster", "verify", check=False)
    finally:
        lab.remove("node3", "cluster-verify-post.d/10-disk")
        changed.write_text(original)
    assert proc.returncode == 1, proc.stdout
    out = proc.stdout
    assert "* Hooks Results" in out
    # Ganeti's layout: the error, then the script's output indented (after a timestamp)
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.endswith(
        "  - ERROR: node node3.example.com: Script cluster-verify-post.d/10-disk failed, "
        "output:"))
    assert lines[at + 1].endswith(" " * 6 + "disk almost full"), out
    assert lines[at + 2] == " " * 6 + "/srv at 97%", out
    assert ("WARNING: node node2.example.com: hook file instance-add-post.d/00-record differs "
            "from the master's copy (checksum mismatch)") in out
    assert ("WARNING: node node3.example.com: hook file cluster-verify-post.d/10-disk is not "
            "on the master node1.example.com") in out
    # post phase only, on every node, under the opcode Ganeti runs these hooks in
    assert records(logdir, "cluster-verify", "pre") == {}
    post = records(logdir, "cluster-verify", "post")
    assert set(post) == {f"{n}.example.com" for n in NODES}
    assert post["node1.example.com"]["GANETI_OP_CODE"] == "OP_CLUSTER_VERIFY_GROUP"
    # all the same again: verify passes, hooks and all
    proc = lab.gnt("gnt-cluster", "verify", check=False)
    assert "hook file" not in proc.stdout
    assert proc.returncode == 0, proc.stdout


def test_watcher_runs_the_watcher_hooks_on_each_node(lab: HooksLab, logdir: Path) -> None:
    stamp = logdir / "watcher-node2"
    lab.put("node2", "watcher/10-stamp", f"#!/bin/sh\necho \"$HERD_ROOT\" > {stamp}\n")
    lab.put("node2", "watcher/20-broken", "#!/bin/sh\necho 'monitoring unreachable'\nexit 2\n")
    lab.put("node2", "watcher/x.sh", f"#!/bin/sh\ntouch {logdir}/never\n")
    try:
        proc = lab.gnt("herd-watcher", node="node2", check=False)
    finally:
        shutil.rmtree(lab.hooks_dir("node2") / "watcher")
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert stamp.read_text().strip() == str(lab.lab.node("node2").root)
    assert "watcher hook 20-broken failed: monitoring unreachable" in proc.stdout
    assert not (logdir / "never").exists()
