"""Is a configuration document shaped as Herd's? One pure check, run before the document is used.

A config of the wrong JSON shape (a list where nodes should be a mapping, a string where a node
should be) used to fail deep inside masterd with an ``AttributeError``. :func:`config_problem`
names the first thing that is wrong, so that loading can refuse it with one line naming the file
and the way out. Fields this version does not know are accepted (a newer version wrote them);
fields it knows must have their declared JSON type, and the references every reader follows
(the master node, each node's group, each instance's primary node) must resolve.

A disk's nodes are stored in ``Disk.nodes`` (where the copies are) and the instance's
``primary_node`` (which copy runs the VM); a drbd disk's stored list names them once more. Herd
reads only the first two and writes the list from them, so a document where they disagree
would lose one version silently: it is refused instead, naming the disk.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from herd.objects import Cluster, Instance, Network, Node, NodeGroup
from herd.objects.base import ConfigObject, type_hints
from herd.objects.disk_ids import v1_nodes

#: The mappings of objects in the document, keyed by uuid.
COLLECTIONS: dict[str, type[ConfigObject]] = {
    "nodegroups": NodeGroup, "nodes": Node, "instances": Instance, "networks": Network}


@functools.cache
def _fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(cls)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "mapping", list: "list", str: "string", bool: "boolean", int: "number",
            float: "number"}.get(type(value), type(value).__name__)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if origin is list:
        return "a list"
    if origin is dict or (isinstance(hint, type) and issubclass(hint, ConfigObject)):
        return "a mapping"
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a number"}.get(
        hint, str(hint))


def _value_problem(where: str, value: Any, hint: Any) -> str | None:
    """What is wrong with ``value`` for a field declared as ``hint`` (None: nothing)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return None
    if origin in (typing.Union, types.UnionType):
        problems = [_value_problem(where, value, arg) for arg in typing.get_args(hint)]
        if any(p is None for p in problems):
            return None
        return f"{where} is {_kind(value)}, expected {_describe(hint)}"
    if origin is list:
        if not isinstance(value, list):
            return f"{where} is {_kind(value)}, expected a list"
        (inner,) = typing.get_args(hint) or (Any,)
        for index, item in enumerate(value):
            problem = _value_problem(f"{where}[{index}]", item, inner)
            if problem:
                return problem
        return None
    if isinstance(hint, type) and issubclass(hint, ConfigObject):
        return object_problem(where, value, hint)
    # containers strictly (a wrong one is what breaks readers); scalars as leniently as their
    # readers are: an integral float for an int, null for a string
    ok = {
        dict: lambda v: isinstance(v, dict),
        bool: lambda v: isinstance(v, bool),
        int: lambda v: (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer()),
        float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        str: lambda v: v is None or isinstance(v, str),
        type(None): lambda v: v is None,
    }
    check = ok.get(origin or hint)
    if check is not None and not check(value):
        return f"{where} is {_kind(value)}, expected {_describe(hint)}"
    return None


def object_problem(where: str, data: Any, cls: type[ConfigObject]) -> str | None:
    """What is wrong with ``data`` as the JSON form of a ``cls`` (None: nothing)."""
    if not isinstance(data, dict):
        return f"{where} is {_kind(data)}, expected a mapping ({cls.__name__.lower()})"
    hints = type_hints(cls)
    for f in _fields(cls):
        if f.name in data:
            problem = _value_problem(f"{where}.{f.name}", data[f.name], hints[f.name])
            if problem:
                return problem
    return None



Check = Callable[[Any], bool]


