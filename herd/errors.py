"""Error hierarchy.

Every error a user can cause carries a short code (Ganeti's error classes keep their names,
so RAPI can report them the way Ganeti does) and a one-line message naming the bad value and
what is allowed. Errors cross process boundaries (node RPC, masterd socket, job results) as
``{"code": ..., "message": ...}`` and are rebuilt with :func:`from_dict`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing costs each gnt-* command ~2 ms at start
    from typing import Any


class HerdError(Exception):
    """Base of all Herd errors."""

    code = "HerdError"
    #: HTTP status used when this error answers a RAPI request.
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


class OpPrereqError(HerdError):
    """A prerequisite of an operation is not met (bad input, wrong state): nothing was changed."""

    code = "OpPrereqError"
    http_status = 400


class ParameterError(OpPrereqError):
    """A parameter has an unknown name or an invalid value."""

    code = "ParameterError"


class NotFoundError(OpPrereqError):
    """A named object (instance, node, job, OS) does not exist."""

    code = "NotFoundError"
    http_status = 404


class AlreadyExistsError(OpPrereqError):
    code = "AlreadyExistsError"
    http_status = 409


class OpExecError(HerdError):
    """An operation failed while it was being carried out (after its checks passed)."""

    code = "OpExecError"


class RpcError(HerdError):
    """A node could not be reached or its daemon answered with a failure."""

    code = "RpcError"
    http_status = 502


class HypervisorError(HerdError):
    code = "HypervisorError"


class StorageError(HerdError):
    code = "StorageError"


class ConfigurationError(HerdError):
    """The configuration on disk is missing or inconsistent."""

    code = "ConfigurationError"


class JobCanceled(HerdError):
    code = "JobCanceled"


class JobQueueError(HerdError):
    """The job queue cannot store a job (disk full, damaged file): nothing was queued."""

    code = "JobQueueError"
    http_status = 503


class JobLost(HerdError):
    """The job was running when masterd stopped; its outcome is unknown."""

    code = "JobLost"


class ProgrammerError(HerdError):
    code = "ProgrammerError"


_BY_CODE: dict[str, type[HerdError]] = {}


def _register(cls: type[HerdError]) -> None:
    _BY_CODE[cls.code] = cls
    for sub in cls.__subclasses__():
        _register(sub)


_register(HerdError)


def from_dict(data: dict[str, Any]) -> HerdError:
    """Rebuild an error sent over the wire."""
    cls = _BY_CODE.get(str(data.get("code")), HerdError)
    return cls(str(data.get("message", "unknown error")))
