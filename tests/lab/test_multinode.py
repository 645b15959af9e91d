"""Several nodes for real: joining, guests on every node, verify, master crash and failover.

The tests build on each other in file order (one lab per module, as an admin's day would go):
a fresh cluster grows to three nodes, runs guests on all of them, loses its master, fails over,
and takes the old master back as an ordinary node.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from herd.fileutil import pid_alive, read_pid
from herd.lab.logtimes import first_after
from tests.lab.conftest import LabCluster
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

ADD = ("gnt-instance", "add", "-t", "file", "-o", "busybox+default", "-s", "64M",
       "--no-name-check", "--no-ip-check")


def one_line_error(proc, text: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], proc.stderr


def test_fresh_cluster_grows_to_three_nodes(lab3: LabCluster) -> None:
    lab3.init()
    lab3.add_node("node2")
    lab3.add_node("node3")
    roles = {name: row["role"] for name, row in lab3.nodes().items()}
    assert roles == {"node1.example.com": "M", "node2.example.com": "C",
                     "node3.example.com": "C"}
    serial = lab3.config()["serial_no"]
    for node in ("node1", "node2", "node3"):
        assert lab3.gnt("gnt-cluster", "getmaster", node=node).stdout.strip() == \
            "node1.example.com"
        # every candidate got the config before the add job ended
        assert lab3.config(node)["serial_no"] == serial
    # the master IP is on the master only
    assert "198.51.100.254" in lab3.lab.run("node1", "ip", "-4", "addr").stdout
    assert "198.51.100.254" not in lab3.lab.run("node2", "ip", "-4", "addr").stdout


def test_bad_membership_changes_are_refused_cleanly(lab3: LabCluster) -> None:
    serial = lab3.config()["serial_no"]
    wrong = "0" * 32 + ":" + "0" * 32
    proc = lab3.gnt("gnt-node", "add", "--join-token", wrong, "node2.example.com", check=False)
    one_line_error(proc, "node node2.example.com is already in the cluster")
    proc = lab3.gnt("gnt-node", "add", "-s", lab3.lab.node("node2").secondary_ip,
                    "--join-token", wrong, "nodex.example.com", check=False)
    one_line_error(proc, "cannot resolve node name 'nodex.example.com'")
    proc = lab3.gnt("gnt-node", "add", "--join-token", "garbage", "node3.example.com",
                    check=False)
    one_line_error(proc, "already in the cluster")
    proc = lab3.gnt("gnt-node", "remove", "node1.example.com", check=False)
    one_line_error(proc, "is the master")
    proc = lab3.gnt("gnt-cluster", "master-failover", node="node1", check=False)
    one_line_error(proc, "already the master")
    assert lab3.config()["serial_no"] == serial


def test_wrong_token_and_unreachable_node(lab3: LabCluster) -> None:
    """A fourth node is not needed: take node3 out, then try to add it back badly."""
    lab3.gnt("gnt-node", "remove", "node3.example.com")
    assert "node3.example.com" not in lab3.nodes()
    serial = lab3.config()["serial_no"]
    token = lab3.token("node3")  # node3 went back to waiting for a join
    secret, pin = token.split(":")
    bad = ("f" if secret[0] != "f" else "e") + secret[1:] + ":" + pin
    sip = lab3.lab.node("node3").secondary_ip
    proc = lab3.gnt("gnt-node", "add", "-s", sip, "--join-token", bad, "node3.example.com",
                    check=False)
    one_line_error(proc, "refused the join token")
    proc = lab3.gnt("gnt-node", "add", "-s", lab3.lab.node("node2").secondary_ip,
                    "--join-token", token, "node3.example.com", check=False)
    one_line_error(proc, "secondary IP 203.0.113.2 is already used by node node2.example.com")
    lab3.lab.run("node3", "herd-daemon-util", "stop", "noded")
    proc = lab3.gnt("gnt-node", "add", "-s", sip, "--join-token", token, "node3.example.com",
                    check=False)
    one_line_error(proc, "cannot reach node node3.example.com")
    assert lab3.config()["serial_no"] == serial
    lab3.add_node("node3")  # the right token still works: it was never used
    assert lab3.nodes()["node3.example.com"]["role"] == "C"


def test_guests_on_every_node_and_verify(lab3: LabCluster) -> None:
    for index in (1, 2, 3):
        lab3.gnt(*ADD, "-n", f"node{index}.example.com", f"g{index}")
    assert {n: r["status"] for n, r in lab3.instances().items()} == \
        {"g1": "running", "g2": "running", "g3": "running"}
    proc = lab3.gnt("gnt-node", "remove", "node2.example.com", check=False)
    one_line_error(proc, "still has instances: g2")
    proc = lab3.gnt("gnt-cluster", "verify", check=False)
    assert proc.returncode == 0, proc.stdout


def test_verify_reports_changed_file_and_rogue_guest(lab3: LabCluster) -> None:
    ca = lab3.lab.node("node3").paths.ca_cert
    ca.write_text(ca.read_text() + "# changed behind Herd's back\n")
    # a guest started on node2 by hand, unknown to the cluster
    node2 = lab3.lab.node("node2")
    rogue = (
        "import asyncio\n"
        "from herd import paths\n"
        "from herd.hypervisor.base import InstanceSpec, get_hypervisor\n"
        "hv = get_hypervisor('kvm', paths.current())\n"
        "spec = InstanceSpec(name='rogue', uuid='00000000-0000-0000-0000-000000000001',\n"
        "    memory=128, vcpus=1, hvparams={}, disks=[], nics=[])\n"
        "asyncio.run(hv.start(spec, paused=True))\n")
    lab3.lab.run("node2", "python3", "-c", rogue)
    rogue_pid = read_pid(node2.paths.instance_run_dir / "rogue.pid")
    try:
        proc = lab3.gnt("gnt-cluster", "verify", check=False)
        assert proc.returncode == 1
        assert "node node3.example.com: file /var/lib/herd/ssl/cluster-ca.pem differs" \
            in proc.stdout
        assert "node node2.example.com: instance rogue is unknown" in proc.stdout
    finally:
        if pid_alive(rogue_pid):
            os.kill(rogue_pid, signal.SIGKILL)  # type: ignore[arg-type]
    # the RAPI users file travels with redist-conf, so RAPI works wherever the master moves
    users = lab3.lab.node(lab3.master).paths.rapi_users_file
    users.write_text("admin {HA1}0123456789abcdef0123456789abcdef write\n")
    lab3.gnt("gnt-cluster", "redist-conf")
    proc = lab3.gnt("gnt-cluster", "verify", check=False)
    assert "cluster-ca.pem differs" not in proc.stdout
    assert "rapi/users" not in proc.stdout, proc.stdout
    for node in ("node2", "node3"):
        copy = lab3.lab.node(node).paths.rapi_users_file
        assert copy.read_text() == users.read_text()
        assert copy.stat().st_mode & 0o777 == 0o600


def holder(lab3: LabCluster, node: str) -> str | None:
    """Who holds the master election, as ``node`` reads it from etcd (None: nobody)."""
    proc = lab3.gnt("gnt-debug", "dump-config", "--master", "--timeout", "5", node=node,
                    check=False)
    out = proc.stdout.strip()
    return out if proc.returncode == 0 and out != "None" else None


def job_ids(lab3: LabCluster, node: str | None = None) -> list[int]:
    out = lab3.gnt("gnt-job", "list", "--no-headers", "-o", "id", node=node).stdout
    return [int(line) for line in out.split()]


def submit(lab3: LabCluster, *argv: str) -> int:
    out = lab3.gnt(*argv, "--submit").stdout
    return int(out.strip().split()[-1])


def job_status(lab3: LabCluster, job_id: int) -> str:
    rows = json.loads(lab3.gnt("gnt-job", "list", "--json", "-o", "id,status").stdout)
    return next(r["status"] for r in rows if r["id"] == job_id)


def test_master_crash_and_failover(lab3: LabCluster) -> None:
    before = lab3.config()
    finished = max(job_ids(lab3))
    # a job running on the master when it dies, and one queued behind it (node3's lock)
    running = submit(lab3, "gnt-debug", "delay", "-n", "node3.example.com", "600")
    wait_until("the long job to run", lambda: job_status(lab3, running) == "running")
    queued = submit(lab3, "gnt-debug", "delay", "-n", "node3.example.com", "0")
    assert job_status(lab3, queued) == "waiting"
    g3_pid = read_pid(lab3.lab.node("node3").paths.instance_run_dir / "g3.pid")
    crashed_at = time.time()
    lab3.lab.crash("node1")
    start = time.monotonic()
    # nobody runs a command: a candidate takes the master role by itself
    wait_until("a new master after the crash",
               lambda: holder(lab3, "node3") in ("node2.example.com", "node3.example.com"),
               timeout=30, interval=0.2)
    elected_s = time.monotonic() - start
    winner = holder(lab3, "node3")
    assert winner is not None
    wait_until("masterd and RAPI of the new master",
               lambda: lab3.gnt("gnt-cluster", "getmaster", node=winner.split(".")[0],
                                check=False).stdout.strip() == winner, timeout=30)
    takeover_s = time.monotonic() - start
    short = winner.split(".")[0]
    paths = lab3.lab.node(short).paths
    won = wait_until("the winner's log", lambda: first_after(
        paths, "masterd", "took the master role", crashed_at), timeout=30)
    rapi = wait_until("herd-rapi on the new master", lambda: first_after(
        paths, "rapi", "herd-rapi listening", crashed_at), timeout=30)
    # measured and printed, not asserted (bench/failover.py gives the figures over six runs)
    print(f"automatic failover: {short} won the election {won:.1f} s and served RAPI "
          f"{rapi:.1f} s after the crash (its log times; the CLI saw {elected_s:.1f} and "
          f"{takeover_s:.1f} s, each look a CLI run of its own)")
    # the admin's command hands the role to node2 (a no-op if node2 won the election)
    if winner != "node2.example.com":
        lab3.gnt("gnt-cluster", "master-failover", node="node2")
    failover_s = time.monotonic() - start
    lab3.master = "node2"
    after = lab3.config()
    assert after["cluster"]["master_node"] != before["cluster"]["master_node"]
    assert set(after["nodes"]) == set(before["nodes"])
    assert set(after["instances"]) == set(before["instances"])
    assert lab3.gnt("gnt-cluster", "getmaster", node="node3").stdout.strip() == \
        "node2.example.com"
    assert "198.51.100.254" in lab3.lab.run("node2", "ip", "-4", "addr").stdout
    statuses = {n: r["status"] for n, r in lab3.instances().items()}
    assert statuses["g2"] == "running" and statuses["g3"] == "running"
    assert statuses["g1"] == "ERROR_nodedown"
    # the surviving guests are still managed: the new master stops and starts g3
    assert pid_alive(g3_pid)
    lab3.gnt("gnt-instance", "shutdown", "--timeout=0", "g3")
    assert not pid_alive(g3_pid)
    lab3.gnt("gnt-instance", "startup", "g3")
    assert lab3.instances()["g3"]["status"] == "running"
    # the jobs survived the master: the finished one is there, the running one failed
    # (its outcome is unknown), the queued one ran on the new master
    assert job_status(lab3, finished) == "success"
    wait_until("the queued job to run", lambda: job_status(lab3, queued) == "success",
               timeout=60)
    info = lab3.gnt("gnt-job", "info", str(running)).stdout
    assert "Status: error" in info and "the master changed" in info, info
    # job ids go on from the cluster's counter: no id of the old master is given again
    new = submit(lab3, "gnt-debug", "delay", "0")
    assert new > queued
    print(f"master failover took {failover_s:.1f} s")


def test_old_master_returns_as_non_master(lab3: LabCluster) -> None:
    lab3.lab.start("node1")
    node1 = lab3.lab.node("node1")
    assert not pid_alive(read_pid(node1.paths.pid_file("masterd"))), \
        "the old master started its master daemon: split brain"
    assert lab3.gnt("gnt-cluster", "getmaster", node="node1").stdout.strip() == \
        "node2.example.com"
    assert "198.51.100.254" not in lab3.lab.run("node1", "ip", "-4", "addr").stdout
    assert lab3.nodes()["node1.example.com"]["role"] == "C"
    lab3.gnt("gnt-cluster", "redist-conf")
    assert lab3.config("node1")["serial_no"] == lab3.config()["serial_no"]
    # the cluster manages node1 again: its guest comes back
    lab3.gnt("gnt-instance", "startup", "g1")
    assert lab3.instances()["g1"]["status"] == "running"
    assert json.loads(lab3.gnt("gnt-node", "list", "--json", "-o", "name,pinst_cnt").stdout)


def test_failover_refused_on_non_candidate_and_copyfile(lab3: LabCluster) -> None:
    lab3.gnt("gnt-node", "modify", "-C", "no", "node3.example.com")
    assert lab3.nodes()["node3.example.com"]["role"] == "R"
    serial = lab3.config()["serial_no"]
    proc = lab3.gnt("gnt-cluster", "master-failover", node="node3", check=False)
    one_line_error(proc, "only a master candidate can become master")
    assert lab3.config()["serial_no"] == serial
    assert lab3.gnt("gnt-cluster", "getmaster", node="node3").stdout.strip() == \
        "node2.example.com"
    lab3.gnt("gnt-node", "modify", "-C", "yes", "node3.example.com")
    assert lab3.config("node3")["serial_no"] == lab3.config()["serial_no"]
    # copyfile: a file of the master appears on every other node, same content and mode
    master_root = lab3.lab.node(lab3.master).root
    src = master_root / "etc/herd-demo.conf"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text("copied by gnt-cluster copyfile\n")
    src.chmod(0o640)
    lab3.gnt("gnt-cluster", "copyfile", str(src))
    for node in ("node1", "node3"):
        copy = lab3.lab.node(node).root / "etc/herd-demo.conf"
        assert copy.read_text() == "copied by gnt-cluster copyfile\n"
        assert copy.stat().st_mode & 0o777 == 0o640


def test_failover_without_majority_needs_no_voting(lab3: LabCluster) -> None:
    lab3.lab.crash("node1")
    lab3.lab.crash("node2")  # the master and one candidate are gone
    proc = lab3.gnt("gnt-cluster", "master-failover", node="node3", check=False)
    one_line_error(proc, "a majority is needed")
    lab3.gnt("gnt-cluster", "master-failover", "--no-voting", node="node3")
    lab3.master = "node3"
    assert lab3.gnt("gnt-cluster", "getmaster", node="node3").stdout.strip() == \
        "node3.example.com"
    assert "198.51.100.254" in lab3.lab.run("node3", "ip", "-4", "addr").stdout
    assert lab3.instances()["g3"]["status"] == "running"
