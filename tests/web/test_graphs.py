"""An instance's usage graphs on its page: the node's history (herd.node.usage_history) drawn
as SVG by the server, refreshed in place (fake hypervisor: made-up CPU that grows)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.web.conftest import WebCluster, screenshot
from tests.web.test_web_browser import login

pytestmark = pytest.mark.slow
expect.set_options(timeout=20_000)


def test_instance_page_shows_usage_graphs_of_a_running_guest(browser: Any,
                                                             web: WebCluster) -> None:
    name = "power1.example.com"
    web.wait_job(web.submit({"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": name}))
    service = next(iter(web.cluster.nodes.values())).service
    # noded samples every 10 s; here the loop samples fast so that rates exist at once
    sampler = web.call(_start(service.usage.run(0.2)))
    try:
        # rates need samples at least a second apart (usage_history.MIN_STEP)
        web.wait_until(lambda: len(service.usage.rings.get(name, ())) >= 8)
        page = login(browser, web, "root-admin")
        page.goto(f"/ui/instances/{name}")
        cpu = page.locator("#graph-cpu")
        expect(cpu.locator("polyline")).to_have_count(1)
        expect(cpu.locator(".last")).to_contain_text("%")
        assert float(cpu.locator(".last").inner_text().split()[0]) > 0
        expect(page.locator("#graph-memory .last")).to_contain_text("MiB")
        screenshot(page, "instance-usage")
        # the node's own graphs on its page (its CPU and memory from /proc, its guests' I/O)
        node = next(iter(web.cluster.nodes))
        page.goto(f"/ui/nodes/{node}")
        expect(page.locator("#graph-memory .last")).to_contain_text("MiB")
        expect(page.locator("#graph-cpu polyline")).to_have_count(1)
        # a viewer of nothing gets no graphs of an instance it may not see
        bob = login(browser, web, "bob")
        answer = bob.request.get(f"/ui/instances/{name}/usage")
        assert answer.status == 404
    finally:
        web.call(_cancel(sampler))


async def _start(coro: Any) -> asyncio.Task[None]:
    return asyncio.ensure_future(coro)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
