"""Cost of a config-changing job's save, etcd (one key per object) against config.data.

Herd moved its cluster configuration from one JSON file, rewritten and fsynced whole on every
save (herd.config.store.ConfigStore), into etcd with one key per object, written in one
master-guarded transaction per save (herd.config.etcdstore.EtcdConfigStore). The issue asks
whether a config-changing job (a tag add) now costs the same whatever the number of
instances, with these goals: at least 100 such jobs/s from 16 submitters, and under 50 ms for
one job's save.

At each size (100, 5,000 and 20,000 instances by default) this measures, in one run:

- the etcd store, on a three-member etcd cluster with the production command line
  (herd.etcd.members.etcd_argv: mutual TLS from a cluster CA made with herd.rpc.tls, Herd's
  tuning flags and environment), data dirs on disk, members listening only on addresses of a
  network namespace this bench creates (no traffic leaves it): the import time, the masterd
  side load time (EtcdConfigStore.load), one tag add's save latency (median and p95 of
  sequential saves, with SAVE_SCOPE set to the one instance as the job executor does), the
  jobs/s of 16 concurrent submitters (asyncio tasks, each with its own scope) for a few
  seconds, the CPU time of layout.diff per save, and the RSS of the members afterwards. The
  master role is held as masterd holds it (MasterLease.campaign, renewed every second by
  MasterLease.keep in the background, from the election on, with masterd's TTL), so every save
  carries the master guard, and the output says whether the role was kept through the load.
- the whole-document save (the old way), ConfigStore on a file on the same filesystem with
  the same synthetic config: latency and jobs/s the same way. The old masterd also pushed the
  whole document to every master candidate over node RPC on each save; that is NOT included,
  so the old figures are a lower bound of its cost.

Each size runs on a fresh etcd cluster and in a fresh Python process (inside the namespace).
Run as root: ``.venv/bin/python bench/config_save.py [--sizes 100,5000,20000]`` (about
three minutes), or ``make bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from procmem import rss_mib  # bench/procmem.py (this script's folder)

from herd.config import layout
from herd.config.etcdstore import SAVE_SCOPE, EtcdConfigStore, import_config
from herd.config.store import ConfigStore
from herd.etcd.client import EtcdClient, EtcdError
from herd.etcd.election import TTL, MasterLease
from herd.etcd.members import (
    TUNING_ENV,
    MemberSpec,
    TlsFiles,
    client_url,
    etcd_argv,
    peer_url,
)
from herd.objects import Cluster, ConfigData, Instance, Node, NodeGroup
from herd.objects.disk_ids import FILE_DRIVER, DrbdId, FileId
from herd.objects.instance import Disk, Nic
from herd.paths import HerdPaths
from herd.rpc import certs, tls

CLUSTER_NAME = "bench.example.com"
NODES = ("node1", "node2", "node3")
#: Documentation addresses (RFC 5737), on the namespace's loopback only.
ADDRESSES = ("198.51.100.1", "198.51.100.2", "198.51.100.3")
GOAL_JOBS_PER_S = 100.0
GOAL_LATENCY_MS = 50.0


def log(message: str) -> None:
    print(f"[config_save] {message}", file=sys.stderr, flush=True)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- the synthetic configuration ------------------------------------------------------------
def build_config(size: int) -> ConfigData:
    """A cluster of three candidates and ``size`` instances shaped as gnt-instance add makes
    them: one in five mirrored (``drbd``, one disk on two nodes, its own port of the cluster's
    4,000, so 20,000 instances use them all), the others ``file``; one NIC each, a few
    backend parameters, one tag."""
    group = NodeGroup(name="default")
    nodes = [Node(name=f"{name}.example.com", primary_ip=ip, secondary_ip=ip, group=group.uuid)
             for name, ip in zip(NODES, ADDRESSES, strict=True)]
    cluster = Cluster(cluster_name=CLUSTER_NAME, master_node=nodes[0].uuid,
                      master_ip="198.51.100.254", master_netdev="br0",
                      file_storage_dir="/srv/herd/file-storage",
                      hvparams={"kvm": {"kernel_path": "", "serial_console": True}})
    cfg = ConfigData(cluster=cluster, nodegroups={group.uuid: group},
                     nodes={n.uuid: n for n in nodes})
    for index in range(size):
        name = f"inst{index:05d}.example.com"
        pnode = nodes[index % 3]
        snode = nodes[(index + 1) % 3]
        mirrored = index % 5 == 0
        inst = Instance(name=name, primary_node=pnode.uuid, os="busybox",
                        disk_template="drbd" if mirrored else "file",
                        admin_state="up" if index % 4 else "down",
                        beparams={"maxmem": 512, "minmem": 512, "vcpus": 1 + index % 4},
                        hvparams={"boot_order": "disk"} if index % 7 == 0 else {},
                        network_port=11000 + index % 20000, disks_active=index % 4 != 0,
                        tags=[f"owner:team{index % 17}"])
        disk = Disk(size=10240, mode="rw", dev_type=inst.disk_template,
                    nodes=[pnode.uuid, snode.uuid] if mirrored else [pnode.uuid])
        if mirrored:
            rel = f"{name}/{disk.uuid}.drbd.disk0"
            disk.logical_id = DrbdId(cluster.drbd_port_first + (index // 5) % 4000, rel)
        else:
            disk.logical_id = FileId(FILE_DRIVER, f"{name}/{disk.uuid}.file.disk0")
        inst.disks.append(disk)
        inst.nics.append(Nic(mac=f"aa:00:00:{index >> 16 & 255:02x}:{index >> 8 & 255:02x}:"
                                 f"{index & 255:02x}", nicparams={"link": "br0"}))
        cfg.instances[inst.uuid] = inst
    return cfg


def tag_add(inst: Instance, tag: str) -> None:
    """What LUTagsSet.execute does to its target before saving."""
    inst.tags = [*inst.tags, tag]
    inst.touch()


# -- measuring (inside the namespace, one process per size) -----------------------------------
async def one_job(save: Any, inst: Instance, tag: str) -> float:
    """One tag add as a job does it (scope = its instance, then a save); its latency (s)."""
    start = time.perf_counter()
    SAVE_SCOPE.set(layout.Scope(instances=frozenset({inst.name}), nodes=frozenset()))
    tag_add(inst, tag)
    await save()
    return time.perf_counter() - start


async def sequential(save: Any, instances: list[Instance], count: int, label: str,
                     budget: float) -> list[float]:
    """Latency (s) of ``count`` sequential tag-add jobs (fewer if ``budget`` s run out)."""
    samples: list[float] = []
    deadline = time.perf_counter() + budget
    for index in range(count):
        samples.append(await one_job(save, instances[index % len(instances)],
                                     f"{label}:{index}"))
        if time.perf_counter() > deadline and len(samples) >= 5:
            break
    return samples


async def concurrent(save: Any, instances: list[Instance], submitters: int, duration: float,
                     label: str) -> dict[str, float]:
    """``submitters`` tasks, each adding tags to its own instances and saving, for about
    ``duration`` seconds: jobs/s, and the latency of one job while they all run."""
    latencies: list[float] = []
    stop_at = time.perf_counter() + duration

    async def submitter(number: int) -> None:
        own = instances[number::submitters][:64] or [instances[number % len(instances)]]
        done = 0
        while time.perf_counter() < stop_at:
            # each task has its own context, as each job does in the executor
            latencies.append(await one_job(save, own[done % len(own)],
                                           f"{label}:{number}:{done}"))
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(submitter(n) for n in range(submitters)))
    elapsed = time.perf_counter() - start
    return {"jobs_per_s": len(latencies) / elapsed, "jobs": len(latencies),
            "elapsed_s": elapsed, "load_p50_ms": statistics.median(latencies) * 1000,
            "load_p95_ms": percentile(latencies, 0.95) * 1000}


def summary(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": statistics.median(samples) * 1000,
            "p95_ms": percentile(samples, 0.95) * 1000, "n": len(samples)}


async def wait_healthy(client: EtcdClient, timeout: float = 60.0) -> int:
    """Wait until the cluster has a leader and answers a linearizable read; the leader's id."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = await client.status()
            if status.leader:
                await client.get("/herd/bench-probe")
                return status.leader
        except EtcdError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd cluster not healthy after {timeout:.0f} s: "
                                   f"{exc.message}") from None
        await asyncio.sleep(0.2)


