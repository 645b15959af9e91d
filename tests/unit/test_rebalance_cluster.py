"""``gnt-cluster rebalance`` on a deliberately unbalanced 4-node cluster (in-process harness,
fake hypervisor, nodes of different memory and volume group sizes, every mirror on node1 and
node2), against Debian's real hbal reading Herd's RAPI.

hbal's RAPI backend also reads the four answers from files (``hbal -m file://DIR``); the
harness has no RAPI server, so :func:`rapi_files` asks Herd's own RAPI application (its
resources and conversions, served by starlette's test client) for /2/groups?bulk=1,
/2/nodes?bulk=1, /2/instances?bulk=1 and /2/info, with the answers masterd would give,
collected from the harness first. The command runs as an admin runs it (its parser, its
output), through a client that gives it masterd's calls on the harness.

The mirrored instances are stopped: the fake hypervisor finishes a live migration only in
the lab (noded on kvm), so their moves are failovers, as hbal's are for stopped instances.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from herd import errors
from herd.cli import gnt_cluster
from herd.logic import query, querydata, rebalance
from tests.harness import InProcessCluster, create_op, node_name, scratch_root
from tests.rapi_apps import rapi_app
from tests.unit.test_balance import needs_hbal, run_hbal

GIB = 1024
#: MiB of memory and of volume group of node1..node4: node3 and node4 are the big, empty ones
MEMORY = {1: 8192, 2: 8192, 3: 12288, 4: 12288}
VG = {1: 40960, 2: 40960, 3: 61440, 4: 61440}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[InProcessCluster]:
    with scratch_root(tmp_path) as root, InProcessCluster(
            root, nodes=4, disk_templates=("drbd", "plain", "file", "diskless"), vg="xenvg",
            vg_mib={node_name(i): size for i, size in VG.items()}) as c:
        for index, memory in MEMORY.items():
            c.nodes[node_name(index)].service.simulated_size = {
                "memory_total": memory, "memory_node": 512, "cpu_total": 4}
        for k in range(6):
            pair = (node_name(1), node_name(2)) if k % 2 == 0 else (node_name(2), node_name(1))
            outcome = c.run(create_op(f"m{k}.example.com", template="drbd", pnode=pair[0],
                                      snode=pair[1], disks=[{"size": (k + 1) * GIB}],
                                      beparams={"memory": GIB * (1 + k % 3)}))
            assert outcome.status == "success", outcome.log
        # running, but nothing the balancer may move: no second node, or auto_balance off
        for name, extra in (("f0.example.com", {"template": "file", "pnode": node_name(1)}),
                            ("pinned.example.com", {"template": "drbd", "pnode": node_name(1),
                                                    "snode": node_name(2), "beparams": {
                                                        "memory": GIB,
                                                        "auto_balance": False}})):
            extra.setdefault("beparams", {"memory": GIB})
            outcome = c.run(create_op(name, start=True, disks=[{"size": GIB}], **extra))
            assert outcome.status == "success", outcome.log
        yield c


class Recorded:
    """masterd's answers to the RAPI application, gathered on the harness beforehand."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers

    async def call(self, method: str, _timeout: float | None = None, **args: Any) -> Any:
        return self.answers[method]

    def close(self) -> None:
        pass


def rapi_files(cluster: InProcessCluster, directory: Path) -> Path:
    ctx = cluster.ctx
    answers = {"query_nodes": cluster.wait(query.query_nodes(ctx, None, True)),
               "query_instances": cluster.wait(query.query_instances(ctx, None, True)),
               "query_groups": querydata.query_groups(ctx, None),
               "query_cluster": query.cluster_info(ctx)}
    app, _ = rapi_app(directory / "rapi-root", "reader pw read\n", Recorded(answers))
    client = TestClient(app)
    for name, path in (("groups", "/2/groups?bulk=1"), ("nodes", "/2/nodes?bulk=1"),
                       ("instances", "/2/instances?bulk=1"), ("info", "/2/info")):
        answer = client.get(path, auth=("reader", "pw"))
        assert answer.status_code == 200, answer.text
        (directory / f"{name}.json").write_text(json.dumps(answer.json()))
    return directory


class HarnessClient:
    """masterd's calls the command makes, answered as masterd answers them."""

    def __init__(self, cluster: InProcessCluster) -> None:
        self.cluster = cluster
        self.submitted: list[int] = []

    def call(self, method: str, **args: Any) -> Any:
        c = self.cluster
        if method == "plan_rebalance":
            return c.wait(rebalance.plan(c.ctx, **args))
        if method == "submit_many":
            async def submit_many() -> list[list[Any]]:  # masterd's h_submit_many
                out: list[list[Any]] = []
                for ops in args["jobs"]:
                    try:
                        job_id = c.submit(*ops)
                    except errors.HerdError as exc:
                        out.append([False, exc.message])
                    else:
                        self.submitted.append(job_id)
                        out.append([True, job_id])
                return out

            return c.wait(submit_many())
        if method == "wait_for_job_change":
            return c.wait(c.executor.wait_for_change(args["job_id"], args["prev_status"],
                                                     args["prev_serial"], args["timeout"]))
        if method == "query_jobs":
            return [c.queue.get(int(i)).to_dict() for i in args["ids"]]
        raise AssertionError(f"unexpected masterd call {method}")


def rebalance_cmd(cluster: InProcessCluster, *argv: str) -> tuple[int, str, HarnessClient]:
    import contextlib
    import io

    client = HarnessClient(cluster)
    opts = gnt_cluster.build_parser().parse_args(["rebalance", *argv])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = opts.func(opts, client=client)
    return code, out.getvalue(), client


