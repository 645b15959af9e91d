"""End to end through the CLI: a real cluster boots, stops and keeps managing real guests."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from herd.fileutil import pid_alive
from herd.lab.single import SingleNodeCluster
from tests.integration.conftest import read_until

pytestmark = pytest.mark.slow

ADD = ("gnt-instance", "add", "-t", "file", "-o", "busybox+default", "-s", "64M",
       "--no-name-check", "--no-ip-check")


def instance_row(cluster: SingleNodeCluster, name: str) -> dict:
    out = cluster.run("gnt-instance", "list", "--json", "-o", "name,status,oper_state",
                      name).stdout
    return json.loads(out)[0]


def test_boot_shows_marker_on_console(cluster: SingleNodeCluster) -> None:
    cluster.run(*ADD, "--no-start", "boot1")
    # Started paused, the guest has printed nothing yet; attaching the console resumes it
    # (Ganeti's behaviour), so the whole boot is seen from the first line.
    cluster.run("gnt-instance", "startup", "--paused", "boot1")
    console = cluster.popen("gnt-instance", "console", "boot1")
    try:
        out = read_until(console, b"HERD_GUEST_READY", timeout=90)
        out += read_until(console, b"guest# ", timeout=30)
        assert b"disk0=boot1 " in out, "the guest did not see the disk written by the OS"
        assert console.stdin is not None
        console.stdin.write(b"echo sum=$((40+2))\n")
        console.stdin.flush()
        read_until(console, b"sum=42", timeout=30)
        console.stdin.write(b"\x1d")  # Ctrl+] detaches
        console.stdin.flush()
        assert console.wait(timeout=10) == 0
    finally:
        if console.poll() is None:
            console.kill()
    assert instance_row(cluster, "boot1")["status"] == "running"
    # the web manager's graphs: noded's history of the real guest's use (sampled every 10 s)
    usage = wait_for_usage(cluster, "boot1")
    assert usage["running"], usage
    assert max(v for _, v in usage["series"]["cpu"]) > 0, "a running TCG guest used no CPU?"
    assert usage["series"]["memory"][-1][1] > 16, "the guest's QEMU holds under 16 MiB?"
    cluster.run("gnt-instance", "remove", "--shutdown-timeout=0", "boot1")


def wait_for_usage(cluster: SingleNodeCluster, name: str, timeout: float = 40) -> dict:
    """The instance's usage history once it shows CPU use (a stored sample plus the fresh
    reading a query adds: within a sampling interval or two of the guest's start; CPU time
    counts in ticks of 10 ms, so a short step of an idle guest may show none)."""
    from herd.cli.client import MasterClient

    deadline = time.monotonic() + timeout
    with MasterClient(cluster.paths) as client:
        while True:
            usage = client.call("query_usage", instance=name)
            if any(v > 0 for _, v in usage["series"]["cpu"]) or time.monotonic() > deadline:
                return usage
            time.sleep(0.5)


def disk_files(cluster: SingleNodeCluster) -> set[Path]:
    """Every file under the node's file storage directory (disks are named by uuid)."""
    storage = cluster.paths.file_storage_dir
    return {p for p in storage.rglob("*") if p.is_file()} if storage.exists() else set()


def test_shutdown_ends_qemu_process(cluster: SingleNodeCluster) -> None:
    files = disk_files(cluster)
    cluster.run(*ADD, "stop1")
    assert disk_files(cluster) - files, "the instance got no disk file"
    pid = cluster.qemu_pid("stop1")
    assert pid is not None and pid_alive(pid)
    cluster.run("gnt-instance", "shutdown", "--timeout=0", "stop1")
    assert not pid_alive(pid), "QEMU still runs after shutdown"
    row = instance_row(cluster, "stop1")
    assert row["status"] == "ADMIN_down" and row["oper_state"] is False
    cluster.run("gnt-instance", "remove", "stop1")
    assert disk_files(cluster) == files, "disk files left behind"


