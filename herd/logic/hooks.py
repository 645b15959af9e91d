"""Ganeti's hooks around operations (the master half): where scripts run, with what environment.

Admins rely on Ganeti's hook scripts to refuse operations by local policy (pre phase) and to
update DNS, monitoring or inventories afterwards (post phase). Herd keeps Ganeti's interface so
those scripts work unchanged:

- :data:`HOOKS` is the table of Ganeti's hooks document: for each opcode Herd carries out and
  Ganeti gives a hooks path, the path, the object type, the nodes of each phase (as roles,
  resolved against the operation's objects) and the opcode fields exported as variables;
- the logical unit supplies what only it knows (``hooks_targets``: the instance or node it is
  about and a target node; ``hooks_env``: extra variables such as OLD_PRIMARY), in the spirit
  of Ganeti's BuildHooksNodes/BuildHooksEnv;
- :func:`execute` runs an LU the way Ganeti's processor does: pre hooks after the checks and
  before anything changes (any failing script stops the operation, naming script, node and
  output); then the LU; then post hooks, whose failures are warnings and never undo anything.
  A node that cannot be reached is not a refusal (Ganeti's rule), but the job log says so.

Node lists are computed once, after the checks (as Ganeti does), so that the post phase of a
failover also runs on the node the instance left. Post-phase variables (``GANETI_POST_*``) are
computed after the operation and added to the pre-phase ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from herd import errors
from herd.node import hooks as node_hooks
from herd.objects import ConfigData, Instance, Network

if TYPE_CHECKING:
    from herd.logic.base import LogicalUnit, MasterContext

log = logging.getLogger(__name__)

#: The interface version scripts see (GANETI_HOOKS_VERSION; Ganeti's document says 2).
HOOKS_VERSION = 2
PRE, POST = "pre", "post"

# Object types (GANETI_OBJECT_TYPE)
INSTANCE, NODE, CLUSTER, NETWORK, GROUP = "INSTANCE", "NODE", "CLUSTER", "NETWORK", "GROUP"

# Node roles of Ganeti's hooks table, resolved by :func:`resolve_nodes`
MASTER = "master"
PRIMARY = "primary"            # the instance's primary node (before the operation)
SECONDARIES = "secondaries"    # the instance's secondary nodes (before the operation)
TARGET = "target"              # the node an instance moves to, or its new secondary
THE_NODE = "node"              # the node a node operation is about (also a node being added)
ALL_NODES = "all"              # every node in the config
OTHER_NODES = "others"         # every node except the one the operation is about
GROUP_NODES = "group"          # the nodes of the node group the operation is about


@dataclass(frozen=True)
class HookDecl:
    """One row of Ganeti's operation list."""

    path: str
    object_type: str
    pre: tuple[str, ...]
    post: tuple[str, ...]
    #: GANETI_<NAME> variables taken from opcode fields (Ganeti passes str(value)).
    op_vars: Mapping[str, str] = field(default_factory=dict)
    #: GANETI_OP_CODE when Ganeti's opcode for these hooks is not Herd's.
    op_code: str | None = None


_INSTANCE_NODES = (MASTER, PRIMARY, SECONDARIES)

