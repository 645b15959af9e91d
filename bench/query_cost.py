"""What an instance list costs masterd, the CLI and RAPI at 1,000 and 5,000 instances.

Issue 17 asks for queries that cost what they return. This builds an in-process cluster
(tests.harness: real node services on the fake hypervisor, the real master context, node RPC
in-process) with one node (``--nodes`` for more), creates one instance by a job and starts
it, then clones it to N running instances (config entries and the fake hypervisor's
records), and times, best of ``--repeat`` runs:

- ``masterd query``: masterd's instance query alone (all fields, with live data);
- ``gnt-instance list`` and ``-o name,status``: the query as the CLI asks it, the answer
  encoded and decoded as on masterd's socket, and the table formatted;
- ``RAPI bulk`` and ``RAPI names``: ``/2/instances?bulk=1`` and ``/2/instances`` as the RAPI
  daemon asks masterd, converts and JSON-encodes its answer;
- the node RPCs each made.

It runs against whatever tree is first on PYTHONPATH, so the same script measures the code
before the field registry (no ``fields`` argument: it asks for full rows, as that code did)
and after. ``PYTHONPATH=. .venv/bin/python bench/query_cost.py --sizes 1000,5000``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from herd.cli import common
from herd.rapi import convert
from herd.rpc import master_protocol as proto
from tests.harness import InProcessCluster, create_op, node_name, scratch_root

try:
    from herd import fields as registry
except ImportError:  # the code before the registry
    registry = None  # type: ignore[assignment]

DEFAULT = ["name", "hypervisor", "os", "pnode", "status", "oper_ram"]


def populate(cluster: InProcessCluster, size: int) -> None:
    """``size`` running instances, spread over the nodes, cloned from one made by a job."""
    outcome = cluster.run(create_op("seed.example.com", node=node_name(1), start=True))
    assert outcome.error is None, outcome.error
    cfg = cluster.store.data
    seed = next(iter(cfg.instances.values()))
    nodes = list(cfg.nodes.values())
    seed_run = json.loads((cluster.master.paths.run_dir / "fake-hypervisor.json").read_text())
    seed_run = seed_run["seed.example.com"]
    running: dict[str, dict[str, dict[str, Any]]] = {n.name: {} for n in nodes}
    for index in range(size - 1):
        data = seed.to_dict()
        inst = type(seed).from_dict(data)
        inst.name = f"inst{index:05d}.example.com"
        inst.uuid = f"uuid-{index}"
        node = nodes[index % len(nodes)]
        inst.primary_node = node.uuid
        cfg.instances[inst.uuid] = inst
        running[node.name][inst.name] = dict(seed_run, name=inst.name, uuid=inst.uuid)
    for name, entries in running.items():
        path = cluster.nodes[name].paths.run_dir / "fake-hypervisor.json"
        old = json.loads(path.read_text()) if path.exists() else {}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**old, **entries}))


def query(cluster: InProcessCluster, live: bool, fields: list[str] | None) -> Any:
    from herd.logic.query import query_instances

    if registry is None or fields is None:
        return cluster.wait(query_instances(cluster.ctx, None, live))
    return cluster.wait(query_instances(cluster.ctx, None, live, fields))


def cli_list(cluster: InProcessCluster, output: str | None) -> None:
    opts = SimpleNamespace(output=output, separator=None, no_headers=False, units=None,
                           json=False, instances=[])
    if registry is None:
        from herd.cli import gnt_instance

        rows = proto.decode(proto.encode(query(cluster, True, None)))
        with redirect_stdout(io.StringIO()):
            common.print_list(opts, rows, gnt_instance.DEFAULT_FIELDS, gnt_instance.TITLES,
                              gnt_instance.UNIT_FIELDS, gnt_instance.NUMERIC_FIELDS)
        return
    fields = common.list_fields(opts, registry.INSTANCE, DEFAULT)
    rows = proto.decode(proto.encode(query(cluster, True, fields)))
    with redirect_stdout(io.StringIO()):
        common.print_registry_list(opts, rows, fields, registry.INSTANCE)


def rapi(cluster: InProcessCluster, bulk: bool) -> bytes:
    if bulk:
        fields = list(convert.I_QUERY_FIELDS) if registry is not None else None
        rows = proto.decode(proto.encode(query(cluster, True, fields)))
        return json.dumps([convert.instance(r) for r in rows]).encode()
    rows = proto.decode(proto.encode(query(cluster, False,
                                           ["name"] if registry is not None else None)))
    return json.dumps([{"id": r["name"], "uri": f"/2/instances/{r['name']}"}
                       for r in rows]).encode()


def best(repeat: int, fn: Any) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(size: int, nodes: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, scratch_root(Path(tmp)) as root, \
            InProcessCluster(root, nodes=nodes) as cluster:
        populate(cluster, size)
        out: dict[str, Any] = {}
        cases = {
            "masterd query": lambda: query(cluster, True, None),
            "gnt-instance list": lambda: cli_list(cluster, None),
            "list -o name,status": lambda: cli_list(cluster, "name,status"),
            "RAPI bulk": lambda: rapi(cluster, True),
            "RAPI names": lambda: rapi(cluster, False),
        }
        for label, fn in cases.items():
            cluster.clear_calls()
            fn()
            calls = len(cluster.all_calls())
            out[label] = (best(repeat, fn), calls)
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'registry' if registry else 'before the registry'}, {args.nodes} node(s); "
          "seconds (best of %d), node RPCs per run" % args.repeat)
    for size in (int(s) for s in args.sizes.split(",")):
        for label, (seconds, calls) in measure(size, args.nodes, args.repeat).items():
            print(f"{size:>6} {label:<22} {seconds:8.3f} s  {calls:>3} RPC")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    sys.exit(main())
