"""RAPI v2 against a real two-node lab cluster, driven by Ganeti's own Python client.

The tests build on each other in file order (one lab for the module): list and query, create
an instance with a version 1 request, compare the answers with recorded Ganeti 3.0.2 ones key
by key, refuse bad requests exactly as Ganeti does, manage node groups, re-read the users
file, and follow the master role through a failover.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from herd.fileutil import pid_alive, read_pid
from tests.rapi.conftest import CLUSTER, RapiLab, sample, sample_http, wait_rapi
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

INSTANCE = "web1.example.com"
#: Keys Ganeti can report as null too (no console port for the hypervisor's settings).
NULLABLE = {"network_port"}


def assert_same_shape(ours: dict[str, Any], theirs: dict[str, Any], where: str,
                      nested: tuple[str, ...] = ()) -> None:
    """Every key Ganeti returns is there, with the same JSON type (int and float are both
    numbers only where Ganeti itself mixes them: never here)."""
    missing = sorted(set(theirs) - set(ours))
    assert not missing, f"{where}: keys missing: {missing}"
    for key, value in theirs.items():
        mine = ours[key]
        if mine is None and key in NULLABLE:
            continue
        assert type(mine) is type(value), \
            f"{where}.{key}: {type(mine).__name__} {mine!r} vs Ganeti's {type(value).__name__}"
        if key in nested and isinstance(value, dict):
            assert_same_shape(mine, value, f"{where}.{key}")


def test_ganeti_client_lists_and_queries(rapi_lab: RapiLab) -> None:
    assert rapi_lab.ok("GetVersion") == 2
    assert "instance-create-reqv1" in rapi_lab.ok("GetFeatures")
    info = rapi_lab.ok("GetInfo")
    assert info["name"] == CLUSTER and info["master"] == "node1.example.com"
    assert sorted(rapi_lab.ok("GetNodes")) == ["node1.example.com", "node2.example.com"]
    nodes = {n["name"]: n for n in rapi_lab.ok("GetNodes", bulk=True)}
    assert {n: r["role"] for n, r in nodes.items()} == {"node1.example.com": "M",
                                                        "node2.example.com": "C"}
    assert nodes["node2.example.com"]["mtotal"] > 0
    assert rapi_lab.ok("GetNodeRole", "node2.example.com") == "master-candidate"
    assert rapi_lab.ok("GetInstances") == []
    assert "busybox+default" in rapi_lab.ok("GetOperatingSystems")
    result = rapi_lab.ok("Query", "node", ["name", "role", "bogus"])
    assert [f["kind"] for f in result["fields"]] == ["text", "text", "unknown"]
    assert [[0, "node1.example.com"], [0, "M"], [1, None]] in result["data"]
    fields = rapi_lab.ok("QueryFields", "instance", ["name", "oper_ram"])
    assert [f["name"] for f in fields["fields"]] == ["name", "oper_ram"]
    groups = rapi_lab.ok("GetGroups", bulk=True)
    assert groups[0]["name"] == "default" and groups[0]["node_cnt"] == 2


def test_create_instance_with_request_version_1(rapi_lab: RapiLab) -> None:
    done = rapi_lab.run_job(
        "CreateInstance", "create", INSTANCE, "file", [{"size": "64M"}], [{}],
        os="busybox+default", pnode="node2.example.com", name_check=False, ip_check=False,
        beparams={"memory": "128M"},  # sizes as strings, as Ganeti accepts them
        hvparams={"kernel_path": str(rapi_lab.kernel), "initrd_path": str(rapi_lab.initrd)})
    assert done["status"] == "success", done
    assert any("creating instance disks" in m for m in done["log"]), done["log"]
    job = rapi_lab.ok("GetJobStatus", done["id"])
    assert job["ops"][0]["OP_ID"] == "OP_INSTANCE_CREATE"
    assert job["opresult"] == [[INSTANCE]]
    # the job's log as Ganeti shows it: [serial, [sec, usec], type, message]
    serial, (sec, usec), kind, _message = job["oplog"][0][0]
    assert serial == 1 and sec > 1e9 and 0 <= usec < 1_000_000 and kind == "message"
    rows = rapi_lab.ok("GetInstances", bulk=True)
    assert [(r["name"], r["pnode"], r["status"]) for r in rows] == \
        [(INSTANCE, "node2.example.com", "running")]
    assert rows[0]["disk.sizes"] == [64] and rows[0]["beparams"]["memory"] == 128
    assert rapi_lab.ok("GetInstances") == [INSTANCE]


def test_answers_have_ganetis_keys_and_types(rapi_lab: RapiLab) -> None:
    info = rapi_lab.ok("GetInfo")
    assert_same_shape(info, sample("2_info.json"), "/2/info",
                      nested=("beparams", "ipolicy", "ndparams", "nicparams"))
    assert_same_shape(info["beparams"]["default"], sample("2_info.json")["beparams"]["default"],
                      "/2/info.beparams.default")
    inst = rapi_lab.ok("GetInstance", INSTANCE)
    assert_same_shape(inst, sample("2_instances_NAME.json"), "/2/instances/NAME",
                      nested=("beparams",))
    assert list(inst) == list(sample("2_instances_NAME.json"))  # Ganeti's order too
    node = rapi_lab.ok("GetNode", "node2.example.com")
    assert_same_shape(node, sample("2_nodes_node2.json"), "/2/nodes/NAME",
                      nested=("ndparams",))
    bulk = rapi_lab.ok("GetNodes", bulk=True)
    assert_same_shape(bulk[0], sample("2_nodes_bulk.json")[0], "/2/nodes?bulk=1")
    job_id = rapi_lab.ok("GetJobs")[0]
    job = rapi_lab.ok("GetJobStatus", job_id)
    assert_same_shape(job, sample("2_jobs_ID_startup.json"), "/2/jobs/ID")
    listing = rapi_lab.curl("GET", "/2/jobs")[2]
    assert_same_shape(listing[0], sample("2_jobs.json")[0], "/2/jobs")
    assert_same_shape({"x": rapi_lab.ok("GetFeatures")}, {"x": sample("2_features.json")},
                      "/2/features")


def test_shutdown_startup_info_and_tags(rapi_lab: RapiLab) -> None:
    # body parameters travel as Ganeti's client sends them (timeout: no ACPI wait)
    assert rapi_lab.run_job("ShutdownInstance", INSTANCE, timeout=0)["status"] == "success"
    assert rapi_lab.ok("GetInstance", INSTANCE)["status"] == "ADMIN_down"
    assert rapi_lab.run_job("StartupInstance", INSTANCE)["status"] == "success"
    assert rapi_lab.ok("GetInstance", INSTANCE)["status"] == "running"
    done = rapi_lab.run_job("GetInstanceInfo", INSTANCE)
    result = rapi_lab.ok("GetJobStatus", done["id"])["opresult"][0]
    assert result[INSTANCE]["run_state"] == "up"
    assert result[INSTANCE]["pnode"] == "node2.example.com"

    assert rapi_lab.run_job("AddInstanceTags", INSTANCE, ["web", "env:prod"])["status"] == \
        "success"
    assert rapi_lab.run_job("DeleteInstanceTags", INSTANCE, ["web"])["status"] == "success"
    assert rapi_lab.ok("GetInstanceTags", INSTANCE) == ["env:prod"]
    assert rapi_lab.run_job("AddClusterTags", ["site:lab"])["status"] == "success"
    assert rapi_lab.ok("GetClusterTags") == ["site:lab"]
    assert rapi_lab.run_job("AddNodeTags", "node2.example.com", ["rack1"])["status"] == \
        "success"
    assert rapi_lab.ok("GetNodeTags", "node2.example.com") == ["rack1"]
    assert rapi_lab.run_job("AddGroupTags", "default", ["zone-a"])["status"] == "success"
    assert rapi_lab.ok("GetGroupTags", "default") == ["zone-a"]
    # the config holds them, replicated like every change
    cfg = rapi_lab.config("node2")
    assert cfg["cluster"]["tags"] == ["site:lab"]
    assert [i["tags"] for i in cfg["instances"].values()] == [["env:prod"]]
    # deleting a tag that is not there fails and changes nothing
    done = rapi_lab.run_job("DeleteClusterTags", ["nosuch"])
    assert done["status"] == "error" and "not found" in done["log"][-1]
    assert rapi_lab.ok("GetClusterTags") == ["site:lab"]
    # a bad tag is refused before queuing (Ganeti queues a job that fails): 400, no job
    jobs = rapi_lab.job_count()
    (answer,) = rapi_lab.client(("AddClusterTags", [["bad tag"]], {}))
    assert answer.get("code") == 400 and "invalid tag 'bad tag'" in answer["error"], answer
    assert rapi_lab.job_count() == jobs
    assert rapi_lab.ok("GetClusterTags") == ["site:lab"]


def _scrape(rapi_lab: RapiLab, user: str | None = "jessica") -> dict[str, dict[tuple, float]]:
    """/metrics parsed by prometheus_client's own parser: name -> {labels: value}."""
    from prometheus_client.parser import text_string_to_metric_families

    argv = ["curl", "-sk", "-w", "\\n%{http_code}", f"https://{CLUSTER}:5080/metrics"]
    if user:
        argv[2:2] = ["-u", f"{user}:jesspw"]
    proc = rapi_lab.lab.run("node2", *argv)
    text, _, code = proc.stdout.rpartition("\n")
    assert code == "200", proc.stdout[-300:]
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for point in family.samples:
            out.setdefault(point.name, {})[tuple(sorted(point.labels.items()))] = point.value
    return out


