"""Herd's built-in allocator: the default when the admin names none (``herd``).

It reads the same input document as an external allocator (herd.allocator.protocol) and
answers the same shapes, so that it and Debian's ``hail`` are interchangeable and can be
diff-tested. Placement follows hail's rules (``../shared/notes/ganeti-allocator.md`` section
2), in simpler form:

- hard restrictions: never an offline, drained or non-vm_capable node; enough free memory
  (keeping the node's N+1 reserve), disk and vCPUs (the policy's ``vcpu-ratio``); no two
  primaries sharing an exclusion tag (cluster tag ``htools:iextags:PREFIX``); both nodes of a
  mirrored pair in one group; N+1 kept on the secondary after the move; the instance within
  the group's instance policy;
- among what is allowed, the placement with the lowest cluster score: a weighted sum of the
  standard deviations of free memory, free disk, reserved (N+1) memory and vCPU use relative
  to each node's size, of the instance counts (hbal's default unit load), plus the instances
  on nodes failing N+1 and exclusion-tag conflicts. Groups: ``preferred`` before
  ``last_resort``, never ``unallocable``; lower score breaks ties.

Where hail answers "FailMem: 2", this allocator says what is missing where: "no node has
8 GiB free memory: node1 3.1 GiB, node2 5.0 GiB".
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable
from typing import Any

from herd.allocator.protocol import EVAC_MODES

#: hbal's weights (Metrics.hs) of the statistics this allocator computes.
WEIGHTS = {"mem": 0.5, "disk": 0.5, "n1": 1.0, "reserved_mem": 1.0, "vcpu": 0.5,
           "pri_load": 3.0, "all_load": 1.0, "tags": 2.0}
POLICY_RANK = {"preferred": 0, "last_resort": 1}
#: The order failure reasons are explained in (the first that applies to a node is its reason).
REASONS = ("offline", "group", "memory", "n+1", "disk", "cpu", "tags")


@dataclasses.dataclass
class _Node:
    name: str
    group: str
    usable: bool
    why_not: str  # "offline", "drained", ... when not usable
    t_mem: int = 0
    f_mem: int = 0
    t_dsk: int = 0
    f_dsk: int = 0
    t_cpu: int = 1
    r_cpu: int = 0
    u_cpu: int = 0
    pri: set[str] = dataclasses.field(default_factory=set)
    sec: set[str] = dataclasses.field(default_factory=set)
    #: primary node name -> memory of the running instances it would fail over to here
    peers: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def r_mem(self) -> int:
        return max(self.peers.values(), default=0)

    @property
    def fails_n1(self) -> bool:
        return self.f_mem < self.r_mem


@dataclasses.dataclass
class _Inst:
    name: str
    mem: int
    vcpus: int
    dsk: int
    nodes: list[str]
    tags: list[str]
    up: bool
    spec: dict[str, Any]


class _Failures:
    """Why each node could not take the instance (its first reason per role), for the
    explanation of a failed request."""

    def __init__(self) -> None:
        self.by_role: dict[str, dict[str, tuple[str, Any]]] = {"primary": {}, "secondary": {}}

    def add(self, role: str, node: str, reason: tuple[str, Any]) -> None:
        self.by_role[role].setdefault(node, reason)


def _fmt(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB" if abs(mib) >= 1024 else f"{int(mib)} MiB"


class Model:
    """The cluster as the input describes it, changed in place as placements are tried."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.groups: dict[str, dict[str, Any]] = data["nodegroups"]
        self.excl_prefixes = [t.split(":", 2)[2] for t in data.get("cluster_tags", [])
                              if t.startswith("htools:iextags:")]
        self.nodes: dict[str, _Node] = {}
        for name, n in data["nodes"].items():
            why = ("offline" if n.get("offline") else "drained" if n.get("drained")
                   else "not vm_capable" if not n.get("vm_capable", True)
                   else "no runtime data" if "free_memory" not in n else "")
            node = _Node(name=name, group=n["group"], usable=not why, why_not=why)
            if not why:
                node.t_mem, node.f_mem = int(n["total_memory"]), int(n["free_memory"])
                node.t_dsk, node.f_dsk = int(n["total_disk"]), int(n["free_disk"])
                node.t_cpu, node.r_cpu = int(n["total_cpus"]), int(n.get("reserved_cpus", 0))
            self.nodes[name] = node
        self.insts: dict[str, _Inst] = {}
        for name, i in data["instances"].items():
            inst = self._inst(name, i, list(i["nodes"]), i.get("admin_state", "up") == "up")
            self.insts[name] = inst
            self._account(inst, +1, memory=False)

    @staticmethod
    def _inst(name: str, i: dict[str, Any], nodes: list[str], up: bool) -> _Inst:
        disks = i.get("disks", [])
        spec = {"memory-size": int(i["memory"]), "cpu-count": int(i["vcpus"]),
                "disk-count": len(disks), "nic-count": len(i.get("nics", [])),
                "spindle-use": int(i.get("spindle_use", 1)),
                "disk-sizes": [int(d["size"]) for d in disks],
                "disk-template": i.get("disk_template")}
        return _Inst(name=name, mem=int(i["memory"]), vcpus=int(i["vcpus"]),
                     dsk=int(i.get("disk_space_total", 0)), nodes=nodes,
                     tags=list(i.get("tags", [])), up=up, spec=spec)

    # -- changing the model -------------------------------------------------------------------
    def _account(self, inst: _Inst, sign: int, *, memory: bool = True) -> None:
        """Add (sign 1) or remove (-1) the instance's use of its nodes. ``memory``: change the
        primary's free memory too (the input's free memory already counts existing ones)."""
        if not inst.nodes:
            return
        pname, snames = inst.nodes[0], inst.nodes[1:]
        primary = self.nodes.get(pname)
        if primary is not None:
            (primary.pri.add if sign > 0 else primary.pri.discard)(inst.name)
            primary.u_cpu += sign * inst.vcpus
            if memory:  # a stopped instance holds no memory (the input's free memory agrees)
                primary.f_mem -= sign * inst.mem if inst.up else 0
                primary.f_dsk -= sign * inst.dsk
        for sname in snames:
            node = self.nodes.get(sname)
            if node is None:
                continue
            (node.sec.add if sign > 0 else node.sec.discard)(inst.name)
            if memory:
                node.f_dsk -= sign * inst.dsk
            if inst.up:
                node.peers[pname] = node.peers.get(pname, 0) + sign * inst.mem
                if node.peers[pname] <= 0:
                    del node.peers[pname]

    def place(self, inst: _Inst, nodes: list[str]) -> None:
        inst.nodes = list(nodes)
        self.insts[inst.name] = inst
        self._account(inst, +1)

    def unplace(self, inst: _Inst) -> None:
        self._account(inst, -1)
        self.insts.pop(inst.name, None)

    def move(self, inst: _Inst, nodes: list[str]) -> None:
        """Move an existing instance (its memory follows the primary)."""
        self.unplace(inst)
        self.place(inst, nodes)

    # -- checks -------------------------------------------------------------------------------
    def excl_tags(self, tags: Iterable[str]) -> set[str]:
        return {t for t in tags for p in self.excl_prefixes if t.startswith(p + ":")}

    def policy_violation(self, inst: _Inst, group: str) -> str | None:
        """Why the instance breaks the group's instance policy, or None."""
        policy = self.groups[group].get("ipolicy") or self.data.get("ipolicy") or {}
        template = inst.spec["disk-template"]
        allowed = policy.get("disk-templates")
        if allowed is not None and template not in allowed:
            return f"disk template {template} is not allowed (allowed: {', '.join(allowed)})"
        problems: list[str] = []
        for pair in policy.get("minmax") or []:
            lo, hi = pair["min"], pair["max"]
            problems = []
            # as hail: no nic-count check (Herd's instances may have no NIC)
            for key in ("memory-size", "cpu-count", "disk-count", "spindle-use"):
                value = inst.spec[key]
                if key == "disk-count" and template == "diskless":
                    continue
                if not lo[key] <= value <= hi[key]:
                    problems.append(f"{key} {value} not in {lo[key]}..{hi[key]}")
            for index, size in enumerate(inst.spec["disk-sizes"]):
                if not lo["disk-size"] <= size <= hi["disk-size"]:
                    problems.append(f"disk {index} size {size} MiB not in "
                                    f"{lo['disk-size']}..{hi['disk-size']}")
            if not problems:
                return None
        return "; ".join(problems) if problems else None

    def _vcpu_limit(self, node: _Node) -> float:
        policy = self.groups[node.group].get("ipolicy") or {}
        return float(policy.get("vcpu-ratio", 4)) * max(1, node.t_cpu - node.r_cpu)

    def check_primary(self, node: _Node, inst: _Inst) -> tuple[str, Any] | None:
        """Why ``node`` cannot run ``inst`` (not yet placed), or None."""
        if not node.usable:
            return ("offline", node.why_not)
        room = node.f_mem - node.r_mem
        if inst.mem > room:
            return ("memory", max(0, room))
        if inst.dsk > node.f_dsk:
            return ("disk", node.f_dsk)
        if node.u_cpu + inst.vcpus > self._vcpu_limit(node):
            return ("cpu", (node.u_cpu, self._vcpu_limit(node)))
        mine = self.excl_tags(inst.tags)
        for other in node.pri:
            if other != inst.name and mine & self.excl_tags(self.insts[other].tags):
                return ("tags", sorted(mine & self.excl_tags(self.insts[other].tags))[0])
        return None

    def check_secondary(self, node: _Node, primary: _Node, inst: _Inst) -> tuple[str, Any] | None:
        """Why ``node`` cannot hold the mirror of ``inst`` running on ``primary``, or None."""
        if not node.usable:
            return ("offline", node.why_not)
        if node.group != primary.group:
            return ("group", self.groups.get(node.group, {}).get("name", node.group))
        if inst.dsk > node.f_dsk:
            return ("disk", node.f_dsk)
        need = node.peers.get(primary.name, 0) + (inst.mem if inst.up else 0)
        if need > node.f_mem:
            return ("n+1", (need, node.f_mem))
        return None

    # -- the score ----------------------------------------------------------------------------
    def score(self, group: str) -> float:
        nodes = [n for n in self.nodes.values() if n.usable and n.group == group]
        if not nodes:
            return 0.0

        def sd(values: list[float]) -> float:
            return statistics.pstdev(values) if len(values) > 1 else 0.0

        total = WEIGHTS["mem"] * sd([n.f_mem / max(1, n.t_mem) for n in nodes])
        total += WEIGHTS["disk"] * sd([n.f_dsk / n.t_dsk for n in nodes if n.t_dsk > 0])
        total += WEIGHTS["reserved_mem"] * sd([n.r_mem / max(1, n.t_mem) for n in nodes])
        total += WEIGHTS["vcpu"] * sd([n.u_cpu / max(1, n.t_cpu - n.r_cpu) for n in nodes])
        total += WEIGHTS["pri_load"] * sd([float(len(n.pri)) for n in nodes])
        total += WEIGHTS["all_load"] * sd([float(len(n.pri) + len(n.sec)) for n in nodes])
        total += WEIGHTS["n1"] * sum(len(n.pri) + len(n.sec) for n in nodes if n.fails_n1)
        conflicts = 0
        for n in nodes:
            seen: dict[str, int] = {}
            for name in n.pri:
                for tag in self.excl_tags(self.insts[name].tags):
                    seen[tag] = seen.get(tag, 0) + 1
            conflicts += sum(c - 1 for c in seen.values())
        return total + WEIGHTS["tags"] * conflicts

    def group_nodes(self, group: str) -> list[_Node]:
        return sorted((n for n in self.nodes.values() if n.group == group),
                      key=lambda n: n.name)