#: Ganeti's hooks table (doc/hooks.rst "Operation list"), for the operations Herd carries out.
HOOKS: dict[str, HookDecl] = {
    "OP_INSTANCE_CREATE": HookDecl("instance-add", INSTANCE, _INSTANCE_NODES, _INSTANCE_NODES,
                                   {"ADD_MODE": "mode"}),
    "OP_INSTANCE_REMOVE": HookDecl("instance-remove", INSTANCE, (MASTER,), _INSTANCE_NODES,
                                   {"SHUTDOWN_TIMEOUT": "shutdown_timeout"}),
    "OP_INSTANCE_STARTUP": HookDecl("instance-start", INSTANCE, _INSTANCE_NODES,
                                    _INSTANCE_NODES, {"FORCE": "force"}),
    "OP_INSTANCE_SHUTDOWN": HookDecl("instance-stop", INSTANCE, _INSTANCE_NODES,
                                     _INSTANCE_NODES, {"TIMEOUT": "timeout"}),
    "OP_INSTANCE_REBOOT": HookDecl("instance-reboot", INSTANCE, _INSTANCE_NODES,
                                   _INSTANCE_NODES,
                                   {"IGNORE_SECONDARIES": "ignore_secondaries",
                                    "REBOOT_TYPE": "reboot_type",
                                    "SHUTDOWN_TIMEOUT": "shutdown_timeout"}),
    "OP_INSTANCE_SET_PARAMS": HookDecl("instance-modify", INSTANCE, _INSTANCE_NODES,
                                       _INSTANCE_NODES,
                                       {"NEW_DISK_TEMPLATE": "disk_template",
                                        "RUNTIME_MEMORY": "runtime_mem"}),
    "OP_INSTANCE_FAILOVER": HookDecl("instance-failover", INSTANCE,
                                     (MASTER, SECONDARIES, TARGET),
                                     (MASTER, SECONDARIES, TARGET, PRIMARY),
                                     {"IGNORE_CONSISTENCY": "ignore_consistency",
                                      "SHUTDOWN_TIMEOUT": "shutdown_timeout",
                                      "FAILOVER_CLEANUP": "cleanup"}),
    "OP_INSTANCE_MIGRATE": HookDecl("instance-migrate", INSTANCE,
                                    (*_INSTANCE_NODES, TARGET), (*_INSTANCE_NODES, TARGET),
                                    {"MIGRATE_CLEANUP": "cleanup",
                                     "ALLOW_RUNTIME_CHANGES": "allow_runtime_changes"}),
    "OP_INSTANCE_MOVE": HookDecl("instance-move", INSTANCE, (MASTER, PRIMARY, TARGET),
                                 (MASTER, PRIMARY, TARGET),
                                 {"SHUTDOWN_TIMEOUT": "shutdown_timeout"}),
    "OP_INSTANCE_REPLACE_DISKS": HookDecl("mirrors-replace", INSTANCE,
                                          (MASTER, PRIMARY, TARGET), (MASTER, PRIMARY, TARGET),
                                          {"MODE": "mode"}),
    "OP_INSTANCE_RECREATE_DISKS": HookDecl("instance-recreate-disks", INSTANCE,
                                           _INSTANCE_NODES, _INSTANCE_NODES),
    "OP_INSTANCE_GROW_DISK": HookDecl("disk-grow", INSTANCE, _INSTANCE_NODES, _INSTANCE_NODES,
                                      {"DISK": "disk", "AMOUNT": "amount",
                                       "ABSOLUTE": "absolute"}),
    "OP_INSTANCE_RENAME": HookDecl("instance-rename", INSTANCE, _INSTANCE_NODES,
                                   _INSTANCE_NODES, {"INSTANCE_NEW_NAME": "new_name"}),
    "OP_INSTANCE_REINSTALL": HookDecl("instance-reinstall", INSTANCE, _INSTANCE_NODES,
                                      _INSTANCE_NODES),

    "OP_BACKUP_EXPORT": HookDecl("instance-export", INSTANCE, (*_INSTANCE_NODES, TARGET),
                                 (*_INSTANCE_NODES, TARGET),
                                 {"EXPORT_MODE": "mode", "EXPORT_DO_SHUTDOWN": "shutdown",
                                  "SHUTDOWN_TIMEOUT": "shutdown_timeout",
                                  "REMOVE_INSTANCE": "remove_instance"}),
    "OP_NODE_ADD": HookDecl("node-add", NODE, (ALL_NODES,), (ALL_NODES, THE_NODE)),
    "OP_NODE_REMOVE": HookDecl("node-remove", NODE, (OTHER_NODES,), (OTHER_NODES,)),
    "OP_NODE_SET_PARAMS": HookDecl("node-modify", NODE, (MASTER, THE_NODE), (MASTER, THE_NODE),
                                   {"MASTER_CANDIDATE": "master_candidate",
                                    "OFFLINE": "offline", "DRAINED": "drained",
                                    "MASTER_CAPABLE": "master_capable",
                                    "VM_CAPABLE": "vm_capable"}),
    "OP_NODE_MIGRATE": HookDecl("node-migrate", NODE, (MASTER,), (MASTER,),
                                {"ALLOW_RUNTIME_CHANGES": "allow_runtime_changes"}),
    "OP_INSTANCE_CHANGE_GROUP": HookDecl("instance-change-group", INSTANCE, (MASTER,),
                                         (MASTER,)),
    "OP_GROUP_ADD": HookDecl("group-add", GROUP, (MASTER,), (MASTER,),
                             {"GROUP_NAME": "group_name"}),
    "OP_GROUP_SET_PARAMS": HookDecl("group-modify", GROUP, (MASTER,), (MASTER,),
                                    {"GROUP_NAME": "group_name",
                                     "NEW_ALLOC_POLICY": "alloc_policy"}),
    "OP_GROUP_REMOVE": HookDecl("group-remove", GROUP, (MASTER,), (MASTER,),
                                {"GROUP_NAME": "group_name"}),
    "OP_GROUP_RENAME": HookDecl("group-rename", GROUP, (MASTER, GROUP_NODES),
                                (MASTER, GROUP_NODES),
                                {"OLD_NAME": "group_name", "NEW_NAME": "new_name"}),
    "OP_GROUP_EVACUATE": HookDecl("group-evacuate", GROUP, (MASTER, GROUP_NODES),
                                  (MASTER, GROUP_NODES), {"GROUP_NAME": "group_name"}),
    "OP_CLUSTER_SET_PARAMS": HookDecl("cluster-modify", CLUSTER, (MASTER,), (MASTER,)),
    "OP_NETWORK_ADD": HookDecl("network-add", NETWORK, (MASTER,), (MASTER,)),
    "OP_NETWORK_REMOVE": HookDecl("network-remove", NETWORK, (MASTER,), (MASTER,)),
    "OP_NETWORK_SET_PARAMS": HookDecl("network-modify", NETWORK, (MASTER,), (MASTER,)),
    "OP_NETWORK_CONNECT": HookDecl("network-connect", NETWORK, (GROUP_NODES,),
                                   (GROUP_NODES,)),
    "OP_NETWORK_DISCONNECT": HookDecl("network-disconnect", NETWORK, (GROUP_NODES,),
                                      (GROUP_NODES,)),
    # Ganeti runs these in OP_CLUSTER_VERIFY_GROUP, the job its OP_CLUSTER_VERIFY submits
    "OP_CLUSTER_VERIFY": HookDecl("cluster-verify", CLUSTER, (), (ALL_NODES,),
                                  op_code="OP_CLUSTER_VERIFY_GROUP"),
}


