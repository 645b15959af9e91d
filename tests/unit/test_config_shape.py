"""A configuration of the wrong shape is refused at load with one line naming the file and the
way out (it used to fail later with AttributeError); the file is kept private."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from herd.config.shape import config_problem
from herd.config.store import ConfigStore
from herd.errors import ConfigurationError
from herd.objects import Cluster, ConfigData, Disk, Instance, Node, NodeGroup


def good_config() -> dict[str, Any]:
    group = NodeGroup(name="default")
    node = Node(name="node1.example.com", primary_ip="192.0.2.1", group=group.uuid)
    inst = Instance(name="web1", primary_node=node.uuid, disks=[Disk(size=64)])
    data = ConfigData(cluster=Cluster(cluster_name="c.example.com", master_node=node.uuid),
                      nodegroups={group.uuid: group}, nodes={node.uuid: node},
                      instances={inst.uuid: inst}, serial_no=7)
    return data.to_dict()


def first(mapping: dict[str, Any]) -> dict[str, Any]:
    return next(iter(mapping.values()))


def test_a_good_config_has_no_problem() -> None:
    raw = good_config()
    assert config_problem(raw) is None
    raw["cluster"]["written_by_a_newer_version"] = {"x": 1}  # unknown fields are fine
    assert config_problem(raw) is None


def _set(path: str, value: Any) -> Any:
    def change(raw: dict[str, Any]) -> None:
        target: Any = raw
        *parts, last = path.split("/")
        for part in parts:
            target = first(target) if part == "*" else target[part]
        target[last] = value
    return change


@pytest.mark.parametrize(("change", "fragment"), [
    (lambda raw: raw.clear() or raw.update({"nodes": []}), "'cluster' is missing"),
    (_set("nodes", []), "'nodes' is list, expected a mapping"),
    (_set("cluster", "cluster.example.com"), "cluster is string, expected a mapping"),
    (_set("cluster/noded_port", "1811"), "cluster.noded_port is string, expected an integer"),
    (_set("cluster/enabled_hypervisors", "kvm"), "cluster.enabled_hypervisors is string"),
    (_set("cluster/beparams", []), "cluster.beparams is list, expected a mapping"),
    (_set("serial_no", "7"), "serial_no is string, expected an integer"),
    (_set("nodes/*/offline", "no"), ".offline is string, expected a boolean"),
    (_set("instances/*/disks", [5]), ".disks[0] is number, expected a mapping"),
    (_set("instances/*/network_port", "x"), "network_port is string, expected an integer or null"),
    (_set("cluster/master_node", "gone"), "the master node 'gone' is not among the nodes"),
    (_set("nodes/*/group", "nope"), "in an unknown group 'nope'"),
    (_set("instances/*/primary_node", "nope"), "unknown primary node 'nope'"),
])
def test_wrong_shapes_are_named(change: Any, fragment: str) -> None:
    raw = copy.deepcopy(good_config())
    change(raw)
    problem = config_problem(raw)
    assert problem is not None and fragment in problem, problem


def test_a_list_document_is_refused() -> None:
    assert config_problem([1, 2]) == "the document is list, expected a mapping"


@pytest.mark.parametrize(("content", "fragment"), [
    (json.dumps({**good_config(), "nodes": []}), "'nodes' is list"),
    ("", "the file is empty"),
    ('{"cluster": ', "not JSON"),
    (json.dumps({**good_config(), "nodes": {"u": "node1"}}), "nodes[u] is string"),
])
def test_load_refuses_with_one_line_and_the_way_out(tmp_path: Path, content: str,
                                                    fragment: str) -> None:
    path = tmp_path / "config.data"
    path.write_text(content)
    with pytest.raises(ConfigurationError) as err:
        ConfigStore.load(path)
    line = err.value.message
    assert "\n" not in line
    assert line.startswith(f"cluster configuration {path} is damaged (")
    assert fragment in line
    assert "master candidate" in line and "gnt-cluster redist-conf" in line


def test_load_makes_an_old_readable_config_private(tmp_path: Path) -> None:
    path = tmp_path / "config.data"
    path.write_text(json.dumps(good_config()))
    os.chmod(path, 0o644)
    store = ConfigStore.load(path)
    assert store.data.serial_no == 7
    assert path.stat().st_mode & 0o777 == 0o600
    store.write()
    assert path.stat().st_mode & 0o777 == 0o600
