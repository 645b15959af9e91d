"""The NIC and disk half of ``gnt-instance modify``: add, remove and change them.

:mod:`herd.logic.instance_mods` decides what the modification list means; this module does
it, in an order that leaves the instance as it was whenever a step fails:

1. new disks are made on every node of the instance's template (a mirrored template makes
   and syncs both copies) -- a failure removes what was made;
2. a running guest with ``--hotplug`` gets its devices unplugged, then plugged -- a failure
   plugs back what was unplugged and unplugs what was plugged, then removes the new disks;
3. only then does the config change (one save);
4. the volumes of removed disks go last: the config no longer names them.

Without ``--hotplug`` a running guest keeps its hardware and the change is recorded for its
next restart (the caller says so); removing a disk a running guest still uses is refused.
The template objects do the per-node work (``create``/``populate``/``remove`` on an instance
holding just the disks concerned), so no template is named here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from herd import errors
from herd.logic import instance_mods as mods
from herd.logic import intents
from herd.logic.base import LogicalUnit
from herd.logic.instance_addresses import assign_address, nic_ip, nic_network
from herd.logic.instance_common import check_vg_space
from herd.logic.specs import disk_dict, nic_dicts, vm_disk_dict
from herd.logic.templates import Claim, template_of
from herd.network import mac as macs
from herd.objects import Disk, Instance, Nic, params

Undo = Callable[[], Awaitable[None]]


class DeviceChanges:
    """The checked NIC/disk changes of one modify job (built by :meth:`prepare`)."""

    def __init__(self, lu: LogicalUnit[Any], inst: Instance, running: bool) -> None:
        self.lu, self.inst, self.running = lu, inst, running
        self.cfg = lu.cfg
        self.template = template_of(inst)
        self.nic_plan = mods.plan(mods.NIC, [], [])
        self.disk_plan = mods.plan(mods.DISK, [], [])
        self.new_nics: list[Nic] = []
        #: NIC uuid -> the NIC parameters its (new) network gives in the primary's group
        self.netparams: dict[str, dict[str, Any]] = {}
        self.new_disks: list[Disk] = []
        self.hotplug = False
        #: What the running guest gets only at its next restart ("nic.1", "disk/0 mode"...).
        self.deferred: list[str] = []

    @property
    def empty(self) -> bool:
        return self.nic_plan.empty and self.disk_plan.empty

    # -- check -----------------------------------------------------------------------------
    async def prepare(self, nics: Any, disks: Any, hotplug: bool,
                      hotplug_if_possible: bool) -> None:
        """Check everything that can be checked before a node is touched (the job's check
        phase): the lists, names, MACs, the template's disk count and the room for new
        disks; claims the new MACs and mirror ports for the job."""
        inst = self.inst
        self.nic_plan = mods.plan(mods.NIC, mods.normalize(mods.NIC, nics),
                                  [(n.uuid, n.name) for n in inst.nics])
        self.disk_plan = mods.plan(mods.DISK, mods.normalize(mods.DISK, disks),
                                   [(d.uuid, d.name) for d in inst.disks])
        if self.empty:
            return
        self.hotplug = self.running and (hotplug or hotplug_if_possible)
        if self.disk_plan.added or self.disk_plan.removed:
            self.template.check_disk_count(len(self.disk_plan.final))
        if self.running and self.disk_plan.removed and not self.hotplug:
            gone = ", ".join(f"disk/{self._old_index(u)}" for u in self.disk_plan.removed)
            raise errors.OpPrereqError(f"instance {inst.name} is running and uses {gone}: "
                                       "remove it with --hotplug, or stop the instance first")
        self.new_nics = [self._new_nic(i, p) for i, p in enumerate(self.nic_plan.added)]
        for uuid, changes in self.nic_plan.modified.items():
            self._check_nic_change(uuid, changes)
        self._assign_addresses()
        for nic in self._final_nics():
            mode = self.cfg.filled_nicparams(inst, nic.nicparams).get("mode")
            if mode == "routed" and not nic.ip:
                raise errors.ParameterError(f"NIC {nic.name or nic.mac} is routed and needs an "
                                            "IP address (ip=)")
        if self.disk_plan.added:
            self.new_disks = [Disk(size=p["size"], mode=p.get("mode", "rw"), name=p.get("name"))
                              for p in self.disk_plan.added]
            snodes = inst.secondary_nodes
            self.template.assign(self.cfg, inst, self.new_disks, inst.primary_node,
                                 snodes[0] if snodes else None,
                                 Claim(self.lu.ctx.reservations, self.lu))
            await check_vg_space(self.lu.ctx, self.template.vg_space(self._holding(
                self.new_disks)), f"the new disks of {inst.name}")

    def _old_index(self, uuid: str) -> int:
        items: list[Any] = [*self.inst.disks, *self.inst.nics]
        owner = next(x for x in items if x.uuid == uuid)
        return (self.inst.disks if isinstance(owner, Disk) else self.inst.nics).index(owner)

    def _used_macs(self) -> set[str]:
        used = {n.mac for i in self.cfg.instances.values() for n in i.nics}
        return used | {str(m) for m in self.lu.ctx.reservations.claimed("mac")}

    def _claim_mac(self, wanted: str, prefix: str | None = None) -> str:
        used = self._used_macs()
        if wanted == "generate":
            mac = macs.generate_mac(prefix or self.cfg.cluster.mac_prefix, used)
        else:
            mac = macs.normalize_mac(wanted)
            if mac in used:
                raise errors.AlreadyExistsError(f"MAC address {mac} is already in use in the "
                                                "cluster")
        if not self.lu.ctx.reservations.claim("mac", mac, self.lu):
            raise errors.AlreadyExistsError(f"MAC address {mac} is already in use in the cluster")
        return mac

    def _new_nic(self, k: int, prm: dict[str, Any]) -> Nic:
        nicparams = params.check_nicparams({key: prm[key] for key in ("mode", "link", "vlan")
                                            if prm.get(key) is not None})
        net = nic_network(self.cfg, f"nic add {k}", prm.get("network"), nicparams)
        ip = nic_ip(f"nic add {k}", prm.get("ip"), net)
        prefix = net.mac_prefix if net is not None and net.mac_prefix else None
        return Nic(mac=self._claim_mac(prm.get("mac") or "generate", prefix), ip=ip,
                   name=prm.get("name"), nicparams=nicparams,
                   network=net.uuid if net is not None else None)

    def _check_nic_change(self, uuid: str, changes: dict[str, Any]) -> None:
        nicparams = {k: v for k, v in changes.items() if k in ("mode", "link", "vlan")}
        if nicparams:
            params.check_nicparams({k: v for k, v in nicparams.items() if v is not None})
        old = next(n for n in self.inst.nics if n.uuid == uuid)
        where = f"nic.{self._old_index(uuid)}"
        if "network" in changes:
            net = nic_network(self.cfg, where, changes["network"], nicparams)
            changes["network"] = net.uuid if net is not None else None
        network = changes.get("network", old.network)
        if network and nicparams and "network" not in changes:
            nic_network(self.cfg, where, network, nicparams)  # refused beside a network
        if "ip" in changes:
            changes["ip"] = nic_ip(where, changes["ip"],
                                   self.cfg.networks.get(network) if network else None)
        if "mac" in changes:
            changes["mac"] = self._claim_mac(changes["mac"])

    def _assign_addresses(self) -> None:
        """New NICs, and NICs whose network or address changes, get their network's NIC
        parameters and their address claimed (herd.logic.instance_addresses)."""
        cfg, lu = self.cfg, self.lu
        pnode = cfg.nodes[self.inst.primary_node]
        for index, nic in enumerate(self.new_nics):
            assign_address(cfg, lu.ctx.reservations, lu, nic, pnode, f"nic add {index}")
        for uuid, changes in self.nic_plan.modified.items():
            if "network" not in changes and "ip" not in changes:
                continue
            old = next(n for n in self.inst.nics if n.uuid == uuid)
            probe = Nic(mac=old.mac, ip=changes.get("ip", old.ip),
                        network=changes.get("network", old.network),
                        nicparams=dict(old.nicparams))
            if probe.network == old.network and probe.ip == old.ip:
                continue  # the address it holds already
            where = f"nic.{self._old_index(uuid)}"
            assign_address(cfg, lu.ctx.reservations, lu, probe, pnode, where)
            changes["ip"] = probe.ip
            if probe.network:
                self.netparams[uuid] = probe.nicparams

    def _final_nics(self) -> list[Nic]:
        """The NICs as they will be (modifications applied to copies)."""
        by_uuid = {n.uuid: n for n in self.inst.nics}
        out = []
        for token in self.nic_plan.final:
            if isinstance(token, tuple):
                out.append(self.new_nics[token[1]])
                continue
            nic = Nic.from_dict(by_uuid[token].to_dict())
            changes = self.nic_plan.modified.get(token, {})
            for key in ("mac", "ip", "name", "network"):
                if key in changes:
                    setattr(nic, key, changes[key])
            np = {k: v for k, v in changes.items() if k in ("mode", "link", "vlan")}
            if np:
                nic.nicparams = params.update_overrides(nic.nicparams, np)
            if token in self.netparams:
                nic.nicparams = dict(self.netparams[token])
            out.append(nic)
        return out

    def _final_disks(self) -> list[Disk]:
        by_uuid = {d.uuid: d for d in self.inst.disks}
        out = []
        for token in self.disk_plan.final:
            if isinstance(token, tuple):
                out.append(self.new_disks[token[1]])
                continue
            disk = by_uuid[token]
            changes = self.disk_plan.modified.get(token, {})
            if changes:
                disk = Disk.from_dict(disk.to_dict(self.inst.primary_node))
                for key, value in changes.items():
                    setattr(disk, key, value)
            out.append(disk)
        return out

    def _holding(self, disks: list[Disk]) -> Instance:
        """A copy of the instance holding just ``disks``: what the template acts on."""
        sub = Instance.from_dict(self.inst.to_dict())
        sub.disks = disks
        return sub

    # -- execute ----------------------------------------------------------------------------
    async def apply(self, changes: list[list[str]]) -> Instance:
        """Do the changes (see the module docstring for the order) and return the instance
        as the config should now hold it; the caller saves it. ``changes`` gets Ganeti's
        result rows."""
        ctx, inst, feedback = self.lu.ctx, self.inst, self.lu.feedback
        new = Instance.from_dict(inst.to_dict())
        new.nics = self._final_nics()
        new.disks = self._final_disks()
        added = self._holding(self.new_disks)
        journal = intents.IntentJournal.for_master(ctx.paths.data_dir)
        intent = intents.Intent(instance_name=inst.name, instance_uuid=inst.uuid,
                                items=self.template.intent_items(self.cfg, added)) \
            if self.new_disks else None
        if intent is not None:
            journal.record(intent)
        undo: list[Undo] = []
        try:
            if self.new_disks:
                await self.template.create(ctx, added, feedback, rollback=True)
                undo.append(lambda: self._remove_volumes(added, stopped=False))
                await self.template.populate(ctx, added, feedback,
                                             wait_for_sync=self.lu.op.wait_for_sync)
                if not self.running and not inst.disks_active:
                    await self.template.deactivate(ctx, added)
            if self.hotplug:
                await self._hotplug(new, undo)
        except BaseException:
            problems = await self._undo(undo)
            if intent is not None:
                (journal.done if not problems else journal.release)(intent)
            raise
        self._describe(new, changes)
        self.intent = intent
        return new

    async def finish(self, new: Instance) -> None:
        """After the config names ``new``: remove the volumes of the removed disks."""
        if getattr(self, "intent", None) is not None:
            intents.IntentJournal.for_master(self.lu.ctx.paths.data_dir).done(self.intent)
        gone = [d for d in self.inst.disks if d.uuid in self.disk_plan.removed]
        if gone:
            self.lu.feedback(f"* removing the volumes of {len(gone)} removed disk(s)")
            problems = await self._remove_volumes(self._holding(gone), stopped=False)
            for problem in problems:
                self.lu.feedback(f"  WARNING: volume left behind: {problem}")

    async def _remove_volumes(self, holder: Instance, *, stopped: bool) -> list[str]:
        return await self.template.remove(self.lu.ctx, holder, self.lu.feedback,
                                          stopped=stopped)

    async def _undo(self, undo: list[Undo]) -> list[str]:
        problems = []
        for step in reversed(undo):
            try:
                result = await step()
            except errors.HerdError as exc:
                result = [exc.message]
            for problem in result or []:
                problems.append(problem)
                self.lu.feedback(f"  WARNING: undoing failed: {problem}")
        return problems

    async def _hotplug(self, new: Instance, undo: list[Undo]) -> None:
        """Unplug what goes, plug what comes; each success pushes its undo."""
        cfg, inst = self.cfg, self.inst
        prpc = self.lu.ctx.rpc.node(cfg.nodes[inst.primary_node])
        old_disks = [disk_dict(inst, i) for i in range(len(inst.disks))]
        old_nics = nic_dicts(cfg, inst)

        def plug(action: str, kind: str, device: dict[str, Any]) -> Undo:
            async def step() -> None:
                await prpc.instance_hotplug(inst.name, action, kind, device)
            return step

        for kind, items, removed in (("nic", old_nics, self.nic_plan.removed),
                                     ("disk", old_disks, self.disk_plan.removed)):
            for device in items:
                if device["uuid"] in removed:
                    self.lu.feedback(f"* hot-unplugging {kind} {device['index']} from "
                                     f"{inst.name}")
                    await plug("remove", kind, device)()
                    undo.append(plug("add", kind, self._runtime_disk(device, inst)
                                     if kind == "disk" else device))
        added = {d.uuid for d in self.new_disks} | {n.uuid for n in self.new_nics}
        for kind, items in (("disk", [disk_dict(new, i) for i in range(len(new.disks))]),
                            ("nic", nic_dicts(cfg, new))):
            for device in items:
                if device["uuid"] in added:
                    self.lu.feedback(f"* hot-plugging {kind} {device['index']} into "
                                     f"{inst.name}")
                    device = self._runtime_disk(device, new) if kind == "disk" else device
                    # the undo first: a lost answer may hide a device that did go in
                    # (unplugging one that is not there is no error)
                    undo.append(plug("remove", kind, device))
                    await plug("add", kind, device)()

    def _runtime_disk(self, device: dict[str, Any], holder: Instance) -> dict[str, Any]:
        """A disk as the primary's VM opens it (a mirror: with its mirror description)."""
        return vm_disk_dict(self.cfg, holder, device["index"], holder.primary_node)

    def _describe(self, new: Instance, changes: list[list[str]]) -> None:
        """Ganeti's result rows (removals name old indices, the rest new ones), and what
        waits for a restart of a running guest."""
        defer = self.running and not self.hotplug
        for uuid in self.nic_plan.removed:
            changes.append([f"nic.{self._old_index(uuid)}", "remove"])
            if defer:
                self.deferred.append(f"nic.{self._old_index(uuid)} remove")
        for uuid in self.disk_plan.removed:
            changes.append([f"disk/{self._old_index(uuid)}", "remove"])
        for nic in self.new_nics:
            i = new.nics.index(nic)
            np = self.cfg.filled_nicparams(new, nic.nicparams)
            changes.append([f"nic.{i}", f"add:mac={nic.mac},ip={nic.ip},mode={np['mode']},"
                                        f"link={np['link']}"])
            if defer:
                self.deferred.append(f"nic.{i} add")
        for disk in self.new_disks:
            i = new.disks.index(disk)
            changes.append([f"disk/{i}", f"add:size={disk.size},mode={disk.mode}"])
            if defer:
                self.deferred.append(f"disk/{i} add")
        for uuid, prm in self.nic_plan.modified.items():
            i = self.nic_plan.index_of(uuid)
            for key, value in prm.items():
                changes.append([f"nic.{key}/{i}", str(value)])
            if self.running and set(prm) - {"name"}:
                self.deferred.append(f"nic.{i} {','.join(sorted(set(prm) - {'name'}))}")
        for uuid, prm in self.disk_plan.modified.items():
            i = self.disk_plan.index_of(uuid)
            for key, value in prm.items():
                changes.append([f"disk.{key}/{i}", str(value)])
            if self.running and "mode" in prm:
                self.deferred.append(f"disk/{i} mode")
