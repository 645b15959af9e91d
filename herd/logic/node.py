"""Node membership: add (by join token), remove, modify roles; and the candidate pool.

Master candidates hold the full config and can take over as master. Their number follows the
cluster's ``candidate_pool_size``: nodes are promoted automatically when there are too few
(Ganeti's auto-promotion), and offline or drained nodes are never candidates.
"""

from __future__ import annotations

import asyncio

from herd import errors
from herd.config.facts import facts_from_config
from herd.jobs.locking import LEVEL_CLUSTER, LockRequest
from herd.logic import etcd_sync
from herd.logic.base import LogicalUnit
from herd.logic.bootstrap import check_ip as _check_ip
from herd.logic.bootstrap import resolve
from herd.logic.hooks import HookTargets
from herd.objects import ConfigData, Node, params
from herd.opcodes import OpClusterRedistConf, OpNodeAdd, OpNodeRemove, OpNodeSetParams
from herd.rpc import join


def candidate_count(cfg: ConfigData) -> int:
    return sum(1 for n in cfg.nodes.values() if n.master_candidate)


def fill_candidate_pool(cfg: ConfigData, exclude: set[str] | None = None) -> list[Node]:
    """Promote eligible nodes until the pool is full; return those promoted."""
    promoted = []
    for node in sorted(cfg.nodes.values(), key=lambda n: n.name):
        if candidate_count(cfg) >= cfg.cluster.candidate_pool_size:
            break
        if node.master_candidate or node.offline or node.drained or not node.master_capable:
            continue
        if exclude and node.uuid in exclude:
            continue
        node.master_candidate = True
        node.touch()
        promoted.append(node)
    return promoted


