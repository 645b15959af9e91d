"""Opcode definitions (one dataclass per operation) and their JSON form."""

from herd.opcodes.base import OpCode, opcode_from_dict
from herd.opcodes.definitions import (
    OpClusterModify,
    OpClusterRedistConf,
    OpClusterVerify,
    OpInstanceActivateDisks,
    OpInstanceCreate,
    OpInstanceDeactivateDisks,
    OpInstanceReboot,
    OpInstanceRemove,
    OpInstanceShutdown,
    OpInstanceStartup,
    OpNodeAdd,
    OpNodeRemove,
    OpNodeSetParams,
    OpTestDelay,
)

__all__ = [
    "OpClusterModify",
    "OpClusterRedistConf",
    "OpClusterVerify",
    "OpCode",
    "OpInstanceActivateDisks",
    "OpInstanceCreate",
    "OpInstanceDeactivateDisks",
    "OpInstanceReboot",
    "OpInstanceRemove",
    "OpInstanceShutdown",
    "OpInstanceStartup",
    "OpNodeAdd",
    "OpNodeRemove",
    "OpNodeSetParams",
    "OpTestDelay",
    "opcode_from_dict",
]
