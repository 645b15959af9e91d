"""The web manager on a real two-node lab cluster (herd.lab.cluster: real daemons in network
namespaces, herd-rapi on the master), driven through chromium inside the master's namespace:

- the creation wizard creates a mirrored (drbd) busybox guest across both nodes, the job page
  follows the creation live, and the guest boots;
- a serial console opened before a live migration follows the guest to its new primary and
  takes typed input there, without the page being reloaded;
- the instance page's job panel shows the migration's log lines and status up to ``success``
  live (server-sent events), in the same document: nothing reloads it before the job ended.

The steps build on each other in file order (one lab, one guest for the module).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from herd.lab.cluster import CLUSTER_IP
from tests.lab.conftest import LabCluster, joined_cluster
from tests.waiting import wait_until
from tests.web.conftest import screenshot
from tests.web.in_lab import chromium_in, login, wait_terminal

pytestmark = pytest.mark.slow

URL = f"https://{CLUSTER_IP}:5080"
USERS = "oper operpw write\n"
NAME = "lab1.example.com"
#: The group's policy lets the wizard make small disks: a 1 GiB mirror's first sync would be
#: most of the test's time (every other bound is the default's).
SMALL_POLICY = ("min:memory-size=128M,disk-size=64M,disk-count=1,cpu-count=1,nic-count=1,"
                "spindle-use=1/max:memory-size=32G,disk-size=1T,disk-count=16,cpu-count=8,"
                "nic-count=8,spindle-use=12")
#: Records the job panel's status and log text at every change, with which document (page
#: load) saw it, in sessionStorage: it survives the reload the instance page does once the
#: job ended, so the test can tell the live updates from what a fresh page renders.
TRACE_PANEL = """
document.addEventListener("DOMContentLoaded", () => {
  const panel = document.querySelector("section.job[data-events]");
  if (!panel) return;
  const doc = String(performance.timeOrigin);
  const push = () => {
    const trace = JSON.parse(sessionStorage.getItem("herd-trace") || "[]");
    const log = panel.querySelector("pre.log");
    trace.push({doc, status: panel.dataset.status, text: log ? log.textContent : ""});
    sessionStorage.setItem("herd-trace", JSON.stringify(trace));
  };
  push();
  new MutationObserver(push).observe(panel, {attributes: true, childList: true,
                                             subtree: true, characterData: true});
});
"""

#: Collects the console page's state changes in the page (gone if it were reloaded).
WATCH_CONSOLE_STATE = """() => {
  const state = document.getElementById("console-state");
  window.herdStates = [];
  new MutationObserver(() => window.herdStates.push(state.dataset.state))
    .observe(state, {attributes: true, attributeFilter: ["data-state"]});
}"""


class WebLab(LabCluster):
    """The lab with the browser's pages that later steps keep using."""

    pages: dict[str, Any]

    def serial_log(self, node: str) -> str:
        path = self.lab.node(node).paths.instance_run_dir / f"{NAME}.serial.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="module")
def lab() -> Iterator[WebLab]:
    with joined_cluster(2, WebLab) as cluster:
        cluster.pages = {}
        cluster.lab.node("node1").paths.rapi_users_file.write_text(USERS)
        cluster.gnt("gnt-group", "modify", "--ipolicy-bounds-specs", SMALL_POLICY, "default")
        # Ganeti's default bandwidth (Herd's is 128 MiB/s): the guest's memory copy then lasts
        # ~2 s, so the page that the submit leads to finds the migration still under way
        cluster.gnt("gnt-cluster", "modify", "-H", "kvm:migration_bandwidth=32")
        yield cluster