def _compile(hint: Any) -> Check | None:
    """A fast yes/no check equivalent to :func:`_value_problem` for ``hint`` (None: every
    value passes). Built once per field: interpreting type hints per value cost 1.2 s of a
    20,000-instance load; the messages still come from :func:`_value_problem`, which runs
    only on a document that fails."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return None
    if origin in (typing.Union, types.UnionType):
        alternatives = [_compile(arg) for arg in typing.get_args(hint)]
        if any(alt is None for alt in alternatives):
            return None
        return lambda v: any(alt(v) for alt in alternatives)  # type: ignore[misc]
    if origin is list:
        (inner,) = typing.get_args(hint) or (Any,)
        item = _compile(inner)
        if item is None:
            return lambda v: isinstance(v, list)
        return lambda v: isinstance(v, list) and all(item(x) for x in v)
    if isinstance(hint, type) and issubclass(hint, ConfigObject):
        return _object_check(hint)
    return _SCALARS.get(origin or hint)


_SCALARS: dict[Any, Check] = {
    dict: lambda v: isinstance(v, dict),
    bool: lambda v: isinstance(v, bool),
    int: lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
    float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    str: lambda v: v is None or isinstance(v, str),
    type(None): lambda v: v is None,
}


@functools.cache
def _object_check(cls: type[ConfigObject]) -> Check:
    """Whether a value is a well-shaped JSON form of ``cls`` (see :func:`_compile`)."""
    hints = type_hints(cls)
    checks = [(f.name, check) for f in _fields(cls)
              if (check := _compile(hints[f.name])) is not None]

    def ok(data: Any) -> bool:
        return isinstance(data, dict) and all(
            check(data[name]) for name, check in checks if name in data)
    return ok


def _problem_of(where: str, data: Any, cls: type[ConfigObject]) -> str | None:
    """:func:`object_problem`, through the compiled check first (the common case: fine)."""
    if _object_check(cls)(data):
        return None
    return object_problem(where, data, cls) or f"{where} is not a valid {cls.__name__}"


def config_problem(raw: Any) -> str | None:
    """Pure: the first thing wrong with a parsed configuration document, or None."""
    if not isinstance(raw, dict):
        return f"the document is {_kind(raw)}, expected a mapping"
    if "cluster" not in raw:
        return "'cluster' is missing"
    problem = _problem_of("cluster", raw["cluster"], Cluster)
    if problem:
        return problem
    for key in ("serial_no", "version"):
        if key in raw and (not isinstance(raw[key], int) or isinstance(raw[key], bool)):
            return f"{key} is {_kind(raw[key])}, expected an integer"
    if "mtime" in raw and (not isinstance(raw["mtime"], int | float)
                           or isinstance(raw["mtime"], bool)):
        return f"mtime is {_kind(raw['mtime'])}, expected a number"
    for key, cls in COLLECTIONS.items():
        objects = raw.get(key, {})
        if not isinstance(objects, dict):
            return f"'{key}' is {_kind(objects)}, expected a mapping of uuid to object"
        for uuid, data in objects.items():
            problem = _problem_of(f"{key}[{uuid}]", data, cls)
            if problem:
                return problem
    return _reference_problem(raw)


def _reference_problem(raw: dict[str, Any]) -> str | None:
    nodes, groups = raw.get("nodes", {}), raw.get("nodegroups", {})
    master = raw["cluster"].get("master_node")
    if master not in nodes:
        return f"the master node {master!r} is not among the nodes"
    for uuid, node in nodes.items():
        if node.get("group", "") not in groups:
            return f"node {node.get('name', uuid)} is in an unknown group {node.get('group')!r}"
    for uuid, inst in raw.get("instances", {}).items():
        problem = _instance_reference_problem(uuid, inst, nodes)
        if problem:
            return problem
    return None


def _instance_reference_problem(uuid: str, inst: dict[str, Any],
                                nodes: Collection[str]) -> str | None:
    if inst.get("primary_node", "") not in nodes:
        return (f"instance {inst.get('name', uuid)} has an unknown primary node "
                f"{inst.get('primary_node')!r}")
    return disks_problem(inst, uuid)


def instance_problem(uuid: str, data: Any, nodes: Collection[str]) -> str | None:
    """Pure: what :func:`config_problem` finds wrong with one instance of a document whose
    other parts passed it (``nodes``: the node uuids), or None. For a document checked one
    object at a time (herd.config.layout.assemble builds each instance as soon as it is
    checked, so that the parsed document never exists whole)."""
    return (_problem_of(f"instances[{uuid}]", data, Instance)
            or _instance_reference_problem(uuid, data, nodes))


def disks_problem(inst: dict[str, Any], uuid: str = "") -> str | None:
    """Do an instance's disks agree with its primary node? (``inst`` in its JSON form.)

    Every disk of an instance with disks on nodes (any template but diskless) has a copy on
    the primary; a drbd disk's stored ``[pnode, snode, port, path]`` names the primary and
    the disk's one other node.
    """
    name = inst.get("name", uuid)
    primary = inst.get("primary_node", "")
    for index, disk in enumerate(inst.get("disks", [])):
        where = f"disk/{index} of instance {name}"
        lid, nodes = disk.get("logical_id", []), list(disk.get("nodes", []))
        if not isinstance(lid, list):
            return f"{where}: logical_id is {_kind(lid)}, expected a list"
        if inst.get("disk_template", "diskless") != "diskless" and primary not in nodes:
            return f"{where} has no copy on the primary node {primary!r} (nodes {nodes})"
        named = v1_nodes(str(disk.get("dev_type", "")), lid)
        if named is None:
            continue
        if len(nodes) != 2 or named[0] != primary or set(named) != set(nodes):
            return (f"{where}: its id names the nodes {named} (primary first), but the "
                    f"instance's primary is {primary!r} and the disk's nodes are {nodes}")
    return None


def damaged_config_message(path: Path, problem: str) -> str:
    """One line: the file, what is wrong, and how to get a good copy back."""
    return (f"cluster configuration {path} is damaged ({problem}); restore a good copy: on the "
            "master, copy a master candidate's config.data (the highest serial_no) or a backup "
            "over it, or run 'gnt-cluster master-failover' on a candidate; on a candidate, "
            "run 'gnt-cluster redist-conf' on the master")
