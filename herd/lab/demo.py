"""``make demo``: a one-node cluster in a network namespace running the test guest.

Everything lives under ``demo-root/`` of the repository and in the ``herd-demo`` namespace;
``make demo-clean`` (``python -m herd.lab.demo --clean``) ends what the demo started and
removes both.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from herd.lab.single import REPO, SingleNodeCluster, build_test_guest

NETNS = "herd-demo"
ROOT = REPO / "demo-root"
INSTANCE = "demo1.example.com"


def _show(cluster: SingleNodeCluster, *args: str) -> str:
    print(f"\n$ {' '.join(args)}", flush=True)
    proc = cluster.run(*args)
    print(proc.stdout.rstrip(), flush=True)
    return proc.stdout


def _console_transcript(cluster: SingleNodeCluster, timeout: float = 120) -> str:
    """Attach to the paused guest's console (which resumes it) and run one command."""
    import select

    console = cluster.popen("gnt-instance", "console", INSTANCE)
    assert console.stdout is not None and console.stdin is not None
    out = b""
    sent = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([console.stdout], [], [], 1)
            if ready:
                chunk = os.read(console.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
            if not sent and b"guest# " in out:
                console.stdin.write(b"uname -sr; cat /proc/cmdline\n")
                console.stdin.flush()
                sent = True
            elif sent and out.count(b"guest# ") >= 2:
                break
        console.stdin.write(b"\x1d")
        console.stdin.flush()
        console.wait(timeout=10)
    finally:
        if console.poll() is None:
            console.kill()
    return out.decode(errors="replace")


def clean() -> None:
    cluster = SingleNodeCluster(NETNS, ROOT)
    cluster.destroy()
    shutil.rmtree(ROOT, ignore_errors=True)


def demo() -> int:
    if ROOT.exists() or Path(f"/run/netns/{NETNS}").exists():
        print("Removing the previous demo first (make demo-clean)", flush=True)
        clean()
    kernel, initrd = build_test_guest()
    cluster = SingleNodeCluster(NETNS, ROOT)
    print(f"Creating a one-node cluster in network namespace {NETNS}, HERD_ROOT={ROOT}",
          flush=True)
    start = time.monotonic()
    cluster.create(kernel, initrd)
    print(f"Cluster initialised in {time.monotonic() - start:.1f} s", flush=True)
    _show(cluster, "gnt-cluster", "getmaster")
    _show(cluster, "gnt-node", "list")
    _show(cluster, "gnt-os", "list")
    _show(cluster, "gnt-instance", "add", "-t", "file", "-o", "busybox+default", "-s", "256M",
          "--no-name-check", "--no-ip-check", "--no-start", INSTANCE)
    # Start paused so the console sees the boot from its first line (attaching resumes it).
    _show(cluster, "gnt-instance", "startup", "--paused", INSTANCE)
    print(f"\n$ gnt-instance console {INSTANCE}   (scripted; Ctrl+] detaches)", flush=True)
    transcript = _console_transcript(cluster)
    marker = next((line for line in transcript.splitlines() if "HERD_GUEST_READY" in line),
                  None)
    print("\n".join(transcript.splitlines()[-12:]), flush=True)
    _show(cluster, "gnt-instance", "list")
    _show(cluster, "gnt-node", "info")
    if marker is None:
        print("\nDEMO FAILED: the guest did not print its boot marker", file=sys.stderr)
        return 1
    print(f"\nThe guest booted and printed its marker:\n  {marker.strip()}")
    print("\nTry it yourself (as root):")
    print(f"  export HERD_ROOT={ROOT}")
    print(f"  ip netns exec {NETNS} {Path(sys.executable).parent}/gnt-instance console "
          f"{INSTANCE}")
    print("Clean up with: make demo-clean")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="herd-demo")
    parser.add_argument("--clean", action="store_true", help="remove what the demo made")
    args = parser.parse_args()
    if args.clean:
        clean()
        print("Demo removed")
        return 0
    try:
        return demo()
    except (AssertionError, subprocess.CalledProcessError) as exc:
        print(f"DEMO FAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