@pytest.fixture(scope="module")
def browser(lab: WebLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium_in(lab.lab.argv("node1"), tmp_path_factory.mktemp("chromium")) as b:
        yield b


def test_wizard_creates_a_mirrored_guest_that_boots(lab: WebLab, browser: Any) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)
    started = time.monotonic()
    page = login(browser, URL, "oper", "operpw")
    page.click("#nav-create")
    expect(page.locator("#create-form")).to_contain_text("each 64M to 1.0T")
    page.fill("#f-name", NAME)
    page.select_option("#f-os", "busybox+default")
    page.select_option("#f-template", "drbd")
    page.select_option("#f-pnode", "node1.example.com")
    page.select_option("#f-snode", "node2.example.com")
    page.fill("#f-memory", "128M")
    page.fill("#f-disks", "128M")
    assert page.is_checked("#f-start")
    page.click("#create")
    page.wait_for_url("**/ui/jobs/*")
    panel = page.locator("section.job")
    # the job page follows the creation live and ends with the job's outcome
    expect(panel).to_have_attribute("data-status", "success")
    expect(page.locator("#job-log")).to_contain_text(
        "creating mirrored disks on node1.example.com and node2.example.com")
    print(f"created through the wizard in {time.monotonic() - started:.1f} s")
    inst = lab.instances()[NAME]
    assert (inst["pnode"], inst["status"]) == ("node1.example.com", "running"), inst
    # the guest boots (its serial log on node1) and the instance page shows where it runs
    wait_until("the guest's boot marker", lambda: "HERD_GUEST_READY" in lab.serial_log("node1"),
               timeout=180, interval=0.2)
    page.goto(f"/ui/instances/{NAME}")
    expect(page.locator("#state")).to_have_text("running")
    expect(page.locator("dt:text-is('Primary') + dd")).to_contain_text("node1.example.com")
    expect(page.locator("dt:text-is('Secondaries') + dd")).to_have_text("node2.example.com")
    expect(page.locator("dt:text-is('Disk template') + dd")).to_have_text("drbd")
    expect(page.locator("#disks")).to_contain_text("128")
    lab.pages["oper"] = page
    print(f"booted in {time.monotonic() - started:.1f} s")


def test_migration_live_in_the_job_panel_and_the_console_follows(lab: WebLab,
                                                                  browser: Any) -> None:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)
    started = time.monotonic()
    # the serial console, opened before the migration, in a page of its own
    console = login(browser, URL, "oper", "operpw")
    console.goto(f"/ui/instances/{NAME}/console")
    expect(console.locator("#console-state")).to_have_attribute("data-state", "connected")
    console.click("#console")
    console.keyboard.type("echo before=$((20+22))\n")
    wait_terminal(console, "before=42", timeout=60)
    console.evaluate(WATCH_CONSOLE_STATE)

    # migrate from the instance page; its job panel is traced from the first paint on
    page = lab.pages["oper"]
    page.add_init_script(TRACE_PANEL)
    page.goto(f"/ui/instances/{NAME}")
    page.click("#go-migrate")
    page.click("#submit")
    page.wait_for_url(f"**/ui/instances/{NAME}?job=*")
    job_id = page.url.rsplit("=", 1)[1]

    def trace() -> list[dict[str, str]]:
        try:
            return json.loads(page.evaluate("sessionStorage.getItem('herd-trace') || '[]'"))
        except PlaywrightError:  # read while the page reloads itself (the job ended)
            return []

    def ended() -> list[dict[str, str]] | None:
        seen = trace()
        return seen if any(t["status"] == "success" for t in seen) else None

    # the trace that showed the end: a second read may land in the page's reload after it
    seen = wait_until("the migration's success in the panel", ended, timeout=180)
    first = seen[0]
    assert first["status"] in ("queued", "waiting", "running"), first
    assert {t["doc"] for t in seen} == {first["doc"]}, "the page was reloaded mid-job"
    statuses = [t["status"] for t in seen]
    assert statuses[-1] == "success" and "running" in statuses, statuses
    # the log grew while the job ran: lines the first paint did not have
    final_log = seen[-1]["text"]
    assert len(final_log) > len(first["text"]), seen
    assert "migrat" in final_log.lower(), final_log
    print(f"migration job {job_id} followed live: statuses {statuses}, "
          f"log lines {[len(t['text'].splitlines()) for t in seen]}")
    # once the job ended the instance page reloads itself to show the new primary
    expect(page.locator("dt:text-is('Primary') + dd")).to_contain_text("node2.example.com")
    expect(page.locator(f"#job-{job_id}")).to_have_attribute("data-status", "success")
    assert lab.instances()[NAME]["pnode"] == "node2.example.com"

    # the console followed the guest to node2: typed input reaches it there
    wait_terminal(console, "now on node2", timeout=90)
    expect(console.locator("#console-state")).to_have_attribute("data-state", "connected")
    states = console.evaluate("window.herdStates")
    assert states is not None, "the console page was reloaded"
    assert all(s == "connected" for s in states), states  # never closed on the way
    console.click("#console")
    console.keyboard.type("echo after=$((40+2))\n")
    wait_terminal(console, "after=42", timeout=60)
    assert "after=42" in lab.serial_log("node2")
    screenshot(console, "console-migrated")
    print(f"migrated and reattached in {time.monotonic() - started:.1f} s")
