"""Where the cluster configuration lives in etcd: one key per object, JSON values.

Pure functions, no I/O: the store (herd.config.etcdstore) reads and writes what these compute.

    /herd/config/cluster               the Cluster object (without nodes, groups, instances)
    /herd/config/nodegroups/<uuid>     a NodeGroup
    /herd/config/nodes/<uuid>          a Node
    /herd/config/instances/<uuid>      an Instance
    /herd/config/networks/<uuid>       a Network
    /herd/config/meta                  {"version": layout version, "migrated_from": serial}

Keys carry uuids, never names, so a rename writes one object. A change writes only the keys
whose text changed; which objects a save looks at is its :class:`Scope`, taken from the locks
the job holds (an operation may only change what it holds exclusively), so that a save costs
the objects of one operation, not the size of the cluster, and never persists another job's
half-done object.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from herd.objects import ConfigData, Instance
from herd.objects.base import gc_paused

PREFIX = "/herd/config/"
CLUSTER_KEY = PREFIX + "cluster"
META_KEY = PREFIX + "meta"
#: The config schema version: what is stored under PREFIX and how (etcd's meta key holds the
#: version the stored config has; herd.upgrade compares it with a target version's).
LAYOUT_VERSION = 1
#: The collections of the document, each under its own key prefix.
COLLECTIONS = ("nodegroups", "nodes", "instances", "networks")
#: Most operations one transaction may carry (etcd's --max-txn-ops default is 128).
MAX_TXN_OPS = 120


def object_key(collection: str, uuid: str) -> str:
    return f"{PREFIX}{collection}/{uuid}"


def parse_key(key: str) -> tuple[str, str] | None:
    """(collection, uuid) of an object key; ("cluster", "") / ("meta", ""); None if foreign."""
    if not key.startswith(PREFIX):
        return None
    rest = key[len(PREFIX):]
    if rest in ("cluster", "meta"):
        return rest, ""
    collection, _, uuid = rest.partition("/")
    if collection in COLLECTIONS and uuid and "/" not in uuid:
        return collection, uuid
    return None


def dumps(obj: Mapping[str, Any]) -> str:
    """The stored text of an object: stable (sorted keys), compact."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Scope:
    """Which objects a save compares with what is stored.

    ``None`` for a collection means all of it. The cluster object and node groups are always
    compared (one object, a handful), and so are networks (a few; an instance's address
    lives in its NIC, not in the network object); objects added to or removed from a
    collection are always found (comparing uuid sets is cheap), whatever the scope.
    """

    instances: frozenset[str] | None = None  # instance names
    nodes: frozenset[str] | None = None  # node uuids

    @classmethod
    def everything(cls) -> Scope:
        return cls()


EVERYTHING = Scope()


def scope_from_locks(requests: Iterable[Any], level_cluster: int, level_instance: int,
                     level_node: int, all_name: str = "*") -> Scope:
    """The objects a job may change: what it holds exclusively. The whole cluster held
    exclusively (or a whole level) means everything of that level."""
    instances: set[str] | None = set()
    nodes: set[str] | None = set()
    for req in requests:
        if req.level == level_cluster and not req.shared:
            return EVERYTHING
        if req.level == level_instance and instances is not None:
            if req.name == all_name:
                instances = None
            elif not req.shared:
                instances.add(req.name)
        elif req.level == level_node and nodes is not None:
            if req.name == all_name:
                nodes = None
            elif not req.shared:
                nodes.add(req.name)
    return Scope(None if instances is None else frozenset(instances),
                 None if nodes is None else frozenset(nodes))


@dataclass
class Change:
    """What a save must write: puts (key -> text) and deletes."""

    puts: dict[str, str] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.puts or self.deletes)


def uuid_index(stored: Mapping[str, Any]) -> dict[str, set[str]]:
    """The uuids per collection among the stored keys (the store keeps this up to date, so
    that a save need not look at every key)."""
    index: dict[str, set[str]] = {c: set() for c in COLLECTIONS}
    for key in stored:
        parsed = parse_key(key)
        if parsed is not None and parsed[0] in index:
            index[parsed[0]].add(parsed[1])
    return index


