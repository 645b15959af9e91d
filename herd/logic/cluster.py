"""Cluster-wide logical units: modify parameters, verify."""

from __future__ import annotations

import asyncio
from typing import Any

from herd import errors, version
from herd.allocator import protocol
from herd.etcd import members as em
from herd.etcd.client import EtcdClient, EtcdError, Status
from herd.jobs.locking import LEVEL_CLUSTER, LEVEL_NODE, LockRequest
from herd.logic import (
    drbd,
    etcd_sync,
    group_checks,
    hooks,
    iallocator,
    intents,
    network_pool,
    orphans,
    quota,
    storage_units,
)
from herd.logic.base import LogicalUnit
from herd.logic.disk_health import mirror_findings
from herd.logic.etcd_health import etcd_findings
from herd.logic.specs import hypervisor_class
from herd.logic.templates import template_of
from herd.network import mac as macs
from herd.node import hooks as node_hooks
from herd.node.cluster_files import ClusterFiles
from herd.node.facts import MAX_TCP_RETRIES2, users_file_problem
from herd.objects import access, params
from herd.opcodes import OpClusterModify, OpClusterVerify

SUPPORTED_HYPERVISORS = ("kvm", "fake")


def same_reason(by_node: dict[str, str]) -> list[tuple[str, str]]:
    """Nodes with the same finding, said once: [("nodes n1, n2", reason), ("node n3",
    other)], in order of first appearance. A lab or a new cluster of KVM-less machines
    printed the same warning once per node."""
    groups: dict[str, list[str]] = {}
    for node, reason in by_node.items():
        groups.setdefault(reason, []).append(node)
    return [(("nodes " if len(names) > 1 else "node ") + ", ".join(names), reason)
            for reason, names in groups.items()]