# -- placing one new instance -----------------------------------------------------------------
@dataclasses.dataclass
class _Choice:
    nodes: list[str]
    score: float
    group: str


def _best_in_group(model: Model, inst: _Inst, group: str, required: int,
                   failures: _Failures, allowed: set[str] | None = None) -> _Choice | None:
    best: _Choice | None = None
    nodes = [n for n in model.group_nodes(group) if allowed is None or n.name in allowed]
    for primary in nodes:
        reason = model.check_primary(primary, inst)
        if reason is not None:
            failures.add("primary", primary.name, reason)
            continue
        seconds: list[_Node | None] = [None] if required == 1 else [
            n for n in nodes if n.name != primary.name]
        for second in seconds:
            if second is not None:
                reason = model.check_secondary(second, primary, inst)
                if reason is not None:
                    failures.add("secondary", second.name, reason)
                    continue
            placement = [primary.name] + ([second.name] if second else [])
            model.place(inst, placement)
            score = model.score(group)
            model.unplace(inst)
            if best is None or (score, placement) < (best.score, best.nodes):
                best = _Choice(placement, score, group)
    return best


def _groups_for(model: Model, group_name: str | None) -> tuple[list[str], list[str]]:
    """(candidate group uuids in preference order, notes on groups left out)."""
    notes = []
    out = []
    for uuid, g in sorted(model.groups.items(), key=lambda kv: kv[1]["name"]):
        if group_name is not None and g["name"] != group_name and uuid != group_name:
            continue
        if g.get("alloc_policy") == "unallocable":
            notes.append(f"group {g['name']} is unallocable")
            continue
        out.append(uuid)
    return out, notes


