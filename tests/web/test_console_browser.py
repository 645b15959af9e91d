"""Consoles in the browser against a real one-node cluster (herd.lab.single: real daemons in a
network namespace, herd-rapi on the master) and one real busybox TCG guest with VNC: the serial
console (xterm.js) shows the guest's boot marker and takes typed and pasted input, two viewers
share it, tickets are single-use and bound to their console, a viewer gets none, and noVNC
completes the RFB handshake, also with a guest whose VNC has TLS (X.509 both ways) and a
password, which noded negotiates (a wrong password is shown on the page). Chromium runs inside
the cluster's namespace (a wrapper given to Playwright as its executable), so no lab traffic
leaves it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from herd.lab.single import NODE_IP, SingleNodeCluster, build_test_guest
from tests.vnc_x509 import make_vnc_x509_dir
from tests.web.conftest import screenshot
from tests.web.in_lab import chromium_in, wait_terminal
from tests.web.in_lab import login as lab_login

pytestmark = pytest.mark.slow

USERS = "oper operpw write\nroot-admin adminpw write\nwatcher watchpw read\n"
NAME = "con1.example.com"
SECURE = "vnc-secure.example.com"
SECRET = "Vnc-Secr3t"
URL = f"https://{NODE_IP}:5080"
#: Open a console WebSocket with a ticket: "ok" or "closed CODE REASON".
TRY_TICKETS = """async ([ticketUrl, csrf, own, other]) => {
  const ticket = async () => {
    const r = await fetch(ticketUrl, {method: "POST", headers: {"X-CSRF-Token": csrf,
      "Content-Type": "application/x-www-form-urlencoded"}, body: "kind=serial"});
    return (await r.json()).ticket;
  };
  const attempt = (path, t) => new Promise(resolve => {
    const ws = new WebSocket("wss://" + location.host + path);
    ws.onopen = () => ws.send(t);
    ws.onmessage = e => { if (e.data === "ok") { resolve("ok"); ws.close(); } };
    ws.onclose = e => resolve("closed " + e.code + " " + e.reason);
  });
  const first = await ticket(), second = await ticket();
  return [await attempt(other, first), await attempt(own, first),
          await attempt(own, second), await attempt(own, second), first, second];
}"""

#: How the console's screen looks: xterm.js's own colours and font, or the page's.
TERMINAL_LOOK = """() => {
  const rows = getComputedStyle(document.querySelector("#console .xterm-rows"));
  return [rows.color, rows.fontFamily];
}"""

ASK_TICKET = """async ([ticketUrl, csrf]) => {
  const r = await fetch(ticketUrl, {method: "POST", headers: {"X-CSRF-Token": csrf,
    "Content-Type": "application/x-www-form-urlencoded"}, body: "kind=serial"});
  return [r.status, await r.json()];
}"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SingleNodeCluster]:
    kernel, initrd = build_test_guest()
    c = SingleNodeCluster(f"herdc{os.getpid()}", tmp_path_factory.mktemp("herd-console"))
    c.create(kernel, initrd)
    try:
        c.paths.rapi_users_file.write_text(USERS)
        c.run("gnt-instance", "add", "-t", "file", "-o", "busybox+default", "-s", "64M",
              "--no-name-check", "--no-ip-check", "--no-start",
              "-H", "vnc_bind_address=127.0.0.1", NAME)
        # paused: attaching the first console resumes it, so the whole boot is on screen
        c.run("gnt-instance", "startup", "--paused", NAME)
        # VNC as careful Ganeti admins set it up: TLS with certificates checked both ways and
        # a password; noded authenticates, noVNC sees security None (herd.node.rfb)
        secure = c.root / "vnc-secure"
        make_vnc_x509_dir(secure / "x509")
        (secure / "password").write_text(SECRET + "\n")
        c.run("gnt-instance", "add", "-t", "diskless", "--no-install", "-o", "busybox+default",
              "--no-name-check", "--no-ip-check", "--no-start", "-H",
              f"vnc_bind_address=127.0.0.1,vnc_tls=true,vnc_x509_path={secure / 'x509'},"
              f"vnc_x509_verify=true,vnc_password_file={secure / 'password'}", SECURE)
        c.run("gnt-instance", "startup", "--paused", SECURE)  # VNC answers, nothing boots
        yield c
    finally:
        c.destroy()


@pytest.fixture(scope="module")
def browser(cluster: SingleNodeCluster, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Any]:
    with chromium_in(cluster.node.exec_prefix, tmp_path_factory.mktemp("chromium")) as b:
        yield b


