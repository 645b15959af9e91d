"""Load test of herd-rapi: many concurrent ``GET /2/instances?bulk=1`` on a cluster with many
instances, from a second process over loopback, bounded in time.

It builds a one-node cluster in its own network namespace with the ``fake`` hypervisor (no
QEMU: the control plane only), creates the instances through RAPI itself (version 1 create
requests, 25 jobs at a time), then runs the load generator as a separate process inside the
namespace against https://127.0.0.1:5080 (keep-alive connections, one per worker thread) for
``--duration`` seconds. It prints requests/s and latency percentiles; any non-200 answer or an
answer without every instance counts as an error. Ganeti 3.0.2's recorded figure for one
``GET /2/instances?bulk=1`` (new TLS connection, 3 instances) is 133 ms.

Run as root: ``.venv/bin/python bench/rapi_load.py [--instances 200] [--duration 20]``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

USER, PASSWORD = "bench", "benchpw"
GANETI_BULK_MS = 133


# -- the client side (runs inside the namespace, in its own process) --------------------------
class Client:
    def __init__(self, host: str, port: int) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=60)
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        try:
            self.conn.request(method, path, body=data, headers=self.headers)
            resp = self.conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # reconnect on the next request
            raise


def populate(host: str, port: int, count: int) -> None:
    client = Client(host, port)
    for start in range(0, count, 25):
        jobs = []
        for n in range(start, min(count, start + 25)):
            body = {"__version__": 1, "mode": "create", "name": f"load{n:04d}.example.com",
                    "disk_template": "diskless", "disks": [], "nics": [{}],
                    "hypervisor": "fake", "no_install": True, "name_check": False,
                    "ip_check": False, "beparams": {"memory": "32M"}}
            status, data = client.request("POST", "/2/instances", body)
            if status != 200:
                raise SystemExit(f"create failed: {status} {data[:300]!r}")
            jobs.append(json.loads(data))
        for job_id in jobs:
            while True:
                status, data = client.request("GET", f"/2/jobs/{job_id}")
                job = json.loads(data)
                if job["status"] in ("success", "error", "canceled"):
                    if job["status"] != "success":
                        raise SystemExit(f"job {job_id} failed: {job['opresult']}")
                    break
                time.sleep(0.05)


def load(host: str, port: int, duration: float, concurrency: int,
         expected: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + duration

    def worker(index: int) -> None:
        client = Client(host, port)
        count = 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                status, data = client.request("GET", "/2/instances?bulk=1")
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            elapsed = time.perf_counter() - started
            problem = None
            if status != 200:
                problem = f"HTTP {status}: {data[:200]!r}"
            elif count % 10 == index % 10 and len(json.loads(data)) != expected:
                problem = "answer without every instance"
            count += 1
            with lock:
                latencies.append(elapsed)
                if problem:
                    errors.append(problem)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 120)
    wall = time.monotonic() - started
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else 0.0

    return {"instances": expected, "concurrency": concurrency, "duration_s": round(wall, 2),
            "requests": len(latencies), "errors": len(errors), "error_samples": errors[:5],
            "rps": round(len(latencies) / wall, 1) if wall else 0.0,
            "p50_ms": round(pct(0.50), 1), "p99_ms": round(pct(0.99), 1),
            "max_ms": round(ordered[-1] * 1000, 1) if ordered else 0.0,
            "mean_ms": round(statistics.fmean(ordered) * 1000, 1) if ordered else 0.0}


# -- the orchestration (outside the namespace) -------------------------------------------------
def run(instances: int, duration: float, concurrency: int) -> dict[str, Any]:
    from herd.fileutil import pid_alive, read_pid
    from herd.lab.single import SingleNodeCluster, build_test_guest

    kernel, initrd = build_test_guest()
    root = Path(tempfile.mkdtemp(prefix="herd-rapi-load-"))
    cluster = SingleNodeCluster(f"herdrl{os.getpid()}", root)
    try:
        cluster.create(kernel, initrd, "--enabled-hypervisors", "fake,kvm")
        cluster.paths.rapi_users_file.write_text(f"{USER} {PASSWORD} write\n")
        me = [sys.executable, str(Path(__file__).resolve())]
        cluster.run(*me, "--populate", str(instances), timeout=600)
        proc = cluster.run(*me, "--worker", "--instances", str(instances), "--duration",
                           str(duration), "--concurrency", str(concurrency),
                           timeout=duration + 300)
        return json.loads(proc.stdout)
    finally:
        pid = read_pid(cluster.paths.pid_file("rapi"))  # started by our gnt-cluster init
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
        cluster.destroy()
        with contextlib.suppress(OSError):
            subprocess.run(["rm", "-rf", str(root)], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--populate", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.populate is not None:
        populate("127.0.0.1", 5080, args.populate)
        return
    if args.worker:
        print(json.dumps(load("127.0.0.1", 5080, args.duration, args.concurrency,
                              args.instances)))
        return
    result = run(args.instances, args.duration, args.concurrency)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"GET /2/instances?bulk=1 with {result['instances']} instances, "
              f"{result['concurrency']} concurrent clients, {result['duration_s']} s:")
        print(f"  {result['requests']} requests, {result['errors']} errors, "
              f"{result['rps']} requests/s")
        print(f"  latency p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
              f"max {result['max_ms']} ms (Ganeti 3.0.2, one request on a new TLS "
              f"connection, 3 instances: {GANETI_BULK_MS} ms)")
        for sample in result["error_samples"]:
            print(f"  error: {sample}")
    if result["errors"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
