"""The web manager in a real browser (Playwright driving Debian's chromium) against the real
herd-rapi application over HTTPS, on a one-node fake-hypervisor cluster (conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.web.conftest import INSTANCES, PASSWORDS, WebCluster, screenshot

pytestmark = pytest.mark.slow
# conditions, not sleeps: generous for a loaded 2-core CI machine, free when things are fast
expect.set_options(timeout=20_000)


def login(browser: Any, web: WebCluster, user: str, password: str | None = None,
          scheme: str = "light") -> Any:
    context = browser.new_context(ignore_https_errors=True, base_url=web.url,
                                  color_scheme=scheme)
    page = context.new_page()
    page.goto("/ui/")
    assert "/ui/login" in page.url  # no session: the log-in page
    page.fill("#username", user)
    page.fill("#password", password if password is not None else PASSWORDS[user])
    page.click("#login")
    return page


def test_login_and_logout(browser: Any, web: WebCluster) -> None:
    page = login(browser, web, "root-admin")
    page.wait_for_selector("#health")
    assert page.inner_text("#who").startswith("root-admin")
    cookie = next(c for c in page.context.cookies() if c["name"] == "herd_session")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    page.click("#logout")
    page.wait_for_selector("#login")
    page.goto("/ui/instances")  # the session is gone
    assert "/ui/login" in page.url
    page.context.close()


def csrf_of(page: Any) -> str:
    return str(page.get_attribute("form.logout input[name=csrf]", "value"))


def visible_instances(page: Any) -> set[str]:
    page.goto("/ui/instances")
    return set(page.eval_on_selector_all("#instances tbody tr[data-name]",
                                         "rows => rows.map(r => r.dataset.name)"))


def test_bad_password_gives_a_message(browser: Any, web: WebCluster) -> None:
    page = login(browser, web, "alice", "wrong")
    assert page.inner_text("#login-error") == "Wrong user name or password."
    assert not [c for c in page.context.cookies() if c["name"] == "herd_session"]
    screenshot(page, "login")
    page.context.close()


def test_viewer_sees_everything_but_cannot_start(browser: Any, web: WebCluster) -> None:
    page = login(browser, web, "watcher")
    assert visible_instances(page) == set(INSTANCES)
    assert page.query_selector("#bulk-start") is None
    page.goto("/ui/instances/power1.example.com")
    assert page.inner_text("#state") == "ADMIN_down"
    assert page.query_selector("#do-start") is None  # no button
    jobs = web.job_ids()
    forged = page.request.post("/ui/instances/power1.example.com/start",
                               form={"csrf": csrf_of(page)})
    assert forged.status == 403 and "You may not start" in forged.text()
    forged = page.request.post("/ui/instances", form={"csrf": csrf_of(page), "action": "start",
                                                      "names": "power1.example.com"})
    assert forged.status == 403
    assert web.job_ids() == jobs  # nothing submitted
    page.context.close()


def test_users_see_what_they_own_or_were_granted(browser: Any, web: WebCluster) -> None:
    page = login(browser, web, "alice")  # owner by tag, and by group @devs
    assert visible_instances(page) == {"alice1.example.com", "team1.example.com"}
    page.goto("/ui/instances/db1.example.com")
    assert "No instance db1.example.com that you may see." in page.inner_text("#error")
    page.context.close()
    page = login(browser, web, "bob")  # a grant on one instance
    assert visible_instances(page) == {"shared1.example.com"}
    page.goto("/ui/instances/shared1.example.com")
    assert page.query_selector("#do-start") is not None  # the user role may power it
    page.context.close()


def test_post_without_csrf_token_is_refused(browser: Any, web: WebCluster) -> None:
    page = login(browser, web, "oper")
    page.wait_for_selector("#health")
    jobs = web.job_ids()
    for form in ({}, {"csrf": "forged"}):
        answer = page.request.post("/ui/instances/power1.example.com/start", form=form)
        assert answer.status == 403 and "security token" in answer.text()
    assert web.job_ids() == jobs
    assert not web.instance_running("power1.example.com")
    page.context.close()


def test_start_and_stop_from_the_instance_page(browser: Any, web: WebCluster) -> None:
    page = login(browser, web, "oper")
    page.goto("/ui/instances/power1.example.com")
    expect(page.locator("#do-reboot")).to_be_disabled()  # not running
    # the node is locked for a while: the start waits, the page shows the job going and
    # reloads itself when it ends
    web.submit({"OP_ID": "OP_TEST_DELAY", "duration": 2.5, "on_nodes": ["node1.example.com"]})
    page.click("#do-start")
    expect(page.locator("section.job")).not_to_have_attribute("data-status", "success")
    expect(page.locator("#state")).to_have_text("ADMIN_down")
    expect(page.locator("#state")).to_have_text("running")
    assert web.instance_running("power1.example.com")
    expect(page.locator("#do-start")).to_be_disabled()
    panel = page.query_selector("section.job")
    assert panel is not None and panel.get_attribute("data-status") == "success"
    screenshot(page, "instance")
    page.click("#do-stop")  # destructive: asks first
    page.wait_for_selector("#confirm")
    assert web.instance_running("power1.example.com")
    page.click("#confirm")
    expect(page.locator("#state")).to_have_text("ADMIN_down")
    assert not web.instance_running("power1.example.com")
    job_link = page.get_attribute("section.job h2 a", "href")
    page.goto(str(job_link))
    assert "OP_INSTANCE_SHUTDOWN" in page.inner_text("section.job")
    assert "user=oper" in page.inner_text("section.job")  # the audit names the web user
    screenshot(page, "job")
    page.context.close()


def test_bulk_start_of_three_instances(browser: Any, web: WebCluster) -> None:
    page = login(browser, web, "oper")
    page.goto("/ui/instances?q=role:web")
    names = ["web1.example.com", "web2.example.com", "web3.example.com"]
    assert visible_instances_now(page) == set(names)
    for name in names:
        page.check(f"input[name=names][value='{name}']")
    screenshot(page, "instances")
    page.click("#bulk-start")
    expect(page.locator("section.job")).to_have_count(3)
    expect(page.locator("section.job[data-status=success]")).to_have_count(3)
    assert all(web.instance_running(n) for n in names)
    page.goto("/ui/instances?q=role:web+status:running")
    assert visible_instances_now(page) == set(names)
    page.context.close()


def visible_instances_now(page: Any) -> set[str]:
    return set(page.eval_on_selector_all("#instances tbody tr[data-name]",
                                         "rows => rows.map(r => r.dataset.name)"))


def test_search_as_you_type_sorts_and_dark_mode(browser: Any, web: WebCluster) -> None:
    """htmx (vendored, under the strict CSP) replaces the table as the user types. (Waits
    are Playwright locators: its string predicates need eval, which the CSP forbids.)"""
    page = login(browser, web, "root-admin", scheme="dark")
    page.goto("/ui/instances?sort=name&desc=1")
    assert visible_instances_now(page) == set(INSTANCES)
    first = page.get_attribute("#instances tbody tr[data-name]", "data-name")
    assert first == "web3.example.com"  # name, descending
    page.fill("#search", "env:prod")
    expect(page.locator("#instances tbody tr[data-name]")).to_have_count(2)
    assert visible_instances_now(page) == {"shared1.example.com", "db1.example.com"}
    assert "q=env%3Aprod" in page.url  # the search is in the address, for reload and links
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(18, 22, 28)"  # the dark palette
    screenshot(page, "instances-dark")
    page.context.close()


def test_overview_shows_recent_failed_jobs(browser: Any, web: WebCluster) -> None:
    job_id = web.submit({"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": "db1.example.com"})
    web.wait_job(job_id)
    page = login(browser, web, "root-admin")
    row = page.locator("#failed-jobs tr", has_text=f"{job_id}")
    expect(row).to_contain_text("INSTANCE_MIGRATE(db1.example.com)")
    expect(row.locator("td.error")).not_to_be_empty()
    screenshot(page, "overview")
    page.context.close()
    page = login(browser, web, "alice")  # not hers: not shown
    expect(page.locator("#health")).to_be_visible()
    assert page.locator("#failed-jobs tr", has_text=f"{job_id}").count() == 0
    page.context.close()


def test_job_page_follows_a_running_job_without_reload(browser: Any, web: WebCluster) -> None:
    page = login(browser, web, "root-admin")
    expect(page.locator("#health")).to_be_visible()
    job_id = web.submit({"OP_ID": "OP_TEST_DELAY", "duration": 1.5})
    page.goto(f"/ui/jobs/{job_id}")
    status = page.locator(f"#job-status-{job_id}")
    expect(status).not_to_have_text("success")  # still going when the page was made
    page.evaluate("window.herdMarker = 1")
    expect(status).to_have_text("success")
    assert page.evaluate("window.herdMarker") == 1  # updated in place, not reloaded
    expect(page.locator("#job-log")).to_be_visible()
    page.context.close()
