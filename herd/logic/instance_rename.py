"""gnt-instance rename (Ganeti's OP_INSTANCE_RENAME): a new name, nothing else changes.

Disks are named by uuid, MACs and grants are keyed on the instance's uuid, so the config keeps
all of them; the name is an attribute. Checks as Ganeti's: the new name must resolve unless
``name_check`` is off, and with ``ip_check`` its address must not answer (Ganeti's TcpPing to
the node daemon port: a refused connection is an answer too).

Running instances: Ganeti refuses them ("cannot rename"), because its OS rename script must
not write a disk the guest uses. Herd renames them too, as the admin asks for a name, not a
reboot: the running QEMU's runtime files (pidfile, QMP and console sockets, console log,
runtime record) move to the new name on the primary, the guest runs on untouched, and the OS
rename script is not run (its disk is in use; the job says so). A stopped instance gets the
rename script as in Ganeti, with INSTANCE_NAME and OLD_INSTANCE_NAME; a failing script is a
warning, as in Ganeti, because the cluster has renamed the instance by then.
"""

from __future__ import annotations

import asyncio
import errno
import socket

from herd import errors, names
from herd.jobs.locking import LEVEL_INSTANCE, LockRequest
from herd.logic.base import LogicalUnit
from herd.logic.hooks import HookTargets
from herd.logic.instance_common import instance_locks, is_running
from herd.logic.specs import instance_spec
from herd.objects import Instance, Node
from herd.opcodes import OpInstanceRename

#: The port Ganeti's IP check knocks at (its node daemon's).
IP_CHECK_PORT = 1811
IP_CHECK_TIMEOUT = 2.0


def check_flags(name_check: bool, ip_check: bool) -> None:
    """Ganeti's rule: the IP check needs the address the name check finds."""
    if ip_check and not name_check:
        raise errors.ParameterError("the IP address check (ip_check) needs the name check "
                                    "(name_check); use --no-ip-check with --no-name-check")


def answer_means_in_use(error: int | None) -> bool:
    """Whether a TCP connect's outcome shows a live host: connected (None) or refused (a host
    answered with RST), as Ganeti's TcpPing counts; a timeout or unreachable is no answer."""
    return error is None or error == errno.ECONNREFUSED


def _knock(ip: str, port: int, timeout: float) -> int | None:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return None
    except TimeoutError:
        return errno.ETIMEDOUT
    except OSError as exc:
        return exc.errno or errno.EHOSTUNREACH


def resolve(name: str) -> str:
    """The IPv4 address ``name`` resolves to; OpPrereqError naming it if none."""
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        infos = []
    if not infos:
        raise errors.OpPrereqError(f"new instance name '{name}' does not resolve; use "
                                   "--no-name-check (and --no-ip-check) for names not in DNS")
    return str(infos[0][4][0])


class LUInstanceRename(LogicalUnit[OpInstanceRename]):
    OPCODE = OpInstanceRename

    def locks(self) -> list[LockRequest]:
        # the new name too: no other job takes it meanwhile, and this job's save covers the
        # instance under its new name (saves are scoped by the instance names locked)
        return [*instance_locks(self.cfg, self.op.instance_name, nodes_shared=True),
                LockRequest(LEVEL_INSTANCE, self.op.new_name)]

    def cleanup(self) -> None:
        self.ctx.reservations.release(self)

    def hooks_targets(self) -> HookTargets:
        return HookTargets(instance=self.inst)

    async def check(self) -> None:
        op, cfg = self.op, self.cfg
        self.inst: Instance = cfg.get_instance(op.instance_name)
        self.old_name = self.inst.name
        check_flags(op.name_check, op.ip_check)
        new = names.INSTANCE.check(op.new_name)
        other = cfg.find_instance(new)
        if (other is not None and other.name == new) or \
                new in self.ctx.reservations.claimed("name"):
            raise errors.AlreadyExistsError(f"instance '{new}' already exists")
        if new == self.old_name:
            raise errors.OpPrereqError(f"instance {new} has that name already")
        if op.name_check:
            ip = await asyncio.to_thread(resolve, new)
            if op.ip_check:
                outcome = await asyncio.to_thread(_knock, ip, IP_CHECK_PORT, IP_CHECK_TIMEOUT)
                if answer_means_in_use(outcome):
                    raise errors.OpPrereqError(
                        f"IP address {ip} of the new name '{new}' is already in use (it "
                        "answers); use --no-ip-check to rename anyway")
        self.new_name = new
        self.pnode: Node = cfg.nodes[self.inst.primary_node]
        if self.pnode.offline:
            raise errors.OpPrereqError(f"primary node {self.pnode.name} of {self.old_name} "
                                       "is offline")
        self.running = await is_running(self.ctx, self.inst, self.pnode)

    async def execute(self) -> str:
        inst, old, new = self.inst, self.old_name, self.new_name
        if not self.ctx.reservations.claim("name", new, self):
            raise errors.AlreadyExistsError(f"instance '{new}' already exists")
        rpc = self.ctx.rpc.node(self.pnode)
        if self.running:
            self.feedback(f"* moving the runtime state of running {old} to {new} on "
                          f"{self.pnode.name}")
            await rpc.instance_rename(old, new)
        inst.name = new
        inst.touch()
        try:
            await self.ctx.config.save()
        except BaseException:
            inst.name = old
            if self.running:
                try:
                    await rpc.instance_rename(new, old)
                except errors.HerdError as exc:
                    self.feedback(f"  WARNING: could not give the running instance its old "
                                  f"name back on {self.pnode.name}: {exc.message}")
            raise
        if not inst.os or not inst.disks:
            return new
        if self.running:
            self.feedback(f"  the OS rename script was not run: {new} is running and uses its "
                          "disks (the guest keeps its old name inside until the OS renames it)")
            return new
        self.feedback(f"* running the OS rename script ({inst.os})")
        try:
            await rpc.os_run("rename", inst.os, instance_spec(self.cfg, inst, self.ctx.paths),
                             {"OLD_INSTANCE_NAME": old})
        except errors.HerdError as exc:
            self.feedback(f"  WARNING: could not run the OS rename script for {new} on "
                          f"{self.pnode.name} (but the instance has been renamed): "
                          f"{exc.message}")
        return new
