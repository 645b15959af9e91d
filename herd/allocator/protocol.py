"""Ganeti's iallocator protocol (version 2), as Ganeti 3.0 speaks it and Debian's ``hail``
3.0.2 reads it (``../shared/notes/ganeti-allocator.md`` section 1): the input document built
from the config and the nodes' runtime facts, the requests, and the checks on an answer.

Everything here is a pure function of its arguments, so that the document Herd hands to an
external allocator is the one its unit tests (and the test against the real hail) look at.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from herd import errors
from herd.allocator.names import (  # noqa: F401 (parse_params: re-exported)
    BUILTIN,
    DEFAULT_SHORTCUT,
    NAME_RE,
    parse_params,
)
from herd.objects import ConfigData, Instance, Node, params

VERSION = 2

REQUEST_TYPES = ("allocate", "relocate", "node-evacuate", "change-group", "multi-allocate")
EVAC_MODES = ("primary-only", "secondary-only", "all")
#: The opcodes an evacuation or change-group answer may contain (IAllocator._ValidateResult).
MOVE_OP_IDS = ("OP_INSTANCE_FAILOVER", "OP_INSTANCE_MIGRATE", "OP_INSTANCE_REPLACE_DISKS")


class AllocatorError(errors.OpPrereqError):
    """The allocator could not be run, gave a malformed answer, or found no placement."""

    code = "OpPrereqError"


# -- names ------------------------------------------------------------------------------------
def resolve_name(requested: str | None, cluster_default: str) -> str:
    """The allocator an operation uses: the one it names, ``.`` or nothing meaning the
    cluster's default, and an empty default meaning the built-in one."""
    name = requested or DEFAULT_SHORTCUT
    if name == DEFAULT_SHORTCUT:
        name = cluster_default or BUILTIN
    check_name(name)
    return name


def check_name(name: str) -> str:
    """Refuse anything but a plain name (Ganeti's rule: allocators live in the search path)."""
    if not NAME_RE.match(name):
        raise errors.ParameterError(
            f"invalid instance allocator name '{name}': a name of letters, digits, '_' and "
            f"'-' of a program in the allocator search path (or '{BUILTIN}', the built-in one)")
    return name


def argv_params(values: Mapping[str, Any]) -> list[str]:
    """``default_iallocator_params`` as arguments: ``--key=value``, or ``--key`` for None."""
    return [f"--{key}" if value is None else f"--{key}={value}"
            for key, value in sorted(values.items())]


# -- the input document -----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class NodeRuntime:
    """A node's runtime facts, in the protocol's units (MiB, CPUs)."""

    total_memory: int
    reserved_memory: int
    free_memory: int
    total_disk: int
    free_disk: int
    total_cpus: int
    reserved_cpus: int = 0
    total_spindles: int = 0
    free_spindles: int = 0


def node_runtime(info: Mapping[str, Any], *, lvm: bool, up_maxmem: int) -> NodeRuntime:
    """The runtime facts of a node from its ``node_info`` answer. ``lvm``: the request's
    storage is the cluster's volume group (else the file storage directory); ``up_maxmem``:
    the sum of the maxmem of the node's running primaries. As Ganeti's
    ``_ComputeInstanceMemory``, free memory leaves room for each running instance to reach its
    maxmem; reserved memory is what the node uses itself, so that total - free - reserved is
    what its guests hold (hail's consistency check)."""
    total = int(info.get("memory_total") or 0)
    used_by_guests = int(info.get("memory_instances") or 0)
    free = int(info.get("memory_free") or 0) - max(0, up_maxmem - used_by_guests)
    if lvm:
        disk_total, disk_free = info.get("storage_total"), info.get("storage_free")
    else:
        disk_total = info.get("file_storage_total", info.get("storage_total"))
        disk_free = info.get("file_storage_free", info.get("storage_free"))
    return NodeRuntime(total_memory=total, reserved_memory=int(info.get("memory_dom0") or 0),
                       free_memory=max(0, free), total_disk=int(disk_total or 0),
                       free_disk=int(disk_free or 0), total_cpus=int(info.get("cpu_total") or 1))


def node_ndparams(cfg: ConfigData, node: Node) -> dict[str, Any]:
    """A node's filled ndparams (cluster <- group <- node), with the keys hail needs."""
    out = cfg.filled_ndparams(node)
    out.setdefault("cpu_speed", 1)
    return out