class LUClusterModify(LogicalUnit[OpClusterModify]):
    OPCODE = OpClusterModify

    async def check(self) -> None:
        op = self.op
        self.changes: dict[str, Any] = {}
        if op.hvparams:
            hv = {}
            for name, values in op.hvparams.items():
                if name not in SUPPORTED_HYPERVISORS:
                    raise errors.ParameterError(f"unknown hypervisor '{name}'; known: "
                                                f"{', '.join(SUPPORTED_HYPERVISORS)}")
                hv[name] = hypervisor_class(name, self.ctx.paths).check_parameters(values)
            self.changes["hvparams"] = hv
        if op.beparams:
            self.changes["beparams"] = params.check_beparams(op.beparams)
        if op.nicparams:
            self.changes["nicparams"] = params.check_nicparams(op.nicparams)
        if op.ndparams:
            self.changes["ndparams"] = params.check_ndparams(op.ndparams)
        if op.mac_prefix is not None:
            op.mac_prefix = macs.check_prefix(op.mac_prefix)
        if op.os_search_path is not None:
            bad = [d for d in op.os_search_path
                   if not isinstance(d, str) or not d.startswith("/") or ":" in d]
            if bad:
                raise errors.ParameterError(
                    f"invalid OS search path entry {bad[0]!r}: expected absolute directories "
                    "(e.g. /srv/ganeti/os:/usr/share/ganeti/os)")
        if op.user_image_dirs is not None:
            bad = [d for d in op.user_image_dirs
                   if not isinstance(d, str) or not d.startswith("/") or d.rstrip("/") == ""
                   or ".." in d.split("/") or ":" in d]
            if bad:
                raise errors.ParameterError(
                    f"invalid image directory {bad[0]!r}: expected absolute directories "
                    "other than / (e.g. /srv/images:/srv/iso)")
        check_access_changes(op, self.cfg)
        if op.candidate_pool_size is not None and op.candidate_pool_size < 1:
            raise errors.ParameterError(f"invalid candidate pool size {op.candidate_pool_size}:"
                                        " must be at least 1")
        if op.enabled_hypervisors is not None:
            bad = [h for h in op.enabled_hypervisors if h not in SUPPORTED_HYPERVISORS]
            if bad or not op.enabled_hypervisors:
                raise errors.ParameterError(
                    f"invalid enabled hypervisors {', '.join(bad) or '(none)'}: allowed are "
                    f"{', '.join(SUPPORTED_HYPERVISORS)}")
        vg_name = self.cfg.cluster.volume_group_name
        if op.vg_name is not None:
            vg_name = storage_units.check_vg_name(op.vg_name)
        if op.enabled_disk_templates is not None:
            storage_units.check_enabled_templates(op.enabled_disk_templates, vg_name)
            in_use = {i.disk_template for i in self.cfg.instances.values()}
            missing = in_use - set(op.enabled_disk_templates)
            if missing:
                raise errors.OpPrereqError(
                    f"cannot disable disk template(s) {', '.join(sorted(missing))}: "
                    "instances use them")
        if op.reserved_lvs is not None:
            op.reserved_lvs = storage_units.check_reserved_lvs(op.reserved_lvs)
        if op.default_iallocator:  # "" is the built-in one
            protocol.check_name(op.default_iallocator)
            if op.default_iallocator != protocol.BUILTIN:
                iallocator.find_program(self.ctx, op.default_iallocator)
        if op.default_iallocator_params is not None:
            bad = [k for k in op.default_iallocator_params
                   if not isinstance(k, str) or not protocol.NAME_RE.match(k)]
            if bad:
                raise errors.ParameterError(f"invalid allocator parameter name {bad[0]!r}: "
                                            "letters, digits, '_' and '-'")
        if op.vg_name is not None:
            templates = op.enabled_disk_templates
            if templates is None:
                templates = self.cfg.cluster.enabled_disk_templates
            old_vg = self.cfg.cluster.volume_group_name
            users = sorted({i.name for i in self.cfg.instances.values() for d in i.disks
                            if storage_units.disk_lvs(d, old_vg)})
            if vg_name != old_vg and users:  # their LVs (drbd's too) would be lost to view
                raise errors.OpPrereqError(
                    f"cannot change the volume group: instance(s) {', '.join(users)} keep "
                    f"disks in {old_vg}")
            if not vg_name:
                storage_units.check_vg_disable(templates)
            elif vg_name != old_vg:
                await check_vg_on_nodes(self.ctx, self.cfg, vg_name)

    def hooks_env(self) -> dict[str, Any]:
        return {"NEW_VG_NAME": self.op.vg_name}  # Ganeti's only variable here

    async def execute(self) -> None:
        cluster = self.cfg.cluster
        op = self.op
        for name, values in self.changes.get("hvparams", {}).items():
            cluster.hvparams[name] = params.update_overrides(cluster.hvparams.get(name, {}),
                                                             values)
        for family in ("beparams", "nicparams", "ndparams"):
            if family in self.changes:
                setattr(cluster, family,
                        params.update_overrides(getattr(cluster, family), self.changes[family]))
        if op.osparams:
            for os_name, values in op.osparams.items():
                cluster.osparams[os_name] = params.update_overrides(
                    cluster.osparams.get(os_name, {}), values)
        if op.mac_prefix is not None:
            cluster.mac_prefix = op.mac_prefix
        if op.candidate_pool_size is not None:
            cluster.candidate_pool_size = op.candidate_pool_size
            from herd.logic.node import fill_candidate_pool

            for node in fill_candidate_pool(self.cfg):
                self.feedback(f"  promoting {node.name} to master candidate")
        if op.enabled_hypervisors is not None:
            cluster.enabled_hypervisors = list(op.enabled_hypervisors)
        if op.enabled_disk_templates is not None:
            cluster.enabled_disk_templates = list(op.enabled_disk_templates)
        if op.rapi_anonymous_reads is not None:
            cluster.rapi_anonymous_reads = op.rapi_anonymous_reads
        if op.default_iallocator is not None:
            cluster.default_iallocator = op.default_iallocator
        if op.default_iallocator_params is not None:
            cluster.default_iallocator_params = {
                k: None if v is None else str(v)
                for k, v in op.default_iallocator_params.items()}
        if op.os_search_path is not None:
            cluster.os_search_path = list(op.os_search_path)
        if op.user_image_dirs is not None:
            cluster.user_image_dirs = [d.rstrip("/") for d in op.user_image_dirs]
        apply_access_changes(op, self.cfg)
        if op.vg_name is not None:
            cluster.volume_group_name = op.vg_name
        if op.reserved_lvs is not None:
            cluster.reserved_lvs = list(op.reserved_lvs)
        cluster.touch()
        await self.ctx.config.save()


