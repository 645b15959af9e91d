"""Fixtures for RAPI tests: a two-node lab cluster with herd-rapi on the master, and helpers
that talk to it the way real clients do (Ganeti's Python client, curl)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.conftest import LabCluster, joined_cluster

HERE = Path(__file__).resolve().parent
# recorded Ganeti 3.0.2 answers (a copy of ../shared/ganeti-samples/rapi, kept with the tests)
SAMPLES = HERE / "ganeti-samples"
CLIENT = HERE / "ganeti_client.py"
SYSTEM_PYTHON = "/usr/bin/python3"
CLUSTER = "cluster.example.com"

USERS = """\
# test users: an admin, a read-only monitor, a hashed writer
admin adminpw write
monitor {cleartext}monpw read
jessica {HA1}%s write
"""


class RapiLab(LabCluster):
    def write_users(self, text: str, node: str | None = None) -> None:
        path = self.lab.node(node or self.master).paths.rapi_users_file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def client(self, *calls: tuple[str, list[Any], dict[str, Any]], user: str = "admin",
               password: str = "adminpw", node: str = "node2",
               host: str = CLUSTER) -> list[dict[str, Any]]:
        """Run Ganeti's RAPI client (system python3) in ``node`` against ``host``."""
        request = {"host": host, "user": user, "password": password,
                   "calls": [list(c) for c in calls]}
        proc = self.lab.run(node, SYSTEM_PYTHON, str(CLIENT), input=json.dumps(request),
                            check=False, timeout=600)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def ok(self, method: str, *args: Any, **kwargs: Any) -> Any:
        (answer,) = self.client((method, list(args), kwargs))
        assert "ok" in answer, answer
        return answer["ok"]

    def run_job(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        job_id = self.ok(method, *args, **kwargs)
        assert isinstance(job_id, int), job_id
        done = self.ok("WaitJob", job_id)
        done["id"] = job_id
        return done

    def curl(self, method: str, path: str, body: str | None = None,
             user: str | None = "admin", password: str = "adminpw",
             content_type: str = "application/json", node: str = "node2"
             ) -> tuple[int, dict[str, str], Any]:
        """One raw HTTPS request; returns (status, headers, decoded JSON body)."""
        argv = ["curl", "-sk", "-i", "-X", method, f"https://{CLUSTER}:5080{path}"]
        if user is not None:
            argv += ["-u", f"{user}:{password}"]
        if body is not None:
            argv += ["-H", f"Content-Type: {content_type}", "--data-binary", "@-"]
        proc = self.lab.run(node, *argv, input=body, check=False)
        assert proc.returncode == 0, proc.stderr
        head, _, payload = proc.stdout.replace("\r\n", "\n").partition("\n\n")
        lines = head.splitlines()
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        return status, headers, json.loads(payload) if payload.strip() else None

    def job_count(self) -> int:
        return len(self.ok("GetJobs"))


def wait_rapi(lab: RapiLab, node: str = "node2", timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        proc = lab.lab.run(node, "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
                           f"https://{CLUSTER}:5080/version", check=False)
        if proc.stdout.strip() in ("200", "401"):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"herd-rapi does not answer: {proc.stdout} {proc.stderr}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def rapi_lab() -> Iterator[RapiLab]:
    from herd.rapi.auth import ha1

    with joined_cluster(2, RapiLab) as cluster:
        cluster.gnt("gnt-cluster", "modify", "--enabled-hypervisors", "kvm,fake")
        # the RAPI user (an operator, as Ganeti's write users) names the test guest's kernel
        # and initrd: the admin allows that directory (herd.logic.host_paths)
        cluster.gnt("gnt-cluster", "modify", "--user-image-dirs", str(cluster.kernel.parent))
        cluster.write_users(USERS % ha1("jessica", "jesspw"))
        wait_rapi(cluster)
        yield cluster


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def sample_http(name: str) -> tuple[int, dict[str, str], Any]:
    text = (SAMPLES / name).read_text()
    head, _, payload = text.partition("\n\n")
    lines = head.splitlines()
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, json.loads(payload)