@dataclass
class HookTargets:
    """What an operation is about, as its logical unit knows after its checks."""

    instance: Instance | None = None
    #: Name of the node a node operation is about (may not be in the config yet: node-add).
    node: str | None = None
    #: Name of the node an instance moves to, or of its new secondary.
    target: str | None = None
    #: Uuid of the node group the operation is about (a group operation, a network
    #: (dis)connect).
    group: str | None = None


class HooksAbort(errors.OpPrereqError):
    """A pre hook refused the operation; nothing was changed (Ganeti's HooksAbort)."""

    code = "HooksAbort"


@dataclass
class NodeOutcome:
    """One node's answer for a phase: its scripts' results, or why it could not be asked."""

    scripts: list[node_hooks.ScriptResult] = field(default_factory=list)
    error: str | None = None


# -- pure parts: nodes, environment, results ------------------------------------------------
def resolve_nodes(roles: Iterable[str], cfg: ConfigData, targets: HookTargets) -> list[str]:
    """Node names for ``roles``, each once, in order of first appearance."""
    inst = targets.instance
    by_role: dict[str, Callable[[], list[str]]] = {
        MASTER: lambda: [cfg.master.name],
        PRIMARY: lambda: [cfg.node_name(inst.primary_node)] if inst else [],
        SECONDARIES: lambda: [cfg.node_name(u) for u in inst.secondary_nodes] if inst else [],
        TARGET: lambda: [targets.target] if targets.target else [],
        THE_NODE: lambda: [targets.node] if targets.node else [],
        ALL_NODES: lambda: sorted(n.name for n in cfg.nodes.values()),
        OTHER_NODES: lambda: sorted(n.name for n in cfg.nodes.values()
                                    if n.name != targets.node),
        GROUP_NODES: lambda: sorted(n.name for n in cfg.nodes.values()
                                    if targets.group is not None and n.group == targets.group),
    }
    names: list[str] = []
    for role in roles:
        for name in by_role[role]():
            if name not in names:
                names.append(name)
    return names


def env_value(value: Any) -> str:
    """Ganeti converts every value with str(): True -> "True", None -> "None"."""
    return str(value)


