"""The creation wizard's decisions: which choices a user has, and a form turned into an opcode.

The page (``/ui/create``) shows one form: name, owner, OS, disk template, nodes or the
allocator, memory, vCPUs, disks, NICs, and beside them the instance policy's bounds and the
user's quota headroom. :func:`check_form` is pure: form values and :class:`Choices` in, an
``OP_INSTANCE_CREATE`` opcode or a message per field out, so a bad value is shown next to its
field and nothing is submitted. What the form cannot know (room on the nodes, a quota used by a
job queued meanwhile) masterd and the job still check: their refusal is shown above the form,
and a refused submit leaves no job.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from herd import errors, names
from herd.objects import access
from herd.units import format_size, parse_size

#: The most NICs and disks (Ganeti's MAX_NICS / MAX_DISKS).
MAX_NICS = 8
MAX_DISKS = 16
AUTO = ""  # the node select's value for "the allocator chooses"
#: A Linux interface name (IFNAMSIZ 16 with the final NUL)
_LINK = re.compile(r"[A-Za-z0-9_.-]{1,15}")


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The instance policy's min/max the form checks (Ganeti's ispecs, sizes in MiB)."""

    memory: tuple[int, int]
    vcpus: tuple[int, int]
    disk_size: tuple[int, int]
    disk_count: tuple[int, int]
    nic_count: tuple[int, int]

    @classmethod
    def from_ipolicy(cls, ipolicy: Mapping[str, Any]) -> Bounds:
        minmax = (ipolicy.get("minmax") or [{}])[0]
        lo, hi = minmax.get("min") or {}, minmax.get("max") or {}

        def pair(key: str, low: int, high: int) -> tuple[int, int]:
            return int(lo.get(key, low)), int(hi.get(key, high))

        return cls(memory=pair("memory-size", 128, 32768), vcpus=pair("cpu-count", 1, 8),
                   disk_size=pair("disk-size", 1024, 1048576),
                   disk_count=pair("disk-count", 1, MAX_DISKS),
                   nic_count=pair("nic-count", 1, MAX_NICS))


@dataclasses.dataclass(frozen=True)
class Choices:
    """What this user may pick (the page renders these; the check accepts only these)."""

    user: str
    owners: tuple[str, ...]  # subjects: the user, its @groups; "" (no owner) for operators
    os_names: tuple[str, ...]
    templates: tuple[str, ...]
    nodes: tuple[str, ...]
    allocator: bool  # may leave the nodes to the allocator
    bounds: Bounds
    mirrored: tuple[str, ...] = ("drbd",)
    diskless: tuple[str, ...] = ("diskless",)
    default_memory: int = 128
    default_vcpus: int = 1
    default_link: str = "br0"


def owner_choices(user: str, groups: frozenset[str], operator: bool) -> tuple[str, ...]:
    """The owners a user may name: itself, a group it belongs to, or (operators, who see and
    manage everything anyway) nobody."""
    out = [user, *sorted(f"@{g}" for g in groups)]
    if operator:
        out.append("")
    return tuple(out)


def _bounded(value: int, bounds: tuple[int, int], what: str, show: Any = str) -> str | None:
    low, high = bounds
    if not low <= value <= high:
        return f"{what} {show(value)} is outside the policy's {show(low)} to {show(high)}"
    return None


def _size(raw: str, what: str) -> int:
    return parse_size(raw.strip(), what)


