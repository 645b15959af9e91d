"""A one-node in-process cluster (fake hypervisor, tests/harness.py) behind the real herd-rapi
application served by uvicorn over HTTPS, with masterd's real request handlers on a real unix
socket, and Debian's chromium driven by Playwright.

Only the node network is in-process (as in tests/unit); herd-rapi, its connection pool to
masterd, masterd's handlers, the job executor, the config store and the noded service are the
production code. The cluster, masterd's socket and uvicorn share one event loop, run in a
thread; the tests drive the browser from the main thread.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd.objects import access
from tests.harness import InProcessCluster, create_op, scratch_root

CHROMIUM = "/usr/bin/chromium"
#: Where the tests save the main pages' screenshots when asked (HERD_UI_SCREENSHOTS=1):
#: the README shows them.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "doc" / "screenshots"

USERS = """\
# web manager test users
root-admin adminpw
oper operpw write
watcher watchpw read
alice alicepw
bob bobpw
"""
PASSWORDS = {"root-admin": "adminpw", "oper": "operpw", "watcher": "watchpw",
             "alice": "alicepw", "bob": "bobpw"}
#: instance -> tags (owners by tag); all stopped at the start
INSTANCES = {
    "alice1.example.com": ["herd:owner:alice", "env:dev"],
    "team1.example.com": ["herd:owner:@devs"],
    "shared1.example.com": ["env:prod"],
    "web1.example.com": ["role:web"], "web2.example.com": ["role:web"],
    "web3.example.com": ["role:web"],
    "db1.example.com": ["role:db", "env:prod"],
    "power1.example.com": [],
}
GRANTS = [access.Grant("admin", "root-admin", "/"),
          access.Grant("user", "bob", "/instances/shared1.example.com")]
GROUPS = {"devs": ["alice"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WebCluster:
    """The cluster, masterd's socket and herd-rapi on one loop in a thread."""

    def __init__(self, root: Path) -> None:
        # Playwright's sync API runs an event loop in the main thread: the cluster's loop
        # must be made and run in a thread of its own
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, args=(root,), daemon=True)
        self.thread.start()
        self._ready.wait(120)
        if self._error is not None:
            raise self._error
        self.wait_until(lambda: self.server.started)
        self.url = f"https://127.0.0.1:{self.port}"

    def _main(self, root: Path) -> None:
        try:
            self._setup(root)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop = self.cluster.loop
        loop.run_forever()
        try:
            loop.run_until_complete(self._stop())
        finally:
            self.cluster.close()

    def _setup(self, root: Path) -> None:
        import uvicorn

        from herd.daemons.masterd import MasterDaemon
        from herd.rapi.app import build_app
        from herd.rpc import tls

        self.cluster = InProcessCluster(root, nodes=1)
        c = self.cluster
        c.paths.rapi_users_file.write_text(USERS)
        for name, tags in INSTANCES.items():
            outcome = c.run(create_op(name, template="diskless", tags=tags,
                                      os_type="busybox+default"))
            assert outcome.status == "success", outcome.log
        outcome = c.run({"OP_ID": "OP_CLUSTER_SET_PARAMS",
                         "add_grants": [g.to_dict() for g in GRANTS],
                         "access_groups": GROUPS})
        assert outcome.status == "success", outcome.log
        # masterd's own request handlers over the harness's master context and executor
        self.masterd = MasterDaemon(c.paths)
        self.masterd.queue.close()
        self.masterd.queue = c.queue
        self.masterd.config = c.store  # type: ignore[assignment]
        self.masterd.ctx = c.ctx
        self.masterd.executor = c.executor
        c.paths.master_socket.parent.mkdir(parents=True, exist_ok=True)
        self.unix_server = c.wait(asyncio.start_unix_server(
            self.masterd.handle_client, path=str(c.paths.master_socket)))
        self.port = free_port()
        self.app = build_app(c.paths)
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning",
            access_log=False, lifespan="off",
            ssl_context_factory=lambda _config, _default: tls.rapi_server_context(c.paths))
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.serving = c.loop.create_task(self.server.serve())

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.cluster.loop).result(timeout)

    def wait_until(self, check: Any, timeout: float = 20) -> None:
        import time

        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError("condition not met in time")
            time.sleep(0.02)

    def instance_running(self, name: str) -> bool:
        node = next(iter(self.cluster.nodes))
        return name in self.call(self._running(node))

    async def _running(self, node: str) -> set[str]:
        hv = self.cluster.nodes[node].service.hypervisor("fake")
        return {info.name for info in await hv.list_instances()}

    def submit(self, *ops: dict[str, Any]) -> int:
        """Submit a job as the CLI would (not through the web pages)."""

        async def submit() -> int:
            return self.cluster.submit(*ops)

        return int(self.call(submit()))

    def wait_job(self, job_id: int) -> None:
        self.call(self.cluster.finish(job_id))

    def job_ids(self) -> list[int]:
        return [j.id for j in self.cluster.queue.list()]

    def close(self) -> None:
        self.server.should_exit = True
        self.cluster.loop.call_soon_threadsafe(self.cluster.loop.stop)
        self.thread.join(30)

    async def _stop(self) -> None:
        await self.serving
        self.unix_server.close()
        self.app.close()


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebCluster]:
    with scratch_root(tmp_path_factory.mktemp("web")) as root:
        cluster = WebCluster(root)
        try:
            yield cluster
        finally:
            cluster.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium "
                    "(tools/bootstrap-system installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Any, name: str) -> None:
    """Save the page for the README when HERD_UI_SCREENSHOTS=1 (not on every run: the files
    are committed and would change with every run's times and job ids)."""
    if os.environ.get("HERD_UI_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


