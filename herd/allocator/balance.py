"""The cluster balancer behind ``gnt-cluster rebalance``: hbal's score and hbal's greedy search,
as pure functions of the allocator input document (herd.allocator.protocol.build_input).

Why hbal's, to the decimal: admins compare ``hbal -m`` with what Herd says, and a plan that
"lowers the score" means something only if the score is the one they know. The model below
follows Ganeti 3.0.2's htools (``../shared/notes/ganeti-allocator.md`` section 2;
``src/Ganeti/HTools/Node.hs``, ``Cluster.hs``, ``Cluster/Moves.hs``, ``Cluster/Metrics.hs``):

- **score**: the weighted sum of hbal's 20 statistics over the group's online nodes (drained
  and offline nodes feed only the offline counts); with no utilisation data every instance
  weighs 1, so the load terms balance instance counts, as hbal's default does;
- **moves** of a mirrored instance (two nodes): failover (``f``), new secondary (``r:N``), and
  hbal's compositions ``r:N f``, ``f r:N``, ``f r:N f``; a move is allowed only if every node
  it touches passes hbal's checks (memory, disk, vCPU ratio and spindle ratio of the group's
  instance policy, exclusion tags, and no node that was N+1-clean fails N+1 afterwards);
- **search**: each round tries every move of every movable instance (mirrored, both nodes in
  the group, ``auto_balance`` set) and keeps the best; a round counts if it lowers the score
  and either the score is above ``min_gain_limit`` or the gain is at least ``min_gain``.

Not moved: instances without a second node (plain, file, diskless: their disks cannot follow
without a copy, and hbal leaves them too); shared-storage "failover to any node" is not offered.
Not modelled: forthcoming instances, exclusive storage, location and migration tags, dynamic
utilisation files.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

#: hbal's statistics in its order: (name, weight, how aggregated, over online nodes?).
#: "sd": population standard deviation; "sum": sum.
METRICS: tuple[tuple[str, float, str, bool], ...] = (
    ("free_mem_cv", 0.5, "sd", True),
    ("free_disk_cv", 0.5, "sd", True),
    ("n1_cnt", 1.0, "sum", True),
    ("reserved_mem_cv", 1.0, "sd", True),
    ("offline_all_cnt", 4.0, "sum", False),
    ("offline_pri_cnt", 16.0, "sum", False),
    ("vcpu_ratio_cv", 0.5, "sd", True),
    ("cpu_load_cv", 1.0, "sd", True),
    ("mem_load_cv", 1.0, "sd", True),
    ("disk_load_cv", 1.0, "sd", True),
    ("net_load_cv", 1.0, "sd", True),
    ("pri_tags_score", 2.0, "sum", True),
    ("spindles_cv", 0.5, "sd", True),
    ("free_mem_cv_forth", 0.5, "sd", True),
    ("free_disk_cv_forth", 0.5, "sd", True),
    ("vcpu_ratio_cv_forth", 0.5, "sd", True),
    ("spindles_cv_forth", 0.5, "sd", True),
    ("location_score", 1.0, "sum", True),
    ("location_exclusion_score", 1.0, "sum", True),
    ("reserved_mem_rtotal", 0.25, "sum", True),
)
#: The disk templates whose disks hbal counts against a node's dtotal/dfree (the volume
#: group); Herd's document names templates as Ganeti does.
LOCAL_STORAGE_TEMPLATES = frozenset({"drbd", "plain"})
EXCLUSION_TAG_PREFIX = "htools:iextags:"
#: hbal's defaults: -g/--min-gain, --min-gain-limit, -e/--min-score.
MIN_GAIN = 0.01
MIN_GAIN_LIMIT = 0.1
MIN_SCORE = 1e-9


class MoveRefused(Exception):
    """A move breaks one of hbal's placement rules (the reason is the message)."""


