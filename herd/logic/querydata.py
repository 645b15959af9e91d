"""Queries that run as jobs, as in Ganeti: OP_INSTANCE_QUERY_DATA (``gnt-instance info``; RAPI
``/2/instances/NAME/info`` returns the job id of this opcode) and OP_NODE_QUERY_STORAGE
(``gnt-node list-storage``; RAPI ``/2/nodes/NAME/storage``)."""

from __future__ import annotations

import asyncio
from typing import Any

from herd import errors
from herd.jobs.locking import LockRequest
from herd.logic import query, storage_units
from herd.logic.base import LogicalUnit
from herd.opcodes.instance_extra import OpInstanceQueryData
from herd.opcodes.storage import OpNodeQueryStorage


class LUInstanceQueryData(LogicalUnit[OpInstanceQueryData]):
    OPCODE = OpInstanceQueryData

    def locks(self) -> list[LockRequest]:
        return []

    async def check(self) -> None:
        for name in self.op.instance_names:
            self.cfg.get_instance(name)  # NotFoundError names the missing one

    async def execute(self) -> dict[str, Any]:
        cfg = self.cfg
        names = [cfg.get_instance(n).name for n in self.op.instance_names] or None
        rows = await query.query_instances(self.ctx, names, live=not self.op.static)
        out: dict[str, Any] = {}
        for row in rows:
            inst = cfg.get_instance(row["name"])
            pnode = cfg.nodes.get(inst.primary_node)
            group = cfg.nodegroups.get(pnode.group) if pnode else None
            snodes = [cfg.nodes[u] for u in inst.secondary_nodes if u in cfg.nodes]
            if self.op.static:
                run_state = None
            elif row.get("oper_state") is None:
                raise errors.OpExecError(f"cannot reach node {row['pnode']} to ask about "
                                         f"instance {inst.name}")
            else:
                run_state = "up" if row["oper_state"] else "down"
            out[inst.name] = {
                "name": inst.name,
                "config_state": inst.admin_state,
                "run_state": run_state,
                "pnode": row["pnode"],
                "pnode_group_uuid": group.uuid if group else None,
                "pnode_group_name": group.name if group else None,
                "snodes": [n.name for n in snodes],
                "snodes_group_uuids": [n.group for n in snodes],
                "snodes_group_names": [cfg.nodegroups[n.group].name
                                       if n.group in cfg.nodegroups else None for n in snodes],
                "os": inst.os,
                "network_port": inst.network_port,
                "disks": [dict(d, dev_type=d.get("dev_type", inst.disk_template),
                               pstatus=None, sstatus=None, children=[])
                          for d in row["disks"]],
                "hypervisor": inst.hypervisor,
                "hv_instance": dict(inst.hvparams),
                "hv_actual": row["hvparams"],
                "be_instance": dict(inst.beparams),
                "be_actual": cfg.filled_beparams(inst),
                "os_instance": dict(inst.osparams),
                "os_actual": row["osparams"],
                "disk_template": inst.disk_template,
                "nics": [[n.get("name"), n.get("uuid"), n.get("mac"), n.get("ip"),
                          n.get("mode"), n.get("link"), n.get("vlan", ""),
                          n.get("network"), None] for n in row["nics"]],
                "uuid": inst.uuid,
                "ctime": inst.ctime,
                "mtime": inst.mtime,
                "serial_no": inst.serial_no,
            }
        return out


def query_groups(ctx: Any, names: list[str] | None = None) -> list[dict[str, Any]]:
    """Node groups keyed by Ganeti's group fields (no live data needed)."""
    from herd.objects import params

    cfg = ctx.config.data
    groups = sorted(cfg.nodegroups.values(), key=lambda g: g.name)
    if names:
        wanted = []
        for name in names:
            group = next((g for g in groups if name in (g.name, g.uuid)), None)
            if group is None:
                raise errors.NotFoundError(f"node group '{name}' does not exist")
            wanted.append(group)
        groups = wanted
    out = []
    for group in groups:
        nodes = sorted(n.name for n in cfg.nodes.values() if n.group == group.uuid)
        members = {n.uuid for n in cfg.nodes.values() if n.group == group.uuid}
        pinst = sorted(i.name for i in cfg.instances.values() if i.primary_node in members)
        out.append({
            "name": group.name,
            "uuid": group.uuid,
            "alloc_policy": group.alloc_policy,
            "node_cnt": len(nodes),
            "node_list": nodes,
            "pinst_cnt": len(pinst),
            "pinst_list": pinst,
            "ndparams": params.fill(params.ND_DEFAULTS, cfg.cluster.ndparams, group.ndparams),
            "custom_ndparams": dict(group.ndparams),
            "diskparams": cfg.filled_diskparams(group),
            "custom_diskparams": dict(group.diskparams),
            "ipolicy": cfg.filled_ipolicy(group),
            "custom_ipolicy": dict(group.ipolicy),
            "tags": list(group.tags),
            "ctime": group.ctime,
            "mtime": group.mtime,
            "serial_no": group.serial_no,
        })
    return out


def query_tags(ctx: Any, kind: str, name: str | None) -> list[str]:
    from herd.logic.tags import tag_target

    return sorted(tag_target(ctx.config.data, kind, name).tags)


class LUNodeQueryStorage(LogicalUnit[OpNodeQueryStorage]):
    """Ganeti's storage units of nodes (``gnt-node list-storage``, RAPI
    ``/2/nodes/NAME/storage``): a job, as in Ganeti, whose result is one list of values per
    unit in the order of ``output_fields``. No locks: it only reads the nodes."""

    OPCODE = OpNodeQueryStorage

    def locks(self) -> list[LockRequest]:
        return []

    async def check(self) -> None:
        cfg = self.cfg
        self.storage_type = storage_units.check_storage_type(
            self.op.storage_type, cfg.cluster.volume_group_name)
        self.fields = storage_units.check_storage_fields(self.op.output_fields)
        self.nodes = [cfg.get_node(n) for n in self.op.nodes] if self.op.nodes else \
            sorted(cfg.nodes.values(), key=lambda n: n.name)

    async def execute(self) -> list[list[Any]]:
        async def one(node: Any) -> tuple[str, list[dict[str, Any]]]:
            if node.offline:
                raise errors.OpExecError(f"node {node.name} is offline: cannot list its "
                                         f"{self.storage_type} storage")
            try:
                units = await self.ctx.rpc.node(node).call(
                    "storage_units", storage_type=self.storage_type, timeout=60)
            except errors.HerdError as exc:
                raise errors.OpExecError(f"cannot list the {self.storage_type} storage of "
                                         f"node {node.name}: {exc.message}") from None
            return node.name, units

        found = dict(await asyncio.gather(*(one(n) for n in self.nodes)))
        return storage_units.storage_rows(found, self.storage_type, self.fields, self.op.name)
