"""gnt-instance reinstall (Ganeti's OP_INSTANCE_REINSTALL): the OS create script again.

The disks keep their volumes (and uuids, sizes, MACs...); their contents are written anew by
the OS definition's ``create`` script with ``INSTANCE_REINSTALL=1``, as Ganeti runs it. Refused
while the instance runs (the script would write under the guest). ``os_type`` changes the OS
and ``osparams`` the instance's OS parameters (merged into its own, as ``modify -O`` merges);
both are checked on the primary before a byte is written, and recorded only once the script
succeeded, so a refused or failed reinstall leaves the config as it was (a script that failed
half-way may have written part of the disk: the job says so).

Mirrored disks: the script writes the primary's copy with the mirror down, which moves that
copy to a new generation; the next start copies it whole to the secondary.
"""

from __future__ import annotations

from typing import Any

from herd import errors
from herd.jobs.locking import LockRequest
from herd.logic.base import LogicalUnit
from herd.logic.hooks import HookTargets
from herd.logic.instance_common import check_os_on_node, instance_locks, is_running
from herd.logic.specs import instance_spec
from herd.logic.templates import template_of
from herd.objects import Instance, Node
from herd.opcodes import OpInstanceReinstall


def new_osparams(current: dict[str, Any], given: dict[str, Any] | None, *, clear: bool,
                 remove: list[str] | None) -> dict[str, Any]:
    """The instance's OS parameters after a reinstall: its own (none with ``clear``), without
    ``remove``, updated with ``given``; a removed key that is not set is refused."""
    out = {} if clear else dict(current)
    for key in remove or []:
        if key not in out:
            raise errors.ParameterError(f"cannot remove OS parameter '{key}': it is not set "
                                        f"(set: {', '.join(sorted(out)) or 'none'})")
        del out[key]
    out.update({k: v for k, v in (given or {}).items()})
    return out


class LUInstanceReinstall(LogicalUnit[OpInstanceReinstall]):
    OPCODE = OpInstanceReinstall

    def locks(self) -> list[LockRequest]:
        return instance_locks(self.cfg, self.op.instance_name)

    def hooks_targets(self) -> HookTargets:
        return HookTargets(instance=self.inst)

    async def check(self) -> None:
        op, cfg = self.op, self.cfg
        self.inst: Instance = cfg.get_instance(op.instance_name)
        inst = self.inst
        if op.osparams_private or op.osparams_secret or op.clear_osparams_private or \
                op.remove_osparams_private:
            raise errors.ParameterError("private and secret OS parameters are not supported; "
                                        "give OS parameters with osparams (-O)")
        self.pnode: Node = cfg.nodes[inst.primary_node]
        if self.pnode.offline:
            raise errors.OpPrereqError(f"primary node {self.pnode.name} of {inst.name} is "
                                       "offline")
        if not inst.disks:
            raise errors.OpPrereqError(f"instance {inst.name} has no disks to install on")
        self.os_name = op.os_type or inst.os
        if not self.os_name:
            raise errors.ParameterError(f"instance {inst.name} has no OS: give one with -o OS")
        self.osparams = new_osparams(inst.osparams, op.osparams, clear=op.clear_osparams,
                                     remove=op.remove_osparams)
        if await is_running(self.ctx, inst, self.pnode):
            raise errors.OpPrereqError(f"instance {inst.name} is running, cannot reinstall: "
                                       f"stop it first (gnt-instance shutdown {inst.name})")
        await check_os_on_node(self.ctx, self.pnode, self.os_name,
                               force_variant=op.force_variant,
                               osparams={k: str(v) for k, v in self.osparams.items()})

    async def execute(self) -> None:
        inst, template = self.inst, template_of(self.inst)
        probe = Instance.from_dict(inst.to_dict())
        probe.os, probe.osparams = self.os_name, self.osparams
        if self.os_name != inst.os:
            self.feedback(f"* changing the OS of {inst.name} from {inst.os or 'none'} to "
                          f"{self.os_name}")
        # the script writes the volumes themselves: nothing else may hold them (a mirror's
        # storage daemons are stopped; disks activated by hand are activated again after)
        await template.deactivate(self.ctx, inst)
        self.feedback(f"* running the instance OS create scripts ({self.os_name})...")
        try:
            await self.ctx.rpc.node(self.pnode).os_run(
                "create", self.os_name, instance_spec(self.cfg, probe, self.ctx.paths),
                {"INSTANCE_REINSTALL": "1"})
        except errors.HerdError as exc:
            raise errors.OpExecError(f"OS create script for {inst.name} failed; the disks may "
                                     f"be partly rewritten, the config is unchanged: "
                                     f"{exc.message}") from None
        finally:
            if inst.disks_active:
                await template.activate(self.ctx, inst, self.feedback)
        if (inst.os, inst.osparams) != (self.os_name, self.osparams):
            inst.os, inst.osparams = self.os_name, self.osparams
            inst.touch()
            await self.ctx.config.save()
