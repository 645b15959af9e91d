"""Opcodes: Ganeti's JSON form (OP_ID and field names), validation and summaries."""

from __future__ import annotations

import json
from typing import Any

import pytest

from herd.errors import ParameterError
from herd.opcodes import (
    OpClusterVerify,
    OpInstanceCreate,
    OpInstanceStartup,
    OpTestDelay,
    opcode_from_dict,
)


def test_round_trip_keeps_op_id_and_field_names() -> None:
    data = {"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "web1.example.com",
            "force": True, "beparams": {"maxmem": 512}, "dry_run": False}
    op = opcode_from_dict(data)
    assert isinstance(op, OpInstanceStartup)
    assert op.instance_name == "web1.example.com" and op.force is True
    out = op.to_dict()
    assert out["OP_ID"] == "OP_INSTANCE_STARTUP"
    for key, value in data.items():
        assert out[key] == value
    # Ganeti's common opcode fields are present too
    for key in ("dry_run", "debug_level", "priority", "depends", "comment", "reason"):
        assert key in out
    again = opcode_from_dict(json.loads(json.dumps(out)))
    assert again == op
    assert again.to_dict() == out


@pytest.mark.parametrize(("op_id", "cls", "fields"), [
    ("OP_TEST_DELAY", OpTestDelay, {"duration": 1.5, "repeat": 2, "fail": False}),
    ("OP_CLUSTER_VERIFY", OpClusterVerify, {"skip_checks": ["nplusone_mem"]}),
    ("OP_INSTANCE_CREATE", OpInstanceCreate,
     {"instance_name": "web1", "disk_template": "file", "disks": [{"size": 1024}],
      "nics": [{"mode": "routed"}], "os_type": "debootstrap+default", "pnode": "node1",
      "beparams": {"memory": 512}, "hvparams": {}}),
])
def test_known_op_ids(op_id: str, cls: type, fields: dict[str, Any]) -> None:
    op = opcode_from_dict({"OP_ID": op_id, **fields})
    assert type(op) is cls
    assert op_id == op.OP_ID
    out = op.to_dict()
    assert {k: out[k] for k in fields} == fields


def test_to_dict_does_not_share_mutable_state() -> None:
    op = opcode_from_dict({"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "a",
                           "beparams": {"vcpus": 1}})
    out = op.to_dict()
    out["beparams"]["vcpus"] = 8
    assert op.beparams == {"vcpus": 1}


def test_summary() -> None:
    op = opcode_from_dict({"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "web1"})
    assert op.summary() == "INSTANCE_STARTUP(web1)"
    op = opcode_from_dict({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "db1",
                           "disk_template": "diskless"})
    assert op.summary() == "INSTANCE_CREATE(db1)"
    assert OpTestDelay(duration=1).summary() == "TEST_DELAY"
    assert OpClusterVerify().summary() == "CLUSTER_VERIFY"


def test_missing_required_field_is_named() -> None:
    with pytest.raises(ParameterError) as err:
        opcode_from_dict({"OP_ID": "OP_INSTANCE_STARTUP"})
    assert err.value.message == "OP_INSTANCE_STARTUP requires parameter(s): instance_name"
    with pytest.raises(ParameterError) as err:
        opcode_from_dict({"OP_ID": "OP_INSTANCE_CREATE"})
    assert "instance_name" in err.value.message and "disk_template" in err.value.message


def test_unknown_field_is_named_with_known_ones() -> None:
    with pytest.raises(ParameterError) as err:
        opcode_from_dict({"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "a", "forse": True})
    message = err.value.message
    assert message.startswith("unknown parameter 'forse' for OP_INSTANCE_STARTUP; known: ")
    assert "force" in message and "\n" not in message


def test_unknown_op_id() -> None:
    with pytest.raises(ParameterError) as err:
        opcode_from_dict({"OP_ID": "OP_INSTANCE_EXPLODE"})
    assert "unknown opcode 'OP_INSTANCE_EXPLODE'" in err.value.message
    assert "OP_INSTANCE_STARTUP" in err.value.message
    with pytest.raises(ParameterError):
        opcode_from_dict(["OP_TEST_DELAY"])  # type: ignore[arg-type]


@pytest.mark.parametrize(("data", "fragment"), [
    ({"OP_ID": "OP_TEST_DELAY", "duration": "1"}, "parameter 'duration' of OP_TEST_DELAY"),
    ({"OP_ID": "OP_TEST_DELAY", "duration": True}, "parameter 'duration'"),
    ({"OP_ID": "OP_TEST_DELAY", "duration": 1, "repeat": 1.5}, "parameter 'repeat'"),
    ({"OP_ID": "OP_TEST_DELAY", "duration": 1, "fail": "yes"}, "parameter 'fail'"),
    ({"OP_ID": "OP_TEST_DELAY", "duration": 1, "on_nodes": ["a", 1]}, "parameter 'on_nodes'"),
    ({"OP_ID": "OP_TEST_DELAY", "duration": 1, "priority": True}, "parameter 'priority'"),
    ({"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": None}, "parameter 'instance_name'"),
    ({"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "a", "beparams": []},
     "expected a mapping"),
])
def test_wrong_types_are_rejected(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ParameterError) as err:
        opcode_from_dict(data)
    assert fragment in err.value.message


def test_optional_fields_accept_null_and_int_for_float() -> None:
    op = opcode_from_dict({"OP_ID": "OP_CLUSTER_VERIFY", "group_name": None})
    assert op.group_name is None  # type: ignore[attr-defined]
    op = opcode_from_dict({"OP_ID": "OP_TEST_DELAY", "duration": 2})
    assert op.duration == 2.0 and isinstance(op.duration, float)  # type: ignore[attr-defined]


def test_priority_outside_ganetis_range_is_refused_naming_it() -> None:
    """A fuzzed RAPI body with priority 2**70 reached SQLite and answered 500; Ganeti allows
    -20..19 and so does the queue."""
    import pytest

    from herd.errors import ParameterError
    from herd.opcodes.base import _REGISTRY, OpCode

    cls: type[OpCode] = _REGISTRY["OP_CLUSTER_QUERY"] if "OP_CLUSTER_QUERY" in _REGISTRY \
        else next(iter(_REGISTRY.values()))
    for bad in (2**70, -21, 20):
        with pytest.raises(ParameterError, match=f"invalid priority {bad} .*-20.*19"):
            cls.from_dict({"priority": bad})
    assert cls.from_dict({"priority": -20}).priority == -20