# -- the model --------------------------------------------------------------------------------
@dataclasses.dataclass
class BNode:
    """One node as hbal's Node sees it (memory in MiB, disk in MiB)."""

    name: str
    group: str
    offline: bool  # offline, drained, not vm_capable or no runtime facts
    t_mem: float = 0.0
    n_mem: int = 0
    f_mem: int = 0  # reported free memory (state of world)
    i_mem: int = 0  # memory of the running primaries (state of record)
    x_mem: int = 0  # unaccounted memory, fixed at load
    f_mem_forth: int = 0
    t_dsk: float = 0.0
    f_dsk: int = 0
    t_cpu: float = 1.0
    u_cpu: int = 0
    cpu_speed: float = 1.0
    vcpu_ratio: float = 4.0
    hi_spindles: float = 32.0
    inst_spindles: float = 0.0
    pri: list[str] = dataclasses.field(default_factory=list)
    sec: list[str] = dataclasses.field(default_factory=list)
    #: primary node -> memory of its instances mirrored here (what a failover would need)
    peers: dict[str, int] = dataclasses.field(default_factory=dict)
    r_mem: int = 0
    fail_n1: bool = False
    ptags: Counter[str] = dataclasses.field(default_factory=Counter)

    def clone(self) -> BNode:
        n = copy.copy(self)
        n.pri, n.sec, n.peers = list(self.pri), list(self.sec), dict(self.peers)
        n.ptags = Counter(self.ptags) if self.ptags else Counter()
        return n

    def unallocated(self) -> int:
        """hbal's unallocatedMem: free memory by the record, less what is unaccounted."""
        return int(self.t_mem) - self.n_mem - self.i_mem - max(0, self.x_mem)

    def values(self) -> tuple[float, ...]:
        """The node's 20 statistic inputs, in METRICS order (compDetailedCVNode)."""
        ipri, isec = len(self.pri), len(self.sec)
        if self.offline:  # only the offline counts are read for it
            return (0.0, 0.0, 0.0, 0.0, float(ipri + isec), float(ipri)) + (0.0,) * 14
        p_mem = self.unallocated() / self.t_mem
        p_dsk = 1.0 if self.t_dsk == 0 else self.f_dsk / self.t_dsk
        p_rem = self.r_mem / self.t_mem
        p_cpu = self.u_cpu / self.t_cpu / self.cpu_speed
        spindles = self.inst_spindles / self.hi_spindles if self.hi_spindles else 0.0
        n1 = float(ipri + isec) if self.fail_n1 else 0.0
        conflicts = float(sum(self.ptags.values()) - len(self.ptags))
        return (p_mem, p_dsk, n1, p_rem, float(ipri + isec), float(ipri), p_cpu,
                float(ipri), float(ipri), float(ipri + isec), float(ipri), conflicts,
                spindles, self.f_mem_forth / self.t_mem, p_dsk, p_cpu, spindles, 0.0, 0.0,
                p_rem)


@dataclasses.dataclass
class BInst:
    """One instance as hbal's Instance sees it."""

    name: str
    mem: int
    dsk: int
    vcpus: int
    spindle_use: int
    running: bool  # holds memory on its primary (hbal's usesMemory)
    offline: bool  # admin state offline
    auto_balance: bool
    local_storage: bool
    excl_tags: list[str]
    pnode: str
    snode: str | None

    @property
    def uses_sec_mem(self) -> bool:
        return not self.offline and self.auto_balance


def _excl_tags(cluster_tags: Iterable[str], tags: Iterable[str]) -> list[str]:
    """An instance's exclusion tags: its tags that start with a prefix named by a cluster
    tag ``htools:iextags:PREFIX`` (hbal matches the bare prefix)."""
    prefixes = [t[len(EXCLUSION_TAG_PREFIX):] for t in cluster_tags
                if t.startswith(EXCLUSION_TAG_PREFIX) and len(t) > len(EXCLUSION_TAG_PREFIX)]
    return [t for t in tags if any(t.startswith(p) for p in prefixes)]