def login(browser: Any, user: str, password: str) -> Any:
    return lab_login(browser, URL, user, password)


def test_consoles_in_the_browser(cluster: SingleNodeCluster, browser: Any) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)
    started = time.monotonic()
    one = login(browser, "oper", "operpw")
    one.goto(f"/ui/instances/{NAME}")
    one.click("#open-console")
    expect(one.locator("#console-state")).to_have_attribute("data-state", "connected")
    boot = wait_terminal(one, "HERD_GUEST_READY")
    wait_terminal(one, "guest# ")
    assert f"disk0={NAME.split('.')[0]}" in boot or "HERD_GUEST_READY" in boot
    # xterm.js's run-time styles apply under the pages' CSP: its white on black, monospace
    color, font = one.evaluate(TERMINAL_LOOK)
    assert color == "rgb(255, 255, 255)" and "monospace" in font, (color, font)
    print(f"booted and seen in {time.monotonic() - started:.1f} s")

    # a second viewer (another user with the role) attaches: the replay shows the boot
    two = login(browser, "root-admin", "adminpw")
    two.goto(f"/ui/instances/{NAME}/console")
    expect(two.locator("#console-state")).to_have_attribute("data-state", "connected")
    wait_terminal(two, "HERD_GUEST_READY", timeout=20)

    one.click("#console")
    one.keyboard.type("echo sum=$((40+2))\n")
    for page in (one, two):
        wait_terminal(page, "sum=42", timeout=30)
    two.fill("#paste", "echo pasted=$((6*7))\n")
    two.click("#paste-send")
    for page in (one, two):
        wait_terminal(page, "pasted=42", timeout=30)
    screenshot(one, "console")

    # tickets: one tried on another console is used up; one used once is gone
    csrf = one.get_attribute("#console", "data-csrf")
    base = f"/ui/instances/{NAME}/console"
    results = one.evaluate(TRY_TICKETS, [f"{base}/ticket", csrf, f"{base}/ws/serial",
                                         "/ui/instances/other.example.com/console/ws/serial"])
    assert results[0] == "closed 4403 the console ticket is for another console", results
    assert results[1] == "closed 4403 unknown or already used console ticket", results
    assert results[2] == "ok", results
    assert results[3] == "closed 4403 unknown or already used console ticket", results
    tickets = results[4:]

    # a viewer sees the instance but gets no console and no ticket
    watcher = login(browser, "watcher", "watchpw")
    watcher.goto(f"/ui/instances/{NAME}")
    expect(watcher.locator("#state")).to_have_text("running")
    assert watcher.query_selector("#open-console") is None
    csrf_w = watcher.get_attribute("form.logout input[name=csrf]", "value")
    status, body = watcher.evaluate(ASK_TICKET, [f"{base}/ticket", csrf_w])
    assert status == 403 and "ticket" not in body, (status, body)
    watcher.goto(base)
    assert "You may not open the console" in watcher.inner_text("#error")

    # the graphical console: noVNC completes the RFB handshake with QEMU's VNC server
    two.goto(f"/ui/instances/{NAME}")
    two.click("#open-vnc")
    expect(two.locator("#screen")).to_have_attribute("data-rfb", "connected")
    expect(two.locator("#screen canvas")).to_have_count(1)
    expect(two.locator("#console-state")).to_have_attribute("data-state", "connected")
    screenshot(two, "vnc")

    # VNC with TLS, client certificates and a password: the same for the browser
    two.goto(f"/ui/instances/{SECURE}")
    two.click("#open-vnc")
    expect(two.locator("#screen")).to_have_attribute("data-rfb", "connected")
    expect(two.locator("#screen canvas")).to_have_count(1)
    # a password file changed after the start (QEMU keeps the old one): noVNC says why
    (cluster.root / "vnc-secure" / "password").write_text("changed!\n")
    two.goto(f"/ui/instances/{SECURE}/vnc")
    expect(two.locator("#screen")).to_have_attribute("data-rfb", "refused")
    expect(two.locator("#console-state")).to_contain_text(
        "the VNC server refused the password from vnc_password_file")
    for page in (one, two, watcher):
        page.context.close()
    # tickets are secrets: the daemons log who opened which console, never a ticket
    logs = "\n".join(p.read_text(errors="replace")
                     for p in cluster.paths.log_dir.rglob("*") if p.is_file())
    assert "console of" in logs and not any(t in logs for t in tickets)
    assert "refused the password" in logs and SECRET[:8] not in logs
    print(f"console test took {time.monotonic() - started:.1f} s after the cluster was up")