async def measure_etcd(args: argparse.Namespace, size: int, root: Path,
                       pids: list[int]) -> dict[str, Any]:
    paths = HerdPaths(root=root / NODES[0])
    endpoints = [client_url(ip) for ip in ADDRESSES]  # its own member first, as masterd
    out: dict[str, Any] = {}
    client = EtcdClient.for_node(paths, endpoints)
    keeper: asyncio.Task[None] | None = None
    try:
        leader = await wait_healthy(client)
        members = await client.member_list()
        out["leader"] = next((m.name for m in members if m.id == leader), "?")
        data = build_config(size)
        lease = MasterLease(client, NODES[0])  # production TTL: masterd renews while loading
        holder = await lease.campaign()
        if holder is not None:
            raise RuntimeError(f"could not take the master role: {holder} holds it")

        async def lost(reason: str) -> None:
            log(f"master role lost during the bench: {reason}")

        keeper = asyncio.create_task(lease.keep(lost))  # renewals, as masterd runs them
        start = time.perf_counter()
        await import_config(client, data, lease.guard)
        out["import_s"] = time.perf_counter() - start
        del data
        start = time.perf_counter()
        await client.range(layout.PREFIX, prefix=True)  # the load's one read, alone
        out["fetch_s"] = time.perf_counter() - start
        start = time.perf_counter()
        store = await EtcdConfigStore.load(client, lease.guard)
        out["load_s"] = time.perf_counter() - start
        if len(store.data.instances) != size:
            raise RuntimeError(f"loaded {len(store.data.instances)} instances, not {size}")
        instances = list(store.data.instances.values())
        # CPU part of a save: the diff of one scoped instance against what is stored
        scope = layout.Scope(instances=frozenset({instances[0].name}), nodes=frozenset())
        start = time.perf_counter()
        for _ in range(20):
            layout.diff(store.data, store._texts, scope, store._index, store._names)
        out["diff_ms"] = (time.perf_counter() - start) / 20 * 1000
        await sequential(store.save, instances, 10, "warmup", 10.0)
        out["latency"] = summary(await sequential(store.save, instances, args.saves, "seq",
                                                  30.0))
        out["throughput"] = await concurrent(store.save, instances, args.submitters,
                                             args.duration, "conc")
        # what etcd holds after the concurrent saves is what masterd holds in memory
        fresh = await EtcdConfigStore.load(client, lease.guard)
        out["mismatches"] = sum(
            1 for uuid, inst in store.data.instances.items()
            if fresh.data.instances[uuid].tags != inst.tags)
        out["rss_mib"] = [rss_mib(pid) for pid in pids]
        status = await client.status()
        out["db_mib"] = status.db_size / 2**20
        out["kept_master"] = lease.term is not None and await lease.holder() == NODES[0]
    finally:
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await keeper
        await client.close()
    return out