class Cluster:
    """Nodes and instances from an allocator input document, as hbal loads them."""

    def __init__(self, data: Mapping[str, Any], *, static_kvm_node_memory: int = 0) -> None:
        self.groups: dict[str, dict[str, Any]] = dict(data.get("nodegroups") or {})
        cluster_policy = data.get("ipolicy") or {}
        kvm = (list(data.get("enabled_hypervisors") or ["kvm"]) or ["kvm"])[0] == "kvm"
        self.nodes: dict[str, BNode] = {}
        for name, n in sorted(data["nodes"].items()):
            policy = (self.groups.get(n["group"], {}).get("ipolicy") or cluster_policy)
            offline = bool(n.get("offline") or n.get("drained")
                           or not n.get("vm_capable", True) or "total_memory" not in n)
            node = BNode(name=name, group=n["group"], offline=offline)
            if not offline:
                ndp = n.get("ndparams") or {}
                node.t_mem = float(n["total_memory"])
                node.n_mem = int(n.get("reserved_memory", 0))
                if kvm and static_kvm_node_memory > 0:
                    node.n_mem = static_kvm_node_memory
                node.f_mem = node.f_mem_forth = int(n["free_memory"])
                node.t_dsk, node.f_dsk = float(n["total_disk"]), int(n["free_disk"])
                node.t_cpu = float(n["total_cpus"]) or 1.0
                node.u_cpu = int(n.get("reserved_cpus", 0))
                node.cpu_speed = float(ndp.get("cpu_speed", 1) or 1)
                node.vcpu_ratio = float(policy.get("vcpu-ratio", 4.0))
                node.hi_spindles = (float(policy.get("spindle-ratio", 32.0))
                                    * int(ndp.get("spindle_count", 1)))
            self.nodes[name] = node
        self.instances: dict[str, BInst] = {}
        tags = list(data.get("cluster_tags") or [])
        for name, i in sorted(data["instances"].items()):
            nodes = list(i["nodes"])
            state = i.get("admin_state", "up")
            inst = BInst(name=name, mem=int(i["memory"]), dsk=int(i.get("disk_space_total", 0)),
                         vcpus=int(i["vcpus"]), spindle_use=int(i.get("spindle_use", 1)),
                         running=state == "up", offline=state == "offline",
                         auto_balance=bool(i.get("auto_balance", True)),
                         local_storage=i.get("disk_template") in LOCAL_STORAGE_TEMPLATES,
                         excl_tags=_excl_tags(tags, i.get("tags") or []), pnode=nodes[0],
                         snode=nodes[1] if len(nodes) > 1 else None)
            self.instances[name] = inst
            self._load(inst)
        for node in self.nodes.values():  # Loader.buildPeers and updateMemStat
            node.r_mem = max(node.peers.values(), default=0)
            node.fail_n1 = node.f_mem < node.r_mem
            if not node.offline:
                recorded = int(node.t_mem) - node.n_mem - node.i_mem
                node.x_mem = recorded - node.f_mem

    def _load(self, inst: BInst) -> None:
        """Loader.fixNodes: the instance on its nodes as they were measured (their free
        memory and disk already count it)."""
        primary = self.nodes.get(inst.pnode)
        if primary is not None:
            primary.pri.append(inst.name)
            if not inst.offline:
                primary.u_cpu += inst.vcpus
            if inst.local_storage:
                primary.inst_spindles += inst.spindle_use
            if inst.running:
                primary.i_mem += inst.mem
            else:
                primary.f_mem_forth -= inst.mem
            primary.ptags.update(inst.excl_tags)
        secondary = self.nodes.get(inst.snode) if inst.snode else None
        if secondary is not None:
            secondary.sec.append(inst.name)
            if inst.local_storage:
                secondary.inst_spindles += inst.spindle_use
            if inst.uses_sec_mem:
                secondary.peers[inst.pnode] = secondary.peers.get(inst.pnode, 0) + inst.mem

    def group_of(self, name: str) -> str:
        return self.groups.get(name, {}).get("name", name)


# -- hbal's node updates (Node.hs removePri/removeSec/addPriEx/addSecExEx) ---------------------
def _remove_pri(node: BNode, inst: BInst) -> BNode:
    n = node.clone()
    n.pri.remove(inst.name)
    if inst.running:
        n.i_mem -= inst.mem
    n.fail_n1 = n.unallocated() <= n.r_mem
    if inst.local_storage:
        n.f_dsk += inst.dsk
        n.inst_spindles -= inst.spindle_use
    if not inst.offline:
        n.u_cpu -= inst.vcpus
    n.f_mem_forth += inst.mem
    n.ptags.subtract(inst.excl_tags)
    n.ptags = +n.ptags
    return n