def _explain(name: str, need: _Inst, failures: _Failures, notes: list[str],
             required: int) -> str:
    """One line saying, resource by resource, which nodes lack what."""
    parts: list[str] = []
    for role in ("primary", "secondary"):
        by_kind: dict[str, list[str]] = {}
        for node, (kind, value) in sorted(failures.by_role[role].items()):
            if kind in ("memory", "disk"):
                by_kind.setdefault(kind, []).append(f"{node} {_fmt(value)}")
            elif kind == "cpu":
                used, limit = value
                by_kind.setdefault(kind, []).append(f"{node} {used} of {limit:g} in use")
            elif kind == "n+1":
                want, free = value
                by_kind.setdefault(kind, []).append(
                    f"{node} would need {_fmt(want)} for failovers, has {_fmt(free)}")
            else:
                by_kind.setdefault(kind, []).append(f"{node} {value}")
        where = "" if role == "primary" else " for the second copy"
        texts = {
            "memory": f"no node has {_fmt(need.mem)} free memory{where} (N+1 reserve kept)",
            "disk": f"no node has {_fmt(need.dsk)} free disk{where}",
            "cpu": f"no node has room for {need.vcpus} more vCPUs{where}",
            "tags": f"nodes run an instance with the same exclusion tag{where}",
            "n+1": f"no node{where} could take over {_fmt(need.mem)} should the primary fail",
            "offline": f"nodes not usable{where}",
            "group": "nodes in another group (a mirror stays within one group)",
        }
        for kind in REASONS:
            if kind in by_kind:
                parts.append(f"{texts[kind]}: {', '.join(by_kind[kind])}")
    head = f"cannot place {name} ({required} node{'s' if required > 1 else ''})"
    if not parts and not notes:
        return head + ": no usable node (offline, drained, or not allowed for this request)"
    return "; ".join([head, *notes, *parts])


