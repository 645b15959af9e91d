"""Creating an instance: checks, disks, OS installation, config entry, first start.

Order matters for "nothing half-done": disks are created, the OS is installed, and only then is
the instance written to the config; if anything fails, what was made is removed again and the
config is untouched. Names and MACs being created are reserved in memory for the duration of
the job so that two concurrent creations cannot take the same one.
"""

from __future__ import annotations

import socket
from typing import Any

from herd import errors, exportinfo, names
from herd.allocator import protocol
from herd.jobs.locking import LEVEL_CLUSTER, LEVEL_INSTANCE, LEVEL_NODE, LockRequest
from herd.logic import group_checks, iallocator, intents, network_port
from herd.logic.base import LogicalUnit
from herd.logic.hooks import HookTargets
from herd.logic.instance_addresses import assign_addresses, nic_ip, nic_network
from herd.logic.instance_common import (
    check_node_free_memory,
    check_os_on_node,
    check_vg_space,
    start_instance,
)
from herd.logic.specs import hypervisor_class, instance_spec
from herd.logic.templates import Claim, NewDisk, by_name
from herd.network import mac as macs
from herd.objects import Instance, Nic, Node, params
from herd.opcodes import OpInstanceCreate
from herd.units import parse_size

_DISK_KEYS = {"size", "mode", "name", "vg", "metavg", "adopt", "spindles", "provider", "access"}
_NIC_KEYS = {"mac", "ip", "mode", "link", "name", "network", "vlan"}

