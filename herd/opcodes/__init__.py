"""Opcode definitions (one dataclass per operation) and their JSON form."""

from herd.opcodes.base import OpCode, opcode_from_dict
from herd.opcodes.crypto import OpClusterRenewCrypto
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
from herd.opcodes.group import (
    OpGroupAdd,
    OpGroupAssignNodes,
    OpGroupEvacuate,
    OpGroupRemove,
    OpGroupRename,
    OpGroupSetParams,
    OpInstanceChangeGroup,
    OpInstanceMultiAlloc,
)
from herd.opcodes.instance_changes import (
    OpInstanceGrowDisk,
    OpInstanceReinstall,
    OpInstanceRename,
)
from herd.opcodes.instance_extra import OpInstanceQueryData

# after instance_extra: these take over its placeholders of the same OP_IDs
from herd.opcodes.backup import (  # isort: skip
    OpBackupExport,
    OpBackupPrepare,
    OpBackupQuery,
    OpBackupRemove,
)
from herd.opcodes.instance_modify import OpInstanceSetParams
from herd.opcodes.instance_move import OpInstanceMove
from herd.opcodes.mirror_ops import (
    OpClusterVerifyDisks,
    OpInstanceFailover,
    OpInstanceMigrate,
    OpInstanceRecreateDisks,
    OpInstanceReplaceDisks,
    OpNodeEvacuate,
    OpNodeMigrate,
)
from herd.opcodes.network import (
    OpNetworkAdd,
    OpNetworkConnect,
    OpNetworkDisconnect,
    OpNetworkRemove,
    OpNetworkRename,
    OpNetworkSetParams,
)
from herd.opcodes.storage import OpNodeQueryStorage
from herd.opcodes.tags import OpTagsDel, OpTagsGet, OpTagsSearch, OpTagsSet

__all__ = [
    "OpBackupExport",
    "OpBackupPrepare",
    "OpBackupQuery",
    "OpBackupRemove",
    "OpClusterModify",
    "OpClusterRedistConf",
    "OpClusterRenewCrypto",
    "OpClusterVerify",
    "OpClusterVerifyDisks",
    "OpCode",
    "OpGroupAdd",
    "OpGroupAssignNodes",
    "OpGroupEvacuate",
    "OpGroupRemove",
    "OpGroupRename",
    "OpGroupSetParams",
    "OpInstanceActivateDisks",
    "OpInstanceChangeGroup",
    "OpInstanceCreate",
    "OpInstanceDeactivateDisks",
    "OpInstanceFailover",
    "OpInstanceGrowDisk",
    "OpInstanceMigrate",
    "OpInstanceMove",
    "OpInstanceMultiAlloc",
    "OpInstanceQueryData",
    "OpInstanceReboot",
    "OpInstanceRecreateDisks",
    "OpInstanceReinstall",
    "OpInstanceRemove",
    "OpInstanceRename",
    "OpInstanceReplaceDisks",
    "OpInstanceSetParams",
    "OpInstanceShutdown",
    "OpInstanceStartup",
    "OpNetworkAdd",
    "OpNetworkConnect",
    "OpNetworkDisconnect",
    "OpNetworkRemove",
    "OpNetworkRename",
    "OpNetworkSetParams",
    "OpNodeAdd",
    "OpNodeEvacuate",
    "OpNodeMigrate",
    "OpNodeQueryStorage",
    "OpNodeRemove",
    "OpNodeSetParams",
    "OpTagsDel",
    "OpTagsGet",
    "OpTagsSearch",
    "OpTagsSet",
    "OpTestDelay",
    "opcode_from_dict",
]
