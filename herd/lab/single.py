"""A one-node cluster in its own network namespace, for tests and the demo.

It owns everything it starts: the namespace, the node's HERD_ROOT, the daemons (by pid file) and
the QEMU processes of its instances (by the hypervisor's pid files under that root). ``destroy``
ends exactly those, never anything else on the machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from herd.fileutil import pid_alive, read_pid
from herd.lab.netns import LabNode
from herd.paths import HerdPaths

REPO = Path(__file__).resolve().parents[2]
GUEST_DIR = REPO / "build/test-guest"
NODE_NAME = "node1.example.com"
NODE_IP = "198.51.100.1"
CLUSTER_NAME = "cluster.example.com"
CLUSTER_IP = "198.51.100.254"


def build_test_guest(outdir: Path = GUEST_DIR) -> tuple[Path, Path]:
    """Build (or find up to date) the test guest; a failure says what the build script said."""
    proc = subprocess.run([str(REPO / "tools/build-test-guest"), str(outdir)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"tools/build-test-guest {outdir} failed (exit {proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    return outdir / "vmlinuz", outdir / "initrd.img"


class SingleNodeCluster:
    def __init__(self, netns: str, root: Path) -> None:
        self.root = root
        self.paths = HerdPaths(root)
        self.node = LabNode(netns, NODE_NAME, NODE_IP, hosts={CLUSTER_NAME: CLUSTER_IP})
        bindir = str(Path(sys.executable).parent)
        self.env = dict(os.environ, HERD_ROOT=str(root),
                        PATH=f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}")

    def create(self, kernel: Path, initrd: Path, *extra_init: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.node.create()
        try:
            self.run("gnt-cluster", "init", "--node-name", NODE_NAME,
                     "-H", f"kvm:kernel_path={kernel},initrd_path={initrd}",
                     *extra_init, CLUSTER_NAME)
        except BaseException:
            self.destroy()
            raise

    def argv(self, *args: str) -> list[str]:
        return [*self.node.exec_prefix, *args]

    def run(self, *args: str, check: bool = True, timeout: float = 300,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True,
                              timeout=timeout, input=input, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv(*args), env=self.env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def config(self) -> dict:
        """The cluster configuration as etcd holds it (``gnt-debug dump-config``)."""
        return json.loads(self.run("gnt-debug", "dump-config").stdout)

    def qemu_pid(self, instance: str) -> int | None:
        pid = read_pid(self.paths.instance_run_dir / f"{instance}.pid")
        return pid if pid_alive(pid) else None

    def daemon_pid(self, daemon: str) -> int | None:
        pid = read_pid(self.paths.pid_file(daemon))
        return pid if pid_alive(pid) else None

    def destroy(self) -> None:
        """End what this cluster started (guests, daemons), then remove the namespace."""
        run_dir = self.paths.instance_run_dir
        pids = [read_pid(f) for f in run_dir.glob("*.pid")] if run_dir.exists() else []
        for daemon in ("rapi", "masterd", "noded", "etcd"):
            pids.append(read_pid(self.paths.pid_file(daemon)))
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
        deadline = time.monotonic() + 10
        while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.node.destroy()
