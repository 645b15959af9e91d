"""Creating and destroying a cluster on the first node (``gnt-cluster init`` / ``destroy``).

This runs before any daemon exists, so it works locally: it writes the TLS material, the first
config and the node's identity, then starts noded and masterd. If any step fails, what it wrote
is removed again, so a failed init can simply be retried.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
from typing import Any

from herd import errors
from herd.config.facts import write_facts
from herd.config.store import ConfigStore
from herd.daemons import util as daemon_util
from herd.etcd import members as etcd_members
from herd.fileutil import atomic_write
from herd.logic import etcd_sync, storage_units
from herd.logic.cluster import SUPPORTED_HYPERVISORS
from herd.logic.specs import hypervisor_class
from herd.network import mac as macs
from herd.node.etcd_member import stop_stale_member, write_spec
from herd.objects import Cluster, ConfigData, Node, NodeGroup, params
from herd.paths import HerdPaths
from herd.rpc import certs, tls


def resolve(name: str, what: str) -> str:
    """Resolve a host name to an IPv4 address that other nodes can reach (never loopback)."""
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET)
    except OSError as exc:
        raise errors.OpPrereqError(f"cannot resolve {what} '{name}': {exc.strerror or exc}; "
                                   "add it to DNS or /etc/hosts") from None
    address = infos[0][4][0]
    if ipaddress.ip_address(address).is_loopback:
        raise errors.OpPrereqError(
            f"{what} '{name}' resolves to {address}, a loopback address; other nodes could not "
            "reach it. Fix /etc/hosts or DNS")
    return str(address)


def check_ip(value: str, what: str) -> str:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise errors.ParameterError(f"invalid {what} '{value}': expected an IPv4 address") from None
    if address.is_loopback:
        raise errors.ParameterError(f"invalid {what} '{value}': must not be a loopback address")
    return str(address)


def check_local_vg(p: HerdPaths, node_name: str, vg_name: str) -> None:
    """The first node must have the cluster's VG (as later ones must: modify and verify ask
    them); OpPrereqError names the node and the VG."""
    from herd.storage import node_vg

    try:
        node_vg.summary(node_vg.lvm_node_for(p, vg_name))
    except errors.HerdError as exc:
        raise errors.OpPrereqError(f"volume group {vg_name} is not usable on node "
                                   f"{node_name}: {exc.message}") from None


def init_cluster(p: HerdPaths, cluster_name: str, node_name: str, *,
                 secondary_ip: str | None = None, master_netdev: str = "",
                 enabled_hypervisors: list[str] | None = None,
                 enabled_disk_templates: list[str] | None = None,
                 hvparams: dict[str, dict[str, Any]] | None = None,
                 beparams: dict[str, Any] | None = None,
                 nicparams: dict[str, Any] | None = None,
                 ndparams: dict[str, Any] | None = None,
                 mac_prefix: str | None = None, candidate_pool_size: int | None = None,
                 noded_port: int | None = None, vg_name: str | None = None,
                 start_daemons: bool = True) -> ConfigData:
    for belongs in (p.config_file, p.cluster_facts_file):
        if belongs.exists():
            raise errors.OpPrereqError(
                f"this node already belongs to a cluster ({belongs} exists); "
                "run 'gnt-cluster destroy --yes-do-it' first")
    node_ip = resolve(node_name, "node name")
    master_ip = resolve(cluster_name, "cluster name")
    sip = check_ip(secondary_ip, "secondary IP") if secondary_ip else node_ip

    hypervisors = enabled_hypervisors or ["kvm"]
    bad = [h for h in hypervisors if h not in SUPPORTED_HYPERVISORS]
    if bad:
        raise errors.ParameterError(f"unknown hypervisor(s) {', '.join(bad)}; allowed are "
                                    f"{', '.join(SUPPORTED_HYPERVISORS)}")
    vg = storage_units.check_vg_name(vg_name or "")
    templates = storage_units.check_enabled_templates(
        enabled_disk_templates or ["drbd", "file", "diskless"], vg)
    if vg:
        check_local_vg(p, node_name, vg)
    hv_checked: dict[str, dict[str, Any]] = {}
    for hv, values in (hvparams or {}).items():
        if hv not in SUPPORTED_HYPERVISORS:
            raise errors.ParameterError(f"unknown hypervisor '{hv}' in -H; allowed are "
                                        f"{', '.join(SUPPORTED_HYPERVISORS)}")
        hv_checked[hv] = {k: v for k, v in
                          hypervisor_class(hv, p).check_parameters(values).items()
                          if v is not None}
    cluster = Cluster(
        cluster_name=cluster_name, master_ip=master_ip, master_netdev=master_netdev,
        enabled_hypervisors=hypervisors, enabled_disk_templates=templates,
        hvparams=hv_checked,
        beparams=params.fill(params.BE_DEFAULTS, params.check_beparams(beparams or {})),
        nicparams=params.fill(params.NIC_DEFAULTS, params.check_nicparams(nicparams or {})),
        ndparams=params.fill(params.ND_DEFAULTS, params.check_ndparams(ndparams or {})),
        file_storage_dir=str(p.file_storage_dir), volume_group_name=vg)
    if mac_prefix:
        cluster.mac_prefix = macs.check_prefix(mac_prefix)
    if candidate_pool_size:
        cluster.candidate_pool_size = candidate_pool_size
    if noded_port:
        cluster.noded_port = noded_port
    group = NodeGroup(name="default")
    node = Node(name=node_name, primary_ip=node_ip, secondary_ip=sip, group=group.uuid,
                master_candidate=True)
    cluster.master_node = node.uuid
    data = ConfigData(cluster=cluster, nodegroups={group.uuid: group}, nodes={node.uuid: node})

    p.ensure()
    daemon_util.stop(p, "noded")  # a noded waiting to join must make way for the cluster's
    for name in ("join.pem", "join.key"):
        (p.ssl_dir / name).unlink(missing_ok=True)
    (p.data_dir / "join-token").unlink(missing_ok=True)
    try:
        ca_cert, ca_key = certs.create_ca(cluster_name)
        tls.write_pair(p.ca_cert, p.ca_key, ca_cert, ca_key)
        cert, key = certs.create_signed(ca_cert, ca_key, node_name, [node_name], [node_ip, sip])
        tls.write_pair(p.node_cert, p.node_key, cert, key)
        # self-signed and for TLS servers only: RAPI's key must not open node RPC (herd.rpc.tls)
        cert, key = certs.create_rapi_certificate(cluster_name, [master_ip])
        tls.write_pair(p.rapi_cert, p.rapi_key, cert, key)
        tls.remember_rapi_certificate_checked(p)
        atomic_write(p.data_dir / "node-name", node_name + "\n", 0o644)
        create_rapi_users_file(p)
        ConfigStore.create(p.config_file, data)
        write_facts(p, data)
        # the first etcd member: a new cluster of this node alone, started by noded
        write_spec(p, etcd_members.first_member(node_name, node_ip, sip, cluster_name))
        if start_daemons:
            # etcd first: masterd wins the election in it and imports config.data
            daemon_util.start(p, "noded", daemon_util.noded_port(p))
            etcd_sync.wait_first_member(p, data)
            daemon_util.start_all(p, master=True)
    except BaseException:
        daemon_util.stop_all(p)
        remove_cluster_files(p)
        raise
    return data


#: What a new RAPI users file says (Ganeti's format; the file holds passwords: mode 0600).
RAPI_USERS_TEMPLATE = """\
# RAPI users: one per line, NAME PASSWORD [read|write]; PASSWORD is clear text,
# {cleartext}TEXT or {HA1}md5(NAME:Ganeti Remote API:PASSWORD). Keep this file mode 0600.
"""


def create_rapi_users_file(p: HerdPaths) -> bool:
    """Create an empty RAPI users file, readable by root only, unless one exists (an admin's
    users are never replaced). Editing it in place keeps the mode, so passwords added later
    are not readable by others either. True when it was created."""
    if p.rapi_users_file.exists():
        return False
    atomic_write(p.rapi_users_file, RAPI_USERS_TEMPLATE, 0o600)
    return True


def remove_cluster_files(p: HerdPaths) -> None:
    """Forget the cluster on this node: config, queue, TLS material, identity, etcd member."""
    stop_stale_member(p)
    shutil.rmtree(p.etcd_dir, ignore_errors=True)
    for path in (p.config_file, p.config_file.with_name("config.data.pre-etcd"),
                 p.run_dir / "master-term.json", p.cluster_facts_file,
                 p.data_dir / "node-name"):
        path.unlink(missing_ok=True)
    for suffix in ("", "-wal", "-shm"):
        p.queue_db.with_name(p.queue_db.name + suffix).unlink(missing_ok=True)
    shutil.rmtree(p.ssl_dir, ignore_errors=True)