def scores(output: str) -> tuple[float, float]:
    initial = float(re.search(r"initial score ([\d.]+)", output)[1])  # type: ignore[index]
    final = re.search(r"Cluster score improved from [\d.]+ to ([\d.]+)", output)
    return initial, float(final[1]) if final else initial


def verify_errors(cluster: InProcessCluster) -> list[str]:
    outcome = cluster.run({"OP_ID": "OP_CLUSTER_VERIFY"}, timeout=30)
    assert outcome.status == "success", outcome.log
    return [line for line in outcome.log if "ERROR" in line]


@needs_hbal
def test_rebalance_goes_as_far_as_hbal_and_execute_leaves_verify_clean(
        cluster: InProcessCluster, tmp_path: Path) -> None:
    assert verify_errors(cluster) == []
    hbal_initial, hbal_final, hbal_moves = run_hbal(rapi_files(cluster, tmp_path / "before"))
    assert hbal_moves > 0

    code, output, client = rebalance_cmd(cluster)  # a dry run
    assert code == 0 and client.submitted == [], output
    initial, final = scores(output)
    assert f"{initial:.8f}" == f"{hbal_initial:.8f}"  # the same score, to hbal's decimal
    assert final <= hbal_final + 1e-6, output  # and at least as far down
    assert "This was a dry run: --execute submits the moves" in output
    assert "not moved: pinned.example.com: auto_balance is off" in output
    moves = re.findall(r"^\s+\d+\. (\S+) (\S+)\s+=> (\S+)\s+([\d.]+) a=(.*)$", output,
                       re.MULTILINE)
    assert len(moves) > 1 and all(m[0].startswith("m") for m in moves)

    code, output, client = rebalance_cmd(cluster, "--execute")
    assert code == 0, output
    assert f"Done {len(moves)} of {len(moves)} move(s)" in output
    assert re.search(r"batch 1/\d+: jobs \d+", output), output
    assert all(cluster.queue.get(j).status == "success" for j in client.submitted)
    assert verify_errors(cluster) == []
    # hbal, reading the cluster as it now is, finds the score Herd's plan promised
    after, _, _ = run_hbal(rapi_files(cluster, tmp_path / "after"))
    assert after == pytest.approx(final, abs=1e-6) and after < hbal_initial
    for name in ("f0.example.com", "pinned.example.com"):
        inst = cluster.instance(name)
        assert inst is not None and cluster.config.node_name(inst.primary_node) == node_name(1)
    code, output, _ = rebalance_cmd(cluster)
    assert code == 0 and "No move lowers the score" in output


def test_execute_stops_at_the_first_failure_and_says_what_was_done(
        cluster: InProcessCluster) -> None:
    plan = cluster.wait(rebalance.plan(cluster.ctx))[0]
    assert len(plan["batches"]) > 1
    first = plan["moves"][plan["batches"][0][0]]
    target = next(op["remote_node"] for op in first["opcodes"]
                  if op["OP_ID"] == "OP_INSTANCE_REPLACE_DISKS")
    cluster.fail_once(target, "blockdev_create")
    code, output, client = rebalance_cmd(cluster, "--execute")
    assert code == 1
    assert f"Stopped at the first failure: job {client.submitted[0]} {first['instance']}" \
        in output
    assert "injected failure of 'blockdev_create'" in output
    assert f"Done 0 of {len(plan['moves'])} move(s); nothing further was submitted" in output
    assert len(client.submitted) == len(plan["batches"][0])  # no later batch
    inst = cluster.instance(first["instance"])
    assert inst is not None
    assert [cluster.config.node_name(u) for u in inst.all_nodes] == first["old_nodes"]
    assert verify_errors(cluster) == []


def test_bad_options_are_refused(cluster: InProcessCluster) -> None:
    with pytest.raises(errors.ParameterError, match="invalid --max-length 0: a number of "
                                                    "moves >= 1, or -1 for no limit"):
        rebalance_cmd(cluster, "-l", "0")
    with pytest.raises(errors.ParameterError, match="unknown node group 'nosuch' "
                                                    "\\(groups with nodes: default\\)"):
        rebalance_cmd(cluster, "-G", "nosuch")
    code, output, _ = rebalance_cmd(cluster, "-l", "1", "-G", "default")
    assert code == 0 and "in 1 move(s), 1 batch(es)" in output


@pytest.fixture
def masterd_paths(tmp_path: Path) -> Iterator[Any]:
    """masterd's real handlers on its socket (tests.unit.test_secret_redaction's: one
    offline node, no noded)."""
    from tests.unit import test_secret_redaction

    yield from test_secret_redaction.masterd.__wrapped__(tmp_path)  # type: ignore[attr-defined]


def test_the_command_asks_masterd_for_the_plan(masterd_paths: Any) -> None:
    """gnt-cluster rebalance -> masterd's plan_rebalance -> herd.logic.rebalance, through
    the real socket and client: options arrive, errors come back as one line."""
    import contextlib
    import io

    from herd.cli.client import MasterClient

    with MasterClient(masterd_paths) as client:
        (plan,) = client.call("plan_rebalance", group="default", max_length=3)
        assert (plan["group_name"], plan["moves"]) == ("default", [])
        with pytest.raises(errors.ParameterError, match="unknown rebalance option\\(s\\) "
                                                        "colour"):
            client.call("plan_rebalance", colour="red")
        opts = gnt_cluster.build_parser().parse_args(["rebalance", "--execute"])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert opts.func(opts, client=client) == 0
    assert "No move lowers the score" in out.getvalue()
    assert "Done 0 of 0 move(s)" in out.getvalue()
