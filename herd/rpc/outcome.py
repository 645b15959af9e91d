"""What a node RPC with side effects did when its answer was lost: pure decisions.

A lost connection (noded killed or restarted, a cut link, a timeout) tells nothing about what
the node did: QEMU runs on after noded dies, so a start may have happened although its answer
never came. The RPC client (:mod:`herd.rpc.client`) asks the node again once it answers, and
these functions decide, from what the node then shows, whether the operation happened.
They do no I/O, so every rule is a unit test.

Only the instance operations whose outcome the node can show afterwards are listed: start,
stop, reboot and the source side of a migration. Everything else keeps failing on a lost
answer, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DONE = "done"          #: the operation happened: the job goes on as if the answer had come
NOT_DONE = "not-done"  #: it did not happen (or was undone): the job fails, saying so
PENDING = "pending"    #: still under way on the node (a guest powering off, a migration)
UNKNOWN = "unknown"    #: what the node shows does not tell

#: QEMU migration states of a migration that is still going on (query-migrate).
_MIGRATING = {"setup", "active", "pre-switchover", "device", "postcopy-active",
              "postcopy-paused", "postcopy-recover", "wait-unplug", "cancelling"}


@dataclass(frozen=True)
class SideEffect:
    """An RPC whose answer may be lost after it acted: which instance, and how to look."""

    method: str
    instance: str
    verb: str
    #: The read-only node RPC that shows the outcome (called with ``name=instance``).
    observe: str


@dataclass(frozen=True)
class Verdict:
    kind: str
    detail: str


def side_effect(method: str, args: dict[str, Any]) -> SideEffect | None:
    """The side effect of ``method`` called with ``args``, None for RPCs without one here."""
    if method == "instance_start":
        return SideEffect(method, str(args["spec"]["name"]), "start", "instance_info")
    if method == "instance_stop":
        return SideEffect(method, str(args["name"]), "stop", "instance_info")
    if method == "instance_reboot":
        return SideEffect(method, str(args["name"]), f"{args.get('reboot_type', '')} reboot"
                          .strip(), "instance_info")
    if method == "instance_migrate":
        return SideEffect(method, str(args["name"]), "migration", "instance_runstate")
    return None


def judge(method: str, args: dict[str, Any], observed: dict[str, Any] | None) -> Verdict:
    """Whether ``method(args)`` happened, given what the node answers to the observing RPC
    (see :func:`side_effect`) after the original answer was lost."""
    if method == "instance_start":
        if observed is None:
            return Verdict(NOT_DONE, "the instance does not run there")
        state = observed.get("state", "running")
        if state == "paused" and not args.get("paused"):
            return Verdict(NOT_DONE, "the instance is there but paused, not running")
        return Verdict(DONE, _running_detail(observed))
    if method == "instance_stop":
        if observed is None:
            return Verdict(DONE, "the instance no longer runs there")
        if float(args.get("stop_timeout", 0)) > 0:
            # the ACPI power-off may have reached the guest, which takes its time to go
            return Verdict(PENDING, "the instance still runs there (it may be shutting down)")
        return Verdict(NOT_DONE, "the instance still runs there")
    if method == "instance_reboot":
        if observed is None:
            return Verdict(NOT_DONE, "the instance does not run there (the reboot stopped it "
                           "and was cut before starting it again)")
        return Verdict(DONE, _running_detail(observed))
    if method == "instance_migrate":
        if observed is None:
            return Verdict(UNKNOWN, "the instance no longer runs on the source node")
        status = observed.get("migration_status")
        if status == "completed":
            return Verdict(DONE, "QEMU on the source reports the migration completed")
        if status in _MIGRATING:
            return Verdict(PENDING, f"the migration is still under way ({status})")
        if observed.get("state") in ("running", "paused") or status in ("failed", "cancelled"):
            return Verdict(NOT_DONE, f"the instance still runs on the source node (migration "
                           f"{status or 'not started'})")
        return Verdict(UNKNOWN, f"QEMU on the source is in state {observed.get('state')!r}, "
                       f"migration {status!r}")
    raise ValueError(f"no side effect known for node RPC {method!r}")


def result_for(method: str, args: dict[str, Any], observed: dict[str, Any] | None) -> Any:
    """What the lost answer would have carried, rebuilt from the observation (callers use
    the start's runtime info and the migration's figures)."""
    if method == "instance_start":
        return observed
    if method == "instance_migrate":
        return {"live": bool(args.get("live")), "answer_lost": True}
    return None


def _running_detail(observed: dict[str, Any]) -> str:
    pid = observed.get("pid")
    state = observed.get("state", "running")
    return f"the instance is {state} there" + (f" (QEMU pid {pid})" if pid else "")