def _remove_sec(node: BNode, inst: BInst, pnode: str) -> BNode:
    n = node.clone()
    n.sec.remove(inst.name)
    if inst.local_storage:
        n.f_dsk += inst.dsk
        n.inst_spindles -= inst.spindle_use
    left = n.peers.get(pnode, 0) - (inst.mem if inst.uses_sec_mem else 0)
    if left > 0:
        n.peers[pnode] = left
    else:
        n.peers.pop(pnode, None)
    n.r_mem = max(n.peers.values(), default=0)
    n.fail_n1 = n.unallocated() <= n.r_mem
    return n


def _add_pri(node: BNode, inst: BInst, force: bool) -> BNode:
    strict = not force
    i_mem = node.i_mem + (inst.mem if inst.running else 0)
    free = int(node.t_mem) - node.n_mem - i_mem - max(0, node.x_mem)
    fails_n1 = free <= node.r_mem
    dsk = node.f_dsk - inst.dsk if inst.local_storage else node.f_dsk
    spindles = node.inst_spindles + (inst.spindle_use if inst.local_storage else 0)
    u_cpu = node.u_cpu + (0 if inst.offline else inst.vcpus)
    p_cpu = u_cpu / node.t_cpu
    mem_forth = node.f_mem_forth - inst.mem
    if free <= 0:
        raise MoveRefused(f"{node.name}: not enough memory ({free} MiB would be left)")
    if inst.local_storage and dsk <= 0:
        raise MoveRefused(f"{node.name}: not enough disk ({dsk} MiB would be left)")
    if strict and inst.local_storage and spindles > node.hi_spindles:
        raise MoveRefused(f"{node.name}: spindle ratio of the instance policy exceeded")
    if strict and fails_n1 and not node.fail_n1:
        raise MoveRefused(f"{node.name}: would fail N+1 ({free} MiB free, "
                          f"{node.r_mem} MiB reserved for failovers)")
    if strict and 0 <= node.vcpu_ratio < p_cpu:
        raise MoveRefused(f"{node.name}: vCPU ratio {p_cpu:g} above the instance policy's "
                          f"{node.vcpu_ratio:g}")
    if strict and any(node.ptags.get(t) for t in inst.excl_tags):
        raise MoveRefused(f"{node.name}: runs an instance with the same exclusion tag")
    if strict and mem_forth <= 0:
        raise MoveRefused(f"{node.name}: not enough memory for its stopped instances too")
    n = node.clone()
    n.pri.append(inst.name)
    n.i_mem, n.fail_n1, n.f_dsk, n.inst_spindles = i_mem, fails_n1, dsk, spindles
    n.u_cpu, n.f_mem_forth = u_cpu, mem_forth
    n.ptags.update(inst.excl_tags)
    return n


def _add_sec(node: BNode, inst: BInst, pnode: str, force: bool,
             ignore_disks: bool = False) -> BNode:
    strict = not force
    sec_mem = inst.mem if inst.uses_sec_mem else 0
    peer = node.peers.get(pnode, 0) + sec_mem
    free = node.unallocated()
    dsk = node.f_dsk - inst.dsk
    spindles = node.inst_spindles + (inst.spindle_use if inst.local_storage else 0)
    r_mem = max(node.r_mem, peer)
    fails_n1 = free <= r_mem
    if not ignore_disks and dsk <= 0:
        raise MoveRefused(f"{node.name}: not enough disk for the copy ({dsk} MiB would be "
                          "left)")
    if strict and spindles > node.hi_spindles:
        raise MoveRefused(f"{node.name}: spindle ratio of the instance policy exceeded")
    if strict and sec_mem >= free:
        raise MoveRefused(f"{node.name}: not enough memory to take the instance over")
    if strict and fails_n1 and not node.fail_n1:
        raise MoveRefused(f"{node.name}: would fail N+1 ({free} MiB free, {r_mem} MiB "
                          "reserved for failovers)")
    if strict and sec_mem >= node.f_mem_forth:
        raise MoveRefused(f"{node.name}: not enough memory for its stopped instances too")
    n = node.clone()
    n.sec.append(inst.name)
    n.f_dsk, n.inst_spindles, n.r_mem, n.fail_n1 = dsk, spindles, r_mem, fails_n1
    n.peers[pnode] = peer
    return n