def test_noded_restart_keeps_guest_managed(cluster: SingleNodeCluster) -> None:
    cluster.run(*ADD, "keep1")
    qemu = cluster.qemu_pid("keep1")
    noded = cluster.daemon_pid("noded")
    assert qemu and noded
    os.kill(noded, signal.SIGKILL)  # the harshest restart
    deadline = time.monotonic() + 10
    while pid_alive(noded) and time.monotonic() < deadline:
        time.sleep(0.05)
    cluster.run("herd-daemon-util", "start", "noded")
    assert cluster.daemon_pid("noded") not in (None, noded)
    assert pid_alive(qemu), "the guest died with its node daemon"
    assert instance_row(cluster, "keep1")["status"] == "running"
    cluster.run("gnt-instance", "shutdown", "--timeout=0", "keep1")
    assert not pid_alive(qemu), "shutdown after a noded restart did not stop the guest"
    cluster.run("gnt-instance", "remove", "keep1")


def test_masterd_killed_mid_job_fails_job_and_keeps_config(
        cluster: SingleNodeCluster) -> None:
    before = cluster.config()
    out = cluster.run("gnt-debug", "delay", "--submit", "30").stdout
    job_id = out.strip().split()[-1]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = cluster.run("gnt-job", "list", "--no-headers", "-o", "status",
                             job_id).stdout.strip()
        if status == "running":
            break
        time.sleep(0.1)
    assert status == "running"
    masterd = cluster.daemon_pid("masterd")
    assert masterd
    os.kill(masterd, signal.SIGKILL)
    while pid_alive(masterd):
        time.sleep(0.05)
    cluster.run("herd-daemon-util", "start", "masterd")
    info = cluster.run("gnt-job", "info", job_id).stdout
    assert "Status: error" in info
    assert "was running when masterd stopped" in info
    after = cluster.config()
    assert after["serial_no"] == before["serial_no"]
    # the cluster works on: a new job runs to success
    cluster.run("gnt-debug", "delay", "0")


BAD_INPUT = [
    (("-H", "foo=1"), "unknown hypervisor parameter 'foo'"),
    (("-s", "10X"), "invalid size '10X'"),
    (("-o", "nosuch"), "OS 'nosuch' not found"),
    (("-n", "nonode"), "node 'nonode' is not in the cluster"),
    (("--net", "0:mac=zz:00:00:00:00:01"), "invalid mac 'zz:00:00:00:00:01'"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_one_line_and_nothing_left(cluster: SingleNodeCluster, args: tuple[str, ...],
                                             message: str) -> None:
    serial = cluster.config()["serial_no"]
    files = disk_files(cluster)
    argv = list(ADD)
    if "-o" in args:
        argv[argv.index("-o") + 1] = args[1]
        args = ()
    if "-s" in args:
        argv[argv.index("-s") + 1] = args[1]
        args = ()
    proc = cluster.run(*argv, *args, "bad1", check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert cluster.config()["serial_no"] == serial
    assert disk_files(cluster) == files


@pytest.mark.parametrize("name", ["nl\n", "tab\tx", "../up", "under_score"])
def test_bad_instance_name_refused_before_queuing(cluster: SingleNodeCluster, name: str) -> None:
    """A name with a trailing newline (once accepted: ``re.match`` with ``$``) or any other
    character outside a host name's is one line, exit 1, and leaves no job and no file."""
    jobs_before = cluster.run("gnt-job", "list", "--no-headers", "-o", "id").stdout.split()
    storage = cluster.paths.file_storage_dir
    files_before = sorted(storage.rglob("*")) if storage.exists() else []
    serial = cluster.config()["serial_no"]
    proc = cluster.run(*ADD, "--no-start", name, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "invalid instance name" in lines[0], proc.stderr
    assert repr(name) in lines[0]
    assert cluster.run("gnt-job", "list", "--no-headers", "-o", "id").stdout.split() == \
        jobs_before
    assert cluster.config()["serial_no"] == serial
    assert (sorted(storage.rglob("*")) if storage.exists() else []) == files_before


def test_duplicate_name_and_mac_refused(cluster: SingleNodeCluster) -> None:
    cluster.run(*ADD, "--no-start", "dup1")
    mac = json.loads(cluster.run("gnt-instance", "list", "--json", "-o", "nic.macs",
                                 "dup1").stdout)[0]["nic.macs"][0]
    proc = cluster.run(*ADD, "--no-start", "dup1", check=False)
    assert proc.returncode == 1 and "instance 'dup1' already exists" in proc.stderr
    files = disk_files(cluster)
    proc = cluster.run(*ADD, "--no-start", "--net", f"0:mac={mac}", "dup2", check=False)
    assert proc.returncode == 1 and f"MAC address {mac} is already in use" in proc.stderr
    assert disk_files(cluster) == files
    cluster.run("gnt-instance", "remove", "dup1")
