"""RAPI bodies of Ganeti's MoveInstance and GetNodeStorageUnits, against the in-process stand-in
for masterd of test_rapi_unit (no cluster)."""

from __future__ import annotations

from typing import Any

from tests.rapi.test_rapi_unit import ADMIN, READER, api  # noqa: F401  (the fixture)


def test_move_takes_ganetis_body(api: Any) -> None:  # noqa: F811
    client, master, _ = api
    answer = client.put("/2/instances/i1/move", headers=ADMIN, json={
        "target_node": "n", "shutdown_timeout": 30, "ignore_consistency": True})
    assert answer.status_code == 200, answer.text
    (op,) = master.submitted[-1]
    assert (op["OP_ID"], op["instance_name"], op["target_node"], op["shutdown_timeout"],
            op["ignore_consistency"]) == ("OP_INSTANCE_MOVE", "i1", "n", 30, True)
    answer = client.put("/2/instances/i1/move", headers=ADMIN, json={"target": "n"})
    assert answer.status_code == 400 and "target" in answer.text
    assert client.put("/2/instances/i1/move", headers=READER,
                      json={"target_node": "n"}).status_code == 403


def test_node_storage_units_as_ganetis_client_asks(api: Any) -> None:  # noqa: F811
    client, master, _ = api
    # GanetiRapiClient.GetNodeStorageUnits: GET with storage_type and output_fields
    answer = client.get("/2/nodes/n/storage?storage_type=lvm-vg&output_fields=name,size,free",
                        headers=ADMIN)
    assert answer.status_code == 200, answer.text
    (op,) = master.submitted[-1]
    assert (op["OP_ID"], op["nodes"], op["storage_type"], op["output_fields"]) == (
        "OP_NODE_QUERY_STORAGE", ["n"], "lvm-vg", ["name", "size", "free"])