def _allocate_one(model: Model, req: dict[str, Any]) -> tuple[_Choice | None, str]:
    """Place one new instance in the model (kept there on success)."""
    inst = Model._inst(req["name"], req, [], True)
    required = int(req.get("required_nodes", 1))
    groups, notes = _groups_for(model, req.get("group_name"))
    failures = _Failures()
    choices: list[_Choice] = []
    wanted_nets = {n["network"] for n in req.get("nics") or [] if n.get("network")}
    for group in groups:
        violation = model.policy_violation(inst, group)
        if violation:
            notes.append(f"group {model.groups[group]['name']}: instance policy: {violation}")
            continue
        # hail's hasRequiredNetworks: the NICs' networks must be connected to the group
        absent = wanted_nets - set(model.groups[group].get("networks") or [])
        if absent:
            notes.append(f"group {model.groups[group]['name']} is not connected to the "
                         f"instance's network(s) {', '.join(sorted(absent))}")
            continue
        allowed = req.get("restrict-to-nodes")
        usable = [n for n in model.group_nodes(group) if n.usable
                  and (allowed is None or n.name in allowed)]
        if len(usable) < required:
            notes.append(f"group {model.groups[group]['name']} has {len(usable)} usable "
                         f"node(s), {required} needed")
        choice = _best_in_group(model, inst, group, required, failures,
                                None if allowed is None else set(allowed))
        if choice is not None:
            choices.append(choice)
    if not choices:
        return None, _explain(req["name"], inst, failures, notes, required)
    best = min(choices, key=lambda c: (POLICY_RANK.get(
        model.groups[c.group].get("alloc_policy", "preferred"), 2), c.score, c.nodes))
    model.place(inst, best.nodes)
    gname = model.groups[best.group]["name"]
    return best, (f"placed {req['name']} on {'/'.join(best.nodes)} in group {gname} "
                  f"(score {best.score:.6f})")