def test_metrics_say_what_gnt_node_list_and_gnt_instance_list_say(rapi_lab: RapiLab) -> None:
    metrics = _scrape(rapi_lab)
    rows = rapi_lab.gnt("gnt-node", "list", "--no-headers", "--units=m", "--separator=|", "-o",
                        "name,mtotal,dtotal,ctotal,pinst_cnt,sinst_cnt,mfree,dfree").stdout
    nodes = [line.split("|") for line in rows.splitlines()]
    assert len(nodes) == 2
    for name, mtotal, dtotal, ctotal, pinst, sinst, mfree, dfree in nodes:
        labels = (("cluster", CLUSTER), ("node", name))
        for metric, value in (("mtotal", mtotal), ("dtotal", dtotal), ("ctotal", ctotal),
                              ("pinst_cnt", pinst), ("sinst_cnt", sinst)):
            assert metrics[f"ganeti_node_{metric}"][labels] == float(value.rstrip("M")), metric
        for metric, value in (("mfree", mfree), ("dfree", dfree)):  # live: they move a little
            seen = metrics[f"ganeti_node_{metric}"][labels]
            assert abs(seen - float(value.rstrip("M"))) <= 0.05 * float(value.rstrip("M")) + 64
        assert metrics["herd_node_reachable"][labels] == 1.0
    status = dict(line.split() for line in rapi_lab.gnt(
        "gnt-instance", "list", "--no-headers", "-o", "name,status").stdout.splitlines())
    assert status == {INSTANCE: "running"}
    running = {dict(k)["instance"]: v for k, v in metrics["herd_instance_running"].items()}
    assert running == {INSTANCE: 1.0}
    ram = metrics["ganeti_instance_oper_ram"][(("cluster", CLUSTER), ("instance", INSTANCE))]
    assert ram == float(rapi_lab.gnt("gnt-instance", "list", "--no-headers", "--units=m",
                                     "-o", "oper_ram", INSTANCE).stdout.strip().rstrip("M"))
    assert metrics["ganeti_cluster_node_count"][(("cluster", CLUSTER),)] == 2.0
    assert metrics["ganeti_cluster_instance_count"][(("cluster", CLUSTER),)] == 1.0
    jobs = rapi_lab.gnt("gnt-job", "list", "--no-headers", "-o", "status").stdout.split()
    for state in ("success", "error", "queued"):
        labels = (("cluster", CLUSTER), ("job_status", state))
        assert metrics["ganeti_cluster_jobs"][labels] == jobs.count(state)
    # every exporter name its dashboards use is there
    for name in ("ganeti_node_p_oper_vcpus", "ganeti_node_s_oper_vcpus",
                 "ganeti_instance_oper_vcpus", "ganeti_cluster_offline_nodes",
                 "ganeti_job_run_time", "ganeti_job_wait_time"):
        assert name in metrics, name
    # Herd's own: the startup job above is counted and timed by opcode
    started = (("cluster", CLUSTER), ("opcode", "OP_INSTANCE_STARTUP"), ("status", "success"))
    assert metrics["herd_jobs_finished_total"][started] >= 1
    count = metrics["herd_job_run_seconds_count"][(("cluster", CLUSTER),
                                                   ("opcode", "OP_INSTANCE_STARTUP"))]
    assert count == metrics["herd_jobs_finished_total"][started]
    assert metrics["herd_etcd_up"][(("cluster", CLUSTER),)] == 1.0
    assert metrics["herd_etcd_has_leader"][(("cluster", CLUSTER),)] == 1.0
    # the guest's own counters, from its node: a real QEMU process, its disk and its tap
    who = (("cluster", CLUSTER), ("instance", INSTANCE), ("node", "node2.example.com"))
    assert metrics["herd_instance_cpu_seconds_total"][who] > 0
    assert metrics["herd_instance_memory_rss_bytes"][who] > 16 << 20
    disk0 = tuple(sorted((*who, ("disk", "disk/0"))))
    assert disk0 in metrics["herd_instance_disk_read_bytes_total"]
    nic0 = tuple(sorted((*who, ("nic", "nic/0"))))
    assert nic0 in metrics["herd_instance_network_transmit_bytes_total"]
    later = _scrape(rapi_lab)["herd_instance_cpu_seconds_total"][who]
    assert later >= metrics["herd_instance_cpu_seconds_total"][who]  # a counter


