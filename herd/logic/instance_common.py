"""Steps shared by the instance logical units: memory checks, start, stop."""

from __future__ import annotations

from herd import errors
from herd.jobs.locking import LEVEL_CLUSTER, LEVEL_INSTANCE, LEVEL_NODE, LockRequest
from herd.logic.base import MasterContext
from herd.logic.specs import instance_spec
from herd.objects import ConfigData, Instance, Node


def instance_locks(cfg: ConfigData, name: str, *, nodes_shared: bool = False,
                   extra_nodes: tuple[str | None, ...] = ()) -> list[LockRequest]:
    """The locks of an operation on one instance: the instance and all its nodes."""
    reqs = [LockRequest(LEVEL_CLUSTER, "cluster", shared=True)]
    inst = cfg.find_instance(name)
    reqs.append(LockRequest(LEVEL_INSTANCE, inst.name if inst else name))
    if inst is not None:
        reqs += [LockRequest(LEVEL_NODE, u, shared=nodes_shared) for u in inst.all_nodes]
    for extra in extra_nodes:
        node = cfg.find_node(extra) if extra else None
        if node is not None:
            reqs.append(LockRequest(LEVEL_NODE, node.uuid))
    return reqs


async def check_node_free_memory(ctx: MasterContext, node: Node, needed: int,
                                 reason: str) -> None:
    """Refuse, as Ganeti does, when the node lacks the memory an instance needs."""
    info = await ctx.rpc.node(node).node_info()
    free = int(info.get("memory_free", 0))
    if needed > free:
        raise errors.OpPrereqError(
            f"not enough memory on node {node.name} for {reason}: needed {needed} MiB, "
            f"available {free} MiB")


async def check_vg_space(ctx: MasterContext, needs: dict[str, int], reason: str) -> None:
    """Refuse, as Ganeti does, when a node's volume group lacks the room for new LVs
    (``needs``: node uuid -> MiB, from ``DiskTemplate.vg_space``) or is not usable there."""
    cfg = ctx.config.data
    vg = cfg.cluster.volume_group_name
    for uuid, needed in needs.items():
        node = cfg.nodes[uuid]
        info = await ctx.rpc.node(node).node_info()
        if info.get("vg_error"):
            raise errors.OpPrereqError(f"volume group {vg} is not usable on node {node.name}: "
                                       f"{info['vg_error']}")
        free = info.get("vg_free")
        if free is not None and needed > int(free):
            raise errors.OpPrereqError(
                f"not enough free space in volume group {vg} on node {node.name} for "
                f"{reason}: needed {needed} MiB, available {int(free)} MiB")


async def start_instance(ctx: MasterContext, inst: Instance, node: Node, *,
                         paused: bool = False, hvparams: dict | None = None,
                         beparams: dict | None = None) -> None:
    spec = instance_spec(ctx.config.data, inst, ctx.paths, hvparams, beparams)
    await ctx.rpc.node(node).instance_start(spec, paused=paused)


async def is_running(ctx: MasterContext, inst: Instance, node: Node) -> bool:
    return await ctx.rpc.node(node).instance_info(inst.name) is not None


async def check_os_on_node(ctx: MasterContext, node: Node, os_name: str, *,
                           force_variant: bool, osparams: dict[str, str]) -> None:
    """Refuse, naming the bad value and what is allowed, an OS (``NAME[+VARIANT]``) that
    ``node`` lacks or holds invalid, a variant it does not declare, or OS parameters it does
    not take (what a reinstall with ``-o``/``-O`` checks before any disk is written)."""
    from herd import osdef

    found = {d["name"]: d for d in await ctx.rpc.node(node).os_diagnose()}
    base, _, variant = os_name.partition("+")
    if base not in found:
        available = ", ".join(sorted(n for n, d in found.items() if d["valid"]))
        raise errors.NotFoundError(f"OS '{base}' not found on node {node.name}; available: "
                                   f"{available or 'none'}")
    definition = osdef.OsDefinition.from_dict(found[base])
    if not definition.valid:
        raise errors.OpPrereqError(f"OS '{base}' on node {node.name} is invalid: "
                                   f"{definition.error}")
    if definition.variants and not variant and not force_variant:
        raise errors.ParameterError(f"OS '{base}' needs a variant: use {base}+VARIANT with "
                                    f"one of {', '.join(definition.variants)}")
    if variant and variant not in definition.variants and not force_variant:
        raise errors.ParameterError(f"invalid variant '{variant}' of OS '{base}': allowed are "
                                    f"{', '.join(definition.variants) or 'none'}")
    osdef.check_osparams(definition, osparams)