# -- moves ------------------------------------------------------------------------------------
#: Move kinds: hbal's IMove names and how its output writes them.
FAILOVER = "failover"  # f
REPLACE_SECONDARY = "replace-secondary"  # r:N
REPLACE_PRIMARY = "replace-primary"  # f r:N f
FAILOVER_AND_REPLACE = "failover-and-replace"  # f r:N
REPLACE_AND_FAILOVER = "replace-and-failover"  # r:N f


@dataclasses.dataclass(frozen=True)
class Move:
    """One step of a plan: the instance, its nodes before and after, and the score after."""

    instance: str
    kind: str
    target: str | None
    old_nodes: tuple[str, str]
    new_nodes: tuple[str, str]
    score: float
    running: bool

    @property
    def actions(self) -> list[tuple[str, str | None]]:
        """The operations in order: ("failover", None) or ("replace", new secondary)."""
        f: tuple[str, str | None] = ("failover", None)
        r: tuple[str, str | None] = ("replace", self.target)
        return {FAILOVER: [f], REPLACE_SECONDARY: [r], REPLACE_PRIMARY: [f, r, f],
                FAILOVER_AND_REPLACE: [f, r], REPLACE_AND_FAILOVER: [r, f]}[self.kind]

    @property
    def code(self) -> str:
        """hbal's ``a=`` column: ``f``, ``r:node3``, ``r:node3 f`` ..."""
        return " ".join("f" if a == "failover" else f"r:{n}" for a, n in self.actions)

    @property
    def nodes(self) -> list[str]:
        """Every node the move touches (hbal's involvedNodes), for batching."""
        return list(dict.fromkeys([*self.new_nodes, *self.old_nodes]))

    def opcodes(self) -> list[dict[str, Any]]:
        """The move as one job (hbal's iMoveToJob): a running instance migrates (falling
        back to a failover if it cannot), a stopped one fails over."""
        ops: list[dict[str, Any]] = []
        for action, node in self.actions:
            if action == "replace":
                ops.append({"OP_ID": "OP_INSTANCE_REPLACE_DISKS", "instance_name": self.instance,
                            "mode": "replace_new_secondary", "remote_node": node,
                            "disks": [], "early_release": False})
            elif self.running:
                ops.append({"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": self.instance,
                            "allow_failover": True})
            else:
                ops.append({"OP_ID": "OP_INSTANCE_FAILOVER", "instance_name": self.instance})
        return ops

    def to_dict(self) -> dict[str, Any]:
        return {"instance": self.instance, "kind": self.kind, "code": self.code,
                "target": self.target, "old_nodes": list(self.old_nodes),
                "new_nodes": list(self.new_nodes), "score": self.score,
                "opcodes": self.opcodes()}


def removed(nodes: Mapping[str, BNode], inst: BInst) -> tuple[BNode, BNode]:
    """The instance's primary and secondary without it: where every move starts (computed
    once per instance and round by the search)."""
    assert inst.snode is not None
    return (_remove_pri(nodes[inst.pnode], inst),
            _remove_sec(nodes[inst.snode], inst, inst.pnode))