# -- moving existing instances ----------------------------------------------------------------
def _new_secondary(model: Model, inst: _Inst, avoid: set[str]) -> tuple[str | None, str]:
    """The best new secondary for a mirrored instance (its primary stays), or None and why."""
    primary = model.nodes[inst.nodes[0]]
    old = inst.nodes[1:]
    model.unplace(inst)
    failures = _Failures()
    best: tuple[float, str] | None = None
    try:
        for node in model.group_nodes(primary.group):
            if node.name in avoid or node.name == primary.name or node.name in old:
                continue
            reason = model.check_secondary(node, primary, inst)
            if reason is not None:
                failures.add("secondary", node.name, reason)
                continue
            model.place(inst, [primary.name, node.name])
            score = model.score(primary.group)
            model.unplace(inst)
            if best is None or (score, node.name) < best:
                best = (score, node.name)
    finally:
        model.place(inst, [primary.name, *old])
    if best is None:
        return None, _explain(inst.name, inst, failures, [], 2)
    return best[1], ""


def _replace_op(inst: str, node: str) -> dict[str, Any]:
    return {"OP_ID": "OP_INSTANCE_REPLACE_DISKS", "instance_name": inst,
            "early_release": False, "ignore_ipolicy": False,
            "mode": "replace_new_secondary", "disks": [], "remote_node": node}


def _migrate_op(inst: str) -> dict[str, Any]:
    return {"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": inst,
            "allow_runtime_changes": False, "ignore_ipolicy": False, "cleanup": False,
            "allow_failover": True, "ignore_hvversions": True}


def _evacuate_one(model: Model, inst: _Inst, mode: str) -> tuple[list[str] | None,
                                                                 list[dict[str, Any]], str]:
    """(new nodes, opcodes, why not) for one instance of a node-evacuate request."""
    if len(inst.nodes) < 2:
        return None, [], (f"instance {inst.name} has no second copy "
                          f"(disk template {inst.spec['disk-template']}) and cannot move")
    pname, sname = inst.nodes[0], inst.nodes[1]
    ops: list[dict[str, Any]] = []
    if mode in ("primary-only", "all"):
        secondary = model.nodes[sname]
        if not secondary.usable:
            return None, [], f"its secondary {sname} is {secondary.why_not}"
        if inst.up and inst.mem > secondary.f_mem:
            return None, [], (f"its secondary {sname} has {_fmt(secondary.f_mem)} free memory, "
                              f"{_fmt(inst.mem)} needed")
        model.move(inst, [sname, pname])
        ops.append(_migrate_op(inst.name))
    if mode in ("secondary-only", "all"):
        avoid = {pname} if mode == "all" else set()
        new, why = _new_secondary(model, inst, avoid)
        if new is None:
            if ops:  # undo the failover in the model: the instance does not move at all
                model.move(inst, [pname, sname])
            return None, [], why
        model.move(inst, [inst.nodes[0], new])
        ops.append(_replace_op(inst.name, new))
    return list(inst.nodes), ops, ""


