"""Logical units: the code that carries out one opcode, in two phases.

``locks()`` names what the operation touches; the executor acquires those locks; ``check()``
verifies every prerequisite against the (now stable) config and the nodes, changing nothing;
``execute()`` does the work. An execute that fails undoes what it created before re-raising, so
that a failed job leaves the cluster and the config as they were.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from herd.config.reservations import Reservations
from herd.jobs.locking import LEVEL_CLUSTER, LockRequest
from herd.logic.hooks import HookTargets, NodeOutcome, post_report
from herd.opcodes import OpCode

if TYPE_CHECKING:
    from herd.config.replication import Replicator
    from herd.config.store import ConfigStore
    from herd.jobs.locking import LockManager
    from herd.paths import HerdPaths
    from herd.rpc.client import RpcRunner

OpT = TypeVar("OpT", bound=OpCode)
Feedback = Callable[[str], None]


@dataclass
class MasterContext:
    """What logical units may use: the config, the node RPC and the master's paths."""

    paths: HerdPaths
    config: ConfigStore
    locks: LockManager
    rpc: RpcRunner
    replicator: Replicator | None = None
    #: names, MACs and ports handed out by running jobs (herd.config.reservations)
    reservations: Reservations = field(default_factory=Reservations)
    #: submits a job of opcode dicts, returning its id (operations whose result is other
    #: jobs, as Ganeti's ResultWithJobs: change-group, group evacuate, multi-allocation);
    #: the opcodes carry the submitting job's reason trail, hence its origin
    submit_job: Callable[[list[dict[str, Any]]], Awaitable[int]] | None = None


_LU_REGISTRY: dict[str, type[LogicalUnit[Any]]] = {}


class LogicalUnit(Generic[OpT]):
    OPCODE: ClassVar[type[OpCode]]
    #: The unit places something with the opcode's ``iallocator`` (herd.logic.iallocator);
    #: the executor refuses an allocator given to any other (herd.logic.unsupported).
    USES_IALLOCATOR: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        opcode = cls.__dict__.get("OPCODE")
        if opcode is not None:
            _LU_REGISTRY[opcode.OP_ID] = cls

    def __init__(self, op: OpT, ctx: MasterContext, feedback: Feedback) -> None:
        self.op = op
        self.ctx = ctx
        self.feedback = feedback

    @property
    def cfg(self):
        return self.ctx.config.data

    def locks(self) -> list[LockRequest]:
        """Locks to hold while checking and executing. Default: the whole cluster, exclusive."""
        return [LockRequest(LEVEL_CLUSTER, "cluster", shared=False)]

    async def check(self) -> None:
        """Verify prerequisites; raise OpPrereqError without changing anything."""

    async def execute(self) -> Any:
        raise NotImplementedError

    def cleanup(self) -> None:
        """Release in-memory reservations; called after the opcode ends, however it ended."""

    # -- Ganeti's hooks (herd.logic.hooks has the table of paths and nodes) -------------------
    def hooks_targets(self) -> HookTargets:
        """What the operation is about (its instance or node, a target node): decides where
        the hooks run and which object the environment describes. Called after check() and,
        for the GANETI_POST_* variables, again after execute()."""
        return HookTargets()

    def hooks_env(self) -> dict[str, Any]:
        """Variables only this operation knows (names without GANETI_), e.g. OLD_PRIMARY."""
        return {}

    def hooks_results(self, outcomes: dict[str, NodeOutcome], result: Any) -> Any:
        """Ganeti's HooksCallBack for the post phase: failed scripts and nodes not reached
        are warnings in the job log and change nothing; returns the opcode's result."""
        for text in post_report(outcomes):
            self.feedback(f"  - WARNING: {text}")
        return result


def lu_for(op: OpCode) -> type[LogicalUnit[Any]]:
    """The logical unit of ``op``: importing a logic module registers its units, and only the
    module of this operation is imported (herd.logic.lu_index says which; an operation it
    does not name gets all of them imported, as before the index)."""
    import importlib

    from herd.logic.lu_index import LOGIC_MODULES, LU_MODULES

    module = LU_MODULES.get(op.OP_ID)
    for name in [module] if module else [f"herd.logic.{m}" for m in LOGIC_MODULES]:
        importlib.import_module(name)
    try:
        return _LU_REGISTRY[op.OP_ID]
    except KeyError:
        from herd.errors import OpPrereqError

        raise OpPrereqError(f"operation {op.OP_ID} is not supported by this version") from None