def check_access_changes(op: Any, cfg: Any) -> None:
    """Grants and groups must be well-formed (herd.objects.access.check_grant names the bad
    value), a grant on an instance names one that exists (and is stored with its uuid), and
    removing a grant that does not exist is an error, as a typo would otherwise pass for a
    revocation."""
    for raw in (op.add_grants or []) + (op.remove_grants or []):
        if not isinstance(raw, dict):
            raise errors.ParameterError(f"invalid grant {raw!r}: expected "
                                        "{role, subject, path}")
        access.Grant.from_dict(raw)
    if op.add_grants:
        op.add_grants = [_resolved(cfg, raw).to_dict() for raw in op.add_grants]
    existing = access.parse_grants(cfg.cluster.access_grants)
    for raw in op.remove_grants or []:
        if not any(_same(g, raw, cfg) for g in existing):
            grant = access.Grant.from_dict(raw)
            raise errors.OpPrereqError(f"no grant of role {grant.role} to {grant.subject} on "
                                       f"{grant.path} to remove")
    for group, members in (op.access_groups or {}).items():
        access.check_grant("viewer", f"@{group}")
        if not isinstance(members, list):
            raise errors.ParameterError(f"invalid members of group {group!r}: expected a list "
                                        "of user names")
        for member in members:
            access.check_grant("viewer", str(member))
    for subject, limits in (op.quotas or {}).items():
        if limits is not None and not isinstance(limits, dict):
            raise errors.ParameterError(f"invalid quota for {subject!r}: expected "
                                        "{resource: limit}")
        quota.check_limits(subject, limits or {})


def _instance_of(cfg: Any, path: str) -> Any:
    if not path.startswith("/instances/"):
        return None
    return cfg.find_instance(path[len("/instances/"):])


def _resolved(cfg: Any, raw: dict[str, str]) -> access.Grant:
    """The grant as stored: on an instance, with that instance's uuid (it must exist)."""
    grant = access.Grant.from_dict({k: v for k, v in raw.items() if k != "uuid"})
    if not grant.path.startswith("/instances/"):
        return grant
    inst = _instance_of(cfg, grant.path)
    if inst is None:
        raise errors.OpPrereqError(f"cannot grant on {grant.path}: instance "
                                   f"'{grant.path[len('/instances/'):]}' does not exist")
    return access.Grant(grant.role, grant.subject, f"/instances/{inst.name}", inst.uuid)


def _same(stored: access.Grant, raw: dict[str, str], cfg: Any) -> bool:
    """Whether a revocation ``raw`` names the stored grant: same role and subject, and the
    same path, or the same instance under its current name."""
    given = access.Grant.from_dict({k: v for k, v in raw.items() if k != "uuid"})
    if (stored.role, stored.subject) != (given.role, given.subject):
        return False
    if stored.path == given.path:
        return True
    inst = _instance_of(cfg, given.path)
    return inst is not None and stored.uuid == inst.uuid


def apply_access_changes(op: Any, cfg: Any) -> None:
    cluster = cfg.cluster
    grants = access.parse_grants(cluster.access_grants)
    for raw in op.remove_grants or []:
        grants = [g for g in grants if not _same(g, raw, cfg)]
    for raw in op.add_grants or []:
        grant = access.Grant.from_dict(raw)
        if grant not in grants:
            grants.append(grant)
    cluster.access_grants = [g.to_dict() for g in grants]
    for group, members in (op.access_groups or {}).items():
        if members:
            cluster.access_groups[group] = sorted(set(members))
        else:
            cluster.access_groups.pop(group, None)
    for subject, limits in (op.quotas or {}).items():
        checked = quota.check_limits(subject, limits or {})
        if checked:
            cluster.access_quotas[subject] = checked
        else:
            cluster.access_quotas.pop(subject, None)


async def check_vg_on_nodes(ctx: Any, cfg: Any, vg_name: str) -> None:
    """Every online vm-capable node must have ``vg_name`` (Ganeti refuses a VG a node lacks);
    OpPrereqError names the first node without it and why."""
    nodes = [n for n in cfg.nodes.values() if not n.offline and n.vm_capable]

    async def one(node: Any) -> str | None:
        try:
            await ctx.rpc.node(node).call("vg_info", vg_name=vg_name, timeout=60)
        except errors.HerdError as exc:
            return f"volume group {vg_name} is not usable on node {node.name}: {exc.message}"
        return None

    problems = [p for p in await asyncio.gather(*(one(n) for n in nodes)) if p]
    if problems:
        raise errors.OpPrereqError(sorted(problems)[0])


