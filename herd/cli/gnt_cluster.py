"""gnt-cluster: cluster-wide commands (Ganeti's names and options)."""

from __future__ import annotations

import argparse
import socket
import sys
import time
from typing import Any

from herd import errors, paths
from herd.allocator.names import BUILTIN as BUILTIN_ALLOCATOR
from herd.allocator.names import parse_params as parse_allocator_params
from herd.cli import rebalance
from herd.cli import upgrade as upgrade_cli
from herd.cli.client import MasterClient
from herd.cli.common import command_main, print_feedback, submit_or_run, wait_for_job
from herd.cli.formatting import format_info
from herd.cli.options import HerdArgumentParser, add_common_options, keyval_type, yes_no
from herd.cli.tags import add_tag_commands
from herd.config.facts import read_facts
from herd.daemons import util as daemon_util

PROG = "gnt-cluster"


def cmd_init(opts: Any) -> int:
    from herd.logic import bootstrap  # init and destroy only: it costs every command ~0.4 s

    p = paths.current()
    node_name = opts.node_name or socket.getfqdn()
    data = bootstrap.init_cluster(
        p, opts.cluster_name, node_name, secondary_ip=opts.secondary_ip,
        master_netdev=opts.master_netdev or "",
        enabled_hypervisors=opts.enabled_hypervisors.split(",")
        if opts.enabled_hypervisors else None,
        enabled_disk_templates=opts.enabled_disk_templates.split(",")
        if opts.enabled_disk_templates else None,
        hvparams=opts.hvparams, beparams=opts.beparams, nicparams=opts.nicparams,
        ndparams=opts.ndparams, mac_prefix=opts.mac_prefix,
        candidate_pool_size=opts.candidate_pool_size, noded_port=opts.noded_port,
        vg_name=opts.vg_name)
    print(f"Cluster {data.cluster.cluster_name} initialised; master node {node_name} "
          f"({data.master.primary_ip})")
    return 0


def cmd_destroy(opts: Any) -> int:
    if not opts.yes_do_it:
        raise errors.OpPrereqError("destroying the cluster needs --yes-do-it")
    p = paths.current()
    with MasterClient(p) as client:
        info = client.call("query_cluster")
        instances = client.call("query_instances", live=False, fields=["name"])
        nodes = client.call("query_nodes", live=False, fields=["name"])
    if instances:
        raise errors.OpPrereqError(f"there are still {len(instances)} instance(s) in the "
                                   "cluster; remove them first")
    if len(nodes) > 1:
        raise errors.OpPrereqError(f"there are still {len(nodes) - 1} node(s) besides the "
                                   "master; remove them first")
    daemon_util.stop_all(p)
    from herd.logic import bootstrap

    bootstrap.remove_cluster_files(p)
    print(f"Cluster {info['name']} destroyed")
    return 0


def cmd_getmaster(opts: Any) -> int:
    facts = read_facts(paths.current())
    if facts is None:
        raise errors.HerdError("this node is not part of a cluster")
    print(facts["master_node"])
    return 0


def cmd_version(opts: Any) -> int:
    from herd.upgrade import describe

    desc = describe()  # what a node's version.json says of this code (herd.upgrade)
    print(f"Software version: {desc['herd']}")
    print(f"Internode protocol: {desc['rpc']}")
    print(f"Configuration format: {desc['config']}")
    print("OS api version: 20")
    print("Export interface: 0")
    print("VCS version: (none)")
    return 0