def _scoped(cfg: ConfigData, collection: str, scope: Scope,
            names: dict[str, str] | None) -> Iterable[str]:
    objects = getattr(cfg, collection)
    if collection == "nodes" and scope.nodes is not None:
        return [u for u in scope.nodes if u in objects]
    if collection == "instances" and scope.instances is not None:
        out = []
        for name in scope.instances:
            uuid = names.get(name) if names is not None else None
            if uuid is None or uuid not in objects or objects[uuid].name != name:
                # not in the (possibly stale) name index: look for it
                uuid = next((u for u, i in objects.items() if i.name == name), None)
                if uuid is not None and names is not None:
                    names[name] = uuid
            if uuid is not None:
                out.append(uuid)
        return out
    return objects.keys()


def _presence_changes(objects: Mapping[str, Any], have: set[str]) -> tuple[set[str], set[str]]:
    """(uuids added, uuids removed) of a collection against the stored ``have``.

    A :class:`~herd.config.tracking.KeyTrackingDict` says which keys were touched: only those
    are looked at, and the ones whose presence now matches etcd are forgotten (a key added
    while its save is on its way stays noted until etcd holds it). If the counts then
    disagree (a change that bypassed the tracking) or the collection is a plain dict, the
    uuid sets are compared in full."""
    touched = getattr(objects, "touched", None)
    if touched is not None:
        added = {u for u in touched if u in objects and u not in have}
        removed = {u for u in touched if u not in objects and u in have}
        touched.difference_update([u for u in touched if (u in objects) == (u in have)])
        if len(have) + len(added) - len(removed) == len(objects):
            return added, removed
    live = objects.keys()
    return set(live - have), set(have - live)


def diff(cfg: ConfigData, stored: Mapping[str, str], scope: Scope = EVERYTHING,
         index: Mapping[str, set[str]] | None = None,
         names: dict[str, str] | None = None) -> Change:
    """The keys to write so that etcd holds ``cfg`` for the objects in ``scope``, given the
    ``stored`` texts (key -> text of every object key in etcd) and their ``index`` (built
    from ``stored`` when not given). Objects added or removed are found whatever the scope
    (see :func:`_presence_changes`), so a save costs the objects in scope, not the config.
    ``names``: instance name -> uuid, kept by the caller between saves (it may be stale:
    a miss is looked up and remembered)."""
    index = uuid_index(stored) if index is None else index
    change = Change()

    def consider(key: str, obj: Any) -> None:
        text = dumps(obj.to_dict())
        if stored.get(key) != text:
            change.puts[key] = text

    consider(CLUSTER_KEY, cfg.cluster)
    for collection in COLLECTIONS:
        objects = getattr(cfg, collection)
        have = index.get(collection, set())
        added, removed = _presence_changes(objects, have)
        change.deletes += [object_key(collection, u) for u in removed]
        for uuid in set(_scoped(cfg, collection, scope, names)) | added:
            consider(object_key(collection, uuid), objects[uuid])
    change.deletes.sort()
    return change


class DamagedConfig(ValueError):
    """The stored config cannot be used: the message names the key and what is wrong."""


