"""The node's etcd member: started by herd-noded, restarted whenever it dies.

A node runs a member while its member file (``member.json`` under the node's etcd directory)
exists: ``gnt-cluster init`` writes it for the first member, the master writes it (RPC
``etcd_join``) after adding the node to etcd's membership, and removes it again (``etcd_leave``)
after removing the node. So the membership is decided in one place (the master, under the
cluster lock) and a node only carries it out; a restart of noded or of the machine finds the
file and starts the member again, from its data dir.

Supervised by noded (the one process that always runs on a node, restarted by the watcher), but
not tied to its life: the member outlives a noded restart or crash, and the next noded adopts
it (it watches the pid and restarts the member when it dies). A member that went down with
every noded restart cost a 2-member cluster its quorum, and with it the master role (the master
gives the role up when it cannot renew its lease for 3 s). ``herd-daemon-util stop-all``,
``gnt-cluster destroy`` and a node leaving the cluster stop the member.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from herd import errors
from herd.etcd.members import MemberSpec, TlsFiles, etcd_argv, memory_env
from herd.fileutil import atomic_write, pid_alive, read_pid
from herd.paths import HerdPaths

log = logging.getLogger(__name__)

#: Wait before restarting a member that died; doubled while it keeps dying young.
RESTART_MIN = 0.5
RESTART_MAX = 30.0
#: A member that ran this long before dying is restarted at once (it was not crash-looping).
HEALTHY_RUN = 30.0
STOP_TIMEOUT = 10.0


def etcd_binary() -> str | None:
    return shutil.which("etcd") or next((p for p in ("/usr/bin/etcd", "/usr/sbin/etcd")
                                         if os.access(p, os.X_OK)), None)


def read_spec(paths: HerdPaths) -> MemberSpec | None:
    try:
        return MemberSpec.from_dict(json.loads(paths.etcd_spec_file.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        log.error("cannot read %s: %s", paths.etcd_spec_file, exc)
        return None


def write_spec(paths: HerdPaths, spec: MemberSpec) -> None:
    paths.etcd_dir.mkdir(parents=True, exist_ok=True)
    paths.etcd_dir.chmod(0o700)
    atomic_write(paths.etcd_spec_file, spec.to_json() + "\n", 0o600)


def _is_our_etcd(pid: int, paths: HerdPaths) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return f"--data-dir={paths.etcd_data_dir}".encode() in cmdline


class EtcdSupervisor:
    """Runs the member described by the member file; see the module doc."""

    def __init__(self, paths: HerdPaths) -> None:
        self.paths = paths
        self._proc: asyncio.subprocess.Process | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._holding = False  # leave() in progress: do not restart
        self.restarts = 0
        self.last_exit: int | None = None
        #: the member found out that it had been removed (see run)
        self.removed = False
        self.started_at = 0.0
        #: the next start makes this member a cluster of its own (see force_new_cluster)
        self._force_new = False
        #: pid of a member an earlier noded started, supervised by watching it
        self._adopted: int | None = None

    @property
    def pid_file(self) -> Path:
        return self.paths.pid_file("etcd")

    @property
    def pid(self) -> int | None:
        if self._adopted is not None:
            return self._adopted
        return self._proc.pid if self._proc is not None and self._proc.returncode is None \
            else None

    # -- the loop -----------------------------------------------------------------------------
    async def run(self) -> None:
        """Keep the member running while the member file exists (noded's task)."""
        backoff = RESTART_MIN
        while not self._stopping:
            spec = read_spec(self.paths)
            if spec is None or self._holding or self.removed:
                self._wake.clear()
                await self._wake.wait()
                continue
            adopted = self._running_member()
            if adopted is not None:
                # left running by an earlier noded: watch it until it ends
                self._adopted = adopted
                log.info("etcd member %s (pid %s) runs already: supervising it", spec.name,
                         adopted)
                self.started_at = time.monotonic()
                while pid_alive(adopted) and not self._stopping:
                    await self._pause(0.5)
                self._adopted = None
                if self._stopping:
                    continue
                code: int | None = None  # not our child: its exit code is unknown
                pid = adopted
            else:
                try:
                    proc = await self._start(spec)
                except (OSError, errors.HerdError) as exc:
                    log.error("cannot start etcd member %s: %s", spec.name, exc)
                    await self._pause(RESTART_MAX)
                    continue
                code = await proc.wait()
                self._proc = None
                pid = proc.pid
            self.last_exit = code
            with contextlib.suppress(OSError):
                if read_pid(self.pid_file) == pid:
                    self.pid_file.unlink()
            if self._stopping or self._holding or read_spec(self.paths) is None:
                continue
            if code == 0:
                # etcd exits 0 by itself only when it learns that it was removed from the
                # cluster (a signal ends it with -SIGTERM): restarting cannot help, and its
                # data is of a member that no longer exists. Keep it for inspection until the
                # master adds this node again (join() then starts afresh).
                self.removed = True
                log.error("etcd member %s exited by itself: it was removed from the cluster; "
                          "not restarting it (the master adds it again if this node is a "
                          "candidate)", spec.name)
                continue
            ran = time.monotonic() - self.started_at
            backoff = RESTART_MIN if ran > HEALTHY_RUN else min(backoff * 2, RESTART_MAX)
            log.warning("etcd member %s (pid %s) exited with code %s after %.1f s; restarting "
                        "in %.1f s (see %s)", spec.name, pid, code, ran, backoff,
                        self.paths.daemon_log("etcd"))
            self.restarts += 1
            await self._pause(backoff)

    async def _pause(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _start(self, spec: MemberSpec) -> asyncio.subprocess.Process:
        binary = etcd_binary()
        if binary is None:
            raise errors.HerdError("etcd is not installed (Debian package etcd-server; "
                                   "tools/bootstrap-system installs it)")
        p = self.paths
        p.etcd_dir.mkdir(parents=True, exist_ok=True)
        p.etcd_dir.chmod(0o700)
        p.log_dir.mkdir(parents=True, exist_ok=True)
        argv = etcd_argv(spec, p.etcd_data_dir, TlsFiles(p.node_cert, p.node_key, p.ca_cert),
                         binary, force_new_cluster=self._force_new)
        if self._force_new:
            log.warning("starting etcd member %s as a new one-member cluster with its data "
                        "(master-failover --no-voting)", spec.name)
        self._force_new = False
        env = dict(os.environ, **memory_env(p.etcd_data_dir / "member" / "snap" / "db"))
        with open(p.daemon_log("etcd"), "ab") as logf:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=logf, stderr=logf, env=env,
                start_new_session=True, cwd=str(p.etcd_dir))
        self._proc = proc
        self.started_at = time.monotonic()
        atomic_write(self.pid_file, f"{proc.pid}\n", 0o644)
        log.info("etcd member %s started (pid %s, client %s, peer %s)", spec.name, proc.pid,
                 spec.client_url, spec.peer_url)
        return proc

    def _running_member(self) -> int | None:
        """The pid of this node's member if one runs already (started by an earlier noded)."""
        pid = read_pid(self.pid_file)
        if pid and pid_alive(pid) and _is_our_etcd(pid, self.paths):
            return pid
        return None

    # -- control (RPC and noded's shutdown) ----------------------------------------------------
    async def join(self, spec: MemberSpec) -> dict[str, Any]:
        """Become (or stay) the member ``spec``; idempotent for the same member."""
        if self.removed:  # the data is of a removed member: join as a new one
            await asyncio.to_thread(shutil.rmtree, self.paths.etcd_data_dir, True)
            self.removed = False
        current = read_spec(self.paths)
        if current is not None and self.paths.etcd_data_dir.exists() and \
                (current.name, current.peer_url) != (spec.name, spec.peer_url):
            raise errors.OpPrereqError(
                f"this node already runs etcd member {current.name} at {current.peer_url}; "
                "remove that member first")
        if current is None or not self.paths.etcd_data_dir.exists():
            await asyncio.to_thread(write_spec, self.paths, spec)
        self._holding = False
        self._wake.set()
        return self.status()

    async def leave(self) -> None:
        """Stop the member and forget its data (it was removed from etcd's membership)."""
        self._holding = True
        try:
            await self._terminate()
            await asyncio.to_thread(shutil.rmtree, self.paths.etcd_dir, True)
            self.removed = False
        finally:
            self._holding = False
            self._wake.set()

    async def force_new_cluster(self) -> dict[str, Any]:
        """The quorum is gone for good (``gnt-cluster master-failover --no-voting``): restart
        this member as a one-member cluster that keeps its data, as etcd's disaster recovery
        documents. The other members' data is then of another cluster: they must join again
        (their nodes are re-added as candidates)."""
        if read_spec(self.paths) is None or not self.paths.etcd_data_dir.exists():
            raise errors.OpPrereqError("this node runs no etcd member with data: it cannot "
                                       "restart the cluster")
        self._holding = True
        try:
            await self._terminate()
            self._force_new = True
            self.removed = False
        finally:
            self._holding = False
            self._wake.set()
        return self.status()

    async def stop(self) -> None:
        """noded is stopping: stop supervising; the member runs on (the next noded adopts
        it, see the module doc)."""
        self._stopping = True
        self._wake.set()

    async def _terminate(self) -> None:
        if self._adopted is not None:
            await asyncio.to_thread(_terminate_pid, self._adopted, STOP_TIMEOUT)
            return
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    def status(self) -> dict[str, Any]:
        spec = read_spec(self.paths)
        return {"member": spec.name if spec else None,
                "client_url": spec.client_url if spec else None,
                "peer_url": spec.peer_url if spec else None,
                "pid": self.pid, "restarts": self.restarts, "last_exit": self.last_exit,
                "removed": self.removed,
                "installed": etcd_binary() is not None}


def _terminate_pid(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def stop_stale_member(paths: HerdPaths) -> None:
    """End a member of this node that runs without its noded (for ``destroy`` and join mode)."""
    pid = read_pid(paths.pid_file("etcd"))
    if pid and pid_alive(pid) and _is_our_etcd(pid, paths):
        _terminate_pid(pid, STOP_TIMEOUT)