class LUNodeAdd(LogicalUnit[OpNodeAdd]):
    OPCODE = OpNodeAdd

    def locks(self) -> list[LockRequest]:
        return [LockRequest(LEVEL_CLUSTER, "cluster")]

    async def check(self) -> None:
        op, cfg = self.op, self.cfg
        if op.readd:
            raise errors.OpPrereqError("--readd is not supported yet; remove the node and add "
                                       "it again")
        if cfg.find_node(op.node_name) is not None:
            raise errors.AlreadyExistsError(f"node {op.node_name} is already in the cluster")
        if not op.join_token:
            raise errors.ParameterError(
                "adding a node needs its join token: run 'herd-join-token' on the new node and "
                "pass it with --join-token")
        join.parse_token(op.join_token)
        self.primary_ip = _check_ip(op.primary_ip, "primary IP") if op.primary_ip else \
            resolve(op.node_name, "node name")
        self.secondary_ip = _check_ip(op.secondary_ip, "secondary IP") \
            if op.secondary_ip else self.primary_ip
        for node in cfg.nodes.values():
            if self.primary_ip in (node.primary_ip, node.secondary_ip):
                raise errors.AlreadyExistsError(
                    f"IP address {self.primary_ip} of {op.node_name} is already used by node "
                    f"{node.name}")
            if self.secondary_ip in (node.primary_ip, node.secondary_ip):
                raise errors.AlreadyExistsError(
                    f"secondary IP {self.secondary_ip} is already used by node {node.name}")
        master = cfg.master
        if (master.secondary_ip != master.primary_ip) != (self.secondary_ip != self.primary_ip):
            raise errors.OpPrereqError(
                "the cluster uses " + ("separate secondary IPs: give -s SECONDARY_IP"
                                       if master.secondary_ip != master.primary_ip else
                                       "no separate secondary network: do not give -s"))
        # gnt-node add --node-group NAME|UUID; without it the only group (Ganeti's
        # LookupNodeGroup: with several, the admin must say which)
        if op.group:
            self.group = cfg.get_group(op.group)
        elif len(cfg.nodegroups) == 1:
            self.group = cfg.default_group()
        else:
            known = ", ".join(sorted(g.name for g in cfg.nodegroups.values()))
            raise errors.OpPrereqError("there is more than one node group: give the new "
                                       f"node's group with --node-group (one of {known})")
        self.ndparams = params.check_ndparams(op.ndparams or {})

    def hooks_targets(self) -> HookTargets:
        return HookTargets(node=self.op.node_name)

    def hooks_env(self) -> dict[str, str]:
        return {"NODE_PIP": self.primary_ip, "NODE_SIP": self.secondary_ip,
                "MASTER_CAPABLE": str(self.op.master_capable is not False),
                "VM_CAPABLE": str(self.op.vm_capable is not False)}

    async def execute(self) -> None:
        op, cfg = self.op, self.cfg
        node = Node(name=op.node_name, primary_ip=self.primary_ip, secondary_ip=self.secondary_ip,
                    group=self.group.uuid, master_candidate=False,
                    master_capable=op.master_capable is not False,
                    vm_capable=op.vm_capable is not False,
                    ndparams={k: v for k, v in self.ndparams.items() if v is not None})
        self.feedback(f"* joining {op.node_name} ({self.primary_ip}) with its token")
        preview = ConfigData.from_dict(cfg.to_dict())
        preview.nodes[node.uuid] = node
        preview.serial_no += 1
        token, op.join_token = op.join_token or "", None  # used once: hold it no longer
        await join.join_node(self.primary_ip, cfg.cluster.noded_port, token,
                             op.node_name, [self.primary_ip, self.secondary_ip],
                             self.ctx.paths.ca_cert.read_bytes(),
                             self.ctx.paths.ca_key.read_bytes(), facts_from_config(preview))
        client = self.ctx.rpc.address(op.node_name, self.primary_ip)
        for _ in range(100):  # the node restarts its daemon in cluster mode
            try:
                await client.ping()
                break
            except errors.RpcError:
                await asyncio.sleep(0.1)
        else:
            raise errors.OpExecError(f"node {op.node_name} joined but does not answer with its "
                                     "new certificate")
        vg_name = cfg.cluster.volume_group_name
        if vg_name and node.vm_capable:
            # only said: the join is done; verify keeps reporting it until the VG is there
            try:
                await client.call("vg_info", vg_name=vg_name, timeout=60)
            except errors.HerdError as exc:
                self.feedback(f"  WARNING: volume group {vg_name} is not usable on node "
                              f"{op.node_name}: {exc.message}")
        cfg.nodes[node.uuid] = node
        if node.master_capable and candidate_count(cfg) < cfg.cluster.candidate_pool_size:
            node.master_candidate = True
            self.feedback(f"  {op.node_name} becomes a master candidate")
        try:
            await self.ctx.config.save()
        except BaseException:
            del cfg.nodes[node.uuid]
            raise
        await etcd_sync.sync_members(self.ctx.paths, cfg, self.ctx.rpc, self.feedback)


class LUNodeRemove(LogicalUnit[OpNodeRemove]):
    OPCODE = OpNodeRemove

    def locks(self) -> list[LockRequest]:
        return [LockRequest(LEVEL_CLUSTER, "cluster")]

    async def check(self) -> None:
        cfg = self.cfg
        self.node = cfg.get_node(self.op.node_name)
        if self.node.uuid == cfg.cluster.master_node:
            raise errors.OpPrereqError(f"node {self.node.name} is the master; fail the master "
                                       "over to another node first")
        users = sorted(i.name for i in cfg.instances.values() if self.node.uuid in i.all_nodes)
        if users:
            raise errors.OpPrereqError(f"node {self.node.name} still has instances: "
                                       f"{', '.join(users)}; move or remove them first")

    def hooks_targets(self) -> HookTargets:
        return HookTargets(node=self.node.name)

    async def execute(self) -> None:
        cfg, node = self.cfg, self.node
        del cfg.nodes[node.uuid]
        promoted = fill_candidate_pool(cfg) if node.master_candidate else []
        for other in promoted:
            self.feedback(f"  promoting {other.name} to master candidate")
        await self.ctx.config.save()
        await etcd_sync.sync_members(self.ctx.paths, cfg, self.ctx.rpc, self.feedback,
                                     departed=[node])
        try:
            await self.ctx.rpc.node(node).node_leave()
        except errors.HerdError as exc:
            self.feedback(f"  WARNING: could not tell {node.name} to forget the cluster: "
                          f"{exc.message}")
            return
        if not await join.wait_join_mode(node.primary_ip, cfg.cluster.noded_port):
            self.feedback(f"  WARNING: {node.name} did not come back waiting to be joined")


