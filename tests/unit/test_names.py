"""Names are full-matched by one validator, whichever way an opcode comes in (CLI or RAPI)."""

from __future__ import annotations

import pytest

from herd import names
from herd.errors import ParameterError
from herd.opcodes import opcode_from_dict

BAD_TAILS = ["\n", "\r\n", " ", "\t", "/x", "\x00"]


@pytest.mark.parametrize(("rule", "tail"), [
    (rule, tail) for rule in names.RULES.values() for tail in BAD_TAILS
    if not (rule is names.TAG and tail == "/x")  # '/' is allowed in tags (Ganeti)
])
def test_no_kind_of_name_accepts_a_trailing_control_or_separator(
        rule: names.NameRule, tail: str) -> None:
    with pytest.raises(ParameterError) as exc:
        rule.check("good" + tail)
    message = exc.value.message
    assert "\n" not in message, "the error must be one line"
    assert rule.kind in message


@pytest.mark.parametrize(("rule", "value"), [
    (names.INSTANCE, "inst1"), (names.INSTANCE, "web-1.example.com"), (names.INSTANCE, "A1"),
    (names.NODE, "node1.example.com"), (names.NODE, "198.51.100.7"),
    (names.OS, "busybox+default"), (names.OS, "debootstrap"), (names.OS, "img_2.0-x+v.1"),
    (names.TAG, "herd:owner:@ops"), (names.TAG, "a/b*c+d@e_f-g.h"),
    (names.GROUP, "default"), (names.GROUP, "rack_12"), (names.NETWORK, "net-1"),
])
def test_ordinary_names_pass(rule: names.NameRule, value: str) -> None:
    assert rule.check(value) == value


@pytest.mark.parametrize(("rule", "value"), [
    (names.INSTANCE, "-x"), (names.INSTANCE, "x-"), (names.INSTANCE, "a..b"),
    (names.INSTANCE, ".."), (names.INSTANCE, "a_b"), (names.INSTANCE, "a" * 64),
    (names.INSTANCE, ""), (names.NODE, "node1;id"), (names.OS, "busybox+"),
    (names.OS, "../etc"), (names.OS, "a+b+c"), (names.TAG, "a b"), (names.TAG, "t" * 129),
    (names.GROUP, "-g"), (names.NETWORK, "n/1"),
])
def test_bad_names_are_refused(rule: names.NameRule, value: str) -> None:
    with pytest.raises(ParameterError):
        rule.check(value)


def test_error_names_the_bad_value_visibly() -> None:
    with pytest.raises(ParameterError) as exc:
        names.INSTANCE.check("nl\n")
    assert exc.value.message.startswith("invalid instance name 'nl\\n': ")


def test_non_string_names_are_refused_with_their_type() -> None:
    with pytest.raises(ParameterError, match="must be a string"):
        names.NODE.check(5)


def _create(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "inst1",
                               "disk_template": "diskless", "mode": "create",
                               "os_type": "busybox+default", "pnode": "node1"}
    base.update(fields)
    return base


def test_opcode_with_a_clean_name_parses() -> None:
    op = opcode_from_dict(_create())
    assert op.to_dict()["instance_name"] == "inst1"


@pytest.mark.parametrize(("field", "value", "kind"), [
    ("instance_name", "nl\n", "instance name"),
    ("pnode", "node1\n", "node name"),
    ("os_type", "busybox+default\n", "OS name"),
    ("tags", ["ok", "bad\n"], "tag"),
])
def test_opcode_fields_are_checked_at_parse_time(field: str, value: object, kind: str) -> None:
    """opcode_from_dict is what masterd runs before queuing a job from the CLI or RAPI."""
    with pytest.raises(ParameterError, match=f"invalid {kind} "):
        opcode_from_dict(_create(**{field: value}))


def test_tag_opcodes_check_the_object_name_by_its_kind() -> None:
    ok = {"OP_ID": "OP_TAGS_SET", "kind": "nodegroup", "name": "rack_1", "tags": ["a"]}
    opcode_from_dict(ok)
    with pytest.raises(ParameterError, match="invalid instance name"):
        opcode_from_dict({**ok, "kind": "instance", "name": "rack_1"})


def test_unbacked_opcodes_are_checked_too() -> None:
    """Operations Herd does not carry out yet still refuse a bad name before queuing."""
    with pytest.raises(ParameterError, match="invalid instance name"):
        opcode_from_dict({"OP_ID": "OP_INSTANCE_RENAME", "instance_name": "a",
                          "new_name": "b\n"})
    with pytest.raises(ParameterError, match="invalid node group name"):
        opcode_from_dict({"OP_ID": "OP_GROUP_RENAME", "group_name": "g",
                          "new_name": "g 2"})
