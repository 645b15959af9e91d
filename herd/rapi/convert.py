"""Herd's query results in the shapes Ganeti's RAPI returns (keys, order and types of the
recorded Ganeti 3.0.2 answers).

Values are Herd's own; where Ganeti has a key for a feature Herd does not have (volume groups,
SSH setup, data collectors, Open vSwitch), the key is present with the value that is true for
Herd (null, empty, false), so that clients find every key with the type they expect.
"""

from __future__ import annotations

import math
import platform
from typing import Any

from herd.objects import params

#: Ganeti's instance fields of /2/instances?bulk=1 and /2/instances/NAME, in its order.
I_FIELDS = (
    "name", "admin_state", "os", "pnode", "snodes", "disk_template", "nic.ips", "nic.macs",
    "nic.modes", "nic.uuids", "nic.names", "nic.links", "nic.networks", "nic.networks.names",
    "nic.bridges", "network_port", "disk.sizes", "disk.spindles", "disk_usage", "disk.uuids",
    "disk.names", "beparams", "hvparams", "oper_state", "oper_ram", "oper_vcpus", "status",
    "custom_hvparams", "custom_beparams", "custom_nicparams", "ctime", "mtime", "uuid",
    "serial_no", "tags")

#: What masterd computes for one instance of /2/instances?bulk=1 (and nothing more): the
#: fields of I_FIELDS it has, and those beparams() builds Ganeti's beparams from.
I_QUERY_FIELDS = (*(f for f in I_FIELDS if f != "beparams"),
                  "be/minmem", "be/maxmem", "be/vcpus", "be/auto_balance",
                  "be/always_failover")

#: Ganeti's node fields of /2/nodes?bulk=1 and /2/nodes/NAME.
N_FIELDS = (
    "name", "offline", "master_candidate", "drained", "dtotal", "dfree", "sptotal", "spfree",
    "mtotal", "mnode", "mfree", "pinst_cnt", "sinst_cnt", "ctotal", "cnos", "cnodes",
    "csockets", "pip", "sip", "role", "pinst_list", "sinst_list", "master_capable",
    "vm_capable", "ndparams", "group.uuid", "ctime", "mtime", "uuid", "serial_no", "tags")

#: Ganeti's node group fields.
G_FIELDS = (
    "alloc_policy", "name", "node_cnt", "node_list", "ipolicy", "custom_ipolicy", "diskparams",
    "custom_diskparams", "ndparams", "custom_ndparams", "ctime", "mtime", "uuid", "serial_no",
    "tags")

#: Job fields: of /2/jobs?bulk=1, and of /2/jobs/ID.
J_FIELDS_BULK = ("id", "ops", "status", "summary", "opstatus", "received_ts", "start_ts",
                 "end_ts")
J_FIELDS = (*J_FIELDS_BULK, "oplog", "opresult")

#: Ganeti's node parameters that Herd has no use for, with the values true for Herd.
_ND_EXTRA = {"ovs": False, "ovs_name": "switch1", "ovs_link": "", "cpu_speed": 1}


#: Ganeti's error class names; Herd's finer codes map onto them in job results.
_ERROR_CLASS = {
    "ParameterError": ("OpPrereqError", "wrong_input"),
    "NotFoundError": ("OpPrereqError", "unknown_entity"),
    "AlreadyExistsError": ("OpPrereqError", "already_exists"),
    "NotMaster": ("OpPrereqError", "wrong_state"),
    "OpPrereqError": ("OpPrereqError", "wrong_state"),
}


def ipolicy(templates: list[str]) -> dict[str, Any]:
    return params.default_ipolicy(templates)


def ndparams(values: dict[str, Any]) -> dict[str, Any]:
    out = params.fill(params.ND_DEFAULTS, values)
    for key, value in _ND_EXTRA.items():
        out.setdefault(key, value)
    return out


def beparams(row: dict[str, Any]) -> dict[str, Any]:
    custom = row.get("custom_beparams") or {}
    return {"minmem": row["be/minmem"], "maxmem": row["be/maxmem"], "vcpus": row["be/vcpus"],
            "auto_balance": row["be/auto_balance"],
            "always_failover": row["be/always_failover"],
            "spindle_use": custom.get("spindle_use", params.BE_DEFAULTS["spindle_use"]),
            "memory": row["be/maxmem"]}


def instance(row: dict[str, Any]) -> dict[str, Any]:
    values = {"beparams": beparams(row)}
    out: dict[str, Any] = {}
    for key in I_FIELDS:
        out[key] = values[key] if key in values else row.get(key)
    return out


def node(row: dict[str, Any], single: bool = False) -> dict[str, Any]:
    out = {key: row.get(key) for key in N_FIELDS}
    out["ndparams"] = ndparams(row.get("ndparams") or {})
    if single:
        out["secondary_ip"] = row.get("sip")
    return out


def group(row: dict[str, Any], templates: list[str]) -> dict[str, Any]:
    values = {"ipolicy": row.get("ipolicy") or ipolicy(templates),
              "custom_ipolicy": row.get("custom_ipolicy") or {},
              "ndparams": ndparams(row.get("ndparams") or {})}
    return {key: values[key] if key in values else row.get(key) for key in G_FIELDS}


def node_role(row: dict[str, Any]) -> str:
    return {"M": "master", "C": "master-candidate", "D": "drained", "O": "offline",
            "R": "regular"}[row["role"]]


