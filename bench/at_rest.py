"""A one-node cluster at rest (issue 17's small-cluster goals): the memory each daemon keeps
resident, and how fast the CLI answers, beside the goals.

One herd-lab node (a network namespace; traffic only inside it) is initialised as the lab tests
and bench/scale.py do (``gnt-cluster init``, ``fake`` and ``kvm`` hypervisors enabled, no
instance). Inside it, after the daemons settle, this measures:

- each daemon's resident set: ``VmRSS`` (every page it maps, shared ones counted in each
  process: the strict figure) and ``Pss`` from ``smaps_rollup`` (shared pages divided among the
  processes sharing them: what they take together), for masterd, herd-rapi, noded and the etcd
  member noded supervises (etcd is a separate program; the totals are given with and without
  it);
- ``gnt-instance list --help`` and a trivial job through the CLI (``gnt-debug delay 0``),
  median and best of ``--runs`` runs; beside them the interpreter's own start (``python -c
  pass``, the floor no Herd change lowers) and the same trivial job submitted on an open master
  socket (masterd's share of the latency); and the interpreter and the trivial job without
  ``site`` (``python -S``: what the virtualenv's start-up hooks cost; a command needs only the
  standard library).

Python reads Herd's modules from bytecode when a ``__pycache__`` holds it (an installed package
has it; a checkout gets it on first import, unless PYTHONDONTWRITEBYTECODE is set, as in some
CI shells): each command then compiles every module it imports, 10-20 ms more. The report says
how many of Herd's modules had bytecode; ``--compile`` writes it first (``compileall``, as a
package installation does).

The machine may be shared: run it under the heavy lock and read the load average printed with
the figures. Run as root: ``.venv/bin/python bench/at_rest.py [--runs 20] [--compile]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import procmem  # noqa: E402  (bench/procmem.py)

DAEMONS = ("masterd", "rapi", "noded")
#: Issue 17's goals for a one-node cluster (seconds, MiB).
GOALS = {"help_s": 0.1, "trivial_job_s": 0.05, "rss_herd_mib": 100.0}


def log(message: str) -> None:
    print(f"[at_rest] {message}", file=sys.stderr, flush=True)


def memory() -> dict[str, Any]:
    """VmRSS and Pss (MiB) of each daemon and of etcd, with totals, and the distinct pages
    the group holds together (bench/procmem.py)."""
    from herd import paths
    from herd.fileutil import read_pid

    p = paths.current()
    out: dict[str, Any] = {"rss": {}, "pss": {}, "together": {}}
    pids = {daemon: read_pid(p.pid_file(daemon)) for daemon in (*DAEMONS, "etcd")}
    for daemon, pid in pids.items():
        out["rss"][daemon] = procmem.rss_mib(pid)
        out["pss"][daemon] = procmem.pss_mib(pid)
        out.setdefault("nice", {})[daemon] = _nice(pid)
    for kind in ("rss", "pss"):
        herd = sum(out[kind][d] for d in DAEMONS)
        out[kind]["herd_total"] = herd
        out[kind]["with_etcd"] = herd + out[kind]["etcd"]
    out["together"]["herd_total"] = procmem.together_mib(pids[d] for d in DAEMONS)
    out["together"]["with_etcd"] = procmem.together_mib(pids.values())
    return out


def _nice(pid: int | None) -> int | None:
    """A process's nice value, from /proc/PID/stat (field 19): the figures depend on it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, TypeError):
        return None
    return int(stat.rsplit(")", 1)[1].split()[16])


def runs_of(argv: list[str], runs: int, env: dict[str, str] | None = None) -> dict[str, float]:
    """Median and best wall time of ``runs`` runs of a command (which must succeed)."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       env=env)
        samples.append(time.perf_counter() - started)
    return {"median": statistics.median(samples), "best": min(samples)}


def socket_job(runs: int) -> dict[str, float]:
    """A trivial job on one open master socket: submit, follow, fetch (as gnt-* does)."""
    from herd.cli.client import MasterClient
    from herd.cli.common import wait_for_job

    op = {"OP_ID": "OP_TEST_DELAY", "duration": 0, "on_master": True, "on_nodes": [],
          "repeat": 0}
    samples = []
    with MasterClient() as client:
        for _ in range(runs):
            started = time.perf_counter()
            job = wait_for_job(client, client.call("submit_job", ops=[op]),
                               feedback=lambda _entry: None)
            samples.append(time.perf_counter() - started)
            assert job["status"] == "success", job
    return {"median": statistics.median(samples), "best": min(samples)}


def bytecode() -> dict[str, int]:
    """How many of Herd's modules have current bytecode beside them (see the module doc)."""
    import importlib.util

    sources = list((REPO / "herd").rglob("*.py"))
    cached = sum(1 for src in sources
                 if (pyc := Path(importlib.util.cache_from_source(str(src)))).exists()
                 and pyc.stat().st_mtime >= src.stat().st_mtime)
    return {"modules": len(sources), "with_bytecode": cached}


