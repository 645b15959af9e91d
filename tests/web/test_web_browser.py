"""The web manager in a real browser (Playwright driving Debian's chromium) against the real
herd-rapi application over HTTPS, on a one-node fake-hypervisor cluster (conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.web.conftest import PASSWORDS, WebCluster, screenshot

pytestmark = pytest.mark.slow


def login(browser: Any, web: WebCluster, user: str, password: str | None = None) -> Any:
    context = browser.new_context(ignore_https_errors=True, base_url=web.url)
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
    screenshot(page, "overview")
    page.click("#logout")
    page.wait_for_selector("#login")
    page.goto("/ui/instances")  # the session is gone
    assert "/ui/login" in page.url
    page.context.close()