def apply_move(nodes: Mapping[str, BNode], inst: BInst, kind: str, target: str | None,
               force: bool = False, without: tuple[BNode, BNode] | None = None,
               ) -> tuple[dict[str, BNode], tuple[str, str]]:
    """The nodes a move changes (new objects) and the instance's new (primary, secondary);
    raises MoveRefused naming the rule it breaks (Moves.hs applyMoveEx). ``without``: what
    :func:`removed` gives for the instance, if already known."""
    assert inst.snode is not None
    op, os_ = inst.pnode, inst.snode
    old_p, old_s = nodes[op], nodes[os_]
    int_p, int_s = without or removed(nodes, inst)
    force_p = old_p.offline or force
    if kind == FAILOVER:
        new_p = _add_pri(int_s, inst, force_p)
        new_s = _add_sec(int_p, inst, os_, force_p, ignore_disks=old_p.offline)
        return {os_: new_p, op: new_s}, (os_, op)
    assert target is not None
    tgt = nodes[target]
    if kind == REPLACE_SECONDARY:
        new_s = _add_sec(tgt, inst, op, old_s.offline or force)
        return {op: _add_pri(int_p, inst, True), target: new_s, os_: int_s}, (op, target)
    if kind == REPLACE_PRIMARY:
        tmp_s = _remove_pri(_add_pri(int_s, inst, force_p), inst)
        new_p = _add_pri(tgt, inst, force_p)
        new_s = _add_sec(tmp_s, inst, target, force_p)
        return {target: new_p, op: int_p, os_: new_s}, (target, os_)
    if kind == REPLACE_AND_FAILOVER:
        new_p = _add_pri(tgt, inst, force)
        new_s = _add_sec(int_p, inst, target, old_s.offline or force)
        return {target: new_p, op: new_s, os_: int_s}, (target, op)
    if kind == FAILOVER_AND_REPLACE:
        new_p = _add_pri(int_s, inst, force_p)
        new_s = _add_sec(tgt, inst, os_, force_p)
        return {os_: new_p, op: int_p, target: new_s}, (os_, target)
    raise ValueError(f"unknown move {kind!r}")


# -- the score --------------------------------------------------------------------------------
def _stat(kind: str, values: list[float]) -> float:
    if kind == "sum":
        return math.fsum(values)
    if not values:
        return 0.0
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))


def score_of(nodes: Iterable[BNode]) -> float:
    """hbal's cluster score (compCV) of these nodes."""
    online: list[tuple[float, ...]] = []
    offline: list[tuple[float, ...]] = []
    for node in nodes:
        (offline if node.offline else online).append(node.values())
    total = 0.0
    for index, (_name, weight, kind, on_online) in enumerate(METRICS):
        rows = online if on_online else offline
        total += weight * _stat(kind, [row[index] for row in rows])
    return total


def metrics_of(nodes: Iterable[BNode]) -> dict[str, float]:
    """Each statistic unweighted (hbal -C -v's "coefficients"), for explaining a score."""
    listed = list(nodes)
    out = {}
    for index, (name, _weight, kind, on_online) in enumerate(METRICS):
        rows = [n.values() for n in listed if n.offline != on_online]
        out[name] = _stat(kind, [row[index] for row in rows])
    return out


def group_score(data: Mapping[str, Any], group: str, **options: Any) -> float:
    """The score of one node group (uuid) of an input document."""
    cluster = Cluster(data, **options)
    return score_of(n for n in cluster.nodes.values() if n.group == group)


# -- the search -------------------------------------------------------------------------------
@dataclasses.dataclass
class Options:
    """hbal's knobs that ``gnt-cluster rebalance`` offers (the names are hbal's)."""

    max_length: int = -1  # -l/--max-length: at most this many moves (-1: no limit)
    min_gain: float = MIN_GAIN  # -g/--min-gain
    min_gain_limit: float = MIN_GAIN_LIMIT  # --min-gain-limit
    min_score: float = MIN_SCORE  # -e/--min-score
    disk_moves: bool = True  # --no-disk-moves: failovers only
    instance_moves: bool = True  # --no-instance-moves: new secondaries only
    evac_mode: bool = False  # --evac-mode: only instances on offline or drained nodes
    static_kvm_node_memory: int = 0  # hbal's --static-kvm-node-memory (hbal: 4096)


