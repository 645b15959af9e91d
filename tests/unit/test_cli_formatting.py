"""Ganeti's list tables, Herd's --json and the YAML info output."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from herd.cli.formatting import (
    NODATA,
    format_info,
    format_json,
    format_table,
    format_value,
)

FIELDS = ["name", "pnode", "oper_ram", "vcpus", "tags"]
HEADERS = {"name": "Instance", "pnode": "Primary_node", "oper_ram": "Memory",
           "vcpus": "VCPUs", "tags": "Tags"}
ROWS: list[list[Any]] = [
    ["inst1.example.com", "node1", 512, 1, ["a", "b"]],
    ["i2", "node2.example.com", 2048, 12, []],
    ["i3", "node1", None, 2, ["web"]],
]


def table(**kwargs: Any) -> list[str]:
    args: dict[str, Any] = dict(separator=None, header=True, units=None,
                                unit_fields={"oper_ram"}, numeric_fields={"vcpus"})
    args.update(kwargs)
    return format_table(FIELDS, HEADERS, ROWS, **args)


def test_aligned_table_like_ganeti() -> None:
    assert table() == [
        "Instance          Primary_node      Memory VCPUs Tags",
        "inst1.example.com node1               512M     1 a,b",
        "i2                node2.example.com   2.0G    12 ",
        "i3                node1                  -     2 web",
    ]


def test_no_headers() -> None:
    # Widths come from the data only; like Ganeti, an empty last cell leaves the joining blank.
    assert table(header=False) == [
        "inst1.example.com node1             512M  1 a,b",
        "i2                node2.example.com 2.0G 12 ",
        "i3                node1                -  2 web",
    ]


def test_separator_defaults_sizes_to_mib_without_suffix() -> None:
    assert table(separator="|") == [
        "Instance|Primary_node|Memory|VCPUs|Tags",
        "inst1.example.com|node1|512|1|a,b",
        "i2|node2.example.com|2048|12|",
        "i3|node1|-|2|web",
    ]


@pytest.mark.parametrize(("units", "expected"), [
    ("h", ["512M", "2.0G"]), ("m", ["512", "2048"]), ("g", ["0.5", "2.0"]),
    ("t", ["0.0", "0.0"]),
])
def test_units(units: str, expected: list[str]) -> None:
    lines = table(separator=":", header=False, units=units)
    assert [line.split(":")[2] for line in lines[:2]] == expected


def test_units_h_with_separator_keeps_suffix() -> None:
    assert table(separator=",", header=False, units="h")[1].split(",")[2] == "2.0G"


def test_last_numeric_column_is_padded_right_aligned() -> None:
    lines = format_table(["name", "size"], {"name": "Name", "size": "Size"},
                         [["a", 10], ["bb", 3]], separator=None, header=True, units=None,
                         unit_fields=set(), numeric_fields={"size"})
    assert lines == ["Name Size", "a      10", "bb      3"]


def test_missing_title_falls_back_to_field_name_and_special_values() -> None:
    lines = format_table(["name", "offline", "mfree"], {"name": "Node"},
                         [["n1", False, NODATA], ["n2", True, 1024 * 1024 * 3]],
                         separator=" ", header=True, units=None, unit_fields={"mfree"},
                         numeric_fields=set())
    assert lines == ["Node offline mfree", "n1 N ?", "n2 Y 3145728"]


def test_row_length_mismatch() -> None:
    with pytest.raises(ValueError, match="2 values for 3 fields"):
        format_table(["a", "b", "c"], {}, [[1, 2]], separator=None, header=False, units=None,
                     unit_fields=set(), numeric_fields=set())


def test_format_value() -> None:
    assert format_value(None) == "-"
    assert format_value(True) == "Y"
    assert format_value(["x", 1, None]) == "x,1,-"
    assert format_value({"b", "a"}) == "a,b"
    assert format_value(1.5) == "1.5"


def test_json_keeps_raw_values() -> None:
    data = json.loads(format_json(FIELDS, ROWS))
    assert data[0] == {"name": "inst1.example.com", "pnode": "node1", "oper_ram": 512,
                       "vcpus": 1, "tags": ["a", "b"]}
    assert data[2]["oper_ram"] is None
    assert json.loads(format_json(["x"], [])) == []
    assert json.loads(format_json(["t"], [[("a", "b")]])) == [{"t": ["a", "b"]}]


INSTANCE_INFO: list[Any] = [{
    "Instance name": "inst1.example.com",
    "UUID": "0b9e6c1e-1f1a-4d55-9d1c-2c6b1f1c2a6e",
    "Serial number": 4,
    "State": "configured to be up, actual state is up",
    "Nodes": [{"primary": "node1", "group": "default"}, {"secondaries": []}],
    "Operating system": "debootstrap+default",
    "Allocated network port": None,
    "Hardware": {"VCPUs": 2, "memory": "1.0G", "auto_balance": True,
                 "NICs": [{"nic/0": "", "MAC": "aa:00:00:11:22:33", "mode": "bridged",
                           "link": "br0"}]},
    "Disks": [{"disk/0": "drbd, size 10.0G", "access mode": "rw",
               "on primary": "/dev/nbd0 (node1)", "tags": ("a", "b")}],
}]


def test_info_layout_like_ganeti() -> None:
    assert format_info(INSTANCE_INFO).splitlines() == [
        "- Instance name: inst1.example.com",
        "  UUID: 0b9e6c1e-1f1a-4d55-9d1c-2c6b1f1c2a6e",
        "  Serial number: 4",
        '  State: configured to be up, actual state is up',
        "  Nodes:",
        "    - primary: node1",
        "      group: default",
        "    - secondaries: []",
        "  Operating system: debootstrap+default",
        "  Allocated network port:",
        "  Hardware:",
        "    VCPUs: 2",
        "    memory: 1.0G",
        "    auto_balance: True",
        "    NICs:",
        '      - nic/0: ""',
        "        MAC: aa:00:00:11:22:33",
        "        mode: bridged",
        "        link: br0",
        "  Disks:",
        '    - disk/0: drbd, size 10.0G',
        "      access mode: rw",
        "      on primary: /dev/nbd0 (node1)",
        "      tags: [a, b]",
    ]


def test_info_round_trips() -> None:
    loaded = yaml.safe_load(format_info(INSTANCE_INFO))
    expected = json.loads(json.dumps(INSTANCE_INFO))  # tuples become lists
    assert loaded == expected


@pytest.mark.parametrize("value", [
    "yes", "no", "on", "True", "null", "~", "", " padded ", "2024-01-01", "0x1f", "1e3", "12",
    "a: b", "- x", "a #b", "#c", "@x", "`x", "!tag", "&a", "*a", "{x}", "[x]", "%x", "'q'",
    '"q"', "multi\nline", "tab\there", "é ü", "key:", "?", "|", ">", "a,b", "x]", "-", 0, -1,
    1.5, 10**20, True, False, None, [], {}, ["a, b", "c]"], ("x,y", "ok"), ("1", 1),
    {"nested": {"deeper": [{"k": "v"}, ["a", ["b"]]]}}, [[]], [{}], {"": 1},
    {"a: b": 1, "1": 2, 3: 4, "yes": 5, "- x": 6, "k #": 7},
])
def test_info_round_trips_awkward_values(value: Any) -> None:
    data = {"key": value}
    loaded = yaml.safe_load(format_info(data))
    assert loaded == json.loads(json.dumps(data)) or loaded == {"key": _listify(value)}


def _listify(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_listify(item) for item in value]
    if isinstance(value, dict):
        return {k: _listify(v) for k, v in value.items()}
    return value


def test_info_top_level_scalar_and_mapping() -> None:
    assert format_info("x") == "x"
    assert format_info({"a": 1}) == "a: 1"
    assert format_info([["a", "b"], "c"]) == "- - a\n  - b\n- c"
