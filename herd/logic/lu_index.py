"""Which module holds the logical unit of each operation, so that masterd imports the module of
the operation a job runs and no other (herd.logic.base.lu_for).

Importing every logic module at the first job cost masterd about 15 MiB for as long as it runs
(issue 17: a one-node cluster's daemons at rest within 100 MiB): ``cryptography`` for node and
crypto operations, Starlette through the node module, ``statistics`` and ``decimal`` through the
allocator, for a cluster whose jobs were a watcher's or a ``gnt-debug delay``. An operation
missing here still works (lu_for then imports them all, as before); the unit test
``test_lu_index_names_the_module_of_every_logical_unit`` keeps this table equal to what the
modules register and prints the lines to paste when it is not.
"""

from __future__ import annotations

#: The logic modules that define logical units (all of them are imported when an operation is
#: missing from LU_MODULES).
LOGIC_MODULES = (
    "backup", "cluster", "cluster_disks", "crypto", "group", "instance", "instance_create",
    "instance_failover", "instance_grow", "instance_migrate", "instance_modify",
    "instance_move", "instance_recreate", "instance_reinstall", "instance_rename",
    "instance_replace", "misc", "network", "node", "node_moves", "querydata", "tags",
    "unsupported",
)

#: OP_ID -> the module whose import registers its logical unit.
LU_MODULES: dict[str, str] = {
    "OP_BACKUP_EXPORT": "herd.logic.backup",
    "OP_BACKUP_PREPARE": "herd.logic.backup",
    "OP_BACKUP_QUERY": "herd.logic.backup",
    "OP_BACKUP_REMOVE": "herd.logic.backup",
    "OP_CLUSTER_REDIST_CONF": "herd.logic.node",
    "OP_CLUSTER_RENEW_CRYPTO": "herd.logic.crypto",
    "OP_CLUSTER_SET_PARAMS": "herd.logic.cluster",
    "OP_CLUSTER_VERIFY": "herd.logic.cluster",
    "OP_CLUSTER_VERIFY_DISKS": "herd.logic.cluster_disks",
    "OP_GROUP_ADD": "herd.logic.group",
    "OP_GROUP_ASSIGN_NODES": "herd.logic.group",
    "OP_GROUP_EVACUATE": "herd.logic.group",
    "OP_GROUP_REMOVE": "herd.logic.group",
    "OP_GROUP_RENAME": "herd.logic.group",
    "OP_GROUP_SET_PARAMS": "herd.logic.group",
    "OP_INSTANCE_ACTIVATE_DISKS": "herd.logic.instance",
    "OP_INSTANCE_CHANGE_GROUP": "herd.logic.group",
    "OP_INSTANCE_CREATE": "herd.logic.instance_create",
    "OP_INSTANCE_DEACTIVATE_DISKS": "herd.logic.instance",
    "OP_INSTANCE_FAILOVER": "herd.logic.instance_failover",
    "OP_INSTANCE_GROW_DISK": "herd.logic.instance_grow",
    "OP_INSTANCE_MIGRATE": "herd.logic.instance_migrate",
    "OP_INSTANCE_MOVE": "herd.logic.instance_move",
    "OP_INSTANCE_MULTI_ALLOC": "herd.logic.group",
    "OP_INSTANCE_QUERY_DATA": "herd.logic.querydata",
    "OP_INSTANCE_REBOOT": "herd.logic.instance",
    "OP_INSTANCE_RECREATE_DISKS": "herd.logic.instance_recreate",
    "OP_INSTANCE_REINSTALL": "herd.logic.instance_reinstall",
    "OP_INSTANCE_REMOVE": "herd.logic.instance",
    "OP_INSTANCE_RENAME": "herd.logic.instance_rename",
    "OP_INSTANCE_REPLACE_DISKS": "herd.logic.instance_replace",
    "OP_INSTANCE_SET_PARAMS": "herd.logic.instance_modify",
    "OP_INSTANCE_SHUTDOWN": "herd.logic.instance",
    "OP_INSTANCE_STARTUP": "herd.logic.instance",
    "OP_NETWORK_ADD": "herd.logic.network",
    "OP_NETWORK_CONNECT": "herd.logic.network",
    "OP_NETWORK_DISCONNECT": "herd.logic.network",
    "OP_NETWORK_REMOVE": "herd.logic.network",
    "OP_NETWORK_RENAME": "herd.logic.network",
    "OP_NETWORK_SET_PARAMS": "herd.logic.network",
    "OP_NODE_ADD": "herd.logic.node",
    "OP_NODE_EVACUATE": "herd.logic.node_moves",
    "OP_NODE_MIGRATE": "herd.logic.node_moves",
    "OP_NODE_MODIFY_STORAGE": "herd.logic.unsupported",
    "OP_NODE_POWERCYCLE": "herd.logic.unsupported",
    "OP_NODE_QUERY_STORAGE": "herd.logic.querydata",
    "OP_NODE_REMOVE": "herd.logic.node",
    "OP_NODE_SET_PARAMS": "herd.logic.node",
    "OP_REPAIR_NODE_STORAGE": "herd.logic.unsupported",
    "OP_TAGS_DEL": "herd.logic.tags",
    "OP_TAGS_GET": "herd.logic.tags",
    "OP_TAGS_SEARCH": "herd.logic.tags",
    "OP_TAGS_SET": "herd.logic.tags",
    "OP_TEST_DELAY": "herd.logic.misc",
}
