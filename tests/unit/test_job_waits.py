"""How often a CLI waiting for a job is woken (issue 17: a job's latency while other clients
keep the master busy): with ``until_final`` only log entries and the end of the job end a
wait, and the end brings the job's record, so a trivial job costs one wake-up, not four."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from herd.jobs import states
from tests.harness import InProcessCluster, scratch_root

DELAY = {"OP_ID": "OP_TEST_DELAY", "duration": 0, "on_master": True, "on_nodes": [],
         "repeat": 0}


@pytest.fixture()
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessCluster]:
    with scratch_root(tmp_path_factory.mktemp("waits")) as root, \
            InProcessCluster(root, nodes=1) as c:
        yield c


def _follow(cluster: InProcessCluster, until_final: bool) -> tuple[list[Any], dict[str, Any]]:
    async def follow() -> tuple[list[Any], dict[str, Any]]:
        job_id = cluster.submit(DELAY)
        status, serial, answers = None, 0, []
        while True:
            change = await cluster.executor.wait_for_change(job_id, status, serial, 10,
                                                            until_final)
            assert change is not None
            answers.append(change["status"])
            serial = max([serial, *(e[0] for e in change["log"])])
            status = change["status"]
            if status in states.FINAL_STATES:
                return answers, change
    return cluster.wait(follow())


def test_until_final_wakes_the_waiter_once_with_the_job(cluster: InProcessCluster) -> None:
    every, last = _follow(cluster, until_final=False)
    assert every[-1] == "success" and len(every) > 1 and "job" not in last
    once, last = _follow(cluster, until_final=True)
    assert once == ["success"]
    job = last["job"]
    assert job["status"] == "success" and job == cluster.queue.get(job["id"]).to_dict()


def test_the_cli_asks_an_older_masterd_as_before() -> None:
    from herd import errors
    from herd.cli.common import wait_for_job

    class OldMaster:
        def __init__(self) -> None:
            self.calls: list[tuple[str, dict[str, Any]]] = []

        def call(self, method: str, **args: Any) -> Any:
            self.calls.append((method, args))
            if method == "query_jobs":
                return [{"id": 7, "status": "success"}]
            if "until_final" in args:
                raise errors.ParameterError("bad request: h_wait_for_job_change() got an "
                                            "unexpected keyword argument 'until_final'")
            return {"status": "success", "log": [[1, 0, 0.0, "message", "done"]]}

    master = OldMaster()
    seen: list[Any] = []
    job = wait_for_job(master, 7, feedback=seen.append)  # type: ignore[arg-type]
    assert job == {"id": 7, "status": "success"} and seen == [[1, 0, 0.0, "message", "done"]]
    assert [m for m, _ in master.calls] == ["wait_for_job_change", "wait_for_job_change",
                                           "query_jobs"]