def assemble_document(texts: Mapping[str, str], revision: int) -> dict[str, Any]:
    """The config document (as config.data held it) from the stored texts (key -> text);
    ``revision`` becomes its serial number. Refuses text that is not JSON, naming the key."""
    def parse(key: str, text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError as exc:
            raise DamagedConfig(f"{key} is not JSON: {exc}") from None

    if CLUSTER_KEY not in texts:
        raise DamagedConfig(f"{CLUSTER_KEY} is missing")
    doc: dict[str, Any] = {"cluster": parse(CLUSTER_KEY, texts[CLUSTER_KEY]),
                           "serial_no": revision}
    for collection in COLLECTIONS:
        doc[collection] = {}
    for key, text in texts.items():
        parsed = parse_key(key)
        if parsed is None or parsed[0] in ("cluster", "meta"):
            continue
        collection, uuid = parsed
        doc[collection][uuid] = parse(key, text)
    return doc


def assemble(texts: Mapping[str, str], revision: int) -> ConfigData:
    """The config from the stored texts, checked as config.data is (herd.config.shape).

    The instances (all but a few of the keys) are parsed, checked and built one at a time,
    each parsed form dropped as soon as its object exists: parsing all 20,000 first, as the
    document of :func:`assemble_document`, left masterd 86 MiB larger for 35 MiB of objects
    (the freed forms scattered among the objects kept the allocator's memory taken); one at a
    time it is 34 MiB. The rest of the document (cluster, groups, nodes, networks) is small
    and checked whole first, so each instance is checked against the nodes it names."""
    from herd.config.shape import config_problem, instance_problem

    instance_texts = {}
    rest = {}
    for key, text in texts.items():
        parsed = parse_key(key)
        if parsed is not None and parsed[0] == "instances":
            instance_texts[parsed[1]] = (key, text)
        else:
            rest[key] = text
    with gc_paused():
        doc = assemble_document(rest, revision)
        problem = config_problem(doc)
        instances: dict[str, Instance] = {}
        for uuid, (key, text) in instance_texts.items():
            if problem is not None:
                break
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise DamagedConfig(f"{key} is not JSON: {exc}") from None
            problem = instance_problem(uuid, data, doc["nodes"])
            if problem is None:
                try:
                    instances[uuid] = Instance.from_dict(data)
                except (TypeError, ValueError, KeyError, AttributeError) as exc:
                    problem = f"{type(exc).__name__}: {exc}"
        if problem is None:
            try:
                cfg = ConfigData.from_dict(doc)
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                cfg.instances = instances
                return cfg
    raise DamagedConfig(problem)


def batches(change: Change, size: int = MAX_TXN_OPS) -> list[Change]:
    """``change`` cut into pieces of at most ``size`` operations (for the first import of a
    big config; everyday changes are one transaction)."""
    ops: list[tuple[str, str | None]] = [(k, v) for k, v in change.puts.items()]
    ops += [(k, None) for k in change.deletes]
    out = []
    for start in range(0, len(ops), size):
        piece = Change()
        for key, text in ops[start:start + size]:
            if text is None:
                piece.deletes.append(key)
            else:
                piece.puts[key] = text
        out.append(piece)
    return out


#: One schema step: the stored texts (key -> text, the meta key left out) of one version in,
#: those of the next out.
Migration = Callable[[dict[str, str]], dict[str, str]]
#: The steps by the version they upgrade from. None yet: 1 is the first schema etcd held. A
#: change of what is stored raises LAYOUT_VERSION and adds its step here; the new masterd
#: migrates on its first load (``gnt-cluster upgrade`` restarts it onto the new code).
MIGRATIONS: dict[int, Migration] = {}


def migrate(texts: Mapping[str, str], version: int, target: int = LAYOUT_VERSION,
            migrations: Mapping[int, Migration] = MIGRATIONS) -> dict[str, str]:
    """Pure: the stored texts of schema ``version`` brought to ``target``, step by step.
    Refuses (DamagedConfig) a version newer than ``target`` or a missing step."""
    if version > target:
        raise DamagedConfig(f"the stored config has schema {version}, this code reads up to "
                            f"{target}")
    out = dict(texts)
    for step in range(version, target):
        if step not in migrations:
            raise DamagedConfig(f"no migration of the config from schema {step} to {step + 1}")
        out = migrations[step](out)
    return out


def change_between(old: Mapping[str, str], new: Mapping[str, str]) -> Change:
    """Pure: what turns the stored texts ``old`` into ``new``."""
    return Change(puts={k: v for k, v in new.items() if old.get(k) != v},
                  deletes=sorted(k for k in old if k not in new))
