"""RAPI /2/networks on an in-process cluster: the request bodies Ganeti's Python client
sends (``ganeti.rapi.client`` 3.0: CreateNetwork, ConnectNetwork, ModifyNetwork,
DisconnectNetwork, DeleteNetwork, the tags calls) run as real jobs, and the answers carry
Ganeti's fields. The lab test in tests/rapi/test_rapi_lab.py runs Ganeti's client itself."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from herd.logic import query, querydata
from herd.logic.network import query_networks
from herd.paths import HerdPaths
from herd.rapi.app import RapiApp
from herd.rapi.resources.networks import N_FIELDS
from tests.harness import InProcessCluster, scratch_root

AUTH = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}


class AsyncBridge:
    """masterd's answers to RAPI's calls, from the harness cluster (same event loop)."""

    def __init__(self, cluster: InProcessCluster) -> None:
        self.c = cluster

    async def call(self, method: str, _timeout: float | None = None, **args: Any) -> Any:
        c = self.c
        if method == "submit_job":
            return c.submit(*args["ops"])
        if method == "query_networks":  # as masterd: only the fields asked for
            return query_networks(c.config, args.get("names"), args.get("fields"))
        if method == "query_groups":
            return querydata.query_groups(c.ctx, args.get("names"), args.get("fields"))
        if method == "query_tags":
            return querydata.query_tags(c.ctx, args["kind"], args.get("name"))
        if method == "query_cluster":
            return query.cluster_info(c.ctx)
        raise AssertionError(f"unexpected masterd call {method}")

    def close(self) -> None:
        pass


@pytest.fixture
def rapi(tmp_path: Path) -> Iterator[tuple[InProcessCluster, Any]]:
    with scratch_root(tmp_path) as root, InProcessCluster(root, nodes=2) as cluster:
        paths = HerdPaths(tmp_path / "rapi")
        paths.rapi_users_file.parent.mkdir(parents=True)
        paths.rapi_users_file.write_text("admin {cleartext}pw write\n")
        app = RapiApp(paths)
        app.master = AsyncBridge(cluster)  # type: ignore[assignment]

        def request(method: str, path: str, body: Any = None,
                    params: dict[str, Any] | None = None) -> tuple[int, Any]:
            async def send() -> tuple[int, Any]:
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport,
                                             base_url="https://rapi") as client:
                    answer = await client.request(method, path, json=body, params=params,
                                                  headers=AUTH)
                return answer.status_code, answer.json()

            return cluster.wait(send())

        yield cluster, request


def job(cluster: InProcessCluster, answer: tuple[int, Any]) -> None:
    status, job_id = answer
    assert status == 200 and isinstance(job_id, int), answer
    outcome = cluster.wait(cluster.finish(job_id))
    assert outcome.status == "success", (outcome.error, outcome.log)


def test_ganeti_client_bodies(rapi: tuple[InProcessCluster, Any]) -> None:
    cluster, request = rapi
    # CreateNetwork("lan", "10.7.0.0/24", gateway="10.7.0.1", add_reserved_ips="10.7.0.5",
    # tags="x,y") sends:
    job(cluster, request("POST", "/2/networks", {
        "network_name": "lan", "gateway": "10.7.0.1", "network": "10.7.0.0/24",
        "gateway6": None, "network6": None, "mac_prefix": None,
        "add_reserved_ips": ["10.7.0.5"], "tags": ["x", "y"]}))
    # CreateNetwork with a pool outside /16-/30: the job fails naming the value
    status, job_id = request("POST", "/2/networks", {"network_name": "big",
                                                     "network": "10.0.0.0/8"})
    outcome = cluster.wait(cluster.finish(job_id))
    assert outcome.status == "error" and "'10.0.0.0/8'" in outcome.error[1]
    # ConnectNetwork("lan", "default", "bridged", "br0", vlan="") sends:
    job(cluster, request("PUT", "/2/networks/lan/connect", {
        "group_name": "default", "network_mode": "bridged", "network_link": "br0",
        "network_vlan": ""}))
    # ModifyNetwork("lan", add_reserved_ips=["10.7.0.6"]) sends its kwargs as the body
    job(cluster, request("PUT", "/2/networks/lan/modify", {"add_reserved_ips": ["10.7.0.6"]}))
    assert request("GET", "/2/networks") == (200, [{"name": "lan", "uri": "/2/networks/lan"}])
    status, bulk = request("GET", "/2/networks", params={"bulk": 1})
    assert status == 200 and set(bulk[0]) == set(N_FIELDS)
    got = bulk[0]
    assert (got["free_count"], got["reserved_count"]) == (256 - 5, 5)
    assert got["group_list"] == [["default", "bridged", "br0", ""]]
    assert got["external_reservations"] == "10.7.0.0, 10.7.0.1, 10.7.0.5, 10.7.0.6, 10.7.0.255"
    assert request("GET", "/2/networks/lan")[1] == got
    # Ganeti's query2 over RAPI, from the one field registry (herd.fields.NETWORK)
    status, answer = request("GET", "/2/query/network",
                             params={"fields": "name,free_count,inst_cnt,bogus"})
    assert status == 200 and answer["data"] == [[[0, "lan"], [0, 251], [0, 0], [1, None]]]
    assert [f["title"] for f in answer["fields"]] == ["Network", "FreeCount", "Instances",
                                                       "bogus"]
    status, defs = request("GET", "/2/query/network/fields", params={"fields": "map"})
    assert defs == {"fields": [{"name": "map", "title": "Map", "kind": "text",
                                "doc": "Actual mapping"}]}
    assert request("GET", "/2/networks/nope")[0] == 404
    assert request("PUT", "/2/networks/nope/modify", {"gateway": "none"})[0] == 404
    # AddNetworkTags / GetNetworkTags / DeleteNetworkTags
    job(cluster, request("PUT", "/2/networks/lan/tags", params={"tag": ["z"]}))
    assert request("GET", "/2/networks/lan/tags") == (200, ["x", "y", "z"])
    job(cluster, request("DELETE", "/2/networks/lan/tags", params={"tag": ["x"]}))
    status, bad = request("PUT", "/2/networks/lan/connect", {"group_name": "default",
                                                             "network_mode": "bridged",
                                                             "bogus": 1})
    assert status == 400 and "bogus" in bad["explain"], bad
    job(cluster, request("PUT", "/2/networks/lan/rename", {"new_name": "lan2"}))
    # DisconnectNetwork("lan2", "default"), then DeleteNetwork("lan2")
    job(cluster, request("PUT", "/2/networks/lan2/disconnect", {"group_name": "default"}))
    job(cluster, request("DELETE", "/2/networks/lan2"))
    assert request("GET", "/2/networks", params={"bulk": 1}) == (200, [])
