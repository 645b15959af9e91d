"""Quotas enforced where jobs are submitted (masterd), over RAPI and shown on the overview:
the real herd-rapi application, masterd's real handlers, a one-node fake-hypervisor cluster
(conftest.py) and Debian's chromium."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.web.conftest import PASSWORDS, WebCluster
from tests.web.test_web_browser import login

pytestmark = pytest.mark.slow
expect.set_options(timeout=20_000)


def create_body(web: WebCluster, name: str, memory: int, tags: list[str]) -> dict[str, Any]:
    return {"__version__": 1, "mode": "create", "instance_name": name,
            "disk_template": "diskless", "disks": [], "nics": [], "os_type": "busybox+default",
            "pnode": next(iter(web.cluster.nodes)), "beparams": {"memory": memory},
            "tags": tags, "name_check": False, "ip_check": False, "start": False,
            "no_install": True}


def rapi(web: WebCluster, user: str) -> httpx.Client:
    return httpx.Client(base_url=web.url, verify=False, auth=(user, PASSWORDS[user]),
                        timeout=30)


def test_quota_refuses_over_rapi_without_a_job_and_shows_on_the_overview(
        browser: Any, web: WebCluster) -> None:
    # alice owns alice1 (diskless, the cluster's default 128 MiB); the admin gives her 1 GiB
    # and two instances (a local command: the cluster's administrators are not limited)
    web.wait_job(web.submit({"OP_ID": "OP_CLUSTER_SET_PARAMS",
                             "quotas": {"alice": {"memory": 1024, "instances": 2}}}))
    jobs_before = web.job_ids()
    with rapi(web, "oper") as client:
        answer = client.post("/2/instances", json=create_body(
            web, "big.example.com", 2048, ["herd:owner:alice"]))
        assert answer.status_code == 400, answer.text
        assert "quota of alice: memory 128M of 1.0G used, this job needs 2.0G" \
            in answer.json()["explain"]
        assert web.job_ids() == jobs_before  # a refused submit leaves no job behind
        # within the quota: queued, and it runs
        answer = client.post("/2/instances", json=create_body(
            web, "small.example.com", 512, ["herd:owner:alice"]))
        assert answer.status_code == 200, answer.text
        job_id = int(answer.json())
        web.wait_job(job_id)
        job = web.cluster.queue.get(job_id)
        assert job.status == "success", job.to_dict()["opresult"]
        # a third instance passes the memory limit but not the count
        answer = client.post("/2/instances", json=create_body(
            web, "third.example.com", 128, ["herd:owner:alice"]))
        assert answer.status_code == 400
        assert "quota of alice: instances 2 of 2 used, this job needs 1" \
            in answer.json()["explain"]
        # handing alice an instance by tag counts too
        answer = client.put("/2/instances/shared1.example.com/tags",
                            params={"tag": "herd:owner:alice"})
        assert answer.status_code == 400 and "quota of alice" in answer.json()["explain"]
    page = login(browser, web, "alice")
    row = page.locator("#quotas tr", has_text="alice")
    expect(row).to_contain_text("640M of 1.0G")
    expect(row).to_contain_text("2 of 2")