class LUNodeSetParams(LogicalUnit[OpNodeSetParams]):
    OPCODE = OpNodeSetParams

    def locks(self) -> list[LockRequest]:
        return [LockRequest(LEVEL_CLUSTER, "cluster")]

    async def check(self) -> None:
        op, cfg = self.op, self.cfg
        self.node = cfg.get_node(op.node_name)
        flags = [f for f in (op.offline, op.drained, op.master_candidate) if f]
        if len(flags) > 1:
            raise errors.ParameterError("only one of --offline yes, --drained yes and "
                                        "--master-candidate yes at a time")
        changes = (op.offline, op.drained, op.master_candidate, op.master_capable,
                   op.vm_capable, op.secondary_ip, op.ndparams)
        if all(c is None for c in changes):
            raise errors.ParameterError("please give at least one of the parameters to modify")
        is_master = self.node.uuid == cfg.cluster.master_node
        if is_master and (op.offline or op.drained or op.master_candidate is False):
            raise errors.OpPrereqError(f"node {self.node.name} is the master; its role cannot "
                                       "change (fail the master over first)")
        if op.master_candidate and (self.node.offline and op.offline is not False):
            raise errors.OpPrereqError(f"node {self.node.name} is offline and cannot become a "
                                       "master candidate")
        if op.master_candidate and not self.node.master_capable:
            raise errors.OpPrereqError(f"node {self.node.name} is not master_capable")
        running_here = any(i.primary_node == self.node.uuid and i.admin_state == "up"
                           for i in cfg.instances.values())
        if op.offline and running_here and not op.force:
            raise errors.OpPrereqError(
                    f"node {self.node.name} has running primary instances; fail them over "
                    "first or use --force")
        self.ndparams = params.check_ndparams(op.ndparams or {})
        if op.secondary_ip is not None:
            raise errors.OpPrereqError("changing the secondary IP is not supported yet")

    def hooks_targets(self) -> HookTargets:
        return HookTargets(node=self.node.name)

    async def execute(self) -> None:
        op, cfg, node = self.op, self.cfg, self.node
        replicator = self.ctx.replicator
        was_candidate = node.master_candidate
        for attr in ("offline", "drained", "master_capable", "vm_capable"):
            value = getattr(op, attr)
            if value is not None:
                setattr(node, attr, value)
        if op.master_candidate is not None:
            node.master_candidate = op.master_candidate
        if node.offline or node.drained or not node.master_capable:
            node.master_candidate = False
        if op.ndparams:
            node.ndparams = params.update_overrides(node.ndparams, self.ndparams)
        if was_candidate and not node.master_candidate:
            self.feedback(f"  {node.name} is no longer a master candidate")
            if replicator is not None:
                replicator.mark_demoted(node.uuid)
            if op.auto_promote or op.offline or op.drained:
                for other in fill_candidate_pool(cfg, exclude={node.uuid}):
                    self.feedback(f"  promoting {other.name} to master candidate")
        node.touch()
        await self.ctx.config.save()
        await etcd_sync.sync_members(self.ctx.paths, cfg, self.ctx.rpc, self.feedback)


class LUClusterRedistConf(LogicalUnit[OpClusterRedistConf]):
    """gnt-cluster redist-conf: push the config and cluster files to every node now."""

    OPCODE = OpClusterRedistConf

    def locks(self) -> list[LockRequest]:
        return [LockRequest(LEVEL_CLUSTER, "cluster", shared=True)]

    async def execute(self) -> None:
        if self.ctx.replicator is None:
            return
        failures = await self.ctx.replicator.push(self.cfg, force=True)
        for name, error in sorted(failures.items()):
            self.feedback(f"  - ERROR: node {name}: {error}")
        if failures:
            raise errors.OpExecError(f"configuration not delivered to "
                                     f"{', '.join(sorted(failures))}")