def instance_memory(cfg: ConfigData, inst: Instance) -> int:
    return int(cfg.filled_beparams(inst)["maxmem"])


def build_input(cfg: ConfigData, runtime: Mapping[str, NodeRuntime | None],
                request: dict[str, Any], *,
                disk_space: Callable[[Instance], int]) -> dict[str, Any]:
    """The complete input document (IAllocator._BuildInputData).

    ``runtime``: node uuid -> runtime facts; an online vm_capable node missing from it (it did
    not answer) is described as offline, so that no allocator places anything there.
    ``disk_space``: an instance's ``disk_space_total`` (its template's rule)."""
    cluster = cfg.cluster
    templates = list(cluster.enabled_disk_templates)
    ipolicy = params.default_ipolicy(templates)
    groups = {uuid: {"name": g.name, "alloc_policy": g.alloc_policy,
                     "networks": sorted(g.networks),
                     "ipolicy": cfg.filled_ipolicy(g), "tags": list(g.tags)}
              for uuid, g in cfg.nodegroups.items()}
    pri_mem: dict[str, int] = {}
    pri_up_mem: dict[str, int] = {}
    instances: dict[str, Any] = {}
    for inst in sorted(cfg.instances.values(), key=lambda i: i.name):
        be = cfg.filled_beparams(inst)
        memory = int(be["maxmem"])
        pri_mem[inst.primary_node] = pri_mem.get(inst.primary_node, 0) + memory
        if inst.admin_state == "up":
            pri_up_mem[inst.primary_node] = pri_up_mem.get(inst.primary_node, 0) + memory
        instances[inst.name] = {
            "tags": list(inst.tags), "admin_state": inst.admin_state,
            "admin_state_source": inst.admin_state_source,
            "vcpus": int(be["vcpus"]), "memory": memory,
            "spindle_use": int(be.get("spindle_use", 1)), "os": inst.os,
            "nodes": [cfg.node_name(u) for u in inst.all_nodes],
            "nics": [_nic(cfg, inst, nic) for nic in inst.nics],
            "disks": [{"dev_type": d.dev_type, "size": d.size, "mode": d.mode,
                       "spindles": None} for d in inst.disks],
            "disk_template": inst.disk_template, "disks_active": inst.disks_active,
            "hypervisor": inst.hypervisor, "disk_space_total": disk_space(inst),
        }
    nodes: dict[str, Any] = {}
    for node in sorted(cfg.nodes.values(), key=lambda n: n.name):
        facts = runtime.get(node.uuid)
        offline = node.offline or (node.vm_capable and facts is None)
        entry: dict[str, Any] = {
            "tags": list(node.tags), "primary_ip": node.primary_ip,
            "secondary_ip": node.secondary_ip or node.primary_ip, "offline": offline,
            "drained": node.drained, "master_candidate": node.master_candidate,
            "group": node.group, "master_capable": node.master_capable,
            "vm_capable": node.vm_capable, "ndparams": node_ndparams(cfg, node),
        }
        if not offline and node.vm_capable and facts is not None:
            entry.update(dataclasses.asdict(facts))
            entry["i_pri_memory"] = pri_mem.get(node.uuid, 0)
            entry["i_pri_up_memory"] = pri_up_mem.get(node.uuid, 0)
        nodes[node.name] = entry
    return {"version": VERSION, "cluster_name": cluster.cluster_name,
            "cluster_tags": list(cluster.tags),
            "enabled_hypervisors": list(cluster.enabled_hypervisors), "ipolicy": ipolicy,
            "nodegroups": groups, "nodes": nodes, "instances": instances, "request": request}


def _nic(cfg: ConfigData, inst: Instance, nic: Any) -> dict[str, Any]:
    filled = cfg.filled_nicparams(inst, nic.nicparams)
    out = {"mac": nic.mac, "ip": nic.ip, "mode": filled.get("mode"), "link": filled.get("link"),
           "network": nic.network}
    if filled.get("mode") == "bridged":
        out["bridge"] = filled.get("link")
    return out