def check_form(form: Mapping[str, str], choices: Choices
               ) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The opcode for a valid form, or None and a one-line message per bad field."""
    bad: dict[str, str] = {}
    get = {k: str(form.get(k) or "").strip() for k in (
        "name", "owner", "os", "template", "pnode", "snode", "memory", "vcpus", "disks",
        "nics", "link")}
    try:
        name = names.check(names.INSTANCE, get["name"])
    except errors.ParameterError as exc:
        bad["name"] = exc.message
        name = ""
    if get["owner"] not in choices.owners:
        bad["owner"] = (f"owner {get['owner'] or '(none)'!r} is not one you may choose: "
                        f"{', '.join(o or '(none)' for o in choices.owners)}")
    if get["os"] not in choices.os_names:
        bad["os"] = (f"OS {get['os']!r} is not available: choose one of "
                     f"{', '.join(choices.os_names) or '(none found on the nodes)'}")
    template = get["template"]
    if template not in choices.templates:
        bad["template"] = (f"disk template {template!r} is not enabled: allowed are "
                           f"{', '.join(choices.templates)}")
    pnode, snode = get["pnode"], get["snode"]
    for key, node in (("pnode", pnode), ("snode", snode)):
        if node == AUTO:
            if not choices.allocator and (key == "pnode" or template in choices.mirrored):
                bad[key] = "choose a node (you may not leave the placement to the allocator)"
        elif node not in choices.nodes:
            bad[key] = f"node {node!r} is not one you may use: {', '.join(choices.nodes)}"
    mirrored = template in choices.mirrored
    if mirrored and pnode and snode and pnode == snode:
        bad["snode"] = "the secondary node must differ from the primary"
    if pnode == AUTO and mirrored and snode != AUTO:
        bad["snode"] = "leave the secondary to the allocator too, or choose the primary"
    b = choices.bounds
    memory = vcpus = 0
    try:
        memory = _size(get["memory"] or str(choices.default_memory), "memory")
        problem = _bounded(memory, b.memory, "memory", format_size)
        if problem:
            bad["memory"] = problem
    except errors.ParameterError as exc:
        bad["memory"] = exc.message
    raw_vcpus = get["vcpus"] or str(choices.default_vcpus)
    if not raw_vcpus.isdigit():
        bad["vcpus"] = f"invalid vCPU count {raw_vcpus!r}: expected a whole number"
    else:
        vcpus = int(raw_vcpus)
        problem = _bounded(vcpus, b.vcpus, "vCPU count")
        if problem:
            bad["vcpus"] = problem
    disks: list[int] = []
    if template in choices.diskless:
        if get["disks"]:
            bad["disks"] = "a diskless instance has no disks: leave this empty"
    else:
        try:
            disks = [_size(part, "disk size") for part in get["disks"].split(",")
                     if part.strip()]
            problem = _bounded(len(disks), b.disk_count, "disk count") if disks \
                else "give at least one disk size, e.g. 10G or 10G, 20G"
            problem = problem or next(
                (p for p in (_bounded(s, b.disk_size, "disk size", format_size)
                             for s in disks) if p), None)
            if problem:
                bad["disks"] = problem
        except errors.ParameterError as exc:
            bad["disks"] = exc.message
    raw_nics = get["nics"] or "1"
    nics = 0
    if not raw_nics.isdigit() or int(raw_nics) > MAX_NICS:
        bad["nics"] = f"invalid NIC count {raw_nics!r}: expected 0 to {MAX_NICS}"
    else:
        nics = int(raw_nics)
    link = get["link"] or choices.default_link
    if not _LINK.fullmatch(link):
        bad["link"] = (f"invalid link {link!r}: a bridge or interface name (up to 15 letters, "
                       "digits, '.', '_', '-')")
    if bad:
        return None, bad
    op: dict[str, Any] = {
        "OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "mode": "create",
        "os_type": get["os"], "disk_template": template,
        "disks": [{"size": s} for s in disks],
        "nics": [{"link": link} for _ in range(nics)],
        "beparams": {"maxmem": memory, "minmem": memory, "vcpus": vcpus},
        "start": form.get("start") == "on", "name_check": False, "ip_check": False,
        "tags": [f"{access.OWNER_TAG}{get['owner']}"] if get["owner"] else [],
    }
    if pnode:
        op["pnode"] = pnode
        if mirrored and snode:
            op["snode"] = snode
    return op, {}