def instance_env(cfg: ConfigData, inst: Instance, hvparams: Mapping[str, Any]) -> dict[str, Any]:
    """Ganeti's BuildInstanceHookEnvByObject: the instance, its NICs and its disks."""
    be = cfg.filled_beparams(inst)
    secondaries = " ".join(cfg.node_name(u) for u in inst.secondary_nodes)
    env: dict[str, Any] = {
        "OP_TARGET": inst.name,
        "INSTANCE_NAME": inst.name,
        "INSTANCE_PRIMARY": cfg.node_name(inst.primary_node),
        # Ganeti's code exports SECONDARIES, its document says SECONDARY: scripts use either
        "INSTANCE_SECONDARIES": secondaries,
        "INSTANCE_SECONDARY": secondaries,
        "INSTANCE_OS_TYPE": inst.os,
        "INSTANCE_STATUS": inst.admin_state,
        "INSTANCE_MINMEM": be.get("minmem"),
        "INSTANCE_MAXMEM": be.get("maxmem"),
        "INSTANCE_MEMORY": be.get("maxmem"),
        "INSTANCE_VCPUS": be.get("vcpus"),
        "INSTANCE_DISK_TEMPLATE": inst.disk_template,
        "INSTANCE_HYPERVISOR": inst.hypervisor,
        "INSTANCE_NIC_COUNT": len(inst.nics),
        "INSTANCE_DISK_COUNT": len(inst.disks),
        "INSTANCE_TAGS": " ".join(inst.tags),
    }
    for idx, nic in enumerate(inst.nics):
        nicparams = cfg.filled_nicparams(inst, nic.nicparams)
        pre = f"INSTANCE_NIC{idx}_"
        if nic.name:
            env[pre + "NAME"] = nic.name
        env.update({pre + "UUID": nic.uuid, pre + "IP": nic.ip or "", pre + "MAC": nic.mac,
                    pre + "MODE": nicparams.get("mode"), pre + "LINK": nicparams.get("link"),
                    pre + "VLAN": nicparams.get("vlan", "")})
        if nic.network:
            net = cfg.networks.get(nic.network)
            if net is None:
                env[pre + "NETWORK_NAME"] = nic.network
            else:  # Ganeti's INSTANCE_NICn_NETWORK_NAME, _UUID, _SUBNET, _GATEWAY, ...
                env.update((pre + k, v) for k, v in network_env(net).items())
        if nicparams.get("mode") in ("bridged", "openvswitch"):
            env[pre + "BRIDGE"] = nicparams.get("link")
    for idx, disk in enumerate(inst.disks):
        pre = f"INSTANCE_DISK{idx}_"
        if disk.name:
            env[pre + "NAME"] = disk.name
        env.update({pre + "UUID": disk.uuid, pre + "SIZE": disk.size, pre + "MODE": disk.mode,
                    pre + "DEV_TYPE": disk.dev_type})
        # the id's parts under Ganeti's names (BuildDiskLogicalIDEnv); a drbd id's nodes
        # come from the instance, as in the stored list
        primary = inst.primary_node
        for name, value in disk.logical_id.hook_vars(primary, disk.peer_of(primary)).items():
            env[pre + name] = value
    env.update((f"INSTANCE_BE_{k}", v) for k, v in be.items())
    env.update((f"INSTANCE_HV_{k}", v) for k, v in hvparams.items())
    return env


def node_env(name: str) -> dict[str, Any]:
    return {"OP_TARGET": name, "NODE_NAME": name}


def op_env(decl: HookDecl, op: Any) -> dict[str, Any]:
    return {var: getattr(op, attr, None) for var, attr in decl.op_vars.items()}


def network_env(net: Network) -> dict[str, str]:
    """A network's hook variables (Ganeti's Network.HooksDict); empty values as ""."""
    return {"NETWORK_NAME": net.name, "NETWORK_UUID": net.uuid,
            "NETWORK_TAGS": " ".join(net.tags), "NETWORK_SUBNET": net.network,
            "NETWORK_GATEWAY": net.gateway or "", "NETWORK_SUBNET6": net.network6 or "",
            "NETWORK_GATEWAY6": net.gateway6 or "", "NETWORK_MAC_PREFIX": net.mac_prefix or ""}


def base_env(decl: HookDecl, op_id: str, phase: str, cluster: str, master: str,
             data_dir: str) -> dict[str, str]:
    """The variables every hook gets (Ganeti's HooksMaster._RunWrapper)."""
    return {
        "PATH": node_hooks.SCRIPT_PATH_ENV,
        "GANETI_HOOKS_VERSION": str(HOOKS_VERSION),
        "GANETI_OP_CODE": decl.op_code or op_id,
        "GANETI_OBJECT_TYPE": decl.object_type,
        "GANETI_DATA_DIR": data_dir,
        "GANETI_HOOKS_PHASE": phase,
        "GANETI_HOOKS_PATH": decl.path,
        "GANETI_CLUSTER": cluster,
        "GANETI_MASTER": master,
    }


