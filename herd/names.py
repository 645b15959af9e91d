"""One validator for every name a user gives: instances, nodes, OS, tags, node groups, networks.

Names become file names (disk directories, runtime files), list rows, QEMU arguments and config
keys, so a name must be exactly what the rule allows and nothing more. Every rule is matched with
``fullmatch`` on the whole value: ``re.match`` with ``^...$`` lets a trailing newline through
(``$`` also matches before a final ``\\n``), which once created an instance called ``nl\\n``.

The CLI and RAPI both reach masterd with opcodes, and masterd checks every opcode with
:func:`check_opcode_fields` before the job is queued, so a bad name is refused with one line and
leaves no job behind whichever way it came in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from herd.errors import ParameterError


@dataclass(frozen=True)
class NameRule:
    """What one kind of name may be: a pattern (full-matched), a length limit, and the wording
    that tells a user what is allowed."""

    kind: str
    pattern: re.Pattern[str]
    max_len: int
    allowed: str

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ParameterError(f"invalid {self.kind} {value!r}: must be a string")
        if not value:
            raise ParameterError(f"invalid {self.kind}: it must not be empty")
        if len(value) > self.max_len:
            raise ParameterError(f"invalid {self.kind} {_short(value)}: longer than "
                                 f"{self.max_len} characters")
        if self.pattern.fullmatch(value) is None:
            raise ParameterError(f"invalid {self.kind} {_short(value)}: {self.allowed}")
        return value


def _short(value: str) -> str:
    """The bad value as a one-line repr (newlines show as \\n), cut when very long."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "...'"


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII)
_HOST_TEXT = ("use letters, digits, '-' and '.' like a host name (labels of at most 63 "
              "characters, not starting or ending with '-')")
_SIMPLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", re.ASCII)
_SIMPLE_TEXT = ("use letters, digits and '_', '.', '+', '-', starting with a letter or digit")

INSTANCE = NameRule("instance name", _HOST, 253, _HOST_TEXT)
NODE = NameRule("node name", _HOST, 253, _HOST_TEXT)
OS = NameRule("OS name", re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(?:\+[A-Za-z0-9_.-]+)?",
                                    re.ASCII), 128,
              "use letters, digits, '_', '.', '-', and '+VARIANT' for a variant")
#: Ganeti's tag rule: 1-128 characters of letters, digits and ``.+*/:@_-``.
TAG = NameRule("tag", re.compile(r"[\w.+*/:@-]+"), 128,
               "allowed are letters, digits and the characters . + * / : @ _ -")
GROUP = NameRule("node group name", _SIMPLE, 128, _SIMPLE_TEXT)
NETWORK = NameRule("network name", _SIMPLE, 128, _SIMPLE_TEXT)

RULES = {r.kind: r for r in (INSTANCE, NODE, OS, TAG, GROUP, NETWORK)}

#: Opcode fields (Ganeti's names) that hold a name, and the rule for them. A list-valued field
#: is checked element by element. One table for every opcode, so a new opcode that uses
#: Ganeti's field names is covered without doing anything.
OPCODE_NAME_FIELDS: dict[str, NameRule] = {
    "instance_name": INSTANCE,
    "instance_names": INSTANCE,
    "new_name": INSTANCE,
    "node_name": NODE,
    "node_names": NODE,
    "nodes": NODE,
    "on_nodes": NODE,
    "pnode": NODE,
    "snode": NODE,
    "target_node": NODE,
    "remote_node": NODE,
    "os_type": OS,
    "os_name": OS,
    "tags": TAG,
    "group_name": GROUP,
    "target_groups": GROUP,
    "network_name": NETWORK,
}


def check(rule: NameRule, value: Any) -> str:
    """Return ``value`` if it is a valid name of ``rule``'s kind, else raise ParameterError."""
    return rule.check(value)


def check_all(rule: NameRule, values: Iterable[Any]) -> list[str]:
    return [rule.check(v) for v in values]


#: Fields whose kind of name depends on the opcode (Ganeti reuses ``new_name``).
OPCODE_FIELD_OVERRIDES: dict[tuple[str, str], NameRule] = {
    ("OP_GROUP_RENAME", "new_name"): GROUP,
    ("OP_NETWORK_RENAME", "new_name"): NETWORK,
    ("OP_CLUSTER_RENAME", "name"): NODE,
}
#: OP_TAGS_*: the kind of object decides what its ``name`` must look like.
TAG_OBJECT_RULES: dict[str, NameRule] = {
    "instance": INSTANCE, "node": NODE, "nodegroup": GROUP, "network": NETWORK,
}


def field_rules(op_id: str, data: Mapping[str, Any]) -> dict[str, NameRule]:
    """Which fields of this opcode's input hold names, and the rule for each (pure)."""
    rules = {key: rule for key, rule in OPCODE_NAME_FIELDS.items() if key in data}
    for (oid, key), rule in OPCODE_FIELD_OVERRIDES.items():
        if oid == op_id and key in data:
            rules[key] = rule
    if op_id.startswith("OP_TAGS_") and "name" in data:
        rule = TAG_OBJECT_RULES.get(str(data.get("kind")))
        if rule is not None:
            rules["name"] = rule
    return rules


def check_opcode_fields(op_id: str, data: Mapping[str, Any]) -> None:
    """Check every name-holding field of an opcode's input (None means "not given")."""
    for key, rule in field_rules(op_id, data).items():
        value = data[key]
        if value is None:
            continue
        if isinstance(value, list | tuple):
            check_all(rule, value)
        else:
            rule.check(value)