# -- the entry point --------------------------------------------------------------------------
def run(data: dict[str, Any]) -> dict[str, Any]:
    """Answer the request in ``data`` as an external allocator would (success, info, result)."""
    request = data["request"]
    kind = request.get("type")
    model = Model(data)
    if kind == "allocate":
        choice, info = _allocate_one(model, request)
        if choice is None:
            return {"success": False, "info": info, "result": []}
        return {"success": True, "info": info, "result": choice.nodes}
    if kind == "multi-allocate":
        placed, failed, infos = [], [], []
        for req in request["instances"]:
            choice, info = _allocate_one(model, req)
            infos.append(info)
            if choice is None:
                failed.append(req["name"])
            else:
                placed.append([req["name"], choice.nodes])
        return {"success": bool(placed) or not failed, "info": "; ".join(infos),
                "result": [placed, failed]}
    if kind == "relocate":
        inst = model.insts.get(request["name"])
        if inst is None:
            return {"success": False, "info": f"unknown instance {request['name']}",
                    "result": []}
        if len(inst.nodes) < 2 or list(request["relocate_from"]) != inst.nodes[1:]:
            return {"success": False, "result": [],
                    "info": (f"relocation of {inst.name} moves only the secondary of a "
                             "mirrored instance (relocate_from = its secondary)")}
        new, why = _new_secondary(model, inst, set())
        if new is None:
            return {"success": False, "info": why, "result": []}
        return {"success": True, "info": f"new secondary of {inst.name}: {new}",
                "result": [new]}
    if kind == "node-evacuate":
        mode = request.get("evac_mode")
        if mode not in EVAC_MODES:
            return {"success": False, "result": [],
                    "info": f"invalid evac_mode {mode!r}: allowed are {', '.join(EVAC_MODES)}"}
        moved, failed, jobs = [], [], []
        for name in request["instances"]:
            inst = model.insts.get(name)
            if inst is None:
                failed.append([name, "unknown instance"])
                continue
            nodes, ops, why = _evacuate_one(model, inst, mode)
            if nodes is None:
                failed.append([name, why])
                continue
            group = model.groups[model.nodes[nodes[0]].group]["name"]
            moved.append([name, group, nodes])
            jobs.append(ops)
        return {"success": True, "info": "Request successful", "result": [moved, failed, jobs]}
    if kind == "change-group":
        return _change_group(model, request)
    return {"success": False, "result": [],
            "info": f"request type {kind!r} is not supported by the built-in allocator"}


def _change_group(model: Model, request: dict[str, Any]) -> dict[str, Any]:
    """Move each instance into the best of the target groups (hail's change-group): a
    mirrored instance gets the best primary/secondary pair there, reached as Ganeti does
    (new secondary on the future primary, migrate onto it, new secondary on the future
    secondary). Preferred groups before last_resort ones, never an unallocable one."""
    targets = list(request.get("target_groups") or [])
    moved, failed, jobs = [], [], []
    for name in request["instances"]:
        inst = model.insts.get(name)
        if inst is None:
            failed.append([name, "unknown instance"])
            continue
        current = {model.nodes[n].group for n in inst.nodes if n in model.nodes}
        if targets and set(targets) <= current and len(current) == 1:
            # already where any target would put it (Herd's caller never asks this)
            group = model.groups[next(iter(current))]["name"]
            moved.append([name, group, list(inst.nodes)])
            continue
        wanted = [g for g in (targets or model.groups) if g in model.groups
                  and g not in current]
        if not wanted:
            failed.append([name, "no other node group to move to"])
            continue
        nodes, why = _change_group_one(model, inst, wanted)
        if nodes is None:
            failed.append([name, why])
            continue
        pnode, snode = nodes
        model.move(inst, nodes)
        moved.append([name, model.groups[model.nodes[pnode].group]["name"], nodes])
        jobs.append([_replace_op(name, pnode), _migrate_op(name), _replace_op(name, snode)])
    return {"success": True, "info": "Request successful", "result": [moved, failed, jobs]}


def _change_group_one(model: Model, inst: _Inst,
                      groups: list[str]) -> tuple[list[str] | None, str]:
    """(new [primary, secondary], "") for one instance, or (None, why not)."""
    if len(inst.nodes) != 2:
        return None, (f"instance {inst.name} has no second copy (disk template "
                      f"{inst.spec['disk-template']}) and cannot change group")
    notes: list[str] = []
    candidates = []
    for group in groups:
        policy = model.groups[group].get("alloc_policy", "preferred")
        if policy == "unallocable":
            notes.append(f"group {model.groups[group]['name']} is unallocable")
            continue
        violation = model.policy_violation(inst, group)
        if violation:
            notes.append(f"group {model.groups[group]['name']}: instance policy: {violation}")
            continue
        candidates.append(group)
    if not candidates:
        return None, "; ".join(notes) or "no target node group"
    old = list(inst.nodes)
    model.unplace(inst)
    failures = _Failures()
    choices = []
    try:
        for group in candidates:
            choice = _best_in_group(model, inst, group, 2, failures)
            if choice is not None:
                choices.append(choice)
    finally:
        model.place(inst, old)
    if not choices:
        return None, _explain(inst.name, inst, failures, notes, 2)
    best = min(choices, key=lambda c: (POLICY_RANK.get(
        model.groups[c.group].get("alloc_policy", "preferred"), 2), c.score, c.nodes))
    return best.nodes, ""