class LUInstanceCreate(LogicalUnit[OpInstanceCreate]):
    OPCODE = OpInstanceCreate
    USES_IALLOCATOR = True

    def locks(self) -> list[LockRequest]:
        reqs = [LockRequest(LEVEL_CLUSTER, "cluster", shared=True),
                LockRequest(LEVEL_INSTANCE, self.op.instance_name)]
        if not self.op.pnode:
            # the allocator looks at every node: no other placement may change them meanwhile
            # (Ganeti locks all nodes too, unless opportunistic locking is asked for)
            return reqs + [LockRequest(LEVEL_NODE, uuid) for uuid in sorted(self.cfg.nodes)]
        for name in (self.op.pnode, self.op.snode):
            if name:
                node = self.cfg.find_node(name)
                reqs.append(LockRequest(LEVEL_NODE, node.uuid if node else name))
        return reqs

    async def check(self) -> None:
        op, cfg = self.op, self.cfg
        if op.mode not in ("create", "import"):
            raise errors.ParameterError(f"invalid instance creation mode '{op.mode}': allowed "
                                        "are create, import")
        self.export: exportinfo.ExportInfo | None = None
        if op.mode == "import":
            await self._read_export()
        elif op.src_node or op.src_path:
            raise errors.ParameterError("a source node or path is only used by mode 'import'")
        name = op.instance_name
        names.INSTANCE.check(name)
        if cfg.find_instance(name) is not None or \
                name in self.ctx.reservations.claimed("name"):
            raise errors.AlreadyExistsError(f"instance '{name}' already exists")
        if op.name_check:
            try:
                socket.getaddrinfo(name, None)
            except OSError:
                raise errors.OpPrereqError(
                    f"instance name '{name}' does not resolve; use --no-name-check "
                    "(and --no-ip-check) for names not in DNS") from None

        # template and disks
        self.template = template = by_name(op.disk_template)
        if template.name not in cfg.cluster.enabled_disk_templates:
            raise errors.OpPrereqError(
                f"disk template '{template.name}' is not enabled in this cluster; enabled: "
                f"{', '.join(cfg.cluster.enabled_disk_templates)}")
        self.disk_specs = [self._check_disk(i, d) for i, d in enumerate(op.disks)]
        template.check_disk_count(len(self.disk_specs))
        if self.export is not None:
            for idx, (want, have) in enumerate(zip(self.disk_specs, self.export.disks,
                                                   strict=False)):
                if want.size < have.size:
                    raise errors.ParameterError(
                        f"disk {idx} ({want.size} MiB) is smaller than disk {idx} of the "
                        f"export ({have.size} MiB)")

        # hypervisor and parameters
        self.hv_name = op.hypervisor or cfg.cluster.enabled_hypervisors[0]
        if self.hv_name not in cfg.cluster.enabled_hypervisors:
            raise errors.ParameterError(
                f"hypervisor '{self.hv_name}' is not enabled; enabled: "
                f"{', '.join(cfg.cluster.enabled_hypervisors)}")
        hv_cls = hypervisor_class(self.hv_name, self.ctx.paths)
        self.hvparams = {k: v for k, v in hv_cls.check_parameters(op.hvparams).items()
                         if v is not None}
        self.beparams = {k: v for k, v in params.check_beparams(op.beparams).items()
                         if v is not None}
        self.nics = [self._check_nic(i, n) for i, n in enumerate(op.nics)]

        # node: given (-n), or chosen by an instance allocator (-I, or the default one)
        await self._choose_nodes()
        if self.pnode.offline:
            raise errors.OpPrereqError(f"node {self.pnode.name} is offline")
        if self.pnode.drained:
            raise errors.OpPrereqError(f"node {self.pnode.name} is drained")
        if not self.pnode.vm_capable:
            raise errors.OpPrereqError(f"node {self.pnode.name} is not vm_capable")
        # addresses: only now, as the primary's node group decides the NICs' networks
        assign_addresses(self.cfg, self.ctx.reservations, self, self.nics, self.pnode)
        self.snode = None
        if template.needs_secondary:
            if not self.op.snode and self.snode_chosen is None:
                raise errors.OpPrereqError(f"disk template '{template.name}' needs a secondary "
                                           "node: "
                                           "-n PRIMARY:SECONDARY")
            self.snode = self.snode_chosen or cfg.get_node(op.snode)
            if self.snode.uuid == self.pnode.uuid:
                raise errors.OpPrereqError("the secondary node must differ from the primary "
                                           f"node ({self.pnode.name})")
            for flag, what in (("offline", "offline"), ("drained", "drained")):
                if getattr(self.snode, flag):
                    raise errors.OpPrereqError(f"secondary node {self.snode.name} is {what}")
            if not self.snode.vm_capable:
                raise errors.OpPrereqError(f"secondary node {self.snode.name} is not "
                                           "vm_capable")
            group_checks.check_same_group(cfg, self.pnode, self.snode)
        elif op.snode:
            raise errors.OpPrereqError("a secondary node is only used by mirrored templates")

        # OS
        self.os_name = op.os_type or ""
        if not op.no_install or self.os_name:
            if not self.os_name:
                raise errors.ParameterError("no OS given (-o OS); see 'gnt-os list'")
            await self._check_os()
        elif op.osparams:
            raise errors.ParameterError("OS parameters given without an OS")

        instance = self._build_instance()
        await check_vg_space(self.ctx, template.vg_space(instance), f"the disks of {name}")
        if op.start:
            await check_node_free_memory(self.ctx, self.pnode,
                                         int(self.cfg.filled_beparams(instance)["maxmem"]),
                                         f"starting instance {name}")
        self.instance = instance

    async def _read_export(self) -> None:
        """Mode import: read the export's config.ini from its node (``src_node``, or the
        node that has it) and take from it what the opcode leaves open (Ganeti's rules:
        OS, disks, NICs, tags, hypervisor; parameters given win over the export's)."""
        from herd.logic.backup import peer

        op, cfg = self.op, self.cfg
        name = exportinfo.source_name(op.src_path or op.instance_name)
        if op.src_node:
            node = cfg.get_node(op.src_node)
        else:
            holders = []
            for candidate in sorted(cfg.nodes.values(), key=lambda n: n.name):
                if not candidate.offline and \
                        name in await self.ctx.rpc.node(candidate).export_list():
                    holders.append(candidate)
            if not holders:
                raise errors.NotFoundError(f"no export '{name}' on any node; give its node "
                                           "with --src-node")
            node = holders[0]
        if node.offline:
            raise errors.OpPrereqError(f"source node {node.name} is offline")
        text = await self.ctx.rpc.node(node).export_info(name)
        info = exportinfo.loads(text, f"export {name} on node {node.name}")
        self.export, self.export_name, self.src_peer = info, name, peer(cfg, node)
        op.os_type = op.os_type or info.os
        if not op.disks:
            op.disks = exportinfo.import_disks(info)
        if not op.nics:
            op.nics = exportinfo.import_nics(info, same_name=info.name == op.instance_name)
        if not op.tags:
            op.tags = list(info.tags)
        if not op.hypervisor or op.hypervisor == info.hypervisor:
            op.hypervisor = info.hypervisor
            op.hvparams = exportinfo.merged(op.hvparams, info.hvparams)
        op.beparams = exportinfo.merged(op.beparams, info.beparams)
        op.osparams = exportinfo.merged(op.osparams, info.osparams)

    async def _choose_nodes(self) -> None:
        """The nodes given with -n, or those an instance allocator chooses (Ganeti: -I NAME,
        or the cluster's default allocator when neither is given). A cluster with a single
        vm_capable node and no -I needs no choice."""
        op, cfg = self.op, self.cfg
        self.snode_chosen: Node | None = None
        if op.pnode:
            if op.iallocator:
                raise errors.ParameterError(
                    f"give either nodes (-n {op.pnode}) or an instance allocator "
                    f"(-I {op.iallocator}), not both")
            self.pnode = cfg.get_node(op.pnode)
            return
        capable = [n for n in cfg.nodes.values() if n.vm_capable]
        if not op.iallocator and len(capable) == 1 and not self.template.needs_secondary:
            self.pnode = capable[0]
            return
        name = protocol.resolve_name(op.iallocator, cfg.cluster.default_iallocator)
        template = self.template
        be = params.fill(params.BE_DEFAULTS, cfg.cluster.beparams,
                         cfg.default_group().beparams, self.beparams)
        sizes = [d.size for d in self.disk_specs]
        request = iallocator.allocate_request(
            op.instance_name, template.name, be, self.disk_specs, self.nics,
            disk_space_total=template.disk_space_total(sizes),
            required_nodes=2 if template.needs_secondary else 1, hypervisor=self.hv_name,
            os=op.os_type or "", tags=list(op.tags))
        result = await iallocator.choose(
            self.ctx, name, request, lvm=template.uses_vg(cfg), feedback=self.feedback,
            refusal=f"cannot place instance {op.instance_name}",
            chose=f"nodes for instance {op.instance_name}")
        self.pnode = cfg.get_node(result[0])
        if len(result) > 1:
            self.snode_chosen = cfg.get_node(result[1])

    def _check_disk(self, index: int, disk: dict[str, Any]) -> NewDisk:
        unknown = set(disk) - _DISK_KEYS
        if unknown:
            raise errors.ParameterError(
                f"unknown disk parameter(s) {', '.join(sorted(unknown))} for disk {index}; "
                f"known: {', '.join(sorted(_DISK_KEYS))}")
        if "size" not in disk:
            raise errors.ParameterError(f"disk {index} needs a size")
        mode = disk.get("mode", disk.get("access", "rw"))
        if mode not in params.DISK_ACCESS_MODES:
            raise errors.ParameterError(f"invalid mode '{mode}' for disk {index}: allowed are "
                                        "rw, ro")
        size = parse_size(disk["size"], f"size of disk {index}")
        if size <= 0:
            raise errors.ParameterError(f"invalid size of disk {index}: must be positive")
        return NewDisk(size=size, mode=mode, name=disk.get("name"))

    def _check_nic(self, index: int, nic: dict[str, Any]) -> Nic:
        unknown = set(nic) - _NIC_KEYS
        if unknown:
            raise errors.ParameterError(
                f"unknown NIC parameter(s) {', '.join(sorted(unknown))} for NIC {index}; "
                f"known: {', '.join(sorted(_NIC_KEYS))}")
        nicparams = params.check_nicparams(
            {k: nic[k] for k in ("mode", "link", "vlan") if k in nic and nic[k] is not None})
        net = nic_network(self.cfg, index, nic.get("network"), nicparams)
        ip = nic_ip(index, nic.get("ip"), net)
        mac = str(nic.get("mac") or "auto")
        used = self._used_macs()
        if mac in ("auto", "generate"):
            prefix = net.mac_prefix if net is not None and net.mac_prefix else \
                self.cfg.cluster.mac_prefix
            mac = macs.generate_mac(prefix, used)
        else:
            mac = macs.normalize_mac(mac)
            if mac in used:
                raise errors.AlreadyExistsError(
                    f"MAC address {mac} is already in use in the cluster")
        if not self.ctx.reservations.claim("mac", mac, self):
            raise errors.AlreadyExistsError(f"MAC address {mac} is already in use in the cluster")
        mode = nicparams.get("mode") or self.cfg.cluster.nicparams.get("mode", "bridged")
        if net is None and mode == "routed" and not ip:
            raise errors.ParameterError(f"NIC {index} is routed and needs an IP address (ip=)")
        return Nic(mac=mac, ip=ip, name=nic.get("name"),
                   network=net.uuid if net is not None else None, nicparams=nicparams)

    def _used_macs(self) -> set[str]:
        used = {n.mac for i in self.cfg.instances.values() for n in i.nics}
        return used | {str(m) for m in self.ctx.reservations.claimed("mac")}

    async def _check_os(self) -> None:
        await check_os_on_node(self.ctx, self.pnode, self.os_name,
                               force_variant=self.op.force_variant,
                               osparams={k: str(v) for k, v in self.op.osparams.items()})

    def _build_instance(self) -> Instance:
        if not self.ctx.reservations.claim("name", self.op.instance_name, self):
            raise errors.AlreadyExistsError(f"instance '{self.op.instance_name}' already exists")
        inst = Instance(name=self.op.instance_name, primary_node=self.pnode.uuid,
                        os=self.os_name, hypervisor=self.hv_name,
                        disk_template=self.op.disk_template, admin_state="down",
                        hvparams=self.hvparams, beparams=self.beparams,
                        osparams=dict(self.op.osparams), nics=self.nics,
                        tags=list(self.op.tags))
        inst.disks = self.template.new_disks(
            self.cfg, inst, self.disk_specs, self.pnode.uuid,
            self.snode.uuid if self.snode is not None else None,
            Claim(self.ctx.reservations, self))
        network_port.update(self.ctx, inst, self)
        return inst

    async def _import_disks(self, node_rpc: Any, spec: dict[str, Any]) -> None:
        """Mode import: each disk gets its dump, through the OS import script on the new
        primary, streamed from the node holding the export."""
        assert self.export is not None
        source = self.src_peer["name"]
        for idx, dumped in enumerate(self.export.disks[:len(self.instance.disks)]):
            self.feedback(f"* importing disk/{idx} from export {self.export_name} on node "
                          f"{source} ({self.os_name} import script)")
            await node_rpc.import_disk(spec, self.os_name, idx, self.src_peer,
                                       self.export_name, dumped.dump)

    def hooks_targets(self) -> HookTargets:
        return HookTargets(instance=self.instance)

    def cleanup(self) -> None:
        self.ctx.reservations.release(self)

    def _intent(self) -> intents.Intent:
        """What execute is about to create on the nodes, for the intent journal."""
        inst = self.instance
        return intents.Intent(instance_name=inst.name, instance_uuid=inst.uuid,
                              items=self.template.intent_items(self.cfg, inst))

    async def execute(self) -> list[str]:
        inst, node_rpc = self.instance, self.ctx.rpc.node(self.pnode)
        template = self.template
        spec = instance_spec(self.cfg, inst, self.ctx.paths)
        created_disks = populated = False
        started = False
        # written down before anything is created: a masterd that dies from here on leaves a
        # record from which its successor removes what the config does not own
        journal = intents.IntentJournal.for_master(self.ctx.paths.data_dir)
        intent = self._intent() if inst.disks else None
        if intent is not None:
            journal.record(intent)
        try:
            if inst.disks:
                created_disks = True  # also when the answer is lost: removal is idempotent
                await template.create(self.ctx, inst, self.feedback, rollback=False)
            if self.os_name and not self.op.no_install and self.export is not None:
                await self._import_disks(node_rpc, spec)
            elif self.os_name and not self.op.no_install:
                self.feedback(f"* running the instance OS create scripts ({self.os_name})...")
                await node_rpc.os_run("create", self.os_name, spec)
            if inst.disks:
                populated = True
                await template.populate(self.ctx, inst, self.feedback,
                                        wait_for_sync=self.op.wait_for_sync)
            if self.op.start:
                self.feedback("* starting instance...")
                await start_instance(self.ctx, inst, self.pnode)
                started = True
                inst.admin_state = "up"
            self.cfg.instances[inst.uuid] = inst
            await self.ctx.config.save()
        except BaseException:
            removed = True
            try:
                if started:
                    await node_rpc.instance_stop(inst.name, 0)
                if created_disks:
                    self.feedback("* removing the disks created for the failed instance")
                    problems = await template.remove(self.ctx, inst, self.feedback,
                                                     stopped=not populated)
                    for problem in problems:
                        self.feedback(f"  WARNING: {problem}")
                    removed = not problems
            except BaseException:
                removed = False
                raise
            finally:
                self.cfg.instances.pop(inst.uuid, None)
                if intent is not None:
                    # a record whose disks could not all be removed stays for the next start
                    (journal.done if removed else journal.release)(intent)
            raise
        if intent is not None:
            journal.done(intent)
        return [inst.name]
