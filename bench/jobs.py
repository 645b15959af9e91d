"""Control-plane speed of a one-node cluster, compared with Ganeti 3.0.2's recorded figures.

Ganeti cannot run beside Herd on these machines, so its side of each ratio is the median that
../shared/ganeti-samples/README.md records for the same machine kind; Herd's side is measured
here, in this run, on a real cluster in a network namespace (real daemons, TLS, QEMU with TCG).
Run: ``make bench`` (as root).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from procmem import rss_mib  # bench/procmem.py (this script's folder)

from herd.cli.client import MasterClient
from herd.lab.single import SingleNodeCluster, build_test_guest

GANETI = {  # seconds (median), from ganeti-samples/README.md
    "trivial job via CLI": 0.55,
    "200 trivial jobs (total)": 50.9,
    "gnt-instance add -t file 1G --no-start": 1.2,
    "gnt-instance startup": 1.1,
    "gnt-instance list": 0.32,
    "gnt-cluster verify (1 node)": 1.7,
}
GANETI_RSS_MIB = 208


def timed(fn: Callable[[], object], repeat: int = 5) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def wait_for_boot(cluster: SingleNodeCluster, names: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    for name in names:
        log = cluster.paths.instance_run_dir / f"{name}.serial.log"
        while time.monotonic() < deadline:
            if log.exists() and b"guest# " in log.read_bytes():
                break
            time.sleep(0.2)
    time.sleep(1)


def main() -> int:
    kernel, initrd = build_test_guest()
    root = Path(f"/tmp/herd-bench-{os.getpid()}")
    cluster = SingleNodeCluster(f"herdbench{os.getpid()}", root)
    cluster.create(kernel, initrd)
    results: dict[str, float] = {}
    try:
        results["trivial job via CLI"] = timed(lambda: cluster.run("gnt-debug", "delay", "0"))

        def two_hundred() -> None:
            with MasterClient(cluster.paths) as client:
                ids = [client.call("submit_job", ops=[{"OP_ID": "OP_TEST_DELAY",
                                                       "duration": 0}]) for _ in range(200)]
                while True:
                    jobs = client.call("query_jobs", ids=ids)
                    if all(j["status"] == "success" for j in jobs):
                        return
                    time.sleep(0.01)
        results["200 trivial jobs (total)"] = timed(two_hundred, repeat=3)

        counter = iter(range(1000))

        def add() -> None:
            cluster.run("gnt-instance", "add", "-t", "file", "-o", "busybox+default", "-s", "1G",
                        "--no-name-check", "--no-ip-check", "--no-start",
                        f"bench{next(counter)}")
        results["gnt-instance add -t file 1G --no-start"] = timed(add)

        names = iter([f"bench{i}" for i in range(5)])
        results["gnt-instance startup"] = timed(
            lambda: cluster.run("gnt-instance", "startup", next(names)))
        # TCG guests booting take both cores; measure queries once they idle at their prompt
        wait_for_boot(cluster, [f"bench{i}" for i in range(5)])
        results["gnt-instance list"] = timed(lambda: cluster.run("gnt-instance", "list"))
        results["gnt-cluster verify (1 node)"] = timed(
            lambda: cluster.run("gnt-cluster", "verify", check=False))
        for i in range(5):
            cluster.run("gnt-instance", "shutdown", "--timeout=0", f"bench{i}")
        time.sleep(2)
        rss = {d: rss_mib(cluster.daemon_pid(d)) for d in ("noded", "masterd")}
    finally:
        cluster.destroy()
        import shutil
        shutil.rmtree(root, ignore_errors=True)

    print(f"{'operation':42} {'herd s':>8} {'ganeti s':>9} {'speed-up':>9}")
    for name, herd in results.items():
        ganeti = GANETI[name]
        print(f"{name:42} {herd:8.3f} {ganeti:9.2f} {ganeti / herd:8.1f}x")
    jobs_per_s = 200 / results["200 trivial jobs (total)"]
    print(f"{'trivial jobs per second':42} {jobs_per_s:8.1f} {200 / 50.9:9.1f} "
          f"{jobs_per_s / (200 / 50.9):8.1f}x")
    total = sum(rss.values())
    print(f"daemon RSS at rest: noded {rss['noded']:.0f} MiB, masterd {rss['masterd']:.0f} MiB, "
          f"total {total:.0f} MiB vs Ganeti {GANETI_RSS_MIB} MiB "
          f"({total / GANETI_RSS_MIB:.2f} of Ganeti's)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
