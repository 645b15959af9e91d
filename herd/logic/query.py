"""Queries answered by masterd without a job: instances, nodes, cluster, OS definitions.

Each object is described by a dict keyed by Ganeti's field names (``name``, ``pnode``,
``oper_state``, ``be/memory``, ``disk.sizes``, ...), defined once in :mod:`herd.fields`.
Callers name the fields they show and only those are computed; the nodes are asked (once
each, concurrently) only when a requested field needs live data, and what could not be
learnt is None (shown as ``?``/``-``), never a guess.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

from herd import errors
from herd import fields as _fields
from herd.logic.base import MasterContext
from herd.logic.specs import hypervisor_class
from herd.objects import ConfigData, Instance, Node


async def _gather_nodes(ctx: MasterContext, nodes: list[Node], method: str
                        ) -> dict[str, Any]:
    async def one(node: Node) -> tuple[str, Any]:
        if node.offline:
            return node.uuid, None
        try:
            return node.uuid, await getattr(ctx.rpc.node(node), method)()
        except errors.HerdError:
            return node.uuid, None
    results = await asyncio.gather(*(one(n) for n in nodes))
    return dict(results)


async def _instance_live(ctx: MasterContext, cfg: ConfigData, instances: list[Instance],
                         sources: set[str],
                         primaries: set[str] | None = None) -> _fields.InstanceLive:
    """Ask the nodes only what the requested fields need: each primary node's running guests
    once (indexed by name), and mirror states only for templates that have one.
    ``primaries``: the instances' primary nodes, when the caller knows them already."""
    live = _fields.InstanceLive()
    if not instances:
        return live
    if _fields.LIVE_INSTANCES in sources:
        nodes = primaries if primaries is not None else {i.primary_node for i in instances}
        listings = await _gather_nodes(ctx, [cfg.nodes[u] for u in nodes if u in cfg.nodes],
                                       "instance_list")
        for uuid, listing in listings.items():
            live.by_node[uuid] = None if listing is None else {r["name"]: r for r in listing}
        live.fetched.add(_fields.LIVE_INSTANCES)
    if _fields.LIVE_MIRROR in sources:
        from herd.logic.templates import template_of

        # only templates with a live disk state (a mirror's) answer; the others cost no RPC
        states = await asyncio.gather(*(template_of(inst).status(ctx, inst)
                                        for inst in instances))
        live.mirror = {inst.name: state for inst, state in zip(instances, states, strict=True)
                       if state is not None}
        live.fetched.add(_fields.LIVE_MIRROR)
    return live


class InstanceQuery:
    """One instance query in its steps, so that masterd can ask the nodes, compare what they
    said with what a kept answer was computed from (herd.rpc.answer_cache), and only then
    compute rows, in pieces between which its event loop runs other work.

    ``names``: those instances (NotFoundError names a missing one), else all by name. With
    ``fields``, each row holds those fields only (unknown names are left out: the callers
    report them) and the nodes are asked only if one of them needs live data (and ``live``).
    Without, a full row as Herd always answered: every config field, the per-disk/NIC/
    hypervisor-parameter families, and with ``live`` the live ones."""

    def __init__(self, ctx: MasterContext, names: list[str] | None, live: bool = True,
                 fields: list[str] | None = None) -> None:
        self.ctx = ctx
        self.cfg = cfg = ctx.config.data
        if names:
            self.instances = [cfg.get_instance(n) for n in names]
        else:
            self.instances = sorted(cfg.instances.values(), key=lambda i: i.name)
        self.full = fields is None
        if fields is None:
            self.wanted = [f for f in _fields.INSTANCE.fields.values() if live or f.live is None]
        else:
            self.wanted = _fields.INSTANCE.resolve(fields)
            if not live:
                self.wanted = [f for f in self.wanted if f.live is None]
        self.sources = _fields.INSTANCE.live_sources(self.wanted)
        self.primaries = {i.primary_node for i in self.instances} \
            if _fields.LIVE_INSTANCES in self.sources else None

    async def fetch(self) -> _fields.InstanceLive:
        """What the nodes say now, for the fields asked (nothing is asked for config fields).
        May be called again (masterd asks again for each round of a kept query)."""
        return await _instance_live(self.ctx, self.cfg, self.instances, self.sources,
                                    self.primaries)

    @staticmethod
    def stamp(state: _fields.InstanceLive) -> Any:
        """What of the nodes' answers the rows depend on (compared with ==)."""
        return (state.by_node, state.mirror) if state.fetched else None

    def rows(self, state: _fields.InstanceLive) -> Iterator[dict[str, Any]]:
        cfg, ctx, wanted, full = self.cfg, self.ctx, self.wanted, self.full
        hv_defaults: dict[str, dict[str, Any]] = {}  # per hypervisor, once per query

        def fill_hv(inst: Instance) -> dict[str, Any]:
            defaults = hv_defaults.get(inst.hypervisor)
            if defaults is None:
                defaults = hypervisor_class(inst.hypervisor, ctx.paths).parameter_defaults()
                hv_defaults[inst.hypervisor] = defaults
            return cfg.filled_hvparams(inst, defaults)

        for inst in self.instances:
            view = _fields.InstanceView(cfg, inst, state, fill_hv)
            row = _fields.compute(wanted, view)
            if full:
                _add_families(row, view)
                if row.get("disk.mirror") is None:
                    row.pop("disk.mirror", None)
            yield row


