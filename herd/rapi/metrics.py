"""``/metrics`` on herd-rapi: the cluster in Prometheus' text format.

Two sets of names. Those of prometheus-ganeti-exporter (``ganeti_node_mfree``,
``ganeti_instance_oper_ram``, ``ganeti_cluster_jobs``, ...; the names are facts of that
project, read from its documentation and output, not its code), computed from the same rows
RAPI's ``/2/nodes?bulk=1`` and ``/2/instances?bulk=1`` answer, so Grafana dashboards built
for Ganeti work and the numbers are the ones ``gnt-node list`` shows. And Herd's own,
``herd_*``: finished jobs by opcode and status, job run and queue-wait histograms, etcd's
state, node reachability, instances running. The exporter's per-job gauges
(``ganeti_job_run_time{job_id=...}``) are kept for its dashboards but cover only the jobs
still in the queue, as the exporter's do; the histograms are what to alert on.

prometheus_client is imported here only: herd-rapi pays for it on the first scrape.
"""

from __future__ import annotations

from typing import Any

#: Ganeti's job states, each reported even when no job is in it (the exporter's set)
JOB_STATES = ("queued", "waiting", "canceling", "running", "canceled", "success", "error")
_NODE_GAUGES = {
    "ctotal": "Total installed number of CPUs",
    "dfree": "Available disk capacity (MiB)",
    "dtotal": "Total installed disk capacity (MiB)",
    "mfree": "Available memory capacity (MiB)",
    "mtotal": "Total installed memory capacity (MiB)",
    "pinst_cnt": "Number of instances with the node as primary",
    "sinst_cnt": "Number of instances with the node as secondary",
}
_INSTANCE_GAUGES = {
    "oper_vcpus": "vCPUs of the running instance (0 when not running)",
    "oper_ram": "Memory of the running instance in MiB (0 when not running)",
}
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def render(cluster: str, nodes: list[dict[str, Any]], instances: list[dict[str, Any]],
           jobs: list[dict[str, Any]], master: dict[str, Any]) -> bytes:
    """The text exposition. ``nodes``/``instances``: RAPI's bulk rows (herd.rapi.convert);
    ``jobs``: the queue's job dicts (times as floats); ``master``: masterd's
    ``query_metrics`` answer."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    families: list[Any] = []

    def gauge(name: str, doc: str, labels: list[str],
              values: list[tuple[list[str], float]]) -> None:
        family = GaugeMetricFamily(name, doc, labels=labels)
        for label_values, value in values:
            family.add_metric(label_values, value)
        families.append(family)

    # -- prometheus-ganeti-exporter's names ---------------------------------------------------
    for key, doc in _NODE_GAUGES.items():
        gauge(f"ganeti_node_{key}", doc, ["cluster", "node"],
              [([cluster, n["name"]], float(n[key])) for n in nodes
               if isinstance(n.get(key), int | float)])
    running = [i for i in instances if i.get("oper_state")]
    for which, pick in (("p", lambda i, node: i.get("pnode") == node),
                        ("s", lambda i, node: node in (i.get("snodes") or []))):
        gauge(f"ganeti_node_{which}_oper_vcpus", "Total number of allocated vCPUs to node",
              ["cluster", "node"],
              [([cluster, n["name"]], float(sum(int(i.get("oper_vcpus") or 0)
                                                for i in running if pick(i, n["name"]))))
               for n in nodes])
    for key, doc in _INSTANCE_GAUGES.items():
        gauge(f"ganeti_instance_{key}", doc, ["cluster", "instance"],
              [([cluster, i["name"]], float(i.get(key) or 0) if i.get("oper_state") else 0.0)
               for i in instances])
    gauge("ganeti_cluster_instance_count", "Total number of instances", ["cluster"],
          [([cluster], float(len(instances)))])
    gauge("ganeti_cluster_node_count", "Total number of nodes", ["cluster"],
          [([cluster], float(len(nodes)))])
    gauge("ganeti_cluster_offline_nodes", "Number of nodes offline", ["cluster"],
          [([cluster], float(sum(1 for n in nodes if n.get("offline"))))])
    gauge("ganeti_cluster_jobs", "Number of jobs in queue", ["cluster", "job_status"],
          [([cluster, state], float(sum(1 for j in jobs if j.get("status") == state)))
           for state in JOB_STATES])
    waits, runs = [], []
    for job in jobs:
        ops = job.get("ops") or []
        labels = [cluster, str(job["id"]), str(ops[0].get("OP_ID", "unknown")) if ops
                  else "unknown"]
        if job.get("start_ts") is not None and job.get("received_ts") is not None:
            waits.append((labels, float(job["start_ts"] - job["received_ts"])))
        if job.get("start_ts") is not None and job.get("end_ts") is not None:
            runs.append((labels, float(job["end_ts"] - job["start_ts"])))
    gauge("ganeti_job_wait_time", "Queue wait time for jobs (seconds)",
          ["cluster", "job_id", "job_operation"], waits)
    gauge("ganeti_job_run_time", "Run time for jobs (seconds)",
          ["cluster", "job_id", "job_operation"], runs)

    # -- Herd's own ---------------------------------------------------------------------------
    gauge("herd_node_reachable", "1 when the master reached the node's daemon just now",
          ["cluster", "node"],
          [([cluster, n["name"]], 0.0 if n.get("offline") or n.get("reachable") is False
            else 1.0) for n in nodes])
    gauge("herd_instance_running", "1 when the instance runs, 0 when it does not",
          ["cluster", "instance", "admin_state"],
          [([cluster, i["name"], str(i.get("admin_state"))], 1.0 if i.get("oper_state")
            else 0.0) for i in instances])
    stats = master.get("jobs") or {}
    finished = CounterMetricFamily("herd_jobs_finished", "Jobs that ended, since masterd "
                                   "started, by first opcode and final status",
                                   labels=["cluster", "opcode", "status"])
    for opcode, status, count in stats.get("finished", []):
        finished.add_metric([cluster, opcode, status], count)
    families.append(finished)
    for key, doc in (("run_seconds", "How long finished jobs ran"),
                     ("wait_seconds", "How long finished jobs waited in the queue")):
        family = HistogramMetricFamily(f"herd_job_{key}", doc, labels=["cluster", "opcode"])
        for opcode, hist in (stats.get(key) or {}).items():
            buckets = [(repr(float(bound)), count) for bound, count in hist["buckets"]]
            buckets.append(("+Inf", hist["count"]))
            family.add_metric([cluster, opcode], buckets, hist["sum"])
        families.append(family)
    _usage_families(cluster, master.get("usage") or {}, families)
    etcd = master.get("etcd")
    gauge("herd_etcd_up", "1 when an etcd member answered the master", ["cluster"],
          [([cluster], 1.0 if etcd and "error" not in etcd else 0.0)])
    if etcd and "error" not in etcd:
        for key, doc in (("db_size", "Size of etcd's database file (bytes)"),
                         ("db_size_in_use", "Bytes of etcd's database holding live data"),
                         ("has_leader", "1 when etcd has a leader"),
                         ("members", "etcd members"), ("learners", "etcd members not voting")):
            gauge(f"herd_etcd_{key}" + ("_bytes" if key.startswith("db_") else ""), doc,
                  ["cluster"], [([cluster], float(etcd[key]))])

    class _Fixed:
        def collect(self) -> list[Any]:
            return families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed())  # type: ignore[arg-type]
    return generate_latest(registry)


def _usage_families(cluster: str, usage: dict[str, list[dict[str, Any]]],
                    families: list[Any]) -> None:
    """Per-guest counters from each node (noded's instance_usage): CPU seconds and bytes
    only ever grow while the guest runs, so they are counters; a restart starts them anew,
    which rate() takes as a reset."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    cpu = CounterMetricFamily("herd_instance_cpu_seconds", "CPU time the guest's process "
                              "used", labels=["cluster", "instance", "node"])
    rss = GaugeMetricFamily("herd_instance_memory_rss_bytes", "Resident memory of the "
                            "guest's process", labels=["cluster", "instance", "node"])
    # per device: (row key, its rows' counter -> metric suffix and help), one table for both
    devices = {
        "disks": ("disk", "herd_instance_disk_", (
            ("rd_bytes", "read_bytes", "Bytes the guest read"),
            ("wr_bytes", "written_bytes", "Bytes the guest wrote"),
            ("rd_operations", "reads", "Read requests"),
            ("wr_operations", "writes", "Write requests"))),
        "nics": ("nic", "herd_instance_network_", (
            ("rx_bytes", "receive_bytes", "Bytes the guest received"),
            ("tx_bytes", "transmit_bytes", "Bytes the guest sent"),
            ("rx_packets", "receive_packets", "Packets received"),
            ("tx_packets", "transmit_packets", "Packets sent"))),
    }
    per_device = {
        rows_key: (label, {key: CounterMetricFamily(prefix + name, doc, labels=[
            "cluster", "instance", "node", label]) for key, name, doc in counters})
        for rows_key, (label, prefix, counters) in devices.items()}
    for node, rows in sorted(usage.items()):
        for row in rows:
            labels = [cluster, str(row["name"]), node]
            if "cpu_seconds" in row:
                cpu.add_metric(labels, float(row["cpu_seconds"]))
            if "rss_bytes" in row:
                rss.add_metric(labels, float(row["rss_bytes"]))
            for rows_key, (label, counters) in per_device.items():
                for device in row.get(rows_key) or []:
                    for key, family in counters.items():
                        family.add_metric([*labels, f"{label}/{device['index']}"],
                                          float(device.get(key, 0)))
    families += [cpu, rss, *(f for _, counters in per_device.values()
                             for f in counters.values())]