def cluster_info(info: dict[str, Any], hv_defaults: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """/2/info from masterd's cluster query; ``hv_defaults`` fills every hypervisor's params."""
    from herd import __version__

    hvparams = {name: params.fill(defaults, info["hvparams"].get(name))
                for name, defaults in hv_defaults.items()}
    templates = list(info["enabled_disk_templates"])
    diskparams = {t: {} for t in params.DISK_TEMPLATES}
    for template, values in (info.get("diskparams") or {}).items():
        diskparams[template] = dict(values) if isinstance(values, dict) else values
    be_default = params.fill(params.BE_DEFAULTS, info["beparams"].get("default"))
    return {
        "software_version": __version__,
        "protocol_version": int(info.get("protocol_version", 1)),
        "config_version": int(info.get("config_version", 1)),
        "os_api_version": 20,
        "export_version": 0,
        "vcs_version": f"(herd) version {__version__}",
        "architecture": list(info.get("architecture") or
                             [platform.architecture()[0], platform.machine()]),
        "name": info["name"],
        "master": info["master"],
        "default_hypervisor": info["default_hypervisor"],
        "enabled_hypervisors": list(info["enabled_hypervisors"]),
        "hvparams": hvparams,
        "os_hvp": {},
        "beparams": {"default": be_default},
        "osparams": dict(info.get("osparams") or {}),
        "ipolicy": ipolicy(templates),
        "nicparams": {"default": params.fill(params.NIC_DEFAULTS,
                                             info["nicparams"].get("default"))},
        "ndparams": ndparams(info.get("ndparams") or {}),
        "diskparams": diskparams,
        "candidate_pool_size": info["candidate_pool_size"],
        "max_running_jobs": 25,
        "max_tracked_jobs": 25,
        "mac_prefix": info["mac_prefix"],
        "master_netdev": info["master_netdev"],
        "master_netmask": int(info["master_netmask"]),
        "use_external_mip_script": False,
        "volume_group_name": info.get("volume_group_name") or None,
        "drbd_usermode_helper": None,
        "file_storage_dir": info["file_storage_dir"],
        "shared_file_storage_dir": "",
        "gluster_storage_dir": "",
        "maintain_node_health": bool(info["maintain_node_health"]),
        "ctime": float(info["ctime"]),
        "mtime": float(info["mtime"]),
        "uuid": info["uuid"],
        "tags": list(info["tags"]),
        "uid_pool": list(info["uid_pool"]),
        "default_iallocator": info.get("default_iallocator") or "",
        "default_iallocator_params": dict(info.get("default_iallocator_params") or {}),
        "reserved_lvs": list(info.get("reserved_lvs") or []),
        "primary_ip_version": 4,
        "prealloc_wipe_disks": False,
        "hidden_os": [],
        "blacklisted_os": [],
        "enabled_disk_templates": templates,
        "install_image": "",
        "instance_communication_network": "",
        "zeroing_image": "",
        "compression_tools": [],
        "enabled_user_shutdown": False,
        "enabled_data_collectors": {},
        "data_collector_interval": {},
        "modify_ssh_setup": False,
        "ssh_key_type": "",
        "ssh_key_bits": 0,
        "vg_name": None,
        "drbd_helper": None,
    }


def timestamp(value: float | None) -> list[int] | None:
    """Ganeti's job times: [seconds, microseconds]."""
    if value is None:
        return None
    frac, whole = math.modf(float(value))
    return [int(whole), round(frac * 1_000_000) % 1_000_000]


def op_result(status: str, result: Any) -> Any:
    if status == "error" and isinstance(result, list) and len(result) == 2 \
            and isinstance(result[1], list):
        code, args = result
        name, ecode = _ERROR_CLASS.get(code, (code, None))
        if name not in ("OpPrereqError", "OpExecError", "JobCanceled", "JobLost"):
            name = "OpExecError"
        message = args[0] if args else ""
        return [name, [message, ecode] if ecode else [message]]
    return result


def log_entry(entry: list[Any] | tuple[Any, ...]) -> list[Any]:
    serial, ts, kind, message = entry[0], entry[1], entry[2], entry[3]
    return [serial, timestamp(ts), kind, message]


def job(data: dict[str, Any], fields: tuple[str, ...] | list[str] = J_FIELDS) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": data["id"],
        "ops": data["ops"],
        "status": data["status"],
        "summary": data["summary"],
        "opstatus": data["opstatus"],
        "received_ts": timestamp(data.get("received_ts")),
        "start_ts": timestamp(data.get("start_ts")),
        "end_ts": timestamp(data.get("end_ts")),
        "oplog": [[log_entry(e) for e in entries] for entries in data.get("oplog", [])],
        "opresult": [op_result(s, r) for s, r in
                     zip(data["opstatus"], data.get("opresult", []), strict=False)],
        "opstart": [timestamp(t) for t in data.get("opstart", [])],
        "opexec": [timestamp(t) for t in data.get("opexec", [])],
        "opend": [timestamp(t) for t in data.get("opend", [])],
        "priority": data.get("priority", 0),
        "archived": data.get("archived", False),
        "origin": data.get("origin"),
    }
    return {key: values.get(key) for key in fields}


def job_field_values(data: dict[str, Any], fields: list[str]) -> list[Any]:
    converted = job(data, tuple(fields))
    return [converted[f] for f in fields]
