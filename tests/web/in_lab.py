"""Browser tests against real clusters in network namespaces (herd.lab.single, herd.lab.cluster):
chromium started inside the master's namespace, logging in, reading the serial console's screen.

Chromium runs in the namespace (a wrapper script given to Playwright as its executable) so that
no lab traffic leaves it: herd-rapi listens on the master's lab address only.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import CHROMIUM

#: The serial console page's whole xterm.js buffer as text (console.js sets herdTerminal).
READ_TERMINAL = """() => {
  const b = window.herdTerminal.buffer.active, out = [];
  for (let i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true));
  return out.join("\\n");
}"""


@contextlib.contextmanager
def chromium_in(exec_prefix: list[str], workdir: Path) -> Iterator[Any]:
    """A Playwright browser whose chromium runs under ``exec_prefix`` (``ip netns exec NS``)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    wrapper = workdir / "chromium-in-lab"
    wrapper.write_text("#!/bin/sh\nexec " + " ".join(exec_prefix) + f' {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(wrapper), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def login(browser: Any, url: str, user: str, password: str, timeout: float = 60) -> Any:
    """A new browser context logged in at ``url`` (herd-rapi comes up with the master a moment
    after ``gnt-cluster init``: the log-in page is retried until it answers)."""
    page = browser.new_context(ignore_https_errors=True, base_url=url).new_page()
    deadline = time.monotonic() + timeout
    while True:
        try:
            page.goto("/ui/login")
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login")
    page.wait_for_selector("#who")
    return page


def wait_terminal(page: Any, text: str, timeout: float = 120) -> str:
    """The console page's screen once it shows ``text`` (AssertionError with the screen)."""
    deadline = time.monotonic() + timeout
    while True:
        screen = str(page.evaluate(READ_TERMINAL))
        if text in screen:
            return screen
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not on the console; it shows:\n{screen[-2000:]}")
        time.sleep(0.2)
