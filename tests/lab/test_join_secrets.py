"""Join tokens in a real two-node lab: after ``gnt-node add`` the token is nowhere on the master
(queue files, logs, ``gnt-job info``, RAPI for a read-only user); a token is spent by wrong
tries and expires."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd.jobs import queue as q
from herd.lab.cluster import lab_cluster
from herd.lab.single import build_test_guest
from tests.rapi.conftest import RapiLab, wait_rapi

pytestmark = pytest.mark.slow

USERS = "admin adminpw write\nmonitor {cleartext}monpw read\n"


@pytest.fixture(scope="module")
def lab2() -> Iterator[RapiLab]:
    kernel, initrd = build_test_guest()
    with lab_cluster(2) as lab:
        cluster = RapiLab(lab, kernel, initrd)
        cluster.init()
        yield cluster


def files_under(*dirs: Path) -> list[Path]:
    return [p for d in dirs if d.exists() for p in d.rglob("*") if p.is_file()]


def one_line(proc, text: str) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], proc.stderr
    return lines[0]


def new_token(lab2: RapiLab, *args: str) -> str:
    proc = lab2.lab.run("node2", "herd-join-token", *args)
    assert "valid until" in proc.stderr and " UTC " in proc.stderr, proc.stderr
    (token,) = proc.stdout.split()  # the token alone on stdout: T=$(herd-join-token) works
    return token


def test_token_is_gone_after_node_add(lab2: RapiLab) -> None:
    token = new_token(lab2)
    secret = token.split(":")[0]
    node2 = lab2.lab.node("node2")
    # from standard input: not on the command line either
    lab2.lab.run("node1", "gnt-node", "add", "-s", node2.secondary_ip, "--join-token", "-",
                 node2.fqdn, input=token + "\n")
    assert "node2.example.com" in lab2.nodes()
    jobs = json.loads(lab2.gnt("gnt-job", "list", "--json", "-o", "id,summary").stdout)
    (job_id,) = [row["id"] for row in jobs if row["summary"] == ["NODE_ADD(node2.example.com)"]]

    master = lab2.lab.node("node1").paths
    for path in files_under(master.data_dir, master.log_dir, master.etcd_dir,
                            node2.paths.log_dir):
        assert secret.encode() not in path.read_bytes(), path
    for path in (master.config_file, *q.queue_files(master.queue_db), node2.paths.config_file):
        if path.exists():
            assert path.stat().st_mode & 0o777 == 0o600, path

    shown = lab2.gnt("gnt-job", "info", str(job_id)).stdout
    assert "join_token: <redacted>" in shown and secret not in shown

    lab2.write_users(USERS)
    wait_rapi(lab2)
    status, _headers, body = lab2.curl("GET", f"/2/jobs/{job_id}", user="monitor",
                                       password="monpw")
    assert status == 200
    assert body["ops"][0]["join_token"] == "<redacted>"
    assert secret not in json.dumps(body)


def test_wrong_tries_spend_a_token_and_tokens_expire(lab2: RapiLab) -> None:
    node2 = lab2.lab.node("node2")
    lab2.gnt("gnt-node", "remove", node2.fqdn)
    add = ("gnt-node", "add", "-s", node2.secondary_ip, "--join-token")
    token = new_token(lab2)  # node2 waits to be joined again
    secret, pin = token.split(":")
    wrong = ("f" if secret[0] != "f" else "e") + secret[1:] + ":" + pin
    one_line(lab2.gnt(*add, wrong, node2.fqdn, check=False), "wrong join token (1 of 3")
    one_line(lab2.gnt(*add, wrong, node2.fqdn, check=False), "wrong join token (2 of 3")
    one_line(lab2.gnt(*add, wrong, node2.fqdn, check=False), "the token is spent")
    one_line(lab2.gnt(*add, token, node2.fqdn, check=False), "has no join token")

    short = new_token(lab2, "--ttl", "2s")
    issued = time.monotonic()
    while time.monotonic() < issued + 2.5:  # the condition is time itself
        time.sleep(0.1)
    one_line(lab2.gnt(*add, short, node2.fqdn, check=False), "the join token expired at")

    lab2.gnt(*add, new_token(lab2), node2.fqdn)
    assert "node2.example.com" in lab2.nodes()
