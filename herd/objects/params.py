"""Parameter defaults and inheritance, computed in one place.

Effective parameters are the cluster defaults, overridden by the node group, overridden by the
instance. Each level stores only what it overrides; ``None`` given by a user as ``-x`` (Ganeti's
"reset to default") removes an override. Hypervisor parameter *names and checks* belong to the
hypervisor module; this module only knows the parameter families that are not hypervisor-specific.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from herd.errors import ParameterError
from herd.units import parse_size

#: Backend parameters (Ganeti's names). memory is an alias that sets maxmem and minmem.
BE_DEFAULTS: dict[str, Any] = {
    "maxmem": 128,
    "minmem": 128,
    "vcpus": 1,
    "auto_balance": True,
    "always_failover": False,
    "spindle_use": 1,
}

NIC_MODES = ("bridged", "routed", "openvswitch")
NIC_DEFAULTS: dict[str, Any] = {"mode": "bridged", "link": "br0", "vlan": ""}

ND_DEFAULTS: dict[str, Any] = {
    "oob_program": "",
    "spindle_count": 1,
    "exclusive_storage": False,
    "ssh_port": 22,
}

#: Ganeti's default instance policy (``Types.hs``): an instance complies if its specs lie
#: within one min/max pair; ``disk-size`` applies per disk. Herd has no per-group policy yet,
#: so this is every group's filled policy (RAPI reports it, the allocators enforce it).
ISPEC_MIN: dict[str, int] = {"memory-size": 128, "disk-size": 1024, "disk-count": 1,
                             "cpu-count": 1, "nic-count": 1, "spindle-use": 1}
ISPEC_MAX: dict[str, int] = {"memory-size": 32768, "disk-size": 1048576, "disk-count": 16,
                             "cpu-count": 8, "nic-count": 8, "spindle-use": 12}
IPOLICY_VCPU_RATIO: float = 4  # Ganeti answers 4 and 32, not 4.0
IPOLICY_SPINDLE_RATIO: float = 32


def default_ipolicy(templates: list[str]) -> dict[str, Any]:
    """The filled instance policy (Ganeti's shape) for a cluster whose enabled disk templates
    are ``templates``."""
    return {"minmax": [{"min": dict(ISPEC_MIN), "max": dict(ISPEC_MAX)}],
            "std": dict(ISPEC_MIN), "disk-templates": list(templates),
            "vcpu-ratio": IPOLICY_VCPU_RATIO, "spindle-ratio": IPOLICY_SPINDLE_RATIO}


DISK_TEMPLATES = ("diskless", "file", "plain", "drbd")
#: Templates this version can create.
SUPPORTED_DISK_TEMPLATES = ("diskless", "file", "plain", "drbd")
#: Templates whose disks live on two nodes.
MIRRORED_TEMPLATES = ("drbd",)
DISK_ACCESS_MODES = ("rw", "ro")


def _to_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on", "y"):
        return True
    if text in ("false", "no", "0", "off", "n"):
        return False
    raise ParameterError(f"invalid value '{value}' for {name}: expected true or false")


def _to_int(name: str, value: Any, minimum: int = 0) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ParameterError(f"invalid value '{value}' for {name}: expected an integer") from None
    if number < minimum:
        raise ParameterError(f"invalid value '{value}' for {name}: must be at least {minimum}")
    return number


def check_beparams(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and normalise a (partial) set of backend parameters."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if value is None:
            out[name] = None
            continue
        if name == "memory":
            size = parse_size(value, "memory")
            out["maxmem"] = out["minmem"] = size
        elif name in ("maxmem", "minmem"):
            out[name] = parse_size(value, name)
        elif name in ("vcpus", "spindle_use"):
            out[name] = _to_int(name, value, minimum=1 if name == "vcpus" else 0)
        elif name in ("auto_balance", "always_failover"):
            out[name] = _to_bool(name, value)
        else:
            known = ", ".join(sorted([*BE_DEFAULTS, "memory"]))
            raise ParameterError(f"unknown backend parameter '{name}'; known: {known}")
    if "maxmem" in out and "minmem" in out and out["maxmem"] is not None \
            and out["minmem"] is not None and out["minmem"] > out["maxmem"]:
        raise ParameterError(
            f"minmem ({out['minmem']}) must not be larger than maxmem ({out['maxmem']})")
    return out


def check_nicparams(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name not in NIC_DEFAULTS:
            known = ", ".join(sorted(NIC_DEFAULTS))
            raise ParameterError(f"unknown NIC parameter '{name}'; known: {known}")
        if name == "mode" and value is not None and value not in NIC_MODES:
            raise ParameterError(
                f"invalid NIC mode '{value}': allowed are {', '.join(NIC_MODES)}")
        if name == "mode" and value == "openvswitch":
            raise ParameterError("NIC mode 'openvswitch' is not supported yet; "
                                 "use bridged or routed")
        out[name] = None if value is None else str(value)
    return out


def check_ndparams(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name not in ND_DEFAULTS:
            known = ", ".join(sorted(ND_DEFAULTS))
            raise ParameterError(f"unknown node parameter '{name}'; known: {known}")
        default = ND_DEFAULTS[name]
        if value is None:
            out[name] = None
        elif isinstance(default, bool):
            out[name] = _to_bool(name, value)
        elif isinstance(default, int):
            out[name] = _to_int(name, value)
        else:
            out[name] = str(value)
    return out


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Apply overrides to base; an override of None resets the key to base's value."""
    out = dict(base)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        out[key] = value
    return out


def update_overrides(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """Apply user changes to stored overrides: None removes an override (back to default)."""
    out = dict(current)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def fill(*levels: Mapping[str, Any] | None) -> dict[str, Any]:
    """Effective parameters: the first level is the defaults, later ones override."""
    out: dict[str, Any] = {}
    for level in levels:
        out = merge(out, level)
    return out