async def query_instances(ctx: MasterContext, names: list[str] | None, live: bool = True,
                          fields: list[str] | None = None) -> list[dict[str, Any]]:
    """Instance rows at once (see :class:`InstanceQuery`)."""
    query = InstanceQuery(ctx, names, live, fields)
    return list(query.rows(await query.fetch()))


def _add_families(row: dict[str, Any], view: _fields.InstanceView) -> None:
    """The per-object fields of a full row: hv/KEY, disk.size/N, nic.{mac,ip,mode,link}/N."""
    for key, value in view.hv.items():
        row[f"hv/{key}"] = value
    for index, disk in enumerate(view.obj.disks):
        row[f"disk.size/{index}"] = disk.size
    for index, (nic, p) in enumerate(view.nics):
        row[f"nic.mac/{index}"] = nic.mac
        row[f"nic.ip/{index}"] = nic.ip
        row[f"nic.mode/{index}"] = p["mode"]
        row[f"nic.link/{index}"] = p["link"]


class NodeQuery:
    """One node query in steps (as :class:`InstanceQuery`): with ``fields`` those fields only,
    the nodes asked for their figures only if a requested field needs them; without, every
    field (the live ones None unless ``live``), as Herd always answered."""

    def __init__(self, ctx: MasterContext, names: list[str] | None, live: bool = True,
                 fields: list[str] | None = None) -> None:
        self.ctx = ctx
        self.cfg = cfg = ctx.config.data
        self.nodes = [cfg.get_node(n) for n in names] if names else \
            sorted(cfg.nodes.values(), key=lambda n: n.name)
        self.wanted = list(_fields.NODE.fields.values()) if fields is None else \
            _fields.NODE.resolve(fields)
        self.needs = live and _fields.LIVE_NODE in _fields.NODE.live_sources(self.wanted)

    async def fetch(self) -> dict[str, Any] | None:
        return await _gather_nodes(self.ctx, self.nodes, "node_info") if self.needs else None

    @staticmethod
    def stamp(state: dict[str, Any] | None) -> Any:
        return state

    def rows(self, state: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
        infos = state or {}
        index = _fields.NodeIndex(self.cfg)
        for node in self.nodes:
            yield _fields.compute(self.wanted, _fields.NodeView(self.cfg, node,
                                                                infos.get(node.uuid), index))


async def query_nodes(ctx: MasterContext, names: list[str] | None, live: bool = True,
                      fields: list[str] | None = None) -> list[dict[str, Any]]:
    """Node rows at once (see :class:`NodeQuery`)."""
    query = NodeQuery(ctx, names, live, fields)
    return list(query.rows(await query.fetch()))


def cluster_info(ctx: MasterContext) -> dict[str, Any]:
    from herd import __version__

    cfg = ctx.config.data
    c = cfg.cluster
    return {
        "name": c.cluster_name,
        "uuid": c.uuid,
        "master": cfg.master.name,
        "master_ip": c.master_ip,
        "master_netdev": c.master_netdev,
        "master_netmask": c.master_netmask,
        "software_version": __version__,
        "protocol_version": 1,
        "config_version": cfg.version,
        "architecture": [__import__("platform").architecture()[0],
                         __import__("platform").machine()],
        "default_hypervisor": c.enabled_hypervisors[0],
        "enabled_hypervisors": list(c.enabled_hypervisors),
        "enabled_disk_templates": list(c.enabled_disk_templates),
        "hvparams": {hv: dict(c.hvparams.get(hv, {})) for hv in c.enabled_hypervisors},
        "beparams": {"default": dict(c.beparams)},
        "nicparams": {"default": dict(c.nicparams)},
        "ndparams": dict(c.ndparams),
        "diskparams": dict(c.diskparams),
        "osparams": dict(c.osparams),
        "candidate_pool_size": c.candidate_pool_size,
        "rapi_anonymous_reads": c.rapi_anonymous_reads,
        "os_search_path": list(c.os_search_path),
        "user_image_dirs": list(c.user_image_dirs),
        "noded_port": c.noded_port,
        "mac_prefix": c.mac_prefix,
        "file_storage_dir": str(ctx.paths.file_storage_dir),
        "volume_group_name": c.volume_group_name,
        "reserved_lvs": list(c.reserved_lvs),
        "default_iallocator": c.default_iallocator,
        "default_iallocator_params": dict(c.default_iallocator_params),
        "maintain_node_health": c.maintain_node_health,
        "uid_pool": list(c.uid_pool),
        "tags": list(c.tags),
        "access_grants": [dict(g) for g in c.access_grants],
        "access_groups": {g: list(m) for g, m in c.access_groups.items()},
        "ctime": c.ctime,
        "mtime": c.mtime,
        "serial_no": cfg.serial_no,
        "uptime_checked": time.time(),
    }


async def query_os(ctx: MasterContext) -> dict[str, Any]:
    """OS definitions per node: {os name: {node name: definition dict or None}}."""
    cfg = ctx.config.data
    nodes = [n for n in cfg.nodes.values() if not n.offline]
    found = await _gather_nodes(ctx, nodes, "os_diagnose")
    out: dict[str, dict[str, Any]] = {}
    for node in nodes:
        for definition in found.get(node.uuid) or []:
            out.setdefault(definition["name"], {})[node.name] = definition
    for per_node in out.values():
        for node in nodes:
            per_node.setdefault(node.name, None)
    return out


async def query_volumes(ctx: MasterContext, names: list[str] | None) -> list[dict[str, Any]]:
    """gnt-node volumes: the disk files each node holds for instances and, when the cluster
    has a volume group, every LV of it on each node (Ganeti's listing: LVs no instance owns
    show instance ``-``)."""
    cfg = ctx.config.data
    nodes = [cfg.get_node(n) for n in names] if names else \
        sorted(cfg.nodes.values(), key=lambda n: n.name)

    async def one(node: Node) -> list[dict[str, Any]]:
        return await _file_volumes(node) + await _lv_volumes(node)

    async def _lv_volumes(node: Node) -> list[dict[str, Any]]:
        vg_name = cfg.cluster.volume_group_name
        if not vg_name or node.offline:
            return []
        from herd.logic import storage_units

        try:
            listing = await ctx.rpc.node(node).blockdev_list()
        except errors.HerdError:
            return [{"node": node.name, "phys": "?", "vg": vg_name, "name": "?", "size": None,
                     "instance": "?"}]
        return storage_units.lv_volume_rows(node.name, listing.get("lvs", []),
                                            storage_units.lv_owners(cfg, node.uuid, vg_name))

    async def _file_volumes(node: Node) -> list[dict[str, Any]]:
        from herd.logic.templates import template_of

        disks = [(inst, spec) for inst in sorted(cfg.instances.values(), key=lambda i: i.name)
                 for spec in template_of(inst).device_specs(cfg, inst, node.uuid)]
        if not disks or node.offline:
            return []
        try:
            states = await ctx.rpc.node(node).blockdev_info([s.to_dict() for _, s in disks])
        except errors.HerdError:
            states = [{"exists": None, "size_mib": None, "path": None} for _ in disks]
        out = []
        for (inst, spec), state in zip(disks, states, strict=True):
            out.append({"node": node.name, "phys": str(ctx.paths.file_storage_dir),
                        "vg": inst.disk_template, "name": state.get("path") or "?",
                        "size": state.get("size_mib"), "instance": inst.name,
                        "disk": f"disk/{spec.index}", "exists": state.get("exists")})
        return out
    results = await asyncio.gather(*(one(n) for n in nodes))
    return [row for rows in results for row in rows]
