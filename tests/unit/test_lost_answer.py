"""A lost answer is not a failure: the rules (herd.rpc.outcome) and the client's second look.

The client is exercised with httpx's in-process transport standing in for the network: the
first request breaks as a killed noded breaks it, the following ones answer as noded would.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from herd import errors
from herd.rpc import client as rpc_client
from herd.rpc import outcome
from herd.rpc.client import RPC_FEEDBACK, NodeClient, OutcomeUnknown

START = {"spec": {"name": "inst1"}, "paused": False}
RUNNING = {"name": "inst1", "state": "running", "pid": 4242}


# -- the pure rules --------------------------------------------------------------------------
def test_only_instance_operations_with_visible_outcome_are_confirmed() -> None:
    assert outcome.side_effect("instance_start", START).observe == "instance_info"
    assert outcome.side_effect("instance_stop", {"name": "i"}).verb == "stop"
    assert outcome.side_effect("instance_reboot", {"name": "i", "reboot_type": "hard"}) \
        .verb == "hard reboot"
    assert outcome.side_effect("instance_migrate", {"name": "i"}).observe == \
        "instance_runstate"
    for method in ("disks_create", "os_run", "instance_info", "config_upload", "run_command"):
        assert outcome.side_effect(method, {}) is None


@pytest.mark.parametrize(("method", "args", "observed", "kind"), [
    ("instance_start", START, RUNNING, outcome.DONE),
    ("instance_start", START, None, outcome.NOT_DONE),
    ("instance_start", START, {**RUNNING, "state": "paused"}, outcome.NOT_DONE),
    ("instance_start", {**START, "paused": True}, {**RUNNING, "state": "paused"},
     outcome.DONE),
    ("instance_stop", {"name": "inst1", "stop_timeout": 0}, None, outcome.DONE),
    ("instance_stop", {"name": "inst1", "stop_timeout": 0}, RUNNING, outcome.NOT_DONE),
    ("instance_stop", {"name": "inst1", "stop_timeout": 60}, RUNNING, outcome.PENDING),
    ("instance_reboot", {"name": "inst1"}, RUNNING, outcome.DONE),
    ("instance_reboot", {"name": "inst1"}, None, outcome.NOT_DONE),
    ("instance_migrate", {"name": "inst1"}, {"state": "postmigrate",
                                             "migration_status": "completed"}, outcome.DONE),
    ("instance_migrate", {"name": "inst1"}, {"state": "running",
                                             "migration_status": "active"}, outcome.PENDING),
    ("instance_migrate", {"name": "inst1"}, {"state": "running",
                                             "migration_status": "failed"}, outcome.NOT_DONE),
    ("instance_migrate", {"name": "inst1"}, {"state": "running",
                                             "migration_status": None}, outcome.NOT_DONE),
    ("instance_migrate", {"name": "inst1"}, None, outcome.UNKNOWN),
])
def test_judge(method: str, args: dict[str, Any], observed: dict[str, Any] | None,
               kind: str) -> None:
    verdict = outcome.judge(method, args, observed)
    assert verdict.kind == kind
    assert verdict.detail


def test_rebuilt_results_carry_what_callers_read() -> None:
    assert outcome.result_for("instance_start", START, RUNNING) == RUNNING
    stats = outcome.result_for("instance_migrate", {"name": "i", "live": True}, {})
    assert stats["live"] is True and stats["answer_lost"] is True
    assert outcome.result_for("instance_stop", {"name": "i"}, None) is None


# -- the client ------------------------------------------------------------------------------
class Node:
    """Answers like noded: the first ``lost`` requests break, ``down`` more find no
    daemon, then it answers ``instance_info`` with ``observed``."""

    def __init__(self, observed: dict[str, Any] | None, *, lost: int = 1, down: int = 0,
                 error: type[httpx.TransportError] = httpx.RemoteProtocolError) -> None:
        self.observed, self.lost, self.down, self.error = observed, lost, down, error
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        method = request.url.path.rsplit("/", 1)[-1]
        self.calls.append(method)
        if self.lost:
            self.lost -= 1
            raise self.error("Server disconnected without sending a response.")
        if self.down:
            self.down -= 1
            raise httpx.ConnectError("[Errno 111] Connection refused")
        body = json.loads(request.content)
        assert body == {"name": "inst1"}
        return httpx.Response(200, json={"ok": True, "result": self.observed})


def run_client(node: Node, method: str, args: dict[str, Any],
               wait: float = 5.0) -> tuple[Any, list[str]]:
    notes: list[str] = []

    async def main() -> Any:
        RPC_FEEDBACK.set(notes.append)
        async with httpx.AsyncClient(transport=httpx.MockTransport(node)) as http:
            return await NodeClient(http, "node1", "192.0.2.1", 1811).call(method, **args)

    old = rpc_client.LOST_ANSWER_WAIT, rpc_client.LOST_ANSWER_POLL
    rpc_client.LOST_ANSWER_WAIT, rpc_client.LOST_ANSWER_POLL = wait, 0.01
    try:
        return asyncio.run(main()), notes
    finally:
        rpc_client.LOST_ANSWER_WAIT, rpc_client.LOST_ANSWER_POLL = old


def test_start_whose_answer_was_lost_succeeds_when_the_guest_runs() -> None:
    node = Node(RUNNING, down=3)
    result, notes = run_client(node, "instance_start", START)
    assert result == RUNNING
    assert node.calls == ["instance_start"] + ["instance_info"] * 4
    assert "answer of node node1 to the start of inst1 was lost" in notes[0]
    assert "RemoteProtocolError" in notes[0]
    assert "confirmed by asking node node1 again: the instance is running there (QEMU pid " \
           "4242); the start of inst1 happened" in notes[1]


def test_start_that_did_not_happen_fails_saying_so() -> None:
    with pytest.raises(errors.RpcError) as info:
        run_client(Node(None, error=httpx.ReadError), "instance_start", START)
    assert not isinstance(info.value, OutcomeUnknown)
    assert "the node says the instance does not run there: the start of inst1 did not " \
           "happen" in info.value.message


def test_node_that_stays_away_makes_the_outcome_unknown() -> None:
    node = Node(RUNNING, down=10_000)
    with pytest.raises(OutcomeUnknown) as info:
        run_client(node, "instance_start", START, wait=0.3)
    message = info.value.message
    assert "\n" not in message
    assert message.startswith("outcome unknown: the answer of node node1 to the start of "
                              "inst1 was lost")
    assert "has not answered for 0.3 s" in message
    assert "herd-daemon-util start noded" in message and "gnt-instance list inst1" in message


def test_stop_still_running_after_the_wait_fails() -> None:
    with pytest.raises(errors.RpcError) as info:
        run_client(Node(RUNNING), "instance_stop", {"name": "inst1", "stop_timeout": 30},
                   wait=0.2)
    assert "still runs there (it may be shutting down)" in info.value.message


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout])
def test_request_that_never_reached_the_node_fails_at_once(
        error: type[httpx.TransportError]) -> None:
    """No connection, no side effect: a crashed node is not waited for (failover from a dead
    primary sends it a stop, which must fail within the connect timeout, not after 30 s)."""
    node = Node(RUNNING, error=error)
    with pytest.raises(errors.RpcError) as info:
        run_client(node, "instance_stop", {"name": "inst1", "stop_timeout": 0}, wait=30)
    assert not isinstance(info.value, OutcomeUnknown)
    assert "unreachable for 'instance_stop'" in info.value.message
    assert node.calls == ["instance_stop"]


def test_rpc_without_side_effect_fails_at_once_as_before() -> None:
    node = Node(RUNNING)
    with pytest.raises(errors.RpcError) as info:
        run_client(node, "instance_info", {"name": "inst1"})
    assert "unreachable for 'instance_info'" in info.value.message
    assert node.calls == ["instance_info"]
