"""Queries answered by masterd without a job: instances, nodes, cluster, OS definitions.

Each object is described by a dict keyed by Ganeti's field names (``name``, ``pnode``,
``oper_state``, ``be/memory``, ``disk.sizes``, ...); the CLI and RAPI pick the fields they show.
Live fields ask the nodes concurrently, once per query, and mark what could not be learnt as
None (shown as ``?``/``-``), never as a guess.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from herd import errors
from herd.logic.base import MasterContext
from herd.logic.specs import filled_hvparams
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


def _status(inst: Instance, node: Node, live: dict[str, Any] | None,
            running: dict[str, Any] | None) -> str:
    """Ganeti's instance status values."""
    if node.offline:
        return "ERROR_nodeoffline"
    if live is None:
        return "ERROR_nodedown"
    if running is not None:
        if running.get("state") == "paused":
            return "running" if inst.admin_state == "up" else "ERROR_up"
        return "running" if inst.admin_state == "up" else "ERROR_up"
    if inst.admin_state == "up":
        return "ERROR_down"
    if inst.admin_state == "offline":
        return "ADMIN_offline"
    return "USER_down" if inst.admin_state_source == "user" else "ADMIN_down"


async def query_instances(ctx: MasterContext, names: list[str] | None,
                          live: bool = True) -> list[dict[str, Any]]:
    cfg = ctx.config.data
    if names:
        instances = [cfg.get_instance(n) for n in names]
    else:
        instances = sorted(cfg.instances.values(), key=lambda i: i.name)
    live_data: dict[str, Any] = {}
    if live and instances:
        nodes = {i.primary_node for i in instances}
        live_data = await _gather_nodes(ctx, [cfg.nodes[u] for u in nodes if u in cfg.nodes],
                                        "instance_list")
    rows = [_instance_fields(ctx, cfg, inst, live_data, live) for inst in instances]
    if live:
        from herd.logic.templates import template_of

        # only templates with a live disk state (a mirror's) answer; the others cost no RPC
        states = await asyncio.gather(*(template_of(inst).status(ctx, inst)
                                        for inst in instances))
        for row, state in zip(rows, states, strict=True):
            if state is not None:
                row["disk.mirror"] = state
    return rows


def _instance_fields(ctx: MasterContext, cfg: ConfigData, inst: Instance,
                     live_data: dict[str, Any], live: bool) -> dict[str, Any]:
    node = cfg.nodes[inst.primary_node]
    node_live = live_data.get(node.uuid)
    running = None
    if node_live is not None:
        running = next((r for r in node_live if r["name"] == inst.name), None)
    be = cfg.filled_beparams(inst)
    hv = filled_hvparams(cfg, inst, ctx.paths)
    nics = [(nic, cfg.filled_nicparams(inst, nic.nicparams)) for nic in inst.nics]
    fields: dict[str, Any] = {
        "name": inst.name,
        "uuid": inst.uuid,
        "os": inst.os,
        "pnode": node.name,
        "pnode.group": cfg.nodegroups[node.group].name if node.group in cfg.nodegroups else "",
        "snodes": [cfg.node_name(u) for u in inst.secondary_nodes],
        "admin_state": inst.admin_state,
        "admin_state_source": inst.admin_state_source,
        "admin_up": inst.admin_state == "up",
        "disk_template": inst.disk_template,
        "disks_active": inst.disks_active,
        "hypervisor": inst.hypervisor,
        "network_port": inst.network_port,
        "tags": list(inst.tags),
        "ctime": inst.ctime,
        "mtime": inst.mtime,
        "serial_no": inst.serial_no,
        "beparams": dict(inst.beparams),
        "custom_beparams": dict(inst.beparams),
        "hvparams": hv,
        "custom_hvparams": dict(inst.hvparams),
        "osparams": cfg.filled_osparams(inst),
        "custom_osparams": dict(inst.osparams),
        "be/maxmem": be["maxmem"],
        "be/minmem": be["minmem"],
        "be/memory": be["maxmem"],
        "be/vcpus": be["vcpus"],
        "be/auto_balance": be["auto_balance"],
        "be/always_failover": be["always_failover"],
        "disk.count": len(inst.disks),
        "disk.sizes": [d.size for d in inst.disks],
        "disk.names": [d.name for d in inst.disks],
        "disk.uuids": [d.uuid for d in inst.disks],
        "disk_usage": sum(d.size for d in inst.disks),
        "disk.spindles": [None for _ in inst.disks],
        "nic.count": len(inst.nics),
        "nic.macs": [n.mac for n, _ in nics],
        "nic.ips": [n.ip for n, _ in nics],
        "nic.modes": [p["mode"] for _, p in nics],
        "nic.links": [p["link"] for _, p in nics],
        "nic.bridges": [p["link"] if p["mode"] == "bridged" else None for _, p in nics],
        "nic.names": [n.name for n, _ in nics],
        "nic.uuids": [n.uuid for n, _ in nics],
        "nic.networks": [n.network for n, _ in nics],
        "nic.vlans": [p.get("vlan", "") for _, p in nics],
        "disks": inst.disk_dicts(),
        "nics": [dict(n.to_dict(), **{"mode": p["mode"], "link": p["link"]}) for n, p in nics],
    }
    for key, value in hv.items():
        fields[f"hv/{key}"] = value
    for index, disk in enumerate(inst.disks):
        fields[f"disk.size/{index}"] = disk.size
    for index, (nic, p) in enumerate(nics):
        fields[f"nic.mac/{index}"] = nic.mac
        fields[f"nic.ip/{index}"] = nic.ip
        fields[f"nic.mode/{index}"] = p["mode"]
        fields[f"nic.link/{index}"] = p["link"]
    if live:
        fields["oper_state"] = None if node_live is None else running is not None
        fields["status"] = _status(inst, node, node_live, running)
        fields["oper_ram"] = running["memory"] if running else None
        fields["oper_vcpus"] = running["vcpus"] if running else None
        fields["runtime"] = running
        fields["console"] = {"node": node.name, "kind": "serial"} if running else None
    return fields


