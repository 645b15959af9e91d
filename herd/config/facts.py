"""Per-node cluster facts: the small file every node keeps (cluster name, master, nodes, serial).

It lets a node answer "who is the master?" without the full config, and lets daemons decide at
start whether they belong on this node.
"""

from __future__ import annotations

import json

from herd.fileutil import atomic_write_json
from herd.paths import HerdPaths

TYPE_CHECKING = False  # typing's, without importing typing (~2 ms of each gnt-* command)
if TYPE_CHECKING:  # the CLI reads facts on every command: not worth herd.objects' import
    from typing import Any

    from herd.objects import ConfigData


def facts_from_config(cfg: ConfigData) -> dict[str, Any]:
    return {
        "cluster_name": cfg.cluster.cluster_name,
        "master_node": cfg.master.name,
        "master_ip": cfg.cluster.master_ip,
        "master_netdev": cfg.cluster.master_netdev,
        "master_netmask": cfg.cluster.master_netmask,
        "noded_port": cfg.cluster.noded_port,
        "nodes": {n.name: {"primary_ip": n.primary_ip, "secondary_ip": n.secondary_ip,
                           "master_candidate": n.master_candidate, "offline": n.offline}
                  for n in cfg.nodes.values()},
        "serial_no": cfg.serial_no,
        "rapi_anonymous_reads": cfg.cluster.rapi_anonymous_reads,
        "os_search_path": list(cfg.cluster.os_search_path),
        "volume_group_name": cfg.cluster.volume_group_name,
    }


def write_facts(paths: HerdPaths, cfg: ConfigData) -> None:
    write_facts_dict(paths, facts_from_config(cfg))


def write_facts_dict(paths: HerdPaths, facts: dict[str, Any]) -> None:
    atomic_write_json(paths.cluster_facts_file, facts, 0o644)


def read_facts(paths: HerdPaths) -> dict[str, Any] | None:
    try:
        return json.loads(paths.cluster_facts_file.read_text())
    except (OSError, ValueError):
        return None


def node_name(paths: HerdPaths) -> str | None:
    try:
        return (paths.data_dir / "node-name").read_text().strip()
    except OSError:
        return None


def is_master(paths: HerdPaths) -> bool:
    facts = read_facts(paths)
    return bool(facts) and facts.get("master_node") == node_name(paths)