@dataclasses.dataclass
class Plan:
    """The moves for one node group and the scores before and after."""

    group: str
    group_name: str
    initial_score: float
    moves: list[Move]
    unmovable: list[str]  # instances the balancer leaves where they are, and why

    @property
    def final_score(self) -> float:
        return self.moves[-1].score if self.moves else self.initial_score

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "group_name": self.group_name,
                "initial_score": self.initial_score, "final_score": self.final_score,
                "moves": [m.to_dict() for m in self.moves], "unmovable": self.unmovable,
                "batches": batch_indexes(self.moves)}


def _possible(inst: BInst, use_secondary: bool, opts: Options) -> list[str]:
    """hbal's possibleMoves for a mirrored instance and one target node."""
    if not opts.disk_moves:
        return []
    if not opts.instance_moves:
        return [REPLACE_SECONDARY]
    if not use_secondary:
        return [REPLACE_SECONDARY, REPLACE_AND_FAILOVER]
    return [REPLACE_SECONDARY, REPLACE_AND_FAILOVER, REPLACE_PRIMARY, FAILOVER_AND_REPLACE]


def _movable(cluster: Cluster, inst: BInst, group: str) -> str | None:
    """Why the balancer leaves ``inst`` alone, or None."""
    if inst.snode is None:
        return "no second node (its disks cannot follow)"
    if not inst.auto_balance:
        return "auto_balance is off"
    groups = {cluster.nodes[n].group for n in (inst.pnode, inst.snode) if n in cluster.nodes}
    if groups != {group}:
        return "its nodes are in different groups"
    return None


def plan_group(cluster: Cluster, group: str, opts: Options) -> Plan:
    """hbal's greedy balancing of one group (Cluster.hs tryBalance, round after round)."""
    nodes = {name: n for name, n in cluster.nodes.items() if n.group == group}
    insts = {name: dataclasses.replace(i) for name, i in cluster.instances.items()
             if i.pnode in nodes}
    unmovable = []
    movable = []
    for name, inst in sorted(insts.items()):
        why = _movable(cluster, inst, group)
        if why is None:
            movable.append(name)
        elif inst.snode is not None:  # a single-node instance is never a candidate: no noise
            unmovable.append(f"{name}: {why}")
    score = score_of(nodes.values())
    plan = Plan(group=group, group_name=cluster.group_of(group), initial_score=score,
                moves=[], unmovable=unmovable)
    while (opts.max_length < 0 or len(plan.moves) < opts.max_length) and \
            score > opts.min_score:
        best = _best_move(nodes, insts, movable, score, opts)
        if best is None:
            break
        move, changed, new_nodes = best
        if not (move.score < score and (score > opts.min_gain_limit
                                        or score - move.score >= opts.min_gain)):
            break
        nodes.update(changed)
        inst = insts[move.instance]
        inst.pnode, inst.snode = new_nodes
        plan.moves.append(move)
        score = move.score
    return plan


class _Sums:
    """Running sums of the nodes' statistic inputs, so that a candidate move is scored from
    the two or three nodes it changes instead of every node of the group (hbal updates its
    statistics the same way). Used only to rank candidates: the chosen move's score is
    computed afresh by score_of."""

    def __init__(self, nodes: list[BNode]) -> None:
        self.vectors = {n.name: n.values() for n in nodes}
        offline = {n.name for n in nodes if n.offline}
        self.count = 0
        self.on = [0.0] * len(METRICS)
        self.on_sq = [0.0] * len(METRICS)
        self.off = [0.0] * len(METRICS)
        for name, vec in self.vectors.items():
            self._add(name in offline, vec, 1.0)

    def _add(self, offline: bool, vec: tuple[float, ...], sign: float) -> None:
        if offline:
            for i, v in enumerate(vec):
                self.off[i] += sign * v
            return
        self.count += int(sign)
        for i, v in enumerate(vec):
            self.on[i] += sign * v
            self.on_sq[i] += sign * v * v

    def score_with(self, changed: Mapping[str, BNode]) -> float:
        """The score were ``changed`` to replace the nodes of the same names."""
        on, on_sq, off = list(self.on), list(self.on_sq), list(self.off)
        for name, node in changed.items():
            old, new = self.vectors[name], node.values()
            target = off if node.offline else on
            for i in range(len(METRICS)):
                target[i] += new[i] - old[i]
                if not node.offline:
                    on_sq[i] += new[i] * new[i] - old[i] * old[i]
        total = 0.0
        n = self.count
        for i, (_name, weight, kind, on_online) in enumerate(METRICS):
            if kind == "sum":
                total += weight * (on[i] if on_online else off[i])
            elif n and on_online:
                mean = on[i] / n
                total += weight * math.sqrt(max(0.0, on_sq[i] / n - mean * mean))
        return total