async def query_nodes(ctx: MasterContext, names: list[str] | None,
                      live: bool = True) -> list[dict[str, Any]]:
    cfg = ctx.config.data
    nodes = [cfg.get_node(n) for n in names] if names else \
        sorted(cfg.nodes.values(), key=lambda n: n.name)
    infos = await _gather_nodes(ctx, nodes, "node_info") if live else {}
    out = []
    for node in nodes:
        primaries = sorted(i.name for i in cfg.instances.values() if i.primary_node == node.uuid)
        secondaries = sorted(i.name for i in cfg.instances.values()
                             if node.uuid in i.secondary_nodes)
        info = infos.get(node.uuid)
        role = ("M" if node.uuid == cfg.cluster.master_node else
                "O" if node.offline else "D" if node.drained else
                "C" if node.master_candidate else "R")
        fields: dict[str, Any] = {
            "name": node.name, "uuid": node.uuid, "pip": node.primary_ip,
            "sip": node.secondary_ip or node.primary_ip,
            "group": cfg.nodegroups[node.group].name if node.group in cfg.nodegroups else "",
            "group.uuid": node.group,
            "master": node.uuid == cfg.cluster.master_node, "role": role,
            "master_candidate": node.master_candidate, "offline": node.offline,
            "drained": node.drained, "master_capable": node.master_capable,
            "vm_capable": node.vm_capable, "ndparams": cfg.filled_ndparams(node),
            "custom_ndparams": dict(node.ndparams),
            "pinst_cnt": len(primaries), "sinst_cnt": len(secondaries),
            "pinst_list": primaries, "sinst_list": secondaries, "tags": list(node.tags),
            "ctime": node.ctime, "mtime": node.mtime, "serial_no": node.serial_no,
            "powered": True,
        }
        hv = (info or {}).get("hypervisor", {})
        fields.update({
            "mtotal": info["memory_total"] if info else None,
            "mnode": info["memory_dom0"] if info else None,
            "mfree": info["memory_free"] if info else None,
            "dtotal": info["storage_total"] if info else None,
            "dfree": info["storage_free"] if info else None,
            "ctotal": info["cpu_total"] if info else None,
            "cnodes": 1 if info else None,
            "csockets": info["cpu_sockets"] if info else None,
            "cnos": 1 if info else None,
            "spfree": None, "sptotal": None,
            "bootid": None,
            "hv_accel": hv.get("accel"),
            "kvm_usable": hv.get("kvm_usable"),
            "kvm_reason": hv.get("kvm_reason"),
            "qemu_version": hv.get("qemu_version"),
            "reachable": info is not None if not node.offline else False,
            # Herd's: the file storage figures apart (dtotal/dfree are the VG's when the
            # cluster has one) and how the node activates LVs (shown by gnt-node info)
            "file_storage_total": (info or {}).get("file_storage_total"),
            "file_storage_free": (info or {}).get("file_storage_free"),
            "vg_name": (info or {}).get("vg_name"),
            "vg_error": (info or {}).get("vg_error"),
            "lvm_activation": ((info or {}).get("lvm_activation") or {}).get("mode"),
            "lvm_reason": ((info or {}).get("lvm_activation") or {}).get("reason"),
        })
        out.append(fields)
    return out


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