def prefixed(values: Mapping[str, Any], prefix: str) -> dict[str, str]:
    return {f"{prefix}{k}": env_value(v) for k, v in values.items()}


def pre_failures(outcomes: Mapping[str, NodeOutcome]) -> list[tuple[str, str, str]]:
    """(node, script, output) of every failed script, nodes in name order."""
    return [(node, r.script, r.output) for node, out in sorted(outcomes.items())
            for r in out.scripts if r.status == node_hooks.FAIL]


def _indented(output: str, indent: str = "    ") -> str:
    lines = output.splitlines() or ["(no output)"]
    return "\n".join(indent + line for line in lines)


def abort_message(what: str, failures: list[tuple[str, str, str]]) -> str:
    """One clear first line (hook, node), then each failed script's output, indented."""
    if len(failures) == 1:
        node, script, output = failures[0]
        return (f"pre hook {script} failed on node {node}, so {what} was not carried out "
                f"(nothing was changed); its output:\n{_indented(output)}")
    which = ", ".join(f"{script} on {node}" for node, script, _ in failures)
    blocks = "\n".join(f"  {script} on node {node}:\n{_indented(output)}"
                       for node, script, output in failures)
    return (f"pre hooks failed ({which}), so {what} was not carried out (nothing was "
            f"changed); their output:\n{blocks}")


def unreachable_warnings(outcomes: Mapping[str, NodeOutcome], phase: str) -> list[str]:
    return [f"hooks ({phase} phase) not run on node {node}: communication failure: "
            f"{out.error}" for node, out in sorted(outcomes.items()) if out.error]


def post_warnings(outcomes: Mapping[str, NodeOutcome]) -> list[str]:
    """Ganeti's "On NODE script SCRIPT failed, output: ..." for the post phase."""
    return [f"On {node} script {script} failed, output: {output or '(no output)'}"
            for node, script, output in pre_failures(outcomes)]


def post_report(outcomes: Mapping[str, NodeOutcome]) -> list[str]:
    """The warnings of a post phase: nodes not reached, then failed scripts."""
    return unreachable_warnings(outcomes, POST) + post_warnings(outcomes)


def verify_report(outcomes: Mapping[str, NodeOutcome]) -> tuple[list[str], bool]:
    """Ganeti's "Hooks Results" of cluster verify: lines to print and whether all passed."""
    lines = ["* Hooks Results"]
    ok = True
    for node, out in sorted(outcomes.items()):
        if out.error:
            ok = False
            lines.append(f"  - ERROR: node {node}: Communication failure in hooks execution: "
                         f"{out.error}")
            continue
        for r in out.scripts:
            if r.status == node_hooks.FAIL:
                ok = False
                lines.append(f"  - ERROR: node {node}: Script {r.script} failed, output:")
                lines.append(_indented(r.output, "      ") if r.output else "")
    return [line for line in lines if line], ok


def compare_inventories(master: str, ours: Mapping[str, list[Any]],
                        theirs: Mapping[str, Mapping[str, list[Any]]]) -> list[str]:
    """Where a node's hooks directory differs from the master's (verify warnings)."""
    found = []
    for node, files in sorted(theirs.items()):
        for rel in sorted(set(ours) | set(files)):
            mine, other = ours.get(rel), files.get(rel)
            if other is None:
                found.append(f"node {node}: hook file {rel} is missing (present on the master "
                             f"{master}; 'gnt-cluster copyfile' distributes it)")
            elif mine is None:
                found.append(f"node {node}: hook file {rel} is not on the master {master}")
            elif mine[0] != other[0]:
                found.append(f"node {node}: hook file {rel} differs from the master's copy "
                             "(checksum mismatch)")
            elif bool(mine[1]) != bool(other[1]):
                state = "executable" if other[1] else "not executable"
                found.append(f"node {node}: hook file {rel} is {state} there, unlike on the "
                             "master")
    return found


# -- running ----------------------------------------------------------------------------------
def script_timeout() -> float:
    """Seconds one script may run: HERD_HOOKS_TIMEOUT in masterd's environment, else 3600."""
    return node_hooks.configured_timeout()


