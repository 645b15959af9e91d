"""Reads go on to the next etcd member when one is silent (herd.etcd.client.HEDGE_AFTER).

A member cut off from its leader answers a linearizable read only after etcd's request timeout
(~7 s); the client asks the next member after HEDGE_AFTER and takes the first answer. Writes
are never sent twice. The members here are an in-process HTTP transport.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time

import httpx
import pytest

from herd.etcd import client as etcd_client
from herd.etcd.client import EtcdClient, EtcdError

A, B = "https://192.0.2.1:2379", "https://192.0.2.2:2379"
RANGE = {"header": {"revision": "7"}, "kvs": [], "count": "0"}


def make_client(answers: dict[str, tuple[float, int, dict]]) -> tuple[EtcdClient, list[str]]:
    """A client of members A and B; ``answers``: base -> (delay, HTTP status, body)."""
    seen: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        base = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
        seen.append(f"{base} {request.url.path}")
        delay, status, body = answers[base]
        await asyncio.sleep(delay)
        return httpx.Response(status, content=json.dumps(body).encode())

    client = EtcdClient([A, B], ssl.create_default_context())
    client._http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return client, seen


@pytest.fixture(autouse=True)
def short_hedge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(etcd_client, "HEDGE_AFTER", 0.2)


def test_a_silent_member_is_passed_over_after_the_hedge_delay() -> None:
    client, seen = make_client({A: (3.0, 503, {"message": "etcdserver: request timed out"}),
                                B: (0.0, 200, RANGE)})

    async def run() -> float:
        started = time.monotonic()
        await client.range("herd/x")
        took = time.monotonic() - started
        await client.close()
        return took

    assert asyncio.run(run()) < 1.5
    assert seen == [f"{A} /v3/kv/range", f"{B} /v3/kv/range"]
    assert client.endpoints == [B, A]  # the member that answered is asked first from now on


def test_a_members_own_error_is_raised_and_leaderless_ones_go_on() -> None:
    client, seen = make_client({A: (0.0, 400, {"message": "etcdserver: bad key", "code": 3}),
                                B: (0.0, 200, RANGE)})
    with pytest.raises(EtcdError, match="bad key"):
        asyncio.run(client.range("herd/x"))
    assert seen == [f"{A} /v3/kv/range"]
    client, seen = make_client({A: (0.0, 503, {"message": "etcdserver: no leader"}),
                                B: (0.0, 503, {"message": "etcdserver: no leader"})})
    with pytest.raises(EtcdError, match="no leader"):
        asyncio.run(client.range("herd/x"))
    assert len(seen) == 2


def test_a_write_is_never_sent_to_a_second_member() -> None:
    client, seen = make_client({A: (0.6, 200, {"header": {"revision": "8"}}),
                                B: (0.0, 200, {"header": {"revision": "8"}})})
    asyncio.run(client.put("herd/x", "1"))
    assert seen == [f"{A} /v3/kv/put"]