def test_bad_requests_get_ganetis_status_and_shape(rapi_lab: RapiLab) -> None:
    jobs, serial = rapi_lab.job_count(), rapi_lab.config()["serial_no"]
    status, headers, body = rapi_lab.curl("GET", "/2/info", user=None)
    want_status, want_headers, want_body = sample_http("2_info_noauth_401.txt")
    assert (status, body) == (want_status, want_body)
    assert headers["www-authenticate"] == want_headers["www-authenticate"]
    assert headers["content-type"] == "application/json"
    status, headers, body = rapi_lab.curl("GET", "/2/info", password="wrong")
    assert (status, body) == (want_status, want_body)
    assert headers["www-authenticate"] == 'Basic realm="Ganeti Remote API"'
    # read-only user: may read, may not write
    assert rapi_lab.curl("GET", "/2/info", user="monitor", password="monpw")[0] == 200
    status, _, body = rapi_lab.curl("PUT", f"/2/instances/{INSTANCE}/shutdown", "{}",
                                    user="monitor", password="monpw")
    assert (status, body) == (403, {"code": 403, "message": "Forbidden",
                                    "explain": "Request forbidden -- authorization will not "
                                               "help"})
    status, _, body = rapi_lab.curl("POST", "/2/instances", '{"__version__": 1, "name": ')
    assert (status, body) == (400, {"code": 400, "message": "Bad Request",
                                    "explain": "Unable to parse JSON data"})
    create = {"__version__": 1, "mode": "create", "name": "x1.example.com",
              "disk_template": "diskless", "disks": [], "nics": [], "no_install": True,
              "name_check": False, "ip_check": False, "bogus_field": 1}
    status, _, body = rapi_lab.curl("POST", "/2/instances", json.dumps(create))
    assert status == 400 and body["message"] == "Bad Request"
    assert "bogus_field" in body["explain"] and set(body) == {"code", "message", "explain"}
    status, _, body = rapi_lab.curl("POST", "/2/instances", json.dumps(create),
                                    content_type="text/plain")
    assert status == 415 and body["code"] == 415
    for missing in ("/2/instances/nosuch.example.com", "/2/instances/nosuch"):
        assert rapi_lab.curl("GET", missing)[::2] == \
            sample_http("2_instances_missing_404.txt")[::2]
    assert rapi_lab.curl("GET", "/2/nosuch")[0] == 404
    status, _, body = rapi_lab.curl("PUT", "/2/info", "{}")
    assert status == 501 and body["explain"] == "Method PUT is unsupported for path /2/info"
    # nothing happened
    assert rapi_lab.job_count() == jobs and rapi_lab.config()["serial_no"] == serial
    assert rapi_lab.ok("GetInstance", INSTANCE)["status"] == "running"