def cmd_info(opts: Any) -> int:
    with MasterClient() as client:
        info = client.call("query_cluster")
    data = {
        "Cluster name": info["name"],
        "Cluster UUID": info["uuid"],
        "Creation time": time.ctime(info["ctime"]),
        "Modification time": time.ctime(info["mtime"]),
        "Master node": info["master"],
        "Architecture (this node)": f"{info['architecture'][0]} ({info['architecture'][1]})",
        "Tags": ", ".join(info["tags"]) or "(none)",
        "Default hypervisor": info["default_hypervisor"],
        "Enabled hypervisors": ", ".join(info["enabled_hypervisors"]),
        "Hypervisor parameters": info["hvparams"],
        "Cluster parameters": {
            "candidate pool size": info["candidate_pool_size"],
            "RAPI anonymous reads": bool(info.get("rapi_anonymous_reads")),
            "OS search path": ":".join(info.get("os_search_path") or []) or "(default)",
            "user image directories": ":".join(info.get("user_image_dirs") or [])
            or "(none: only admins set host paths)",
            "master netdev": info["master_netdev"],
            "master IP": info["master_ip"],
            "MAC prefix": info["mac_prefix"],
            "file storage path": info["file_storage_dir"],
            "lvm volume group": info.get("volume_group_name") or "(none)",
            "lvm reserved volumes": ", ".join(info.get("reserved_lvs") or []) or "(none)",
            "enabled disk templates": ", ".join(info["enabled_disk_templates"]),
            "default instance allocator": info["default_iallocator"] or
            f"{BUILTIN_ALLOCATOR} (built-in)",
            "default instance allocator parameters": ", ".join(
                k if v is None else f"{k}={v}"
                for k, v in sorted((info.get("default_iallocator_params") or {}).items()))
            or "(none)",
            "maintenance of node health": info["maintain_node_health"],
        },
        "Default node parameters": info["ndparams"],
        "Default instance parameters": info["beparams"],
        "Default nic parameters": info["nicparams"],
        "OS parameters": info["osparams"],
    }
    print(format_info(data))
    return 0


def cmd_verify(opts: Any) -> int:
    """Ganeti prints the verify log as it goes and exits 1 if anything is wrong."""
    with MasterClient() as client:
        job_id = client.call("submit_job", ops=[{"OP_ID": "OP_CLUSTER_VERIFY",
                                                 "verbose": opts.verbose}])
        print(f"Submitted jobs {job_id}")
        print(f"Waiting for job {job_id} ...")
        job = wait_for_job(client, job_id, print_feedback)
    if job["status"] != "success":
        raise errors.OpExecError(f"cluster verify job {job_id} failed")
    return 0 if job["opresult"][0] else 1


def cmd_modify(opts: Any) -> int:
    op: dict[str, Any] = {"OP_ID": "OP_CLUSTER_SET_PARAMS"}
    for attr in ("hvparams", "beparams", "nicparams", "ndparams"):
        if getattr(opts, attr):
            op[attr] = getattr(opts, attr)
    if opts.mac_prefix:
        op["mac_prefix"] = opts.mac_prefix
    if opts.candidate_pool_size is not None:
        op["candidate_pool_size"] = opts.candidate_pool_size
    if opts.enabled_hypervisors:
        op["enabled_hypervisors"] = opts.enabled_hypervisors.split(",")
    if opts.enabled_disk_templates:
        op["enabled_disk_templates"] = opts.enabled_disk_templates.split(",")
    if opts.vg_name is not None:
        op["vg_name"] = opts.vg_name
    if opts.reserved_lvs is not None:
        op["reserved_lvs"] = [p for p in opts.reserved_lvs.split(",") if p]
    if opts.os_parameters:
        os_name, _, rest = opts.os_parameters.partition(":")
        op["osparams"] = {os_name: keyval_type(rest)}
    if opts.os_search_path is not None:
        op["os_search_path"] = [d for d in opts.os_search_path.split(":") if d]
    if opts.user_image_dirs is not None:
        op["user_image_dirs"] = [d for d in opts.user_image_dirs.split(":") if d]
    anonymous = yes_no(opts.rapi_anonymous_reads, "--rapi-anonymous-reads")
    if anonymous is not None:
        op["rapi_anonymous_reads"] = anonymous
    if opts.default_iallocator is not None:
        op["default_iallocator"] = opts.default_iallocator
    if opts.default_iallocator_params is not None:
        op["default_iallocator_params"] = parse_allocator_params(opts.default_iallocator_params)
    if len(op) == 1:
        raise errors.ParameterError("please give at least one of the parameters to modify")
    submit_or_run(opts, [op])
    return 0


