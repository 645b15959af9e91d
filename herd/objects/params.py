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
#: within one min/max pair; ``disk-size`` applies per disk. It is the cluster's policy; a node
#: group overrides keys of it (fill_ipolicy; gnt-group add/modify --ipolicy-*).
ISPEC_MIN: dict[str, int] = {"memory-size": 128, "disk-size": 1024, "disk-count": 1,
                             "cpu-count": 1, "nic-count": 1, "spindle-use": 1}
ISPEC_MAX: dict[str, int] = {"memory-size": 32768, "disk-size": 1048576, "disk-count": 16,
                             "cpu-count": 8, "nic-count": 8, "spindle-use": 12}
IPOLICY_VCPU_RATIO: float = 4  # Ganeti answers 4 and 32, not 4.0
IPOLICY_SPINDLE_RATIO: float = 32


ISPEC_KEYS = tuple(ISPEC_MIN)
IPOLICY_KEYS = ("minmax", "std", "disk-templates", "vcpu-ratio", "spindle-ratio")
#: A node group's allocation policies (Ganeti's): preferred groups first, last_resort ones
#: only when no preferred group fits, unallocable ones never for new placements.
ALLOC_POLICIES = ("preferred", "last_resort", "unallocable")


def default_ipolicy(templates: list[str]) -> dict[str, Any]:
    """The filled instance policy (Ganeti's shape) for a cluster whose enabled disk templates
    are ``templates``."""
    return {"minmax": [{"min": dict(ISPEC_MIN), "max": dict(ISPEC_MAX)}],
            "std": dict(ISPEC_MIN), "disk-templates": list(templates),
            "vcpu-ratio": IPOLICY_VCPU_RATIO, "spindle-ratio": IPOLICY_SPINDLE_RATIO}


def fill_ipolicy(cluster_policy: Mapping[str, Any],
                 group_policy: Mapping[str, Any] | None) -> dict[str, Any]:
    """A group's filled policy, as Ganeti's FillIPolicy: a key the group sets replaces the
    cluster's value wholesale (a group ``minmax`` replaces the whole list), except ``std``,
    merged key by key."""
    out = {key: _copy(value) for key, value in cluster_policy.items()}
    for key, value in (group_policy or {}).items():
        if key == "std":
            out["std"] = {**out.get("std", {}), **value}
        else:
            out[key] = _copy(value)
    return out


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _ispec(what: str, spec: Any, *, complete: bool) -> dict[str, int]:
    if not isinstance(spec, Mapping):
        raise ParameterError(f"invalid {what} spec {spec!r}: expected a mapping of "
                             f"{', '.join(ISPEC_KEYS)}")
    out = {}
    for key, value in spec.items():
        if key not in ISPEC_KEYS:
            raise ParameterError(f"unknown {what} spec key '{key}'; known: "
                                 f"{', '.join(ISPEC_KEYS)}")
        out[key] = _to_int(f"{what}/{key}", value)
    missing = [k for k in ISPEC_KEYS if k not in out]
    if complete and missing:
        raise ParameterError(f"the {what} spec must give all of {', '.join(ISPEC_KEYS)}; "
                             f"missing: {', '.join(missing)}")
    return out


def check_ipolicy(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a (partial) group policy: ``minmax`` pairs complete (all six keys, min <= max,
    issue #873 of Ganeti), known templates, positive ratios. A value of None (or
    "default") removes the group's override."""
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if value is None or value == "default":
            out[key] = None
            continue
        if key == "minmax":
            if not isinstance(value, list) or not value:
                raise ParameterError(f"invalid ipolicy minmax {value!r}: expected a "
                                     "non-empty list of {min, max}")
            pairs = []
            for pair in value:
                if not isinstance(pair, Mapping) or set(pair) != {"min", "max"}:
                    raise ParameterError(f"invalid ipolicy minmax entry {pair!r}: expected "
                                         "{min: SPEC, max: SPEC}")
                low = _ispec("min", pair["min"], complete=True)
                high = _ispec("max", pair["max"], complete=True)
                bad = [k for k in ISPEC_KEYS if low[k] > high[k]]
                if bad:
                    raise ParameterError(f"invalid ipolicy bounds: min above max for "
                                         f"{', '.join(bad)}")
                pairs.append({"min": low, "max": high})
            out[key] = pairs
        elif key == "std":
            out[key] = _ispec("std", value, complete=False)
        elif key == "disk-templates":
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list):
                raise ParameterError(f"invalid ipolicy disk-templates {value!r}: expected "
                                     "a list of templates")
            unknown = [t for t in items if t not in DISK_TEMPLATES]
            if unknown:
                raise ParameterError(f"invalid ipolicy disk template(s) "
                                     f"{', '.join(map(str, unknown))}: allowed are "
                                     f"{', '.join(DISK_TEMPLATES)}")
            out[key] = list(items)
        elif key in ("vcpu-ratio", "spindle-ratio"):
            try:
                ratio = float(value)
            except (TypeError, ValueError):
                raise ParameterError(f"invalid ipolicy {key} {value!r}: expected a "
                                     "number") from None
            if ratio <= 0:
                raise ParameterError(f"invalid ipolicy {key} {value!r}: must be positive")
            out[key] = ratio
        else:
            raise ParameterError(f"unknown ipolicy key '{key}'; known: "
                                 f"{', '.join(IPOLICY_KEYS)}")
    return out


def check_alloc_policy(value: Any) -> str:
    if value not in ALLOC_POLICIES:
        raise ParameterError(f"invalid allocation policy {value!r}: allowed are "
                             f"{', '.join(ALLOC_POLICIES)}")
    return str(value)


def check_diskparams(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Per-template disk parameters ({template: {key: value}}); Herd's templates take no
    parameters yet, so any given key is refused with the template named."""
    out: dict[str, Any] = {}
    for template, values in changes.items():
        if template not in DISK_TEMPLATES:
            raise ParameterError(f"invalid disk template '{template}' in disk parameters: "
                                 f"allowed are {', '.join(DISK_TEMPLATES)}")
        if not isinstance(values, Mapping):
            raise ParameterError(f"invalid disk parameters for {template}: expected a "
                                 "mapping")
        if values:
            raise ParameterError(f"unknown disk parameter(s) {', '.join(sorted(values))} "
                                 f"for template {template}: Herd's {template} takes none")
        out[template] = {}
    return out


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