async def measure_file(args: argparse.Namespace, size: int, root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    path = root / "old" / "config.data"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = build_config(size)
    store = ConfigStore.create(path, data)
    out["file_mib"] = path.stat().st_size / 2**20
    instances = list(data.instances.values())
    await sequential(store.save, instances, 2, "warmup", 5.0)
    out["latency"] = summary(await sequential(store.save, instances, args.saves, "seq",
                                              args.old_budget))
    out["throughput"] = await concurrent(store.save, instances, args.submitters, args.duration,
                                         "conc")
    return out


async def inner(args: argparse.Namespace) -> None:
    root = Path(args.root)
    pids = [int(p) for p in args.pids.split(",")]
    size = args.inner
    log(f"{size} instances: etcd store")
    new = await measure_etcd(args, size, root, pids)
    log(f"{size} instances: whole-document save")
    old = await measure_file(args, size, root)
    print(json.dumps({"size": size, "new": new, "old": old}), flush=True)


# -- the namespace and the etcd cluster (outside it) ------------------------------------------
def run_ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, text=True)


def make_certificates(root: Path) -> None:
    """A cluster CA and one node certificate per member, as gnt-cluster init makes them.

    One difference: each certificate names all three addresses, its own first. The members
    share one namespace here, where a connection to a member's address leaves *from* that
    address, and etcd's peer authentication wants the connecting address among the client
    certificate's IP names (on real nodes it is the node's own address). The handshakes cost
    the same."""
    ca_cert, ca_key = certs.create_ca(CLUSTER_NAME)
    for name, ip in zip(NODES, ADDRESSES, strict=True):
        paths = HerdPaths(root=root / name)
        tls.write_pair(paths.ca_cert, paths.ca_key, ca_cert, ca_key)
        fqdn = f"{name}.example.com"
        ips = [ip, *(a for a in ADDRESSES if a != ip)]
        cert, key = certs.create_signed(ca_cert, ca_key, fqdn, [fqdn], ips)
        tls.write_pair(paths.node_cert, paths.node_key, cert, key)


