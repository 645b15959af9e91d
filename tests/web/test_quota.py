"""Quotas enforced where jobs are submitted (masterd), over RAPI and shown on the overview:
the real herd-rapi application, masterd's real handlers, a one-node fake-hypervisor cluster
(conftest.py) and Debian's chromium."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.web.conftest import PASSWORDS, WebCluster, screenshot
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
    screenshot(page, "overview-quota")


def test_wizard_checks_fields_shows_quota_refusals_and_creates(browser: Any,
                                                                web: WebCluster) -> None:
    """Runs after the test above (alice: 640M of 1.0G, 2 of 2 instances)."""
    web.wait_job(web.submit({"OP_ID": "OP_CLUSTER_SET_PARAMS", "add_grants": [
        {"role": "user", "subject": "alice", "path": "/groups/default"}]}))
    node = next(iter(web.cluster.nodes))
    page = login(browser, web, "alice")
    page.click("#nav-create")
    expect(page.locator("#headroom")).to_contain_text("memory")
    jobs_before = web.job_ids()
    page.fill("#f-name", "wiz1.example.com")
    page.select_option("#f-template", "file")
    page.select_option("#f-pnode", node)
    page.fill("#f-memory", "lots")
    page.fill("#f-disks", "1G")
    page.click("#create")
    expect(page.locator("#err-memory")).to_contain_text("invalid memory 'lots'")
    assert page.input_value("#f-name") == "wiz1.example.com"  # what was typed stays
    page.fill("#f-memory", "4G")
    page.click("#create")
    expect(page.locator("#err-form")).to_contain_text(
        "quota of alice: memory 640M of 1.0G used, this job needs 4.0G")
    assert web.job_ids() == jobs_before  # neither attempt queued a job
    screenshot(page, "create")
    # the admin is not limited: the wizard creates and starts the instance
    admin = login(browser, web, "root-admin")
    admin.click("#nav-create")
    admin.fill("#f-name", "wiz2.example.com")
    admin.select_option("#f-template", "file")
    admin.select_option("#f-pnode", node)
    admin.fill("#f-memory", "256M")
    admin.fill("#f-disks", "1G")
    admin.click("#create")
    admin.wait_for_url("**/ui/jobs/*")
    expect(admin.locator("body")).to_contain_text("success")
    inst = web.cluster.instance("wiz2.example.com")
    assert inst is not None and inst.disks[0].size == 1024
    assert inst.tags == ["herd:owner:root-admin"]
    web.wait_until(lambda: web.instance_running("wiz2.example.com"))


def test_host_paths_only_inside_the_admins_image_directories(web: WebCluster) -> None:
    """A RAPI write user (an operator, as in Ganeti) may not attach a node's file to a guest;
    inside the admin's image directories it may (herd.logic.host_paths)."""
    jobs_before = web.job_ids()
    with rapi(web, "oper") as client:
        answer = client.put("/2/instances/shared1.example.com/modify",
                            json={"hvparams": {"cdrom_image_path": "/etc/shadow"}})
        assert answer.status_code == 400, answer.text
        assert "cdrom_image_path='/etc/shadow': only an admin may name a file outside the " \
               "image directories" in answer.json()["explain"]
        answer = client.put("/2/instances/shared1.example.com/modify",
                            json={"hvparams": {"kvm_path": "/tmp/evil"}})
        assert answer.status_code == 400
        assert "only an admin may set this host path" in answer.json()["explain"]
        assert web.job_ids() == jobs_before
        web.wait_job(web.submit({"OP_ID": "OP_CLUSTER_SET_PARAMS",
                                 "user_image_dirs": ["/srv/iso"]}))
        answer = client.put("/2/instances/shared1.example.com/modify",
                            json={"hvparams": {"cdrom_image_path": "/srv/iso/debian.iso"}})
        assert answer.status_code == 200, answer.text