def cmd_grant(opts: Any) -> int:
    """gnt-cluster grant/revoke ROLE SUBJECT [PATH]: one grant added or removed by a job
    (OP_CLUSTER_SET_PARAMS), checked here first for a one-line error before any job."""
    from herd.objects import access

    grant = access.check_grant(opts.role, opts.subject, opts.path).to_dict()
    key = "add_grants" if opts.grant_action == "grant" else "remove_grants"
    submit_or_run(opts, [{"OP_ID": "OP_CLUSTER_SET_PARAMS", key: [grant]}])
    return 0


def cmd_set_group(opts: Any) -> int:
    """gnt-cluster set-group GROUP [USER...]: the group's members (none: remove the group)."""
    submit_or_run(opts, [{"OP_ID": "OP_CLUSTER_SET_PARAMS",
                          "access_groups": {opts.group.lstrip("@"): list(opts.users)}}])
    return 0


def cmd_list_grants(opts: Any) -> int:
    with MasterClient() as client:
        info = client.call("query_cluster")
    rows = [(g.get("role", ""), g.get("subject", ""), g.get("path", "/"))
            for g in info.get("access_grants") or []]
    if not opts.no_headers:
        print(f"{'Role':<9} {'Subject':<20} Path")
    for role, subject, path in rows:
        print(f"{role:<9} {subject:<20} {path}")
    for group, members in sorted((info.get("access_groups") or {}).items()):
        print(f"group @{group}: {', '.join(members)}")
    return 0


def cmd_set_quota(opts: Any) -> int:
    """gnt-cluster set-quota SUBJECT [--vcpus N] [--memory SIZE] [--disk SIZE]
    [--instances N] | --remove: one job (OP_CLUSTER_SET_PARAMS), checked here first."""
    from herd.logic import quota

    limits = {k: getattr(opts, f"quota_{k}") for k in quota.KEYS
              if getattr(opts, f"quota_{k}") is not None}
    if not limits and not opts.remove:
        raise errors.ParameterError("set-quota needs --vcpus, --memory, --disk or --instances "
                                    "(or --remove)")
    checked = {} if opts.remove else quota.check_limits(opts.subject, limits)
    submit_or_run(opts, [{"OP_ID": "OP_CLUSTER_SET_PARAMS",
                          "quotas": {opts.subject: checked or None}}])
    return 0


def cmd_list_quotas(opts: Any) -> int:
    """Each subject's quota and what it owns now: "used/limit" per resource."""
    from herd.units import format_size

    with MasterClient() as client:
        rows = client.call("query_quotas", subjects=opts.subjects or None)

    def cell(res: dict[str, Any]) -> str:
        show = format_size if res["unit"] == "MiB" else str
        limit = "-" if res["limit"] is None else show(res["limit"])
        return f"{show(res['used'])}/{limit}"

    if not opts.no_headers:
        print(f"{'Subject':<20} {'vCPUs':>9} {'Memory':>13} {'Disk':>13} {'Instances':>9}")
    for row in rows:
        cells = [cell(r) for r in row["resources"]]
        print(f"{row['subject']:<20} {cells[0]:>9} {cells[1]:>13} {cells[2]:>13} {cells[3]:>9}")
    return 0


def cmd_master_failover(opts: Any) -> int:
    from herd.logic import failover

    old = failover.master_failover(paths.current(), opts.no_voting,
                                   lambda text: print(text, flush=True))
    print(f"Master role moved from {old} to this node")
    return 0


