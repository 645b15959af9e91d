"""Opcode definitions (one dataclass per operation) and their JSON form."""

from herd.opcodes.base import OpCode, opcode_from_dict
from herd.opcodes.definitions import (
    OpClusterModify,
    OpClusterVerify,
    OpInstanceActivateDisks,
    OpInstanceCreate,
    OpInstanceDeactivateDisks,
    OpInstanceReboot,
    OpInstanceRemove,
    OpInstanceShutdown,
    OpInstanceStartup,
    OpTestDelay,
)

__all__ = ["OpClusterModify", "OpClusterVerify", "OpCode", "OpInstanceActivateDisks",
           "OpInstanceCreate", "OpInstanceDeactivateDisks", "OpInstanceReboot",
           "OpInstanceRemove", "OpInstanceShutdown", "OpInstanceStartup", "OpTestDelay",
           "opcode_from_dict"]
