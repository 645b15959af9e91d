"""The web manager's further pages in a real browser (herd.web.actions): the job panel live by
server-sent events, job cancel, the operator actions (modify, remove), nodes and the audit
log, and what a viewer is not offered. One-node fake-hypervisor cluster (conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.web.conftest import WebCluster, screenshot
from tests.web.test_web_browser import login

pytestmark = pytest.mark.slow
expect.set_options(timeout=20_000)
NODE = "node1.example.com"


def test_job_panel_streams_progress_and_cancel(browser: Any, web: WebCluster) -> None:
    page = login(browser, web, "root-admin")
    expect(page.locator("#health")).to_be_visible()
    job_id = web.submit({"OP_ID": "OP_TEST_DELAY", "duration": 0.6, "repeat": 3,
                         "on_nodes": [NODE]})
    waiting = web.submit({"OP_ID": "OP_TEST_DELAY", "duration": 0, "on_nodes": [NODE]})
    page.goto(f"/ui/jobs/{job_id}")
    page.evaluate("window.herdMarker = 1")
    log = page.locator("#job-log")
    status = page.locator(f"#job-status-{job_id}")
    expect(log).to_contain_text("test delay iteration 2/4")  # a line that came later
    expect(status).to_have_text("running")
    screenshot(page, "job-live")
    expect(log).to_contain_text("test delay iteration 4/4")
    expect(status).to_have_text("success")
    expect(page.locator("section.job")).to_have_attribute("data-live", "ended")  # closed
    assert page.evaluate("window.herdMarker") == 1  # updated in place, never reloaded
    expect(page.locator("ol.ops")).to_contain_text("success")  # the ended panel put in place
    # the second job waited for the node's lock meanwhile and has run; a new waiting one
    # is cancelled from its page (an admin is an operator)
    web.wait_job(waiting)
    blocker = web.submit({"OP_ID": "OP_TEST_DELAY", "duration": 3, "on_nodes": [NODE]})
    victim = web.submit({"OP_ID": "OP_TEST_DELAY", "duration": 0, "on_nodes": [NODE]})
    listing = page.context.new_page()  # the job list follows its unfinished jobs likewise
    listing.goto("/ui/jobs")
    expect(listing.locator("table.jobs")).to_have_attribute("data-live", "open")
    listing.evaluate("window.herdMarker = 2")
    page.goto(f"/ui/jobs/{victim}")
    page.click(f"#cancel-{victim}")
    expect(page.locator(f"#job-status-{victim}")).to_have_text("canceled")
    expect(listing.locator(f"[data-job-status='{victim}']")).to_have_text("canceled")
    expect(listing.locator(f"[data-job-status='{blocker}']")).to_have_text("success")
    expect(listing.locator("table.jobs")).to_have_attribute("data-live", "ended")
    assert listing.evaluate("window.herdMarker") == 2  # never reloaded
    page.context.close()


def test_modify_and_remove_with_checks(browser: Any, web: WebCluster) -> None:
    page = login(browser, web, "oper")
    page.goto("/ui/instances/db1.example.com")
    page.click("#go-modify")
    jobs = web.job_ids()
    page.fill("#f-memory", "12Q")
    page.click("#submit")
    expect(page.locator("#err-memory")).to_contain_text("12Q")
    screenshot(page, "modify-error")
    assert web.job_ids() == jobs  # nothing queued
    page.fill("#f-memory", "256M")
    page.fill("#f-vcpus", "2")
    page.click("#submit")
    panel = page.locator("section.job")
    expect(panel).to_contain_text("INSTANCE_SET_PARAMS")
    job_id = int(str(panel.get_attribute("id")).removeprefix("job-"))
    web.wait_job(job_id)
    # the instance page reloads itself when its job ends (a goto now would race that reload)
    params = page.locator("dl.params")
    expect(params).to_contain_text("256 MiB")
    config = web.cluster.config.find_instance("db1.example.com")
    assert config.beparams.get("maxmem") == 256 and config.beparams.get("vcpus") == 2
    # remove: the name must be typed
    page.goto("/ui/instances/web3.example.com/do/remove")
    jobs = web.job_ids()
    page.fill("#f-confirm", "web2.example.com")
    page.click("#submit")
    expect(page.locator("#err-confirm")).to_contain_text("type the instance's name")
    assert web.job_ids() == jobs
    page.fill("#f-confirm", "web3.example.com")
    page.click("#submit")
    expect(page.locator("section.job .job-status")).to_have_text("success")
    assert "web3.example.com" not in {i.name for i in
                                      web.cluster.config.instances.values()}
    page.context.close()


def test_viewer_sees_nodes_no_actions_and_audit_is_for_operators(browser: Any,
                                                                 web: WebCluster) -> None:
    page = login(browser, web, "watcher")
    page.click("#nav-nodes")
    expect(page.locator(f"#nodes tr[data-name='{NODE}']")).to_be_visible()
    screenshot(page, "nodes")
    page.click(f"a[href='/ui/nodes/{NODE}']")
    expect(page.locator("#node-instances tr[data-name='db1.example.com']")).to_be_visible()
    expect(page.locator("#node-memory")).to_contain_text("%")
    screenshot(page, "node")
    page.goto("/ui/instances/db1.example.com")
    assert page.query_selector("#more-actions") is None
    assert page.query_selector("#do-start") is None
    assert page.request.get("/ui/instances/db1.example.com/do/modify").status == 403
    assert page.query_selector("#nav-audit") is None
    assert page.request.get("/ui/audit").status == 403
    page.context.close()
    page = login(browser, web, "root-admin")
    page.click("#nav-audit")
    page.fill("#audit-user", "oper")
    page.fill("#audit-instance", "db1")
    page.click("#audit-search")
    row = page.locator("#audit tbody tr", has_text="INSTANCE_SET_PARAMS(db1.example.com)")
    expect(row).to_have_count(1)
    expect(row.locator(".audit-user")).to_have_text("oper")
    screenshot(page, "audit")
    page.context.close()