def start_cluster(netns: str, root: Path, run: str) -> list[subprocess.Popen[bytes]]:
    """Three fresh members (state "new"), in the namespace; ``ip netns exec`` execs etcd, so
    each Popen's pid is the member's."""
    binary = shutil.which("etcd") or "/usr/bin/etcd"
    initial = ",".join(f"{n}={peer_url(ip)}" for n, ip in zip(NODES, ADDRESSES, strict=True))
    procs: list[subprocess.Popen[bytes]] = []
    for name, ip in zip(NODES, ADDRESSES, strict=True):
        paths = HerdPaths(root=root / name)
        spec = MemberSpec(name=name, peer_url=peer_url(ip), client_url=client_url(ip),
                          initial_cluster=initial, state="new",
                          cluster_token=f"herd-bench-{run}")
        data_dir = root / name / f"etcd-{run}"
        argv = etcd_argv(spec, data_dir, TlsFiles(paths.node_cert, paths.node_key,
                                                  paths.ca_cert), binary)
        with open(root / f"{name}-etcd-{run}.log", "ab") as logf:
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", netns, *argv], stdin=subprocess.DEVNULL,
                stdout=logf, stderr=logf, env=dict(os.environ, **TUNING_ENV),
                start_new_session=True))
    return procs


def stop_cluster(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def run_size(args: argparse.Namespace, netns: str, root: Path, size: int) -> dict[str, Any]:
    procs = start_cluster(netns, root, str(size))
    try:
        time.sleep(0.5)
        dead = [p.pid for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"etcd member(s) {dead} exited at once; see {root}/*.log")
        argv = ["ip", "netns", "exec", netns, sys.executable, str(Path(__file__).resolve()),
                "--inner", str(size), "--root", str(root),
                "--pids", ",".join(str(p.pid) for p in procs),
                "--saves", str(args.saves), "--submitters", str(args.submitters),
                "--duration", str(args.duration), "--old-budget", str(args.old_budget)]
        result = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False,
                                timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"the measurement at {size} instances failed "
                               f"(exit {result.returncode})")
        measured: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        return measured
    finally:
        stop_cluster(procs)
        for name in NODES:
            shutil.rmtree(root / name / f"etcd-{size}", ignore_errors=True)


