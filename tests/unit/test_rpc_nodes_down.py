"""Within one opcode a node that did not accept a connection is not waited for again
(herd.rpc.client.NODES_DOWN / DOWN_MEMORY): a failover from a dead primary paid 3 s for the
ping, the pre hooks and the post hooks each."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from herd import errors
from herd.rpc import client as rpc_client
from herd.rpc.client import NODES_DOWN, NodeClient


def node_client(tries: list[str]) -> NodeClient:
    def handler(request: httpx.Request) -> httpx.Response:
        tries.append(request.url.path)
        raise httpx.ConnectTimeout("timed out", request=request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return NodeClient(http, "node2.example.com", "192.0.2.2", 1811)


def test_a_node_that_did_not_accept_a_connection_is_not_tried_again_in_the_opcode() -> None:
    tries: list[str] = []

    async def opcode() -> list[str]:
        NODES_DOWN.set({})
        client = node_client(tries)
        messages = []
        for _ in range(3):
            with pytest.raises(errors.RpcError) as info:
                await client.ping()
            messages.append(info.value.message)
        return messages

    messages = asyncio.run(opcode())
    assert tries == ["/rpc/ping"]
    assert "ConnectTimeout" in messages[0]
    assert "did not accept a connection 0 s ago (not tried again)" in messages[2]


def test_outside_an_opcode_and_after_the_memory_every_call_tries(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tries: list[str] = []

    async def calls() -> None:
        client = node_client(tries)
        for _ in range(2):
            with pytest.raises(errors.RpcError):
                await client.ping()

    asyncio.run(calls())  # no opcode: NODES_DOWN unset
    assert len(tries) == 2
    monkeypatch.setattr(rpc_client, "DOWN_MEMORY", 0.0)
    tries.clear()

    async def opcode() -> None:
        NODES_DOWN.set({})
        await calls()

    asyncio.run(opcode())
    assert len(tries) == 2