def cmd_verify_disks(opts: Any) -> int:
    result = submit_or_run(opts, [{"OP_ID": "OP_CLUSTER_VERIFY_DISKS"}])
    if result:
        outcome = result[0]
        for name in outcome["repaired"]:
            print(f"Disks of instance {name} activated")
        for name, problem in sorted(outcome["problems"].items()):
            print(f"Instance {name}: {problem}")
        if not outcome["repaired"] and not outcome["problems"]:
            print("All mirrored disks are active and connected")
        return 1 if outcome["problems"] else 0
    return 0


def cmd_redist_conf(opts: Any) -> int:
    submit_or_run(opts, [{"OP_ID": "OP_CLUSTER_REDIST_CONF"}])
    return 0


def cmd_command(opts: Any) -> int:
    command = " ".join(opts.command_args)
    with MasterClient(timeout=opts.timeout + 60) as client:
        results = client.call("node_command", command=command, nodes=opts.nodes or None,
                              timeout=opts.timeout)
    failed = False
    for result in results:
        print("------------------------------------------------")
        print(f"node: {result['node']}")
        print(result["output"], end="" if result["output"].endswith("\n") else "\n")
        print(f"return code = {result['exit_code']}")
        failed = failed or result["exit_code"] != 0
    return 1 if failed else 0


def cmd_copyfile(opts: Any) -> int:
    import base64
    import os

    path = os.path.abspath(opts.file)
    try:
        with open(path, "rb") as handle:
            content = base64.b64encode(handle.read()).decode()
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise errors.ParameterError(f"cannot read '{opts.file}': {exc.strerror}") from None
    root = str(paths.current().root)
    rel = os.path.relpath(path, root) if root != "/" and path.startswith(root) else path
    with MasterClient() as client:
        results = client.call("node_copyfile", path=rel, content=content, mode=mode,
                              nodes=opts.nodes or None)
    failed = [r for r in results if r["error"]]
    for result in failed:
        print(f"Copy of file {path} to node {result['node']} failed: {result['error']}",
              file=sys.stderr)
    return 1 if failed else 0


def _ask_user(question: str) -> bool:
    """Ganeti's confirmation prompt: y/[n]; no terminal means no (use -f in scripts)."""
    if not sys.stdin.isatty():
        raise errors.OpPrereqError("this command asks for confirmation and there is no "
                                   "terminal to ask on; pass -f to go ahead")
    answer = input(f"{question}\ny/[n]: ").strip().lower()
    return answer in ("y", "yes")


def cmd_renew_crypto(opts: Any) -> int:
    """Ganeti's renew-crypto: new RAPI and/or node certificates, as a job on the master."""
    import os

    if opts.new_cluster_cert:
        raise errors.OpPrereqError(
            "renewing the cluster CA (--new-cluster-certificate) is not supported yet; "
            "--new-node-certificates re-issues every node certificate from the current CA")
    if opts.new_rapi_cert and opts.rapi_cert:
        raise errors.ParameterError("give only one of --new-rapi-certificate and "
                                    "--rapi-certificate")
    op: dict[str, Any] = {"OP_ID": "OP_CLUSTER_RENEW_CRYPTO"}
    if opts.new_rapi_cert:
        op["new_rapi_certificate"] = True
    if opts.rapi_cert:
        # the path, never the key itself: the job reads the file on the master (it is here)
        op["rapi_certificate"] = os.path.abspath(opts.rapi_cert)
    if opts.new_node_certs:
        op["node_certificates"] = True
    if opts.new_ssh_keys:
        op["renew_ssh_keys"] = True
    if len(op) == 1:
        raise errors.ParameterError("nothing to renew: give --new-rapi-certificate, "
                                    "--rapi-certificate FILE or --new-node-certificates")
    if not opts.force and not _ask_user(
            "Updating certificates now. Clients that pinned the RAPI certificate will need "
            "the new one. Continue?"):
        print("Aborted.")
        return 1
    submit_or_run(opts, [op])
    return 0