def inside(runs: int) -> dict[str, Any]:
    """Everything measured inside the node (see the module doc)."""
    time.sleep(3)  # at rest: after the daemons' start and masterd's first pushes
    out: dict[str, Any] = {"load_before": os.getloadavg()[0], "memory": memory(),
                           "bytecode": bytecode()}
    bindir = Path(sys.executable).parent
    out["python_s"] = runs_of([sys.executable, "-c", "pass"], runs)
    out["help_s"] = runs_of([str(bindir / "gnt-instance"), "list", "--help"], runs)
    out["trivial_job_s"] = runs_of([str(bindir / "gnt-debug"), "delay", "0"], runs)
    # the same command without site (python -S): no .pth hooks of the virtualenv (an editable
    # install's finder imports pathlib, re and importlib.util before any command code runs);
    # a command needs only the standard library, so it runs as it is
    out["python_nosite_s"] = runs_of([sys.executable, "-S", "-c", "pass"], runs)
    out["trivial_job_nosite_s"] = runs_of(
        [sys.executable, "-S", "-c", "import sys\nfrom herd.cli.gnt_debug import main\n"
         "sys.exit(main(['delay', '0']))"], runs, env=dict(os.environ, PYTHONPATH=str(REPO)))
    out["socket_job_s"] = socket_job(runs)
    out["memory_after"] = memory()
    out["load_after"] = os.getloadavg()[0]
    return out


def report(r: dict[str, Any]) -> None:
    print(f"load average {r['load_before']:.2f} before, {r['load_after']:.2f} after "
          f"({os.cpu_count()} CPUs); Herd's modules with bytecode: "
          f"{r['bytecode']['with_bytecode']} of {r['bytecode']['modules']}")
    print(f"{'':34}{'median':>10}{'best':>10}{'goal':>10}")
    for label, key in (("python -c pass (the floor)", "python_s"),
                       ("gnt-instance list --help", "help_s"),
                       ("gnt-debug delay 0 (trivial job)", "trivial_job_s"),
                       ("  the same job on an open socket", "socket_job_s"),
                       ("python -S -c pass", "python_nosite_s"),
                       ("  gnt-debug delay 0 under python -S", "trivial_job_nosite_s")):
        goal = f"{GOALS[key]:.3f}" if key in GOALS else ""
        print(f"{label:34}{r[key]['median']:>10.3f}{r[key]['best']:>10.3f}{goal:>10}")
    for when in ("memory", "memory_after"):
        mem = r[when]
        print(f"\nMiB at rest{' (after the CLI runs)' if when != 'memory' else ''}:"
              f"{'VmRSS':>10}{'Pss':>10}{'together':>10}")
        for name in (*DAEMONS, "etcd", "herd_total", "with_etcd"):
            label = {"herd_total": "Herd's three daemons",
                     "with_etcd": "  and etcd"}.get(name, name)
            # together: for the groups only (one process alone is its VmRSS)
            together = mem.get("together", {}).get(name)
            print(f"  {label:30}{mem['rss'][name]:>10.1f}{mem['pss'][name]:>10.1f}"
                  + (f"{together:>10.1f}" if together is not None else ""))
    print(f"goal: Herd's processes together <= {GOALS['rss_herd_mib']:.0f} MiB ('together': "
          "each physical page once, however many of them map it; see bench/procmem.py)")
    print("nice: " + ", ".join(f"{d} {n}" for d, n in r["memory"]["nice"].items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--compile", action="store_true",
                        help="write the bytecode of Herd's modules first (compileall)")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        print(json.dumps(inside(args.runs)))
        return 0
    if os.geteuid() != 0:
        raise SystemExit("bench/at_rest.py builds a network namespace: run it as root")
    if shutil.which("ip") is None:
        raise SystemExit("bench/at_rest.py needs iproute2 (ip)")
    from herd.lab.cluster import lab_cluster
    from herd.lab.single import build_test_guest

    if args.compile:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "herd")],
                       check=True, stdout=subprocess.DEVNULL)
    kernel, initrd = build_test_guest()
    with lab_cluster(1) as lab:
        log("gnt-cluster init")
        lab.run("node1", "gnt-cluster", "init", "--node-name", "node1.example.com",
                "--master-netdev", "eth0", "-s", lab.node("node1").secondary_ip,
                "-H", f"kvm:kernel_path={kernel},initrd_path={initrd}",
                "--enabled-hypervisors", "fake,kvm", "cluster.example.com")
        log(f"measuring ({args.runs} runs each)")
        result = json.loads(lab.run("node1", sys.executable, str(Path(__file__).resolve()),
                                    "--inside", "--runs", str(args.runs),
                                    timeout=1800).stdout)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
