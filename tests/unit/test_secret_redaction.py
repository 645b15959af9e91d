"""Secret opcode fields (the join token): never stored, shown or logged; the logical unit still
gets the value, from masterd's memory; after a masterd restart the job fails clearly.

The middle test runs masterd's real request handlers on a unix socket in this process, and the
real clients against it: ``gnt-job info`` and RAPI (a read-only user) read the job back.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from herd.cli import gnt_job
from herd.cli.client import MasterClient
from herd.cli.common import wait_for_job
from herd.config.facts import write_facts
from herd.config.store import ConfigStore
from herd.daemons.masterd import MasterDaemon
from herd.errors import ParameterError, RpcError
from herd.jobs import queue as q
from herd.jobs.executor import SECRET_LOST_MESSAGE, JobExecutor
from herd.objects import Cluster, ConfigData, Node, NodeGroup
from herd.opcodes import OpNodeAdd, opcode_from_dict
from herd.opcodes.base import REDACTED
from herd.paths import HerdPaths
from herd.rapi.app import RapiApp
from herd.rpc import certs, join, tls
from tests.unit.test_jobs import make_context

SECRET = "0123456789abcdef0123456789abcdef"
PIN = "fedcba9876543210fedcba9876543210"
TOKEN = f"{SECRET}:{PIN}"


def node_add(**extra: Any) -> dict[str, Any]:
    return {"OP_ID": "OP_NODE_ADD", "node_name": "node9.example.com",
            "primary_ip": "192.0.2.9", "join_token": TOKEN, **extra}


# -- the opcode ---------------------------------------------------------------------------------
def test_secret_field_is_redacted_wherever_the_opcode_is_written() -> None:
    op = opcode_from_dict(node_add())
    assert isinstance(op, OpNodeAdd) and op.join_token == TOKEN  # in memory: the real value
    assert OpNodeAdd.secret_fields() == ("join_token",)
    assert op.to_dict()["join_token"] == REDACTED
    assert SECRET not in str(op.to_dict()) and SECRET not in repr(op)
    assert op.secrets() == {"join_token": TOKEN}
    stored = opcode_from_dict(op.to_dict())  # as the executor reads it back from the queue
    assert stored.missing_secrets() == ["join_token"]
    assert stored.restore_secrets({"join_token": TOKEN}) == []
    assert stored.join_token == TOKEN
    # no token given: nothing to redact, nothing to keep
    plain = opcode_from_dict(node_add(join_token=None))
    assert plain.to_dict()["join_token"] is None and plain.secrets() == {}


def test_a_badly_typed_secret_is_not_echoed() -> None:
    with pytest.raises(ParameterError) as err:
        opcode_from_dict(node_add(join_token=[SECRET]))
    assert SECRET not in err.value.message
    assert "parameter 'join_token' of OP_NODE_ADD" in err.value.message


# -- through masterd, gnt-job info and RAPI -----------------------------------------------------
def write_cluster(root: Path) -> HerdPaths:
    p = HerdPaths(root)
    p.ensure()
    group = NodeGroup(name="default")
    # offline: no node RPC is tried (there is no noded here)
    node = Node(name="node1.example.com", primary_ip="192.0.2.1", secondary_ip="192.0.2.1",
                group=group.uuid, offline=True)
    cluster = Cluster(cluster_name="cluster.example.com", master_node=node.uuid)
    data = ConfigData(cluster=cluster, nodegroups={group.uuid: group}, nodes={node.uuid: node})
    ConfigStore.create(p.config_file, data)
    write_facts(p, data)
    ca_cert, ca_key = certs.create_ca("cluster.example.com")
    tls.write_pair(p.ca_cert, p.ca_key, ca_cert, ca_key)
    p.rapi_users_file.write_text("admin {cleartext}pw write\nreader rpw read\n")
    return p


@pytest.fixture
def masterd(tmp_path: Path) -> Iterator[HerdPaths]:
    """masterd's handlers serving its socket from a thread (no master IP, no voting)."""
    p = write_cluster(tmp_path)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[MasterDaemon, asyncio.AbstractServer]:
        daemon = MasterDaemon(p)
        daemon.attach(ConfigStore.load(p.config_file))  # no etcd in a unit test
        server = await asyncio.start_unix_server(daemon.handle_client,
                                                 path=str(p.master_socket))
        return daemon, server

    daemon, server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)

    async def stop() -> None:
        server.close()
        await daemon.executor.shutdown()
        # client connections still open (RAPI's pooled ones): end their handlers
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await daemon.rpc.close()
        daemon.queue.close()

    try:
        yield p
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_token_reaches_the_unit_but_no_store_listing_or_log(
        masterd: HerdPaths, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    given: list[str] = []

    async def join_node(address: str, port: int, token: str, *_args: Any, **_kw: Any) -> None:
        """Where the unit hands the token to the node RPC: note what arrives, then fail as
        an unreachable node does."""
        given.append(token)
        raise RpcError(f"cannot reach node node9.example.com at {address}:{port}")

    monkeypatch.setattr(join, "join_node", join_node)
    with MasterClient(masterd) as client:
        job_id = client.call("submit_job", ops=[node_add()])
        job = wait_for_job(client, job_id, feedback=lambda _entry: None)
    # the unit had the real token (a redacted one would fail its check: "invalid join token")
    assert job["status"] == "error"
    message = job["opresult"][0][1][0]
    assert "cannot reach node node9.example.com" in message, message
    assert given == [TOKEN]
    assert job["ops"][0]["join_token"] == REDACTED

    stored = b"".join(f.read_bytes() for f in q.queue_files(masterd.queue_db) if f.exists())
    assert SECRET.encode() not in stored
    assert SECRET not in caplog.text

    monkeypatch.setenv("HERD_ROOT", str(masterd.root))
    capsys.readouterr()
    assert gnt_job.main(["info", str(job_id)]) == 0
    shown = capsys.readouterr().out
    assert REDACTED in shown and SECRET not in shown

    reader = base64.b64encode(b"reader:rpw").decode()
    for path in (f"/2/jobs/{job_id}", "/2/jobs?bulk=1"):
        # a new app per request: TestClient runs each request on a new event loop, and the
        # app's pooled masterd connections belong to the loop that opened them
        rapi = TestClient(RapiApp(masterd))
        answer = rapi.get(path, headers={"Authorization": f"Basic {reader}"})
        assert answer.status_code == 200, answer.text
        ops = answer.json()["ops"] if "bulk" not in path else answer.json()[0]["ops"]
        assert ops[0]["join_token"] == REDACTED
        assert SECRET not in answer.text


# -- a restart loses the secret: the job fails, nothing is done ---------------------------------
def test_a_queued_job_whose_secret_died_with_masterd_fails_clearly(tmp_path: Path) -> None:
    async def main() -> None:
        ctx = make_context(tmp_path)
        queue = q.JobQueue(ctx.paths.queue_db)
        first = JobExecutor(queue, ctx)
        job_id = first.submit([node_add()])
        await first.shutdown()  # masterd stops before the job ran
        queue.close()
        again = q.JobQueue(ctx.paths.queue_db)
        assert again.get(job_id).status == q.QUEUED
        second = JobExecutor(again, ctx)
        second.recover()  # a queued job runs at start ...
        for _ in range(500):
            if again.get(job_id, with_log=False).status in q.FINAL_STATES:
                break
            await asyncio.sleep(0.01)
        job = again.get(job_id)
        await second.shutdown()
        again.close()
        assert job.status == q.ERROR  # ... and fails without its secret
        assert job.ops[0].result[0] == "OpPrereqError"
        assert job.ops[0].result[1][0] == SECRET_LOST_MESSAGE.format(fields="join_token")
        assert any("run the command again" in entry[4] for entry in job.log)
        assert ctx.config.data.serial_no == 1  # nothing changed

    asyncio.run(main())