#: Below this, two candidate scores are a tie (the first found is kept, as hbal keeps it).
_TIE = 1e-9


def _best_move(nodes: dict[str, BNode], insts: dict[str, BInst], movable: list[str],
               score: float, opts: Options,
               ) -> tuple[Move, dict[str, BNode], tuple[str, str]] | None:
    online = sorted(n for n, node in nodes.items() if not node.offline)
    sums = _Sums(list(nodes.values()))
    best: tuple[str, str, str | None, dict[str, BNode], tuple[str, str]] | None = None
    best_score = score
    for name in movable:
        inst = insts[name]
        assert inst.snode is not None
        if opts.evac_mode and not (nodes[inst.pnode].offline or nodes[inst.snode].offline):
            continue
        use_secondary = inst.snode in online and opts.instance_moves
        candidates: list[tuple[str, str | None]] = []
        if use_secondary:
            candidates.append((FAILOVER, None))
        for target in online:
            if target in (inst.pnode, inst.snode):
                continue
            candidates.extend((kind, target) for kind in _possible(inst, use_secondary, opts))
        without = removed(nodes, inst)
        for kind, target in candidates:
            try:
                changed, new_nodes = apply_move(nodes, inst, kind, target, without=without)
            except MoveRefused:
                continue
            after = sums.score_with(changed)
            if after < best_score - _TIE:
                best_score = after
                best = (name, kind, target, changed, new_nodes)
    if best is None:
        return None
    name, kind, target, changed, new_nodes = best
    inst = insts[name]
    assert inst.snode is not None
    exact = score_of({**nodes, **changed}.values())
    move = Move(instance=name, kind=kind, target=target, old_nodes=(inst.pnode, inst.snode),
                new_nodes=new_nodes, score=exact, running=inst.running)
    return move, changed, new_nodes


def plan(data: Mapping[str, Any], group: str | None = None,
         opts: Options | None = None) -> list[Plan]:
    """Plans for the groups of an input document: the one named (name or uuid), or each
    group with nodes. Moves never cross a group (as hbal, which balances one group)."""
    opts = opts or Options()
    cluster = Cluster(data, static_kvm_node_memory=opts.static_kvm_node_memory)
    used = {n.group for n in cluster.nodes.values()}
    uuids = sorted(used, key=cluster.group_of)
    if group is not None:
        uuids = [u for u in uuids if group in (u, cluster.group_of(u))]
        if not uuids:
            known = ", ".join(sorted(cluster.group_of(u) for u in used)) or "none"
            raise ValueError(f"unknown node group '{group}' (groups with nodes: {known})")
    return [plan_group(cluster, uuid, opts) for uuid in uuids]


# -- batches ----------------------------------------------------------------------------------
def batches(moves: list[Move]) -> list[list[Move]]:
    """Consecutive moves grouped so that no node is touched twice in a batch (hbal's
    jobsets, splitJobs): a batch's jobs can run at once, and every batch sees the nodes as
    the plan left them after the batch before."""
    out: list[list[Move]] = []
    used: set[str] = set()
    for move in moves:
        touched = set(move.nodes)
        if out and not touched & used:
            out[-1].append(move)
            used |= touched
        else:
            out.append([move])
            used = touched
    return out


def batch_indexes(moves: list[Move]) -> list[list[int]]:
    """:func:`batches` as positions in ``moves`` (what a plan's caller submits)."""
    out: list[list[int]] = []
    start = 0
    for batch in batches(moves):
        out.append(list(range(start, start + len(batch))))
        start += len(batch)
    return out