TIMESPEC_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_timespec(text: str) -> int:
    """Ganeti's time spec: a number of seconds, or with a suffix s, m, h, d or w."""
    unit = TIMESPEC_UNITS.get(text[-1:].lower()) if text else None
    number = text[:-1] if unit else text
    if not number.isdigit() or int(number) <= 0:
        raise errors.ParameterError(f"invalid duration '{text}': expected a positive number "
                                    "of seconds, or with a suffix s, m, h, d or w (e.g. 1h)")
    return int(number) * (unit or 1)


def cmd_watcher(opts: Any) -> int:
    """pause/continue/info: the pause holds on every node, as Ganeti's does."""
    import base64

    from herd.watcher import state

    p = paths.current()
    if opts.action == "info":
        until = state.paused_until(p)
        print(f"The watcher is paused until {time.ctime(until)}." if until
              else "The watcher is not paused.")
        return 0
    if opts.action == "pause":
        if not opts.duration:
            raise errors.ParameterError("watcher pause needs a duration, e.g. 1h")
        until: float | None = state.pause(p, parse_timespec(opts.duration))
    else:
        state.resume(p)
        until = None
    rel = str(state.pause_file(p).relative_to(p.root))
    content = base64.b64encode(f"{until or 0:.0f}\n".encode()).decode()
    with MasterClient() as client:
        results = client.call("node_copyfile", path=rel, content=content, mode=0o600)
    for result in results:
        if result["error"]:
            print(f"Node {result['node']} did not get the change: {result['error']}",
                  file=sys.stderr)
    print(f"The watcher is paused until {time.ctime(until)}." if until
          else "The watcher is no longer paused.")
    return 1 if any(r["error"] for r in results) else 0