def report(results: list[dict[str, Any]], args: argparse.Namespace, fs: str) -> None:
    print()
    print(f"Config-changing job (tag add on one instance) save cost, {args.submitters} "
          f"submitters for {args.duration:g} s; 3-member etcd 3.4 (mutual TLS, production "
          f"flags), data on {fs}")
    head = (f"{'instances':>9}  {'old p50/p95 ms':>16}  {'new p50/p95 ms':>15}  "
            f"{'old jobs/s':>10}  {'new jobs/s':>10}  {'new/old':>8}")
    print(head)
    print("-" * len(head))
    for r in results:
        old, new = r["old"], r["new"]
        ratio = new["throughput"]["jobs_per_s"] / old["throughput"]["jobs_per_s"]
        print(f"{r['size']:>9}  "
              f"{old['latency']['p50_ms']:>7.1f}/{old['latency']['p95_ms']:<8.1f}  "
              f"{new['latency']['p50_ms']:>6.1f}/{new['latency']['p95_ms']:<8.1f}  "
              f"{old['throughput']['jobs_per_s']:>10.1f}  "
              f"{new['throughput']['jobs_per_s']:>10.1f}  {ratio:>7.1f}x")
    print()
    print("Details (etcd store):")
    head2 = (f"{'instances':>9}  {'import s':>8}  {'load s':>7}  {'(read)':>6}  "
             f"{'diff ms':>7}  "
             f"{'p50/p95 ms under load':>22}  {'member RSS MiB':>20}  {'db MiB':>6}  "
             f"{'leader':>6}  {'old file MiB':>12}  {'old n':>5}")
    print(head2)
    print("-" * len(head2))
    for r in results:
        new, old = r["new"], r["old"]
        rss = "/".join(f"{v:.0f}" for v in new["rss_mib"])
        load = f"{new['throughput']['load_p50_ms']:.1f}/{new['throughput']['load_p95_ms']:.1f}"
        print(f"{r['size']:>9}  {new['import_s']:>8.2f}  {new['load_s']:>7.2f}  "
              f"{new['fetch_s']:>6.2f}  {new['diff_ms']:>7.2f}  {load:>22}  {rss:>20}  "
              f"{new['db_mib']:>6.1f}  "
              f"{new['leader']:>6}  {old['file_mib']:>12.1f}  {old['latency']['n']:>5}")
    print()
    print("old = ConfigStore: the whole document rewritten and fsynced per save. NOT included: "
          "the old masterd's push of the whole document to every master candidate over node "
          "RPC on each save, so the old figures are a lower bound of its cost.")
    print("new = EtcdConfigStore.save with SAVE_SCOPE = the job's one instance: one guarded "
          "transaction on a quorum of three members. 'under load': one job's save while all "
          "submitters run (saves that arrive while a transaction is on its way go together in "
          "the next one: group commit).")
    print("member RSS: each etcd member's VmRSS after import, load and the saves.")
    print()
    jobs_ok = all(r["new"]["throughput"]["jobs_per_s"] >= GOAL_JOBS_PER_S for r in results)
    lat_ok = all(r["new"]["latency"]["p95_ms"] < GOAL_LATENCY_MS for r in results)
    first, last = results[0], results[-1]
    growth = last["new"]["latency"]["p50_ms"] / first["new"]["latency"]["p50_ms"]
    worst_jobs = min(r["new"]["throughput"]["jobs_per_s"] for r in results)
    worst_p95 = max(r["new"]["latency"]["p95_ms"] for r in results)
    print(f"Goal >= {GOAL_JOBS_PER_S:.0f} jobs/s with {args.submitters} submitters: "
          f"{'MET' if jobs_ok else 'NOT MET'} (lowest {worst_jobs:.1f} jobs/s)")
    print(f"Goal < {GOAL_LATENCY_MS:.0f} ms per job (p95 of sequential saves): "
          f"{'MET' if lat_ok else 'NOT MET'} (highest p95 {worst_p95:.1f} ms)")
    print(f"Flat in the number of instances: median save at {last['size']} instances is "
          f"{growth:.2f}x that at {first['size']} (diff CPU {first['new']['diff_ms']:.2f} -> "
          f"{last['new']['diff_ms']:.2f} ms)")
    loads = ", ".join(f"{r['size']}: {r['new']['load_s']:.1f} s (read "
                      f"{r['new']['fetch_s']:.1f} s)" for r in results)
    kept = all(r["new"]["kept_master"] for r in results)
    print(f"Loading the config (masterd renews its {TTL} s lease meanwhile; parsing runs off the "
          f"event loop): {loads}; master role {'kept' if kept else 'LOST'} throughout")
    wrong = sum(r["new"]["mismatches"] for r in results)
    print(f"Check: instances whose tags in etcd differ from masterd's memory after the "
          f"concurrent saves: {wrong}")
    if not all(r["new"]["kept_master"] for r in results):
        print("WARNING: the master role was lost during a run; figures may be wrong")


def outer(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("run as root (it creates a network namespace)", file=sys.stderr)
        return 1
    if shutil.which("etcd") is None and not os.access("/usr/bin/etcd", os.X_OK):
        print("etcd is not installed (Debian package etcd-server)", file=sys.stderr)
        return 1
    sizes = [int(s) for s in args.sizes.split(",") if s]
    netns = f"herdbench{os.getpid()}"
    # on disk, as a node's /var/lib/herd is (/tmp may be a tmpfs, where fsync costs nothing)
    root = Path(tempfile.mkdtemp(prefix="herd-bench-config-", dir="/var/tmp"))
    fs = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", str(root)],
                        capture_output=True, text=True, check=False).stdout.strip() or "?"
    results: list[dict[str, Any]] = []
    created = False
    try:
        run_ip("netns", "add", netns)
        created = True
        run_ip("-n", netns, "link", "set", "lo", "up")
        for ip in ADDRESSES:
            run_ip("-n", netns, "addr", "add", f"{ip}/32", "dev", "lo")
        make_certificates(root)
        for size in sizes:
            log(f"--- {size} instances")
            results.append(run_size(args, netns, root, size))
    finally:
        if created:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    report(results, args, fs)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="100,5000,20000",
                        help="instance counts, comma-separated (default %(default)s)")
    parser.add_argument("--saves", type=int, default=200,
                        help="sequential saves per latency figure (default %(default)s)")
    parser.add_argument("--submitters", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0,
                        help="seconds of concurrent submitting (default %(default)s)")
    parser.add_argument("--old-budget", type=float, default=25.0,
                        help="seconds the old store's sequential saves may take at most "
                             "(at least 5 saves; default %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (etcd logs)")
    parser.add_argument("--inner", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--pids", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner is not None:
        asyncio.run(inner(args))
        return 0
    return outer(args)


if __name__ == "__main__":
    sys.exit(main())
