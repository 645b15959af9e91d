"""How Herd scales with the number of instances (issue 17): lists, RAPI, config load, memory
and job latency at 100, 1,000, 5,000 and 20,000 instances, on 1 and 3 nodes.

Each node count gets one herd-lab cluster (network namespaces; traffic only inside them) made
as the lab tests make it (``gnt-cluster init`` on node1 with the ``fake`` hypervisor enabled,
the other nodes joined with ``gnt-node add``). Sizes are reached in increasing order by
**fast population**: masterd and RAPI are stopped, the missing instances are written straight
into etcd through the config layer (``herd.config.layout``: one key per instance, the form
masterd itself writes), and masterd is started again, which loads them as it loads any
config. 20,000 ``gnt-instance add`` jobs would take hours and measure nothing this bench is
about. The instances are ``diskless``, hypervisor ``fake``, one NIC, admin state down, spread
over the nodes as primaries; one real ``gnt-instance add`` (on node1: the allocator would
refuse it, the bench instances count as vCPUs in use) is timed at each size.

Measured at each size, inside node1 (the master): masterd's start with that config, the config
load (``layout.assemble`` of the keys read from etcd, and ``ConfigData.from_dict`` of the
document, the issue's figure), ``gnt-instance list`` (all fields and ``-o name,status``),
masterd's instance query alone (the master socket), ``gnt-node list``, ``gnt-cluster verify``,
RAPI ``/2/instances?bulk=1`` and ``/2/instances`` on a keep-alive connection, RSS of masterd,
RAPI, noded and the etcd member at rest, the latency of a trivial job (``gnt-debug delay 0``)
and of a config-changing one (``gnt-instance add-tags``) through the CLI, jobs/s of 16
submitters (trivial jobs through the master socket), and the latency of a trivial job while 4
clients run ``gnt-instance list`` in a loop, side by side with idle, also through the master
socket (masterd's part, no new process) and for an empty interpreter (``python -c pass``: on
a machine with few cores, four listing processes take their fair share of the CPU from any
new process, which bounds the CLI job's ratio whatever masterd does). ``--only list-load``
measures only these. Each figure is printed beside Ganeti 3.0.2's
recorded one where one exists (/work/shared/ganeti-samples/README.md; a small cluster) and
beside the figure the issue recorded before this work (1 node).

The machine may be shared: every figure is a median of a few runs, and the load average is
printed with them. Run as root: ``.venv/bin/python bench/scale.py`` (all sizes, 1 and 3
nodes; long at 20,000), ``--quick`` (100 and 1,000, one node: CI time), or ``--sizes`` and
``--nodes``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import procmem  # noqa: E402  (bench/procmem.py)

USER, PASSWORD = "bench", "benchpw"
RAPI_PORT = 5080
NAME = "inst{:05d}.example.com"

#: Ganeti 3.0.2's recorded figures (a 1-2 node cluster, 3 instances), same machine kind.
GANETI = {"list_s": 0.32, "verify_s": 1.7, "add_s": 1.2, "trivial_job_s": 0.55,
          "jobs_per_s": 3.9, "rapi_bulk_ms": 133, "rss_total_mib": 208}
#: What issue 17 recorded on main before this work (1 node, fake hypervisor).
BEFORE = {
    "list_s": {100: 0.38, 1000: 1.51, 5000: 5.26},
    "query_s": {100: 0.04, 1000: 1.29, 5000: 3.38},
    "rapi_bulk_ms": {100: 46, 1000: 805, 5000: 4100},
    "rapi_names_ms": {100: 16, 1000: 288, 5000: 1660},
    "from_dict_s": {100: 0.06, 1000: 1.0, 5000: 4.2},
    "rss_masterd_mib": {100: 59, 1000: 72, 5000: 126},
    "rss_rapi_mib": {100: 44, 1000: 56, 5000: 102},
    "rss_noded_mib": {100: 58, 1000: 62, 5000: 80},
    "trivial_job_s": {100: 0.11},
}
#: Issue 17's goals, beside each figure (the RSS goals are for all of Herd's processes).
GOALS = {
    "list_s": "<1 at 20k", "list_name_status_s": "<0.5 at 20k", "rapi_bulk_ms": "<400 at 20k",
    "rapi_names_ms": "<50 at 20k", "from_dict_s": "<0.5 at 20k", "help_s": "<=0.1",
    "trivial_job_s": "<=0.05 quiet", "rss_herd_total_mib": "<=300 at 20k",
    "rss_with_etcd_mib": "<=300 at 20k", "settled_with_etcd_mib": "<=300 at 20k",
}
#: A one-node cluster at rest: all of Herd's processes together (bench/at_rest.py has more).
GOAL_RSS_AT_REST_MIB = 100


def log(message: str) -> None:
    print(f"[scale] {message}", file=sys.stderr, flush=True)


def median(samples: list[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


# -- inside node1: population --------------------------------------------------------------
def populate(total: int) -> dict[str, Any]:
    """Bring the cluster to ``total`` bench instances (see the module doc); return timings."""
    import asyncio

    from herd import paths
    from herd.config import layout
    from herd.config.facts import read_facts
    from herd.daemons import util as daemon_util
    from herd.etcd.client import EtcdClient, Op
    from herd.etcd.members import client_urls_from_facts
    from herd.objects import Instance, Nic

    p = paths.current()
    me = (p.data_dir / "node-name").read_text().strip()
    daemon_util.stop(p, "rapi")
    daemon_util.stop(p, "masterd")

    async def write() -> int:
        facts = read_facts(p)
        assert facts is not None
        client = EtcdClient.for_node(p, client_urls_from_facts(facts, me))
        try:
            result = await client.range(layout.PREFIX, prefix=True)
            texts = {kv.key.decode(): kv.value.decode() for kv in result.kvs
                     if kv.key.decode() != layout.META_KEY}
            cfg = layout.assemble(texts, 1)
            have = {i.name for i in cfg.instances.values()}
            nodes = sorted(cfg.nodes)
            prefix = cfg.cluster.mac_prefix
            puts: dict[str, str] = {}
            for index in range(total):
                name = NAME.format(index)
                if name in have:
                    continue
                inst = Instance(name=name, primary_node=nodes[index % len(nodes)],
                                os="busybox+default", hypervisor="fake",
                                disk_template="diskless", admin_state="down",
                                beparams={"maxmem": 32, "minmem": 32},
                                nics=[Nic(mac=f"{prefix}:{index >> 16 & 255:02x}:"
                                              f"{index >> 8 & 255:02x}:{index & 255:02x}")])
                puts[layout.object_key("instances", inst.uuid)] = layout.dumps(inst.to_dict())
            items = list(puts.items())
            for start in range(0, len(items), layout.MAX_TXN_OPS):
                ops = [Op.put(k, v) for k, v in items[start:start + layout.MAX_TXN_OPS]]
                await client.txn([], ops)
            return len(items)
        finally:
            await client.close()

    started = time.perf_counter()
    written = asyncio.run(write())
    populated = time.perf_counter() - started
    started = time.perf_counter()
    daemon_util.start(p, "masterd")
    masterd_start = time.perf_counter() - started
    daemon_util.start(p, "rapi", RAPI_PORT)
    return {"written": written, "populate_s": populated, "masterd_start_s": masterd_start}


# -- inside node1: measuring ------------------------------------------------------------------
class Rapi:
    """One keep-alive HTTPS connection to RAPI (as a RAPI client library keeps it)."""

    def __init__(self) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.conn = http.client.HTTPSConnection("127.0.0.1", RAPI_PORT, context=ctx,
                                                timeout=300)
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}

    def get(self, path: str) -> Any:
        return self.get_timed(path)[0]

    def get_timed(self, path: str) -> tuple[Any, float]:
        """The decoded answer and how long the client's ``json.loads`` of it took (the rest
        of a request's time is RAPI's answer and the transfer)."""
        self.conn.request("GET", path, headers=self.headers)
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {resp.status} {body[:200]!r}")
        started = time.perf_counter()
        value = json.loads(body)
        return value, time.perf_counter() - started


class Web:
    """A browser's requests to the web manager (issue 14): log in once (the log-in form's
    CSRF cookie and field), then GET pages on one keep-alive connection with the session."""

    def __init__(self) -> None:
        import re
        import urllib.parse

        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.conn = http.client.HTTPSConnection("127.0.0.1", RAPI_PORT, context=ctx,
                                                timeout=300)
        self.conn.request("GET", "/ui/login")
        resp = self.conn.getresponse()
        page = resp.read().decode()
        login_cookie = self._cookie(resp, "herd_login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        if csrf is None or login_cookie is None:
            raise RuntimeError("the log-in page has no CSRF token")
        form = urllib.parse.urlencode({"username": USER, "password": PASSWORD,
                                       "csrf": csrf.group(1), "next": "/ui/"})
        self.conn.request("POST", "/ui/login", body=form, headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"herd_login={login_cookie}", "Origin": f"https://127.0.0.1:{RAPI_PORT}",
            "Host": f"127.0.0.1:{RAPI_PORT}"})
        resp = self.conn.getresponse()
        resp.read()
        session = self._cookie(resp, "herd_session")
        if session is None:
            raise RuntimeError(f"web log-in failed: HTTP {resp.status}")
        self.headers = {"Cookie": f"herd_session={session}"}

    @staticmethod
    def _cookie(resp: http.client.HTTPResponse, name: str) -> str | None:
        for header in resp.headers.get_all("Set-Cookie") or []:
            key, _, rest = header.partition("=")
            if key.strip() == name:
                return rest.split(";", 1)[0]
        return None

    def page(self, path: str) -> float:
        started = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {resp.status} {body[:200]!r}")
        return time.perf_counter() - started


def run(*argv: str, timeout: float = 900) -> float:
    """Seconds a command took; a failure stops the bench with its output."""
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): "
                           f"{(proc.stderr or proc.stdout)[-500:]}")
    return elapsed


def timed(argv: tuple[str, ...], times: int) -> float:
    return median([run(*argv) for _ in range(times)])


def rss_all() -> dict[str, float]:
    from herd import paths
    from herd.fileutil import read_pid

    p = paths.current()
    pids = {d: read_pid(p.pid_file(d)) for d in ("masterd", "rapi", "noded", "etcd")}
    out: dict[str, Any] = {d: procmem.rss_mib(pid) for d, pid in pids.items()}
    out["herd_total"] = out["masterd"] + out["rapi"] + out["noded"]
    # the etcd member noded runs is one of Herd's processes for the goals (bench/at_rest.py)
    out["with_etcd"] = out["herd_total"] + out["etcd"]
    # the proportional sets: shared pages (libpython, libcrypto) divided among the processes
    out["pss_herd_total"] = sum(procmem.pss_mib(pids[d]) for d in ("masterd", "rapi", "noded"))
    out["pss_with_etcd"] = out["pss_herd_total"] + procmem.pss_mib(pids["etcd"])
    # each physical page once, however many of the four map it (bench/procmem.py)
    out["together_with_etcd"] = procmem.together_mib(pids.values())
    # the big native libraries a daemon should not keep resident at rest
    out["loaded"] = {d: sorted(lib for lib in ("cryptography", "markupsafe")
                               if lib in _maps(pids[d])) for d in ("masterd", "rapi", "noded")}
    return out


def _maps(pid: int | None) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text() if pid else ""
    except OSError:
        return ""


def config_load(size: int) -> dict[str, float]:
    """The config load as masterd does it (keys read from etcd, layout.assemble), and
    ConfigData.from_dict of the document (the issue's figure), each the best of 3."""
    import asyncio

    from herd import paths
    from herd.config import layout
    from herd.config.facts import read_facts
    from herd.etcd.client import EtcdClient
    from herd.etcd.members import client_urls_from_facts
    from herd.objects import ConfigData

    p = paths.current()
    me = (p.data_dir / "node-name").read_text().strip()

    async def read() -> tuple[dict[str, str], float]:
        facts = read_facts(p)
        assert facts is not None
        client = EtcdClient.for_node(p, client_urls_from_facts(facts, me))
        try:
            started = time.perf_counter()
            result = await client.range(layout.PREFIX, prefix=True)
            elapsed = time.perf_counter() - started
            return ({kv.key.decode(): kv.value.decode() for kv in result.kvs
                     if kv.key.decode() != layout.META_KEY}, elapsed)
        finally:
            await client.close()

    texts, range_s = asyncio.run(read())
    assemble, from_dict = [], []
    for _ in range(3):
        started = time.perf_counter()
        cfg = layout.assemble(texts, 1)
        assemble.append(time.perf_counter() - started)
        doc = json.loads(json.dumps(cfg.to_dict()))
        del cfg
        started = time.perf_counter()
        ConfigData.from_dict(doc)
        from_dict.append(time.perf_counter() - started)
    return {"etcd_range_s": range_s, "assemble_s": min(assemble),
            "from_dict_s": min(from_dict)}


def master_query() -> float:
    from herd.cli.client import MasterClient

    samples = []
    with MasterClient(timeout=600) as client:
        for _ in range(3):
            started = time.perf_counter()
            client.call("query_instances", names=None, live=True)
            samples.append(time.perf_counter() - started)
    return median(samples)


def submitters(count: int, duration: float, op: Any) -> dict[str, float]:
    """``count`` threads, each on its own master socket, submitting a job and waiting for it
    (as ``gnt-*`` does) for ``duration`` s: jobs/s and the median latency."""
    from herd.cli.client import MasterClient
    from herd.cli.common import wait_for_job

    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def worker(number: int) -> None:
        with MasterClient(timeout=600) as client:
            done = 0
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                job_id = client.call("submit_job", ops=[op(number, done)])
                job = wait_for_job(client, job_id, feedback=lambda _entry: None)
                with lock:
                    latencies.append(time.perf_counter() - started)
                    if job["status"] != "success":
                        failures.append(str(job["opresult"])[:200])
                done += 1

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    if failures:
        raise RuntimeError(f"{len(failures)} bench jobs failed: {failures[0]}")
    return {"jobs_per_s": len(latencies) / wall, "p50_s": median(latencies),
            "jobs": len(latencies)}


def socket_job(samples: int) -> float:
    """Median latency of a trivial job submitted on the master socket and waited for (the
    CLI's calls, without starting a CLI process)."""
    from herd.cli.client import MasterClient
    from herd.cli.common import wait_for_job

    out = []
    with MasterClient(timeout=600) as client:
        for _ in range(samples):
            started = time.perf_counter()
            job_id = client.call("submit_job", ops=[{
                "OP_ID": "OP_TEST_DELAY", "duration": 0, "on_master": True, "on_nodes": [],
                "repeat": 0}])
            wait_for_job(client, job_id, feedback=lambda _entry: None)
            out.append(time.perf_counter() - started)
    return median(out)


def under_list_load(size: int, samples: int,
                    measure: Any = None) -> float:
    """Median latency of a trivial job through the CLI (or ``measure(samples)``) while 4
    clients list everything."""
    stop = threading.Event()
    lists = [0]

    def lister() -> None:
        while not stop.is_set():
            run("gnt-instance", "list")
            lists[0] += 1

    problems: list[str] = []

    def guarded() -> None:
        try:
            lister()
        except RuntimeError as exc:
            problems.append(str(exc))

    threads = [threading.Thread(target=guarded) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    try:
        if measure is not None:
            return float(measure(samples))
        return timed(("gnt-debug", "delay", "0"), samples)
    except RuntimeError as exc:
        problems.append(str(exc))
        return float("nan")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        if problems:
            log(f"under list load: {problems[0][:300]}")
            UNDER_LOAD_PROBLEMS.extend(problems)


#: Failures while 4 clients listed (masterd losing its role under load is a finding).
UNDER_LOAD_PROBLEMS: list[str] = []


def empty_python(samples: int) -> float:
    """Median time of an interpreter that does nothing (``python -c pass``): the share of the
    CPU any new process gets, whatever Herd does (the floor of the CLI job's ratio)."""
    return timed((sys.executable, "-c", "pass"), samples)


def list_load_ratios(size: int, out: dict[str, Any], rounds: int) -> None:
    """A trivial job idle and while 4 clients list, side by side (idle, loaded, idle, ...:
    both see the same machine), through the CLI and through the master socket (masterd's
    part, without a new process), and an empty interpreter the same way."""
    for _ in range(rounds):
        out.setdefault("idle_runs", []).append(timed(("gnt-debug", "delay", "0"), 5))
        out.setdefault("loaded_runs", []).append(under_list_load(size, 5))
        out.setdefault("socket_idle_runs", []).append(socket_job(5))
        out.setdefault("socket_loaded_runs", []).append(under_list_load(size, 5, socket_job))
        out.setdefault("python_idle_runs", []).append(empty_python(5))
        out.setdefault("python_loaded_runs", []).append(under_list_load(size, 5,
                                                                        empty_python))
    out["idle_job_s"] = median(out["idle_runs"])
    out["job_under_lists_s"] = median(out["loaded_runs"])
    out["socket_idle_s"] = median(out["socket_idle_runs"])
    out["socket_under_lists_s"] = median(out["socket_loaded_runs"])
    out["python_idle_s"] = median(out["python_idle_runs"])
    out["python_under_lists_s"] = median(out["python_loaded_runs"])
    out["under_load_problems"] = UNDER_LOAD_PROBLEMS[:3]


def measure_list_load(size: int, out: dict[str, Any], rounds: int) -> dict[str, Any]:
    """``--only list-load``: one list's time, then ``rounds`` of :func:`list_load_ratios`."""
    out["list_s"] = timed(("gnt-instance", "list"), 3)
    list_load_ratios(size, out, rounds)
    out["load_avg_after"] = os.getloadavg()[0]
    return out


def measure(size: int, quick: bool, only: str | None = None,
            rounds: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"size": size, "load_avg_before": os.getloadavg()[0]}
    reps = 3
    time.sleep(2)  # at rest: after masterd's start and the first pushes
    out["rss_rest"] = rss_all()
    if only == "list-load":
        return measure_list_load(size, out, rounds or 2)
    out.update(config_load(size))
    out["list_s"] = timed(("gnt-instance", "list"), reps)
    out["list_name_status_s"] = timed(("gnt-instance", "list", "-o", "name,status"), reps)
    out["query_s"] = master_query()
    out["node_list_s"] = timed(("gnt-node", "list"), reps)
    out["help_s"] = timed(("gnt-instance", "list", "--help"), 5)
    rapi = Rapi()
    rapi.get("/2/instances?bulk=1")  # warm: the connection and the first answer
    bulk, names, decode = [], [], []
    for _ in range(5):
        started = time.perf_counter()
        rows, decoding = rapi.get_timed("/2/instances?bulk=1")
        bulk.append(time.perf_counter() - started)
        decode.append(decoding)
        started = time.perf_counter()
        listed = rapi.get("/2/instances")
        names.append(time.perf_counter() - started)
    if len(rows) < size or len(listed) < size:
        raise RuntimeError(f"RAPI lists {len(rows)}/{len(listed)} instances, expected {size}")
    out["rapi_bulk_ms"] = median(bulk) * 1000
    out["rapi_bulk_decode_ms"] = median(decode) * 1000
    out["rapi_names_ms"] = median(names) * 1000
    web = Web()
    web.page("/ui/instances")  # warm: templates compiled, first answer
    out["web_instances_s"] = median([web.page("/ui/instances") for _ in range(5)])
    out["web_overview_s"] = median([web.page("/ui/") for _ in range(5)])
    out["verify_s"] = run("gnt-cluster", "verify")
    extra = f"bench-add-{size}.example.com"
    out["add_s"] = run("gnt-instance", "add", "-t", "diskless", "-o", "busybox+default",
                       "--no-install", "--no-start", "--no-name-check", "--no-ip-check",
                       "-H", "fake", "-B", "memory=128M", "-n", "node1.example.com", extra)
    run("gnt-instance", "remove", "-f", extra)
    out["trivial_job_s"] = timed(("gnt-debug", "delay", "0"), 5)
    out["config_job_s"] = median([run("gnt-instance", "add-tags", NAME.format(n % size),
                                      f"bench:{n}") for n in range(5)])
    duration = 4.0 if quick else 8.0
    out["trivial_16"] = submitters(16, duration, lambda _n, _d: {
        "OP_ID": "OP_TEST_DELAY", "duration": 0, "on_master": True, "on_nodes": [],
        "repeat": 0})
    out["tags_16"] = submitters(16, duration, lambda n, d: {
        "OP_ID": "OP_TAGS_SET", "kind": "instance", "name": NAME.format(n % size),
        "tags": [f"load:{n}:{d}"]})
    list_load_ratios(size, out, rounds or 1)
    if UNDER_LOAD_PROBLEMS:
        return out  # masterd is gone: nothing more to measure here
    out["rss_after"] = rss_all()
    out["load_avg_after"] = os.getloadavg()[0]
    # at rest again: the daemons drop unused list answers and give their heap back
    # (herd.rpc.answer_cache: unused for IDLE_SECONDS, looked at every TIDY_EVERY)
    from herd.rpc.answer_cache import IDLE_SECONDS, TIDY_EVERY

    time.sleep(IDLE_SECONDS + TIDY_EVERY + 5)
    out["rss_settled"] = rss_all()
    return out


# -- outside: the labs --------------------------------------------------------------------------
def bench_nodes(nodes: int, sizes: list[int], quick: bool, only: str | None = None,
                rounds: int | None = None) -> list[dict[str, Any]]:
    from herd.lab.cluster import lab_cluster
    from herd.lab.single import build_test_guest

    kernel, initrd = build_test_guest()
    me = [sys.executable, str(Path(__file__).resolve())]
    results = []
    with lab_cluster(nodes) as lab:
        log(f"{nodes} node(s): gnt-cluster init")
        lab.run("node1", "gnt-cluster", "init", "--node-name", "node1.example.com",
                "--master-netdev", "eth0", "-s", lab.node("node1").secondary_ip,
                "-H", f"kvm:kernel_path={kernel},initrd_path={initrd}",
                "--enabled-hypervisors", "fake,kvm", "cluster.example.com")
        for index in range(2, nodes + 1):
            info = lab.node(f"node{index}")
            token = lab.run(info.name, "herd-join-token").stdout.strip()
            lab.run("node1", "gnt-node", "add", "-s", info.secondary_ip, "--join-token",
                    token, info.fqdn)
        lab.node("node1").paths.rapi_users_file.write_text(f"{USER} {PASSWORD} write\n")
        rest = json.loads(lab.run("node1", *me, "--rss").stdout)
        log(f"{nodes} node(s), no instances: RSS {rest}")
        for size in sizes:
            log(f"{nodes} node(s): populating to {size} instances")
            filled = json.loads(lab.run("node1", *me, "--populate", str(size),
                                        timeout=1800).stdout)
            log(f"  {filled}")
            proc = lab.run("node1", *me, "--measure", str(size),
                           *(["--quick"] if quick else []),
                           *(["--only", only] if only else []),
                           *(["--rounds", str(rounds)] if rounds else []), timeout=3600)
            result = dict(json.loads(proc.stdout), nodes=nodes, empty_rss=rest, **filled)
            log(f"  {json.dumps(result)}")
            results.append(result)
            if result.get("under_load_problems"):
                log(f"{nodes} node(s): masterd failed under list load at {size}; stopping")
                break
    return results


ROWS: list[tuple[str, str, str, float]] = [
    # (label, key, unit, scale)
    ("gnt-instance list", "list_s", "s", 1),
    ("gnt-instance list -o name,status", "list_name_status_s", "s", 1),
    ("masterd instance query alone", "query_s", "s", 1),
    ("gnt-node list", "node_list_s", "s", 1),
    ("RAPI /2/instances?bulk=1 keep-alive", "rapi_bulk_ms", "ms", 1),
    ("  of which the client's json.loads", "rapi_bulk_decode_ms", "ms", 1),
    ("RAPI /2/instances (names)", "rapi_names_ms", "ms", 1),
    ("config load from etcd keys (assemble)", "assemble_s", "s", 1),
    ("ConfigData.from_dict", "from_dict_s", "s", 1),
    ("etcd range of the config", "etcd_range_s", "s", 1),
    ("masterd start with the config", "masterd_start_s", "s", 1),
    ("web manager: instances page (50 of all, sorted)", "web_instances_s", "s", 1),
    ("web manager: overview", "web_overview_s", "s", 1),
    ("gnt-cluster verify", "verify_s", "s", 1),
    ("gnt-instance add (diskless, no start)", "add_s", "s", 1),
    ("gnt-instance list --help", "help_s", "s", 1),
    ("trivial job via CLI (idle)", "trivial_job_s", "s", 1),
    ("config-changing job via CLI (add-tags)", "config_job_s", "s", 1),
    ("trivial job while 4 clients list", "job_under_lists_s", "s", 1),
]


def _get(result: dict[str, Any], key: str) -> float:
    if key in result:
        return float(result[key])
    if key.startswith("rss_"):
        return float(result["rss_rest"].get(key[4:].removesuffix("_mib"), float("nan")))
    if key.startswith("settled_"):  # at rest again after the measures (see measure)
        return float(result.get("rss_settled", {}).get(key[8:].removesuffix("_mib"),
                                                        float("nan")))
    return float("nan")


RSS_ROWS: list[tuple[str, str, str, float]] = [
    ("RSS masterd at rest (MiB)", "rss_masterd_mib", "", 1),
    ("RSS rapi at rest (MiB)", "rss_rapi_mib", "", 1),
    ("RSS noded at rest (MiB)", "rss_noded_mib", "", 1),
    ("RSS etcd at rest (MiB)", "rss_etcd_mib", "", 1),
    ("RSS Herd total at rest (MiB)", "rss_herd_total_mib", "", 1),
    ("  with etcd (MiB)", "rss_with_etcd_mib", "", 1),
    ("  PSS with etcd (MiB)", "rss_pss_with_etcd_mib", "", 1),
    ("  together with etcd, each page once (MiB)", "rss_together_with_etcd_mib", "", 1),
    ("RSS after the measures, settled (MiB)", "settled_herd_total_mib", "", 1),
    ("  with etcd (MiB)", "settled_with_etcd_mib", "", 1),
    ("  PSS with etcd (MiB)", "settled_pss_with_etcd_mib", "", 1),
    ("  together with etcd, each page once (MiB)", "settled_together_with_etcd_mib", "", 1),
]


def _round_ratios(result: dict[str, Any], runs: str) -> list[float]:
    """Loaded/idle of each round of :func:`list_load_ratios` (``runs``: the prefix of its
    ``*loaded_runs`` and ``*idle_runs`` lists)."""
    pairs = zip(result.get(f"{runs}loaded_runs", []), result.get(f"{runs}idle_runs", []),
                strict=True)
    return [a / b for a, b in pairs if b]


def report(results: list[dict[str, Any]]) -> None:
    for nodes in sorted({r["nodes"] for r in results}):
        mine = [r for r in results if r["nodes"] == nodes]
        loads = ", ".join(f"{r['load_avg_before']:.1f}" for r in mine)
        print(f"\n== {nodes} node(s); load average at each size {loads} (a shared machine: "
              "other sessions' tests ran meanwhile) ==")
        head = f"{'metric':42}" + "".join(f"{r['size']:>12,}" for r in mine)
        print(head + f"{'before(1n)':>22}{'Ganeti':>10}{'goal':>15}")
        for label, key, unit, _scale in [*ROWS, *RSS_ROWS]:
            cells = "".join(f"{_get(r, key):>12.3f}" if unit == "s" else f"{_get(r, key):>12.1f}"
                            for r in mine)
            before = "/".join(f"{v:g}" for v in BEFORE.get(key, {}).values())
            ganeti = GANETI.get(key, "")
            print(f"{label:42}{cells}{before:>22}{ganeti:>10}{GOALS.get(key, ''):>15}")
        for label, key in (("trivial jobs/s, 16 submitters", "trivial_16"),
                           ("add-tags jobs/s, 16 submitters", "tags_16")):
            cells = "".join(f"{r.get(key, {}).get('jobs_per_s', float('nan')):>12.1f}"
                            for r in mine)
            ganeti = GANETI["jobs_per_s"] if key == "trivial_16" else ""
            print(f"{label:42}{cells}{'':>22}{ganeti:>10}")
        for label, loaded, idle, runs, note in (
                ("job latency under lists / idle", "job_under_lists_s", "idle_job_s", "",
                 "goal < 2"),
                ("  the same through the master socket", "socket_under_lists_s",
                 "socket_idle_s", "socket_", "masterd's part"),
                ("  python -c pass under lists / idle", "python_under_lists_s",
                 "python_idle_s", "python_", "any new process")):
            ratio = "".join(f"{_get(r, loaded) / _get(r, idle):>12.2f}" for r in mine)
            print(f"{label:42}{ratio}{note:>22}")
            for r in mine:  # each round's own ratio: its idle and loaded runs are neighbours
                rounds = _round_ratios(r, runs)
                if len(rounds) > 1:
                    print(f"{'':4}at {r['size']:,}, {len(rounds)} rounds: median "
                          f"{statistics.median(rounds):.2f} [{min(rounds):.2f}-"
                          f"{max(rounds):.2f}], each "
                          + " ".join(f"{x:.2f}" for x in rounds))
        for r in mine:
            for problem in r.get("under_load_problems", []):
                print(f"at {r['size']:,}, while 4 clients listed: {problem[:200]}")
        for r in mine:
            print(f"at {r['size']:,}: native libraries resident: {r['rss_rest'].get('loaded')}"
                  f" at rest, {r.get('rss_after', {}).get('loaded')} after the measures")
        empty = mine[0]["empty_rss"]
        print(f"RSS with no instances: masterd {empty['masterd']:.1f}, rapi "
              f"{empty['rapi']:.1f}, noded {empty['noded']:.1f}, etcd {empty['etcd']:.1f} MiB "
              f"(Herd {empty['herd_total']:.1f}, PSS {empty.get('pss_herd_total', 0):.1f}; "
              f"goal <= {GOAL_RSS_AT_REST_MIB}; with etcd "
              f"{empty['with_etcd']:.1f}, PSS "
              f"{empty.get('pss_with_etcd', float('nan')):.1f}, each page once "
              f"{empty.get('together_with_etcd', float('nan')):.1f}; Ganeti 3.0.2's daemons: "
              f"{GANETI['rss_total_mib']} MiB in all)")
    print("\nbefore(1n): issue 17's figures on main before this work at 100/1,000/5,000; "
          "Ganeti: 3.0.2, recorded on a 1-2 node cluster with 3 instances (ganeti-samples).")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 instances, 1 node")
    parser.add_argument("--sizes", default="100,1000,5000,20000")
    parser.add_argument("--nodes", default="1,3")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--only", choices=["list-load"],
                        help="list-load: only a trivial job's latency idle and while 4 "
                             "clients list (and one list's time)")
    parser.add_argument("--rounds", type=int,
                        help="rounds of the idle/loaded job latency pairs (5 samples each; "
                             "default 1, 2 with --only list-load): the figure is noisy on a "
                             "small machine, take several before deciding on it")
    parser.add_argument("--populate", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rss", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.populate is not None:
        print(json.dumps(populate(args.populate)))
        return 0
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.quick, args.only, args.rounds)))
        return 0
    if args.rss:
        time.sleep(2)
        print(json.dumps(rss_all()))
        return 0
    if os.geteuid() != 0:
        raise SystemExit("bench/scale.py builds network namespaces: run it as root")
    if shutil.which("ip") is None:
        raise SystemExit("bench/scale.py needs iproute2 (ip)")
    sizes = [100, 1000] if args.quick else sorted(int(s) for s in args.sizes.split(","))
    node_counts = [1] if args.quick else [int(n) for n in args.nodes.split(",")]
    results = []
    for nodes in node_counts:
        results += bench_nodes(nodes, sizes, args.quick, args.only, args.rounds)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