# -- requests ---------------------------------------------------------------------------------
def allocate_request(*, name: str, disk_template: str, memory: int, vcpus: int,
                     disks: list[dict[str, Any]], disk_space_total: int,
                     nics: list[dict[str, Any]], required_nodes: int, hypervisor: str,
                     os: str = "", tags: list[str] | None = None, spindle_use: int = 1,
                     group_name: str | None = None,
                     restrict_to_nodes: list[str] | None = None) -> dict[str, Any]:
    """An ``allocate`` request (IAReqInstanceAlloc): where a new instance should go;
    ``restrict_to_nodes``: the only nodes it may use (Ganeti's ``restrict-to-nodes``)."""
    extra = {} if restrict_to_nodes is None else {"restrict-to-nodes": list(restrict_to_nodes)}
    return {**extra, "type": "allocate", "name": name, "disk_template": disk_template,
            "group_name": group_name, "tags": list(tags or []), "os": os, "vcpus": vcpus,
            "memory": memory, "spindle_use": spindle_use,
            "disks": [{"size": int(d["size"]), "mode": d.get("mode", "rw"),
                       "spindles": d.get("spindles")} for d in disks],
            "disk_space_total": disk_space_total,
            "nics": [{"mac": n.get("mac", "auto"), "ip": n.get("ip"),
                      "network": n.get("network")} for n in nics],
            "required_nodes": required_nodes, "hypervisor": hypervisor}


def relocate_request(*, name: str, relocate_from: list[str],
                     disk_space_total: int) -> dict[str, Any]:
    """A ``relocate`` request (IAReqRelocate): a new node for ``relocate_from`` (names)."""
    return {"type": "relocate", "name": name, "required_nodes": 1,
            "disk_space_total": disk_space_total, "relocate_from": list(relocate_from)}


def node_evacuate_request(instances: list[str], evac_mode: str) -> dict[str, Any]:
    """A ``node-evacuate`` request (IAReqNodeEvac)."""
    if evac_mode not in EVAC_MODES:
        raise errors.ParameterError(f"invalid evacuation mode '{evac_mode}': allowed are "
                                    f"{', '.join(EVAC_MODES)}")
    return {"type": "node-evacuate", "instances": sorted(instances), "evac_mode": evac_mode}


def change_group_request(instances: list[str], target_groups: list[str]) -> dict[str, Any]:
    """A ``change-group`` request (IAReqGroupChange); ``target_groups``: group uuids."""
    return {"type": "change-group", "instances": sorted(instances),
            "target_groups": list(target_groups)}


def multi_allocate_request(requests: list[dict[str, Any]]) -> dict[str, Any]:
    """A ``multi-allocate`` request (IAReqMultiInstanceAlloc) of ``allocate`` requests."""
    return {"type": "multi-allocate",
            "instances": [{k: v for k, v in r.items() if k != "type"} for r in requests]}


# -- checking an answer -----------------------------------------------------------------------
@dataclasses.dataclass
class EvacResult:
    """A node-evacuate or change-group answer: what moves where, what cannot move, and the
    jobs (lists of opcode dicts) that carry out the moves."""

    moved: list[tuple[str, str, list[str]]]
    failed: list[tuple[str, str | None]]
    jobs: list[list[dict[str, Any]]]


def validate_answer(name: str, data: dict[str, Any], answer: Any) -> tuple[bool, str, Any]:
    """Check an answer's envelope (IAllocator._ValidateResult) and, when it succeeded, its
    result's shape for the request in ``data``. Returns (success, info, result); raises
    AllocatorError naming the allocator and what is wrong."""
    def bad(what: str) -> AllocatorError:
        return AllocatorError(f"instance allocator '{name}' gave an invalid answer: {what}")

    if not isinstance(answer, dict):
        raise bad(f"expected a JSON object, got {type(answer).__name__}")
    answer = dict(answer)
    if "nodes" in answer and "result" not in answer:  # the protocol's old name
        answer["result"] = answer.pop("nodes")
    missing = [k for k in ("success", "info", "result") if k not in answer]
    if missing:
        raise bad(f"missing key(s) {', '.join(missing)}")
    success, info, result = bool(answer["success"]), str(answer["info"]), answer["result"]
    if not success:
        return False, info, result
    request = data["request"]
    kind = request["type"]
    if kind == "allocate":
        _check_nodes(bad, data, result, int(request["required_nodes"]))
    elif kind == "relocate":
        _check_nodes(bad, data, result, 1)
        _check_relocate_groups(bad, data, request, result)
    elif kind in ("node-evacuate", "change-group"):
        result = _check_evac(bad, data, result)
    elif kind == "multi-allocate":
        result = _check_multi(bad, data, request, result)
    return True, info, result