class LUClusterVerify(LogicalUnit[OpClusterVerify]):
    """Check the config and every node; report problems as Ganeti's verify does.

    Returns True when nothing is wrong. Every finding is also written to the job log as
    ``ERROR: ...`` or ``WARNING: ...`` so that ``gnt-cluster verify`` can print it.
    """

    OPCODE = OpClusterVerify

    def locks(self) -> list[LockRequest]:
        # the nodes too (shared), as Ganeti: jobs that create or remove disks hold their nodes
        # exclusively, so verify sees no volume half-made
        return [LockRequest(LEVEL_CLUSTER, "cluster", shared=True),
                *(LockRequest(LEVEL_NODE, uuid, shared=True) for uuid in sorted(self.cfg.nodes))]

    async def execute(self) -> bool:
        self.ok = True
        cfg = self.cfg
        self.feedback("* Verifying cluster config")
        self._verify_config()
        self.feedback("* Verifying node status")
        live: dict[str, dict[str, dict[str, Any]]] = {}
        infos: dict[str, dict[str, Any]] = {}
        self._tcg: dict[str, str] = {}  # node -> why KVM is not usable
        self._loop_lvs: dict[str, str] = {}  # node -> why its LVs are loop devices
        for node in cfg.nodes.values():
            if node.offline:
                continue
            rpc = self.ctx.rpc.node(node)
            try:
                infos[node.uuid] = await rpc.node_info()
                live[node.uuid] = {r["name"]: r for r in await rpc.instance_list()}
            except errors.HerdError as exc:
                reason = exc.message or type(exc).__name__
                self.error(f"node {node.name}: unreachable or failing: {reason}")
                continue
            self._verify_node(node.name, infos[node.uuid])
            await self._verify_node_files(node)
            await self._verify_node_hooks(node)
        for names, reason in same_reason(self._tcg):  # once, not once per node
            self.warning(f"{names}: KVM is not usable ({reason}); instances run with TCG "
                         "emulation (slow)")
        for names, reason in same_reason(self._loop_lvs):
            self.warning(f"{names}: LVs of {cfg.cluster.volume_group_name} are activated as "
                         f"loop devices over their PV ({reason})")
        self.feedback("* Verifying instance status")
        for inst in cfg.instances.values():
            pnode = cfg.nodes.get(inst.primary_node)
            if pnode is None:
                continue
            if pnode.uuid not in live:
                if inst.admin_state == "up":
                    state = "offline" if pnode.offline else "unreachable"
                    self.error(f"instance {inst.name}: instance not running: its primary node "
                               f"{pnode.name} is {state}")
                continue
            running = inst.name in live[pnode.uuid]
            if inst.admin_state == "up" and not running:
                self.error(f"instance {inst.name}: instance not running on its primary node "
                           f"{pnode.name}")
            if inst.admin_state != "up" and running:
                self.error(f"instance {inst.name}: instance is running on {pnode.name} but "
                           "its admin state is down")
            for other_uuid, running_there in live.items():
                if other_uuid != pnode.uuid and inst.name in running_there:
                    self.error(f"instance {inst.name}: instance running on node "
                               f"{cfg.node_name(other_uuid)} which is not its primary")
        self.feedback("* Verifying mirrored disks")
        await self._verify_mirrors(live)
        self.feedback("* Verifying orphan volumes")
        await self._verify_orphan_volumes(list(live))
        self.feedback("* Verifying orphan instances")
        known = {i.name for i in cfg.instances.values()}
        for node_uuid, running in live.items():
            for name in sorted(set(running) - known):
                self.error(f"node {cfg.node_name(node_uuid)}: instance {name} is unknown "
                           "(orphan instance running behind Herd's back)")
        self.feedback("* Verifying etcd")
        await self._verify_etcd()
        self.feedback("* Verifying N+1 Memory redundancy")
        self._verify_n_plus_one(infos)
        if cfg.cluster.volume_group_name:
            self.feedback("* Verifying N+1 volume group space")
            free = {uuid: int(info["vg_free"]) for uuid, info in infos.items()
                    if info.get("vg_free") is not None and cfg.nodes[uuid].vm_capable}
            for text in storage_units.vg_n_plus_one(cfg, free):
                self.error(text)
        self.feedback("* Other Notes")
        return self.ok

    async def _verify_mirrors(self, live: dict[str, Any]) -> None:
        """Mirrored disks that should be active (instance up, or disks activated) and are not
        mirroring: a lost secondary, a killed storage daemon. ``info`` showed it; verify must
        fail on it, as Ganeti's does for a degraded DRBD device."""
        cfg = self.cfg
        for inst in sorted(cfg.instances.values(), key=lambda i: i.name):
            if template_of(inst).copies < 2 or not inst.disks or not inst.secondary_nodes:
                continue
            if not (inst.admin_state == "up" or inst.disks_active):
                continue
            pnode, snode = cfg.nodes[inst.primary_node], drbd.secondary_of(cfg, inst)
            if pnode.uuid not in live:
                continue  # said above
            if snode.uuid not in live:
                self.error(f"instance {inst.name}: its secondary node {snode.name} is "
                           f"{'offline' if snode.offline else 'unreachable'}: the disks are "
                           "not mirrored")
                continue
            states = await drbd.status(self.ctx, inst)
            for level, text in mirror_findings(inst.name, pnode.name, snode.name, states):
                if level == "ERROR":
                    self.error(text)
                else:
                    self.warning(text)

    async def _verify_etcd(self) -> None:
        """The etcd members against the candidates, and each member's health
        (herd.logic.etcd_health decides what is wrong)."""
        client = getattr(self.ctx.config, "client", None)
        if client is None:  # a config without etcd (unit tests)
            return
        cfg = self.cfg
        try:
            members = await client.member_list()
        except EtcdError as exc:
            self.error(f"etcd: cannot list the members: {exc.message}")
            return
        wanted = etcd_sync.wanted(cfg)
        statuses: dict[str, Status | None] = {}
        for node in cfg.nodes.values():
            if node.name not in wanted:
                continue
            try:
                async with EtcdClient.for_node(self.ctx.paths,
                                               [em.client_url(node.primary_ip)],
                                               timeout=5.0) as one:
                    statuses[node.name] = await one.status()
            except EtcdError:
                statuses[node.name] = None
        for level, text in etcd_findings(members, wanted, statuses):
            (self.error if level == "error" else self.warning)(text)

    async def _verify_orphan_volumes(self, node_uuids: list[str]) -> None:
        """Disk files and storage daemons on each node that no instance owns (Ganeti:
        "volume X is unknown", a warning). Only reported: removing is the admin's call."""
        cfg = self.cfg
        flight = intents.in_flight(intents.live_intents())
        vg_name = cfg.cluster.volume_group_name
        for node_uuid in node_uuids:
            node = cfg.nodes[node_uuid]
            try:
                listing = await self.ctx.rpc.node(node).blockdev_list()
            except errors.HerdError as exc:
                self.warning(f"node {node.name}: cannot list its volumes: {exc.message}")
                continue
            busy = {rel for n, rel in flight if n == node_uuid}
            for text in orphans.orphan_volumes(orphans.expected_on(cfg, node_uuid), listing,
                                               busy):
                self.warning(f"node {node.name}: {text}")
            # an unknown LV is an error: it takes VG space that allocation counts as free
            for text in storage_units.orphan_lvs(
                    listing.get("lvs", []), storage_units.lv_owners(cfg, node_uuid, vg_name),
                    cfg.cluster.reserved_lvs):
                self.error(f"node {node.name}: {text}")
            for text in storage_units.missing_lvs(cfg, node_uuid, listing.get("lvs", [])):
                self.error(text)

    def hooks_env(self) -> dict[str, Any]:
        env = {"CLUSTER_TAGS": " ".join(self.cfg.cluster.tags)}
        env.update((f"NODE_TAGS_{n.name}", " ".join(n.tags)) for n in self.cfg.nodes.values())
        return env

    def hooks_results(self, outcomes: dict[str, hooks.NodeOutcome], result: Any) -> Any:
        """Ganeti's "Hooks Results": cluster-verify post hooks take part in the verdict."""
        if not outcomes:
            return result
        lines, ok = hooks.verify_report(outcomes)
        for line in lines:
            self.feedback(line)
        return bool(result) and ok

    async def _verify_node_hooks(self, node: Any) -> None:
        """Hook scripts should be the same everywhere (a pre hook missing on one node lets
        operations through there): compare the node's hooks directory with the master's."""
        if node.uuid == self.cfg.cluster.master_node:
            return
        if not hasattr(self, "_master_hooks"):
            self._master_hooks = node_hooks.inventory(self.ctx.paths.hooks_dir)
        try:
            theirs = await self.ctx.rpc.node(node).call("hooks_inventory", timeout=30)
        except errors.HerdError as exc:
            self.warning(f"node {node.name}: cannot list its hook scripts: {exc.message}")
            return
        for text in hooks.compare_inventories(self.cfg.master.name, self._master_hooks,
                                              {node.name: theirs}):
            self.warning(text)

    def error(self, text: str) -> None:
        self.ok = False
        self.feedback(f"  - ERROR: {text}")

    def warning(self, text: str) -> None:
        self.feedback(f"  - WARNING: {text}")

    def _verify_config(self) -> None:
        cfg = self.cfg
        if cfg.cluster.master_node not in cfg.nodes:
            self.error("cluster: the master node is not in the node list")
        names: dict[str, str] = {}
        macs_seen: dict[str, str] = {}
        for inst in cfg.instances.values():
            if inst.name in names:
                self.error(f"instance {inst.name}: duplicate instance name")
            names[inst.name] = inst.uuid
            if inst.primary_node not in cfg.nodes:
                self.error(f"instance {inst.name}: primary node {inst.primary_node} unknown")
            for nic in inst.nics:
                if nic.mac in macs_seen:
                    self.error(f"instance {inst.name}: MAC {nic.mac} also used by "
                               f"{macs_seen[nic.mac]}")
                macs_seen[nic.mac] = inst.name
            try:
                hypervisor_class(inst.hypervisor, self.ctx.paths).check_parameters(
                    inst.hvparams)
            except errors.HerdError as exc:
                self.error(f"instance {inst.name}: {exc.message}")
        for problem in network_pool.address_problems(cfg):
            self.error(problem)
        for inst in sorted(cfg.instances.values(), key=lambda i: i.name):
            groups = group_checks.groups_of(cfg, inst)
            if template_of(inst).needs_secondary and len(groups) > 1 and \
                    self._in_scope(groups):
                names = ", ".join(sorted(cfg.nodegroups[g].name for g in groups
                                         if g in cfg.nodegroups))
                self.error(f"instance {inst.name}: primary and secondary nodes in different "
                           f"node groups ({names}); gnt-instance change-group, or gnt-group "
                           "assign-nodes, brings them together")
        self.feedback(f"  config serial {cfg.serial_no}")

    def _in_scope(self, groups: set[str]) -> bool:
        """Whether findings about these groups are reported (verify --node-group G)."""
        wanted = self.op.group_name
        if not wanted:
            return True
        group = self.cfg.find_group(wanted)
        return group is not None and group.uuid in groups

    def _distributed_files(self, candidate: bool) -> list[str]:
        p = self.ctx.paths
        files = [p.ca_cert]
        if p.rapi_users_file.exists():
            files.append(p.rapi_users_file)
        if candidate:
            files += [p.ca_key, p.rapi_cert, p.rapi_key]
        return [str(f.relative_to(p.root)) for f in files]

    async def _verify_node_files(self, node: Any) -> None:
        """Config serial and checksums of the files the master distributes."""
        cfg = self.cfg
        if node.uuid == cfg.cluster.master_node:
            return
        rpc = self.ctx.rpc.node(node)
        try:
            info = await rpc.master_info()
            wanted = self._distributed_files(node.master_candidate)
            theirs = await rpc.files_checksums(wanted)
        except errors.HerdError as exc:
            self.error(f"node {node.name}: cannot check its files: {exc.message}")
            return
        if info.get("master_node") != cfg.master.name:
            self.error(f"node {node.name}: believes the master is {info.get('master_node')}, "
                       f"not {cfg.master.name}")
        ours = ClusterFiles(self.ctx.paths).checksums(wanted)
        for rel in wanted:
            if theirs.get(rel) is None:
                self.error(f"node {node.name}: file /{rel} is missing")
            elif theirs[rel] != ours[rel]:
                self.error(f"node {node.name}: file /{rel} differs from the master's copy "
                           "(checksum mismatch)")

    def _verify_node(self, name: str, info: dict[str, Any]) -> None:
        problem = version.mismatch(name, version.announced(info))
        if problem:
            self.error(problem)
        note = version.release_note(name, version.announced(info))
        if note:
            self.warning(note)
        hv = info.get("hypervisor", {})
        if hv.get("accel") == "tcg":
            self._tcg[name] = hv.get("kvm_reason") or "KVM not usable"
        file_free = info.get("file_storage_free", info.get("storage_free"))
        if file_free is not None and int(file_free) < 1024:
            self.warning(f"node {name}: less than 1 GiB free in the file storage directory")
        self._verify_node_vg(name, info)
        problem = users_file_problem(info.get("rapi_users_mode"))
        if problem:
            users = self.ctx.paths.rapi_users_file.relative_to(self.ctx.paths.root)
            self.warning(f"node {name}: the RAPI users file /{users}: {problem} "
                         "(chmod 600 it)")
        retries = info.get("tcp_retries2")
        if retries is not None and retries > MAX_TCP_RETRIES2 and name in self._mirror_nodes():
            self.warning(f"node {name}: net.ipv4.tcp_retries2 is {retries}; mirrored disks "
                         f"want at most {MAX_TCP_RETRIES2} (e.g. 'net.ipv4.tcp_retries2 = 5' in "
                         "/etc/sysctl.d/60-herd.conf) so that a silent peer stalls guests for "
                         "seconds, not minutes, when noded is down")

    def _verify_node_vg(self, name: str, info: dict[str, Any]) -> None:
        """The cluster's VG must exist on every node (an error, as Ganeti's ENODELVM); LVs
        activated as loop devices are a warning, as the KVM/TCG fallback is."""
        vg_name = self.cfg.cluster.volume_group_name
        if not vg_name:
            return
        if info.get("vg_name") != vg_name or info.get("vg_error"):
            reason = info.get("vg_error") or (f"the node uses volume group "
                                              f"{info.get('vg_name') or '(none)'}")
            self.error(f"node {name}: volume group {vg_name} is not usable: {reason}")
            return
        activation = info.get("lvm_activation") or {}
        if activation.get("mode") == "loop":
            self._loop_lvs[name] = activation.get("reason") or "no device-mapper"

    def _mirror_nodes(self) -> set[str]:
        """Names of the nodes holding a copy of some mirrored (drbd) disk."""
        return {self.cfg.nodes[n].name for inst in self.cfg.instances.values()
                if template_of(inst).copies > 1
                for n in (inst.primary_node, *inst.secondary_nodes) if n in self.cfg.nodes}

    def _verify_n_plus_one(self, infos: dict[str, dict[str, Any]]) -> None:
        """Ganeti's rule: each node must be able to take the memory of the instances for which
        it is secondary should any single primary of theirs fail."""
        cfg = self.cfg
        by_group = sorted(infos.items(), key=lambda kv: (
            cfg.nodegroups[cfg.nodes[kv[0]].group].name
            if cfg.nodes[kv[0]].group in cfg.nodegroups else "", cfg.node_name(kv[0])))
        for node_uuid, info in by_group:
            group = cfg.nodegroups.get(cfg.nodes[node_uuid].group)
            if not self._in_scope({group.uuid if group else ""}):
                continue
            needed: dict[str, int] = {}
            for inst in cfg.instances.values():
                if node_uuid in inst.secondary_nodes and inst.admin_state == "up":
                    be = cfg.filled_beparams(inst)
                    if be.get("auto_balance", True):
                        needed[inst.primary_node] = needed.get(inst.primary_node, 0) + \
                            int(be["maxmem"])
            for primary, memory in needed.items():
                if memory > int(info.get("memory_free", 0)):
                    self.error(f"node {cfg.node_name(node_uuid)} (group "
                               f"{group.name if group else '?'}): not enough memory to "
                               f"accommodate instance failovers should node "
                               f"{cfg.node_name(primary)} fail ({memory}MiB needed, "
                               f"{info.get('memory_free')}MiB available)")
