"""What a dead job leaves on a node: masterd's recovery removes it, verify reports the rest.

A job killed with masterd (kill -9) never runs its rollback. Its intent record (written before
it created anything) lets the next masterd remove the disks it made; anything else on a node
that no instance owns is reported by `gnt-cluster verify`, which removes nothing.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from herd.fileutil import pid_alive
from herd.lab.single import SingleNodeCluster
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

ADD = ("gnt-instance", "add", "-t", "file", "-s", "64M", "--no-name-check", "--no-ip-check",
       "--no-start")




def install_slow_os(cluster: SingleNodeCluster) -> None:
    """An OS whose create script takes long (a big image to write, say)."""
    osdir = cluster.paths.os_dir / "slowos"
    osdir.mkdir(parents=True, exist_ok=True)
    (osdir / "ganeti_api_version").write_text("20\n")
    (osdir / "parameters.list").write_text("")
    for script in ("create", "import", "export", "rename", "verify"):
        path = osdir / script
        path.write_text("#!/bin/sh\nsleep 60\n" if script == "create" else "#!/bin/sh\n")
        path.chmod(0o755)


def kill_masterd(cluster: SingleNodeCluster) -> None:
    pid = cluster.daemon_pid("masterd")
    assert pid
    os.kill(pid, signal.SIGKILL)
    wait_until("masterd's end", lambda: not pid_alive(pid))


def test_masterd_killed_during_create_leaves_no_disk(cluster: SingleNodeCluster) -> None:
    install_slow_os(cluster)
    storage = cluster.paths.file_storage_dir
    before = set(storage.rglob("*"))
    job_id = cluster.run(*ADD, "-o", "slowos", "--submit", "crash1").stdout.strip().split()[-1]
    # disks are named by uuid (<uuid>.file), not by instance
    disk = wait_until("the new instance's disk file",
                      lambda: sorted(set(storage.rglob("*.file")) - before))[0]
    kill_masterd(cluster)
    assert disk.exists()
    cluster.run("herd-daemon-util", "start", "masterd")
    assert not disk.exists(), "the dead job's disk file is still there"
    assert set(storage.rglob("*")) <= before, "the dead job left something behind"
    info = cluster.run("gnt-job", "info", job_id).stdout
    assert "Status: error" in info
    rel = disk.relative_to(storage)
    assert (f"recovery: removed disk file {rel} on node1.example.com, made for "
            "instance crash1 before masterd stopped") in info
    assert "was running when masterd stopped" in info
    assert not list((cluster.paths.data_dir / "intents").glob("*.json"))
    # the cluster works on, and the name is free again
    cluster.run(*ADD, "-o", "busybox+default", "crash1")
    cluster.run("gnt-instance", "remove", "crash1")


def test_verify_reports_orphan_volumes_and_keeps_them(cluster: SingleNodeCluster) -> None:
    storage: Path = cluster.paths.file_storage_dir
    cluster.run(*ADD, "-o", "busybox+default", "owned1")
    made = [storage / "handmade/0000-orphan.file.disk0", storage / "m/0001.drbd.disk0",
            storage / "m/0001.drbd.disk0.gen"]
    for path in made:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * 4096)
    try:
        out = cluster.run("gnt-cluster", "verify", check=False).stdout
        for rel in ("handmade/0000-orphan.file.disk0", "m/0001.drbd.disk0",
                    "m/0001.drbd.disk0.gen"):
            assert (f"WARNING: node node1.example.com: volume {rel} is unknown (a disk file "
                    "no instance owns)") in out, out
        assert "owned1/" not in out, "a disk of an instance was called unknown"
        assert all(p.exists() for p in made), "verify removed something"
    finally:
        for path in made:
            path.unlink(missing_ok=True)
        for d in ("handmade", "m"):
            (storage / d).rmdir()
    out = cluster.run("gnt-cluster", "verify", check=False).stdout
    assert "is unknown" not in out
    cluster.run("gnt-instance", "remove", "owned1")