def _check_nodes(bad: Callable[[str], AllocatorError], data: dict[str, Any], result: Any,
                 count: int) -> None:
    if not isinstance(result, list) or not all(isinstance(n, str) for n in result):
        raise bad(f"expected a list of node names, got {result!r}")
    if len(result) != count:
        raise bad(f"expected {count} node(s), got {len(result)}: {result}")
    unknown = [n for n in result if n not in data["nodes"]]
    if unknown:
        raise bad(f"unknown node(s) {', '.join(unknown)}")
    if len(set(result)) != len(result):
        raise bad(f"the same node twice: {result}")


def _check_relocate_groups(bad: Callable[[str], AllocatorError], data: dict[str, Any],
                           request: dict[str, Any], result: list[str]) -> None:
    """The new node must be in a group of the instance's current nodes (relocation never
    crosses groups: change-group does)."""
    nodes = data["nodes"]
    inst = data["instances"][request["name"]]
    allowed = {nodes[n]["group"] for n in inst["nodes"] if n in nodes}
    got = {nodes[n]["group"] for n in result}
    if not got <= allowed:
        names = sorted(data["nodegroups"].get(g, {}).get("name", g) for g in got - allowed)
        raise bad(f"relocation of {request['name']} into other group(s) {', '.join(names)}")


def _check_evac(bad: Callable[[str], AllocatorError], data: dict[str, Any],
                result: Any) -> EvacResult:
    if not (isinstance(result, list) and len(result) == 3
            and all(isinstance(part, list) for part in result)):
        raise bad(f"expected [moved, failed, jobs], got {result!r}")
    moved_raw, failed_raw, jobs_raw = result
    moved: list[tuple[str, str, list[str]]] = []
    for entry in moved_raw:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
                and isinstance(entry[1], str) and isinstance(entry[2], list)):
            raise bad(f"a moved entry must be [instance, group, [nodes]], got {entry!r}")
        moved.append((entry[0], entry[1], [str(n) for n in entry[2]]))
    failed: list[tuple[str, str | None]] = []
    for entry in failed_raw:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise bad(f"a failed entry must be [instance, reason], got {entry!r}")
        failed.append((entry[0], None if entry[1] is None else str(entry[1])))
    jobs: list[list[dict[str, Any]]] = []
    for job in jobs_raw:
        if not isinstance(job, list) or not all(isinstance(op, dict) for op in job):
            raise bad(f"a job must be a list of opcodes, got {job!r}")
        for op in job:
            if op.get("OP_ID") not in MOVE_OP_IDS:
                raise bad(f"opcode {op.get('OP_ID')!r} in a job; allowed are "
                          f"{', '.join(MOVE_OP_IDS)}")
            if op.get("instance_name") not in data["instances"]:
                raise bad(f"an opcode for unknown instance {op.get('instance_name')!r}")
        jobs.append([dict(op) for op in job])
    return EvacResult(moved, failed, jobs)


def _check_multi(bad: Callable[[str], AllocatorError], data: dict[str, Any],
                 request: dict[str, Any], result: Any) -> tuple[dict[str, list[str]],
                                                              list[str]]:
    if not (isinstance(result, list) and len(result) == 2):
        raise bad(f"expected [allocated, failed], got {result!r}")
    wanted = {r["name"]: int(r["required_nodes"]) for r in request["instances"]}
    placed: dict[str, list[str]] = {}
    for entry in result[0]:
        if not (isinstance(entry, list) and len(entry) == 2 and entry[0] in wanted):
            raise bad(f"an allocated entry must be [requested instance, [nodes]], "
                      f"got {entry!r}")
        _check_nodes(bad, data, entry[1], wanted[entry[0]])
        placed[entry[0]] = list(entry[1])
    failed = [str(n) for n in result[1]]
    return placed, failed


def evac_failure_message(name: str, failed: list[tuple[str, str | None]]) -> str:
    """The error of an evacuation some instances of which cannot move: every one of them with
    its reason (Ganeti raises with the list; hail's reason may be empty)."""
    parts = [f"{inst}: {reason or 'no reason given'}" for inst, reason in failed]
    return (f"instance allocator '{name}' cannot move {len(failed)} instance(s): "
            + "; ".join(parts))