def test_node_groups_through_ganetis_client_and_gnt_group(rapi_lab: RapiLab) -> None:
    def gnt_group(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # as the gnt-group entry point runs it (the venv may predate the script)
        return rapi_lab.gnt("python3", "-m", "herd.cli.gnt_group", *argv, check=check)

    n1, n2 = "node1.example.com", "node2.example.com"
    assert rapi_lab.run_job("CreateGroup", "group2", alloc_policy="last_resort")[
        "status"] == "success"
    assert rapi_lab.run_job("ModifyGroup", "group2", alloc_policy="preferred",
                            ipolicy={"vcpu-ratio": 2.0})["status"] == "success"
    assert rapi_lab.run_job("RenameGroup", "group2", "group3")["status"] == "success"
    group = rapi_lab.ok("GetGroup", "group3")
    assert (group["alloc_policy"], group["node_cnt"], group["custom_ipolicy"]) == (
        "preferred", 0, {"vcpu-ratio": 2.0})
    assert group["ipolicy"]["vcpu-ratio"] == 2.0 and group["ipolicy"]["minmax"]
    # a mirror over both nodes: moving one of them would split it between groups
    rapi_lab.gnt("gnt-instance", "add", "-t", "drbd", "-n", f"{n1}:{n2}", "-o",
                 "busybox+default", "-s", "64M", "--no-start", "--no-install",
                 "--no-name-check", "--no-ip-check", "mirror1.example.com")
    refused = gnt_group("assign-nodes", "group3", n2, check=False)
    assert refused.returncode == 1 and "mirror1.example.com" in refused.stderr \
        and "--force" in refused.stderr, refused.stderr
    rapi_lab.gnt("gnt-instance", "remove", "-f", "mirror1.example.com")
    assert rapi_lab.run_job("AssignGroupNodes", "group3", [n2])["status"] == "success"
    listing = gnt_group("list", "--no-headers", "-o", "name,node_cnt,pinst_cnt,alloc_policy")
    assert [line.split() for line in listing.stdout.splitlines()] == [
        ["default", "1", "0", "preferred"], ["group3", "1", "1", "preferred"]], listing.stdout
    done = rapi_lab.run_job("DeleteGroup", "group3")
    assert done["status"] == "error"
    error_class, (message, *_rest) = rapi_lab.ok("GetJobStatus", done["id"])["opresult"][0]
    assert error_class == "OpPrereqError" and "is not empty" in message
    gnt_group("assign-nodes", "default", n2)
    gnt_group("add-tags", "group3", "zone-b")
    assert "zone-b" in gnt_group("info", "group3").stdout
    assert rapi_lab.run_job("DeleteGroup", "group3")["status"] == "success"
    assert [g["name"] for g in rapi_lab.ok("GetGroups", bulk=True)] == ["default"]
    # multi-allocation, with the entries the client's InstanceAllocation builds
    alloc = {"mode": "create", "name": "multi1.example.com", "disk_template": "diskless",
             "disks": [], "nics": [{}], "os": "busybox+default", "no_install": True,
             "start": False, "name_check": False, "ip_check": False}
    done = rapi_lab.run_job("InstancesMultiAlloc", [alloc])
    assert done["status"] == "success", done
    result = rapi_lab.ok("GetJobStatus", done["id"])["opresult"][0]
    assert (result["allocatable"], result["allocation_failed"]) == (["multi1.example.com"], [])
    ((submitted, job_id),) = result["jobs"]
    assert submitted and rapi_lab.ok("WaitJob", job_id)["status"] == "success"
    assert rapi_lab.run_job("DeleteInstance", "multi1.example.com")["status"] == "success"
    assert rapi_lab.ok("GetInstances") == [INSTANCE]


def test_users_file_is_reread_and_hashes_work(rapi_lab: RapiLab) -> None:
    assert rapi_lab.curl("GET", "/2/info", user="jessica", password="jesspw")[0] == 200
    assert rapi_lab.curl("GET", "/2/info", user="newbie", password="pw")[0] == 401
    path = rapi_lab.lab.node("node1").paths.rapi_users_file
    original = path.read_text()
    rapi_lab.write_users(original + "newbie {CLEARTEXT}pw\n")
    assert rapi_lab.curl("GET", "/2/info", user="newbie", password="pw")[0] == 200
    assert rapi_lab.curl("PUT", "/2/redistribute-config", user="newbie", password="pw")[0] \
        == 403
    rapi_lab.write_users(original)
    assert rapi_lab.curl("GET", "/2/info", user="newbie", password="pw")[0] == 401
    doc = rapi_lab.curl("GET", "/openapi.json", user=None)[2]
    assert doc["openapi"].startswith("3.") and "/2/instances/{instance_name}" in doc["paths"]


def test_anonymous_reads_are_a_cluster_setting(rapi_lab: RapiLab) -> None:
    assert rapi_lab.curl("GET", "/2/info", user=None)[0] == 401  # Herd's default
    rapi_lab.gnt("gnt-cluster", "modify", "--rapi-anonymous-reads", "yes")
    assert "RAPI anonymous reads: True" in rapi_lab.gnt("gnt-cluster", "info").stdout
    status, _, info = rapi_lab.curl("GET", "/2/info", user=None)
    assert status == 200 and info["name"] == CLUSTER  # Ganeti's behaviour, for htools
    assert rapi_lab.curl("PUT", "/2/redistribute-config", user=None)[0] == 401
    assert "ganeti_cluster_node_count" in rapi_lab.lab.run(
        "node2", "curl", "-sk", f"https://{CLUSTER}:5080/metrics").stdout
    rapi_lab.gnt("gnt-cluster", "modify", "--rapi-anonymous-reads", "no")
    assert rapi_lab.curl("GET", "/2/info", user=None)[0] == 401
    proc = rapi_lab.gnt("gnt-cluster", "modify", "--rapi-anonymous-reads", "maybe", check=False)
    assert proc.returncode == 1 and proc.stderr.strip().endswith(
        "invalid value 'maybe' for --rapi-anonymous-reads: expected yes or no")


def test_modify_instance_adds_and_removes_nics_and_disks(rapi_lab: RapiLab) -> None:
    # stopped: what a guest sees of a hotplug is tests/lab/test_modify_devices.py's part
    assert rapi_lab.run_job("ShutdownInstance", INSTANCE, timeout=0)["status"] == "success"
    # Ganeti's client sends its keyword arguments as the body: both list forms
    done = rapi_lab.run_job("ModifyInstance", INSTANCE, hotplug=True,
                            nics=[["add", {"link": "br0", "name": "second"}]],
                            disks=[["add", -1, {"size": 32, "name": "scratch"}]])
    assert done["status"] == "success", done
    inst = rapi_lab.ok("GetInstance", INSTANCE)
    assert inst["disk.sizes"] == [64, 32] and len(inst["nic.macs"]) == 2
    assert inst["nic.names"][1] == "second" and inst["disk.names"][1] == "scratch"
    done = rapi_lab.run_job("ModifyInstance", INSTANCE, hotplug=True,
                            nics=[["remove", "second", {}]], disks=[["remove", {}]])
    assert done["status"] == "success", done
    inst = rapi_lab.ok("GetInstance", INSTANCE)
    assert inst["disk.sizes"] == [64] and len(inst["nic.macs"]) == 1
    bad = rapi_lab.run_job("ModifyInstance", INSTANCE, disks=[["grow", 0, {}]])
    assert bad["status"] == "error" and any("invalid disk action 'grow'" in m
                                            for m in bad["log"]), bad
    assert rapi_lab.run_job("StartupInstance", INSTANCE)["status"] == "success"


def test_remove_instance(rapi_lab: RapiLab) -> None:
    assert rapi_lab.run_job("DeleteInstance", INSTANCE, shutdown_timeout=0)["status"] == \
        "success"
    answer = rapi_lab.client(("GetInstance", [INSTANCE], {}))[0]
    assert answer["code"] == 404
    assert rapi_lab.ok("GetInstances", bulk=True) == []


def test_every_job_has_one_audit_line_naming_who_and_from_where(rapi_lab: RapiLab) -> None:
    rapi_lab.gnt("gnt-cluster", "verify", check=False)  # one job from the CLI
    jobs = {int(line.split()[0]): line.split()[1] for line in rapi_lab.gnt(
        "gnt-job", "list", "--no-headers", "-o", "id,status").stdout.splitlines()}
    audit_file = rapi_lab.lab.node("node1").paths.daemon_log("audit")
    lines: dict[int, list[str]] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the CLI's last job ends a moment before its line
        lines = {}
        for line in audit_file.read_text().splitlines():
            job_id = int(line.split(" job ", 1)[1].split()[0])
            lines.setdefault(job_id, []).append(line)
        if set(jobs) <= set(lines):
            break
        time.sleep(0.2)
    assert set(lines) == set(jobs), (sorted(jobs), sorted(lines))
    for job_id, status in jobs.items():
        assert len(lines[job_id]) == 1 and f" job {job_id} {status} " in lines[job_id][0]
    by_rapi = [ln[0] for ln in lines.values() if "via=rapi" in ln[0]]
    assert by_rapi and all("user=admin " in ln and "from=" in ln for ln in by_rapi), by_rapi
    assert any("INSTANCE_REMOVE(web1.example.com) by via=rapi user=admin" in ln
               for ln in by_rapi)
    verify = lines[max(jobs)][0]
    assert "CLUSTER_VERIFY by via=cli user=root uid=0 pid=" in verify, verify
    listed = rapi_lab.gnt("gnt-job", "list", "--no-headers", "-o", "id,origin").stdout
    assert f"{max(jobs)} via=cli user=root uid=0" in " ".join(listed.split())
    info = rapi_lab.gnt("gnt-job", "info", str(max(jobs))).stdout
    assert "Origin: via=cli user=root uid=0" in info


def test_the_shipped_logrotate_snippet_rotates_without_losing_a_line(
        rapi_lab: RapiLab) -> None:
    paths = rapi_lab.lab.node("node1").paths
    snippet = (Path(__file__).parents[2] / "packaging/logrotate.d/herd").read_text()
    postrotate = snippet.split("postrotate", 1)[1].split("endscript", 1)[0]
    before = paths.daemon_log("audit").read_text().splitlines()
    for name in ("audit", "masterd", "noded", "rapi"):
        os.rename(paths.daemon_log(name), paths.daemon_log(name).with_suffix(".log.1"))
    subprocess.run(["sh", "-c", postrotate.replace("/var/run/herd", str(paths.run_dir))],
                   check=True)
    for name in ("masterd", "noded", "rapi"):  # each daemon made its file anew
        wait_until(f"{name}.log reopened", lambda n=name: paths.daemon_log(n).exists(), 30)
    rapi_lab.gnt("gnt-cluster", "verify", check=False)
    rotated = paths.daemon_log("audit").with_suffix(".log.1").read_text().splitlines()
    wait_until("the new job's audit line in the new audit.log",
               lambda: paths.daemon_log("audit").exists()
               and "CLUSTER_VERIFY" in paths.daemon_log("audit").read_text(), 30)
    assert rotated[:len(before)] == before
    assert "CLUSTER_VERIFY" not in "".join(rotated[len(before):])  # written after the HUP


def test_networks_through_ganetis_client(rapi_lab: RapiLab) -> None:
    """Ganeti's client creates, connects, reads, modifies, tags and removes a network, and
    an instance takes its address from the pool (fake hypervisor, not started)."""
    def job(method: str, *args: Any, **kwargs: Any) -> None:
        done = rapi_lab.run_job(method, *args, **kwargs)
        assert done["status"] == "success", done

    job("CreateNetwork", "lan", "203.0.113.0/28", gateway="203.0.113.1",
        add_reserved_ips="203.0.113.2", tags="a,b")
    job("ConnectNetwork", "lan", "default", "bridged", "br-lan", vlan="")
    assert rapi_lab.ok("GetNetworks") == ["lan"]
    job("CreateInstance", "create", "net1.example.com", "diskless", [],
        [{"network": "lan", "ip": "pool"}], pnode="node2.example.com", name_check=False,
        ip_check=False, no_install=True, start=False, hypervisor="fake")
    (inst,) = [r for r in rapi_lab.ok("GetInstances", bulk=True)
               if r["name"] == "net1.example.com"]
    assert inst["nic.ips"] == ["203.0.113.3"] and inst["nic.links"] == ["br-lan"]
    assert inst["nic.networks.names"] == ["lan"]
    (net,) = rapi_lab.ok("GetNetworks", bulk=True)
    assert (net["free_count"], net["reserved_count"]) == (11, 5)
    assert net["group_list"] == [["default", "bridged", "br-lan", ""]]
    assert net["inst_list"] == ["net1.example.com"] and net["tags"] == ["a", "b"]
    job("ModifyNetwork", "lan", remove_reserved_ips=["203.0.113.2"])
    job("AddNetworkTags", "lan", ["c"])
    assert rapi_lab.ok("GetNetworkTags", "lan") == ["a", "b", "c"]
    refused = rapi_lab.run_job("DisconnectNetwork", "lan", "default")
    assert refused["status"] == "error"
    job("DeleteInstance", "net1.example.com")
    assert rapi_lab.ok("GetNetwork", "lan")["free_count"] == 13
    job("DisconnectNetwork", "lan", "default")
    job("DeleteNetwork", "lan")
    assert rapi_lab.ok("GetNetworks") == []


def test_rapi_moves_with_the_master_role(rapi_lab: RapiLab) -> None:
    node1 = rapi_lab.lab.node("node1").paths
    old_pid = read_pid(node1.pid_file("rapi"))
    assert pid_alive(old_pid)
    rapi_lab.write_users(node1.rapi_users_file.read_text(), node="node2")
    rapi_lab.gnt("gnt-cluster", "master-failover", node="node2")
    deadline = time.monotonic() + 30
    while pid_alive(old_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(old_pid), "the old master's herd-rapi still runs"
    wait_rapi(rapi_lab, node="node1")
    assert rapi_lab.ok("GetInfo")["master"] == "node2.example.com"
    assert pid_alive(read_pid(rapi_lab.lab.node("node2").paths.pid_file("rapi")))