def build_parser() -> HerdArgumentParser:
    parser = HerdArgumentParser(prog=PROG, description="Cluster-wide operations")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = sub.add_parser("init", help="initialise a new cluster on this node")
    init.add_argument("cluster_name")
    init.add_argument("-s", "--secondary-ip", dest="secondary_ip", default=None)
    init.add_argument("--master-netdev", dest="master_netdev", default=None)
    init.add_argument("--enabled-hypervisors", dest="enabled_hypervisors", default=None)
    init.add_argument("--enabled-disk-templates", dest="enabled_disk_templates", default=None)
    init.add_argument("-g", "--vg-name", dest="vg_name", default=None, metavar="VG",
                      help="the LVM volume group of every node (disks of the plain template; "
                      "default: none)")
    init.add_argument("-N", "--nic-parameters", dest="nicparams", type=keyval_type, default={})
    init.add_argument("--node-parameters", dest="ndparams", type=keyval_type, default={})
    init.add_argument("-m", "--mac-prefix", dest="mac_prefix", default=None)
    init.add_argument("-C", "--candidate-pool-size", dest="candidate_pool_size", type=int,
                      default=None)
    init.add_argument("--node-name", dest="node_name", default=None,
                      help="this node's name (Herd extension; default: the host's FQDN)")
    init.add_argument("--noded-port", dest="noded_port", type=int, default=None,
                      help="TCP port of the node daemons (default 1811)")
    add_common_options(init, "backend", "hvparams_list")
    init.set_defaults(func=cmd_init)

    destroy = sub.add_parser("destroy", help="destroy the cluster (only an empty one)")
    destroy.add_argument("--yes-do-it", dest="yes_do_it", action="store_true")
    destroy.set_defaults(func=cmd_destroy)

    for name, func in (("getmaster", cmd_getmaster), ("version", cmd_version),
                       ("info", cmd_info)):
        cmd = sub.add_parser(name)
        if name == "info":
            cmd.add_argument("--roman", action="store_true", help="(ignored)")
        cmd.set_defaults(func=func)

    rebalance.add_parser(sub)

    verify = sub.add_parser("verify", help="verify the cluster's consistency")
    add_common_options(verify, "verbose", "debug")
    verify.add_argument("--error-codes", action="store_true")
    verify.set_defaults(func=cmd_verify)

    for action, text in (("grant", "give a role to a user or @group on /, /groups/G or "
                                   "/instances/I (web manager permissions)"),
                         ("revoke", "take back a grant given with 'grant'")):
        grant = sub.add_parser(action, help=text)
        grant.add_argument("role", help="viewer, user, operator or admin")
        grant.add_argument("subject", help="a RAPI users-file user, or @group")
        grant.add_argument("path", nargs="?", default="/",
                           help="/ (default), /groups/GROUP or /instances/INSTANCE")
        add_common_options(grant, "submit", "print_jobid", "priority")
        grant.set_defaults(func=cmd_grant, grant_action=action)
    grants = sub.add_parser("list-grants", help="list the grants and access groups")
    grants.add_argument("--no-headers", dest="no_headers", action="store_true")
    grants.set_defaults(func=cmd_list_grants)
    setgroup = sub.add_parser("set-group", help="set the members of an access group "
                              "(no users: remove the group)")
    setgroup.add_argument("group")
    setgroup.add_argument("users", nargs="*")
    add_common_options(setgroup, "submit", "print_jobid", "priority")
    setgroup.set_defaults(func=cmd_set_group)

    setquota = sub.add_parser("set-quota", help="limit what a user or @group may own "
                              "(configured sizes of owned instances, stopped ones too)")
    setquota.add_argument("subject", help="a RAPI users-file user, or @group")
    setquota.add_argument("--vcpus", dest="quota_vcpus", metavar="N")
    setquota.add_argument("--memory", dest="quota_memory", metavar="SIZE",
                          help="e.g. 4G (default unit MiB)")
    setquota.add_argument("--disk", dest="quota_disk", metavar="SIZE", help="e.g. 100G")
    setquota.add_argument("--instances", dest="quota_instances", metavar="N")
    setquota.add_argument("--remove", action="store_true", help="remove the quota")
    add_common_options(setquota, "submit", "print_jobid", "priority")
    setquota.set_defaults(func=cmd_set_quota)
    quotas = sub.add_parser("list-quotas", help="list quotas and what each subject owns")
    quotas.add_argument("subjects", nargs="*")
    quotas.add_argument("--no-headers", dest="no_headers", action="store_true")
    quotas.set_defaults(func=cmd_list_quotas)

    modify = sub.add_parser("modify", help="change cluster parameters")
    add_common_options(modify, "backend", "hvparams_list", *("submit", "print_jobid",
                                                            "dry_run", "priority"))
    modify.add_argument("-N", "--nic-parameters", dest="nicparams", type=keyval_type,
                        default={})
    modify.add_argument("--node-parameters", dest="ndparams", type=keyval_type, default={})
    modify.add_argument("-m", "--mac-prefix", dest="mac_prefix", default=None)
    modify.add_argument("-C", "--candidate-pool-size", dest="candidate_pool_size", type=int,
                        default=None)
    modify.add_argument("--enabled-hypervisors", dest="enabled_hypervisors", default=None)
    modify.add_argument("--enabled-disk-templates", dest="enabled_disk_templates",
                        default=None)
    modify.add_argument("-g", "--vg-name", dest="vg_name", default=None, metavar="VG",
                        help="the LVM volume group of every node ('' disables LVM)")
    modify.add_argument("--reserved-lvs", dest="reserved_lvs", default=None,
                        metavar="NAMES", help="comma-separated regular expressions of VG/LV "
                        "names that verify ignores ('' clears the list)")
    modify.add_argument("-O", "--os-parameters", dest="os_parameters", default=None,
                        metavar="OS:PARAMS")
    modify.add_argument("--os-search-path", dest="os_search_path", default=None,
                        metavar="DIR[:DIR...]", help="where nodes look for OS definitions, in "
                        "order ('' restores the default: Herd's, then Ganeti's directories)")
    modify.add_argument("--user-image-dirs", dest="user_image_dirs", default=None,
                        metavar="DIR[:DIR...]", help="where RAPI and web users who are not "
                        "admins may name cdrom, floppy, kernel and initrd images ('' : nowhere)")
    modify.add_argument("--rapi-anonymous-reads", dest="rapi_anonymous_reads", default=None,
                        metavar="yes|no", help="let RAPI answer GETs without credentials, as "
                        "Ganeti's does (default: no; writes always need a user)")
    modify.add_argument("--default-iallocator", dest="default_iallocator", default=None,
                        metavar="NAME", help="the instance allocator used when none is named "
                        f"('' or '{BUILTIN_ALLOCATOR}': Herd's built-in one)")
    modify.add_argument("--default-iallocator-params", dest="default_iallocator_params",
                        default=None, metavar="KEY=VALUE,FLAG",
                        help="arguments of every allocator run (--KEY=VALUE, --FLAG); '' "
                        "clears them")
    modify.set_defaults(func=cmd_modify)
    mf = sub.add_parser("master-failover", help="make this master candidate the master")
    mf.add_argument("--no-voting", dest="no_voting", action="store_true",
                    help="do not ask the other nodes (when most of them are gone)")
    mf.add_argument("--yes-do-it", dest="yes_do_it", action="store_true")
    mf.set_defaults(func=cmd_master_failover)

    vd = sub.add_parser("verify-disks", help="activate and reattach mirrored disks")
    add_common_options(vd, "submit", "print_jobid", "priority")
    vd.set_defaults(func=cmd_verify_disks)

    redist = sub.add_parser("redist-conf", help="push the configuration to all nodes")
    add_common_options(redist, "submit", "print_jobid", "priority")
    redist.set_defaults(func=cmd_redist_conf)

    renew = sub.add_parser("renew-crypto", help="renew the cluster's TLS certificates")
    renew.add_argument("--new-rapi-certificate", dest="new_rapi_cert", action="store_true",
                       help="make a new self-signed RAPI certificate")
    renew.add_argument("--rapi-certificate", dest="rapi_cert", default=None, metavar="FILE",
                       help="install FILE (PEM: the private key and the certificate) as the "
                            "RAPI certificate")
    renew.add_argument("--new-node-certificates", dest="new_node_certs", action="store_true",
                       help="re-issue every node's certificate from the cluster CA")
    renew.add_argument("--new-cluster-certificate", dest="new_cluster_cert",
                       action="store_true", help="new cluster CA (not supported yet)")
    renew.add_argument("--new-ssh-keys", dest="new_ssh_keys", action="store_true",
                       help="(Herd uses no SSH keys between nodes; refused)")
    add_common_options(renew, "force", "submit", "print_jobid", "priority")
    renew.set_defaults(func=cmd_renew_crypto)

    command = sub.add_parser("command", help="run a command on all (or some) nodes")
    command.add_argument("-n", "--node", dest="nodes", action="append", default=[])
    command.add_argument("--timeout", type=float, default=300)
    command.add_argument("command_args", nargs=argparse.REMAINDER, metavar="COMMAND")
    command.set_defaults(func=cmd_command)

    copyfile = sub.add_parser("copyfile", help="copy a file to all (or some) other nodes")
    copyfile.add_argument("-n", "--node", dest="nodes", action="append", default=[])
    copyfile.add_argument("file")
    copyfile.set_defaults(func=cmd_copyfile)

    watcher = sub.add_parser("watcher", help="pause or resume the watcher on all nodes")
    watcher.add_argument("action", choices=("pause", "continue", "info"))
    watcher.add_argument("duration", nargs="?", default=None,
                         help="how long to pause (seconds, or with s/m/h/d/w)")
    watcher.set_defaults(func=cmd_watcher)
    upgrade_cli.add_parser(sub)
    add_tag_commands(sub, "cluster", None)
    return parser


def main(argv: list[str] | None = None) -> int:
    return command_main(PROG, build_parser, argv)



if __name__ == "__main__":
    sys.exit(main())
