"""/metrics: the exporter's names and Herd's own, rendered from query rows (no cluster)."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from herd.jobs.stats import BUCKETS, Histogram, JobStats
from herd.rapi.metrics import render


def _parse(body: bytes) -> dict[str, dict[tuple, float]]:
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for point in family.samples:
            out.setdefault(point.name, {})[tuple(sorted(point.labels.items()))] = point.value
    return out


NODES = [{"name": "n1", "mtotal": 4096, "mfree": 1000, "dtotal": 10240, "dfree": 5000,
          "ctotal": 4, "pinst_cnt": 2, "sinst_cnt": 0, "offline": False, "reachable": True},
         {"name": "n2", "mtotal": 4096, "mfree": None, "dtotal": None, "dfree": None,
          "ctotal": None, "pinst_cnt": 0, "sinst_cnt": 1, "offline": True,
          "reachable": False}]
INSTANCES = [{"name": "a", "pnode": "n1", "snodes": ["n2"], "oper_state": True,
              "oper_vcpus": 2, "oper_ram": 512, "admin_state": "up"},
             {"name": "b", "pnode": "n1", "snodes": [], "oper_state": False,
              "oper_vcpus": None, "oper_ram": None, "admin_state": "down"}]


def _jobs() -> tuple[list[dict[str, Any]], JobStats]:
    jobs = [{"id": 1, "status": "success", "ops": [{"OP_ID": "OP_INSTANCE_STARTUP"}],
             "received_ts": 100.0, "start_ts": 100.5, "end_ts": 103.0},
            {"id": 2, "status": "error", "ops": [{"OP_ID": "OP_INSTANCE_STARTUP"}],
             "received_ts": 200.0, "start_ts": 200.0, "end_ts": 200.02},
            {"id": 3, "status": "queued", "ops": [{"OP_ID": "OP_CLUSTER_VERIFY"}],
             "received_ts": 300.0, "start_ts": None, "end_ts": None}]
    stats = JobStats()
    for job in jobs[:2]:
        stats.job_done(job)
    return jobs, stats


def test_exporter_names_and_values() -> None:
    jobs, stats = _jobs()
    m = _parse(render("c1", NODES, INSTANCES, jobs, {"jobs": stats.to_dict(), "etcd": None}))
    n1, n2 = (("cluster", "c1"), ("node", "n1")), (("cluster", "c1"), ("node", "n2"))
    assert m["ganeti_node_mfree"] == {n1: 1000.0}  # an unknown value is left out, not 0
    assert m["ganeti_node_mtotal"] == {n1: 4096.0, n2: 4096.0}
    assert m["ganeti_node_p_oper_vcpus"] == {n1: 2.0, n2: 0.0}  # b does not run
    assert m["ganeti_node_s_oper_vcpus"] == {n1: 0.0, n2: 2.0}
    assert m["ganeti_instance_oper_ram"] == {(("cluster", "c1"), ("instance", "a")): 512.0,
                                             (("cluster", "c1"), ("instance", "b")): 0.0}
    assert m["ganeti_cluster_offline_nodes"] == {(("cluster", "c1"),): 1.0}
    states = {dict(k)["job_status"]: v for k, v in m["ganeti_cluster_jobs"].items()}
    assert states == {"queued": 1, "waiting": 0, "canceling": 0, "running": 0, "canceled": 0,
                      "success": 1, "error": 1}
    assert m["ganeti_job_run_time"][(("cluster", "c1"), ("job_id", "1"),
                                     ("job_operation", "OP_INSTANCE_STARTUP"))] == 2.5
    assert m["herd_node_reachable"] == {n1: 1.0, n2: 0.0}
    assert m["herd_etcd_up"] == {(("cluster", "c1"),): 0.0} and "herd_etcd_db_size_bytes" not in m


def test_herds_job_counts_and_histograms() -> None:
    jobs, stats = _jobs()
    etcd = {"db_size": 1 << 20, "db_size_in_use": 1 << 19, "has_leader": True, "raft_term": 3,
            "members": 3, "learners": 0}
    m = _parse(render("c1", NODES, INSTANCES, jobs, {"jobs": stats.to_dict(), "etcd": etcd}))
    op = (("cluster", "c1"), ("opcode", "OP_INSTANCE_STARTUP"))
    assert m["herd_jobs_finished_total"] == {(*op, ("status", "error")): 1.0,
                                             (*op, ("status", "success")): 1.0}
    runs = m["herd_job_run_seconds_bucket"]
    assert runs[(*op[:1], ("le", "0.05"), *op[1:])] == 1.0  # the 20 ms failure
    assert runs[(*op[:1], ("le", "1.0"), *op[1:])] == 1.0
    assert runs[(*op[:1], ("le", "2.5"), *op[1:])] == 2.0  # and the 2.5 s start (le: <=)
    assert runs[(*op[:1], ("le", "+Inf"), *op[1:])] == 2.0
    assert abs(m["herd_job_run_seconds_sum"][op] - 2.52) < 1e-9
    assert m["herd_job_wait_seconds_count"][op] == 2.0
    assert m["herd_etcd_db_size_bytes"] == {(("cluster", "c1"),): float(1 << 20)}
    assert m["herd_etcd_has_leader"] == {(("cluster", "c1"),): 1.0}


def test_histogram_buckets_are_cumulative_and_count_overflow_in_inf_only() -> None:
    h = Histogram()
    for value in (0.01, 0.05, 0.06, 7200.0, -1.0):
        h.observe(value)
    d = h.to_dict()
    assert d["count"] == 5 and d["buckets"][0] == [BUCKETS[0], 3]  # -1 counts as 0
    assert d["buckets"][1] == [0.1, 4] and d["buckets"][-1] == [3600.0, 4]


def test_the_grafana_dashboard_asks_only_for_metrics_that_exist() -> None:
    """Every metric a panel of packaging/grafana/herd-dashboard.json queries is one /metrics
    renders (a renamed metric would leave an empty panel)."""
    import json
    import re
    from pathlib import Path

    jobs, stats = _jobs()
    usage = {"n1": [{"name": "a", "cpu_seconds": 1.0, "rss_bytes": 1,
                     "disks": [{"index": 0}], "nics": [{"index": 0}]}]}
    etcd = {"db_size": 1, "db_size_in_use": 1, "has_leader": True, "raft_term": 1,
            "members": 1, "learners": 0}
    rendered = set(_parse(render("c1", NODES, INSTANCES, jobs,
                                 {"jobs": stats.to_dict(), "etcd": etcd, "usage": usage})))
    dashboard = json.loads((Path(__file__).parents[2] / "packaging/grafana/"
                            "herd-dashboard.json").read_text())
    names = {name for panel in dashboard["panels"] for target in panel["targets"]
             for name in re.findall(r"\b(?:herd|ganeti)_[a-z_]+", target["expr"])}
    assert names and names <= rendered, sorted(names - rendered)