async def run_on_nodes(ctx: MasterContext, node_names: Iterable[str], hpath: str, phase: str,
                       env: Mapping[str, str]) -> dict[str, NodeOutcome]:
    """Run a phase on the named nodes at once; offline or unknown nodes are left out."""
    cfg = ctx.config.data
    timeout = script_timeout()
    outcomes: dict[str, NodeOutcome] = {}

    async def one(name: str) -> None:
        node = cfg.find_node(name)
        if node is None or node.offline:
            return
        try:
            rows = await ctx.rpc.node(node).call(
                "hooks_run", hpath=hpath, phase=phase, env=dict(env), script_timeout=timeout,
                timeout=timeout * node_hooks.BUDGET_TIMEOUTS + 30)
        except errors.HerdError as exc:
            outcomes[node.name] = NodeOutcome(error=exc.message)
            return
        outcomes[node.name] = NodeOutcome(
            scripts=[node_hooks.ScriptResult(str(s), str(st), str(o)) for s, st, o in rows])

    await asyncio.gather(*(one(n) for n in node_names))
    return outcomes


class HooksRun:
    """The hooks of one LU run: node lists and pre environment fixed after its checks."""

    def __init__(self, lu: LogicalUnit[Any], decl: HookDecl) -> None:
        self.lu, self.decl = lu, decl
        cfg = lu.cfg
        targets = lu.hooks_targets()
        self.pre_nodes = resolve_nodes(decl.pre, cfg, targets)
        self.post_nodes = resolve_nodes(decl.post, cfg, targets)
        self.cluster, self.master = cfg.cluster.cluster_name, cfg.master.name
        self.pre_vars = prefixed(self._vars(targets), "GANETI_")

    def _vars(self, targets: HookTargets) -> dict[str, Any]:
        """Ganeti's BuildHooksEnv: the object's variables, the opcode's, the LU's extras."""
        lu, decl = self.lu, self.decl
        values: dict[str, Any] = {}
        if decl.object_type == INSTANCE and targets.instance is not None:
            from herd.logic.specs import filled_hvparams

            values.update(instance_env(lu.cfg, targets.instance,
                                       filled_hvparams(lu.cfg, targets.instance, lu.ctx.paths)))
        elif decl.object_type == NODE and targets.node:
            values.update(node_env(targets.node))
        elif decl.object_type == CLUSTER:
            values["OP_TARGET"] = lu.cfg.cluster.cluster_name
        elif decl.object_type == NETWORK:
            values["OP_TARGET"] = lu.op.network_name
        elif decl.object_type == GROUP:
            values["OP_TARGET"] = lu.op.group_name
        values.update(op_env(decl, lu.op))
        values.update(lu.hooks_env())
        return values

    def _env(self, phase: str, extra: Mapping[str, str]) -> dict[str, str]:
        env = base_env(self.decl, self.lu.op.OP_ID, phase, self.cluster, self.master,
                       str(self.lu.ctx.paths.data_dir))
        env.update(self.pre_vars)
        env.update(extra)
        return env

    def _warn(self, text: str) -> None:
        log.warning("%s", text)
        self.lu.feedback(f"  - WARNING: {text}")

    async def pre(self) -> None:
        """Run the pre phase; raise :class:`HooksAbort` if any script failed."""
        if not self.pre_nodes:
            return
        outcomes = await run_on_nodes(self.lu.ctx, self.pre_nodes, self.decl.path, PRE,
                                      self._env(PRE, {}))
        for text in unreachable_warnings(outcomes, PRE):
            self._warn(text)
        failures = pre_failures(outcomes)
        if failures:
            raise HooksAbort(abort_message(self.lu.op.summary(), failures))

    async def post(self) -> dict[str, NodeOutcome]:
        """Run the post phase (GANETI_POST_* computed now); the LU reports the outcome."""
        if not self.post_nodes:
            return {}
        post_vars = prefixed(self._vars(self.lu.hooks_targets()), "GANETI_POST_")
        return await run_on_nodes(self.lu.ctx, self.post_nodes, self.decl.path, POST,
                                  self._env(POST, post_vars))


async def execute(lu: LogicalUnit[Any]) -> Any:
    """Carry out a checked LU between its hooks (Ganeti's processor, _ExecLU).

    Dry runs run the pre hooks only, as Ganeti's do. A post phase that cannot even start is a
    warning: the operation is done and stays done.
    """
    decl = HOOKS.get(lu.op.OP_ID)
    if decl is None:
        return None if lu.op.dry_run else await lu.execute()
    run = HooksRun(lu, decl)
    await run.pre()
    if lu.op.dry_run:
        return None
    result = await lu.execute()
    try:
        outcomes = await run.post()
    except Exception as exc:  # never undo or fail a finished operation because of hooks
        log.exception("post hooks of %s failed to run", lu.op.OP_ID)
        run._warn(f"post hooks ({decl.path}) could not be run: {exc}")
        return result
    return lu.hooks_results(outcomes, result)
