"""The NIC and disk modifications of ``gnt-instance modify``, as pure decisions.

Ganeti accepts three spellings of one modification list, and Herd must take all of them
because its CLI, RAPI clients and Ganeti's own Python client each send a different one:

* Herd's CLI form: ``{"action": "add", "identifier": -1, "params": {...}}``;
* Ganeti's 3-tuple (OpCode ``nics``/``disks`` since 2.11): ``[action, identifier, params]``;
* Ganeti's legacy 2-tuple: ``["add", params]``, ``["remove", {}]``, ``[index, params]``
  (an index alone means "modify").

:func:`normalize` turns each into :class:`Mod`; :func:`plan` applies the list, in order, to
the instance's current items (Ganeti's sequential semantics: ``--net add --net 1:remove``
removes what index 1 is after the add) and answers what the end state is: which items are
kept (in which order), added, removed, modified. Unlike Ganeti 2.x, an add may go at any
index and any item may be removed. Nothing here touches the config or a node: the logical
unit acts on the plan, so the decisions are unit-tested on their own.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from herd import errors
from herd.network.mac import normalize_mac
from herd.objects import params as P
from herd.units import parse_size

ADD, REMOVE, MODIFY = "add", "remove", "modify"
ACTIONS = (ADD, REMOVE, MODIFY)
NIC, DISK = "nic", "disk"
#: The most NICs / disks an instance may have (Ganeti's MAX_NICS / MAX_DISKS).
MAX_ITEMS = {NIC: 8, DISK: 16}

#: Parameters each kind takes, per action (Ganeti's names).
NIC_KEYS = ("mac", "ip", "mode", "link", "name", "network", "vlan")
DISK_ADD_KEYS = ("size", "mode", "name")
DISK_MODIFY_KEYS = ("mode", "name")
#: Backend parameters a running guest does not pick up (its memory and CPUs are fixed at
#: start: Herd has no runtime memory/CPU change yet).
BE_NEED_RESTART = ("maxmem", "minmem", "memory", "vcpus")


@dataclass(frozen=True)
class Mod:
    """One modification: ``identifier`` is an index (-1: the last) or a name or uuid."""

    action: str
    identifier: int | str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """What a modification list does to one kind of item.

    ``final`` is the new order: an existing item's uuid, or ``("new", k)`` for the k-th
    added one; ``added[k]`` its parameters, ``modified[uuid]`` the changes of a kept item
    (merged when several modify it), ``removed`` the uuids that go."""

    kind: str
    final: list[Any]
    added: list[dict[str, Any]]
    removed: list[str]
    modified: dict[str, dict[str, Any]]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.modified)

    def index_of(self, token: Any) -> int:
        """The item's index once the plan is applied."""
        return self.final.index(token)


def _what(kind: str) -> str:
    return "--net" if kind == NIC else "--disk"


def _identifier(kind: str, value: Any) -> int | str:
    if isinstance(value, bool):
        raise errors.ParameterError(f"invalid {kind} identifier {value!r}: expected an index, "
                                    "a name or a uuid")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        return text
    raise errors.ParameterError(f"invalid {kind} identifier {value!r}: expected an index, "
                                "a name or a uuid")


def _params(kind: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.ParameterError(f"invalid {kind} parameters {value!r}: expected a "
                                    "dictionary")
    return dict(value)


def _one(kind: str, raw: Any) -> Mod:
    if isinstance(raw, dict):
        unknown = set(raw) - {"action", "identifier", "params"}
        if unknown or "action" not in raw:
            raise errors.ParameterError(
                f"invalid {kind} modification {raw!r}: expected action, identifier, params")
        action, ident, prm = raw["action"], raw.get("identifier", -1), raw.get("params")
    elif isinstance(raw, list | tuple) and len(raw) == 3:
        action, ident, prm = raw
    elif isinstance(raw, list | tuple) and len(raw) == 2:
        first, prm = raw
        if first in (ADD, REMOVE):
            action, ident = first, -1
        else:
            action, ident = MODIFY, first
            if not isinstance(_identifier(kind, first), int):
                raise errors.ParameterError(
                    f"invalid {kind} modification {list(raw)!r}: the first element is "
                    "add, remove or an index")
    else:
        raise errors.ParameterError(
            f"invalid {kind} modification {raw!r}: expected [action, identifier, params] "
            "or [add|remove|index, params]")
    if action not in ACTIONS:
        raise errors.ParameterError(f"invalid {kind} action {action!r}: allowed are "
                                    f"{', '.join(ACTIONS)}")
    return Mod(action, _identifier(kind, ident), _params(kind, prm))


def normalize(kind: str, raw: Any) -> list[Mod]:
    """Every accepted spelling of a modification list as :class:`Mod`; one-line errors."""
    if raw is None:
        return []
    if not isinstance(raw, list | tuple):
        raise errors.ParameterError(f"invalid {kind} modifications {raw!r}: expected a list")
    return [_one(kind, item) for item in raw]


def _name(value: Any) -> str | None:
    """A name as stored: Ganeti's ``none`` (and an empty string) clear it."""
    if value is None:
        return None
    text = str(value)
    return None if text.lower() in ("", "none") else text


def check_disk_params(action: str, where: str, given: dict[str, Any]) -> dict[str, Any]:
    """A disk add's (size, mode, name) or modify's (mode, name) parameters, checked; size
    in MiB. A size change is grow-disk's job and is refused naming it."""
    allowed = DISK_ADD_KEYS if action == ADD else DISK_MODIFY_KEYS
    out: dict[str, Any] = {}
    for key, value in given.items():
        if key == "size" and action == MODIFY:
            raise errors.ParameterError(f"{where}: the size of a disk is changed with "
                                        "'gnt-instance grow-disk', not modify")
        if key not in allowed:
            raise errors.ParameterError(f"{where}: unknown disk parameter '{key}': allowed "
                                        f"are {', '.join(allowed)}")
        if key == "size":
            out[key] = parse_size(value, f"size of {where}")
            if out[key] <= 0:
                raise errors.ParameterError(f"{where}: invalid size {value!r}: must be "
                                            "positive")
        elif key == "mode":
            if value not in P.DISK_ACCESS_MODES:
                raise errors.ParameterError(f"{where}: invalid mode {value!r}: allowed are "
                                            f"{', '.join(P.DISK_ACCESS_MODES)}")
            out[key] = value
        else:
            out[key] = _name(value)
    if action == ADD and "size" not in out:
        raise errors.ParameterError(f"{where}: a new disk needs a size (size=10G)")
    return out


def check_nic_params(action: str, where: str, given: dict[str, Any]) -> dict[str, Any]:
    """A NIC add's or modify's parameters, checked: MAC normalized (``auto``/``generate``
    kept for the caller to draw one), ip ``none`` as None (``pool`` kept for the network's
    pool), network ``none`` as None, mode from Ganeti's list."""
    out: dict[str, Any] = {}
    for key, value in given.items():
        if key not in NIC_KEYS:
            raise errors.ParameterError(f"{where}: unknown NIC parameter '{key}': allowed "
                                        f"are {', '.join(NIC_KEYS)}")
        if key == "mac":
            text = str(value).strip().lower()
            if text in ("auto", "generate"):
                if action == MODIFY and text == "auto":
                    raise errors.ParameterError(f"{where}: mac=auto only applies to a new "
                                                "NIC; use mac=generate for a new address")
                out[key] = "generate"
            else:
                try:
                    out[key] = normalize_mac(text)
                except errors.ParameterError:
                    raise errors.ParameterError(
                        f"{where}: invalid mac {value!r}: expected aa:bb:cc:dd:ee:ff, "
                        "generate or auto") from None
        elif key == "ip":
            text = "" if value is None else str(value).strip()
            if text.lower() in ("", "none"):
                out[key] = None
            elif text.lower() == "pool":
                out[key] = "pool"  # the first free address of the NIC's network
            else:
                try:
                    out[key] = str(ipaddress.ip_address(text))
                except ValueError:
                    raise errors.ParameterError(f"{where}: invalid ip {value!r}: expected an "
                                                "address or none") from None
        elif key == "mode":
            if value not in P.NIC_MODES:
                raise errors.ParameterError(f"{where}: invalid mode {value!r}: allowed are "
                                            f"{', '.join(P.NIC_MODES)}")
            out[key] = value
        elif key == "name":
            out[key] = _name(value)
        else:
            out[key] = None if value is None else str(value)
    if "network" in out and str(out["network"] or "").lower() in ("", "none"):
        out["network"] = None  # off any network
    return out


def plan(kind: str, mods: list[Mod], items: list[tuple[str, str | None]]) -> Plan:
    """Apply ``mods`` in order to ``items`` ((uuid, name) per current item, in index order).

    Refuses, with the offending modification named: an index out of range, a name or uuid
    that matches nothing, a remove or modify of an item added by the same command (say it
    in the add), a result with more items than allowed or two items of one name."""
    check = check_nic_params if kind == NIC else check_disk_params
    current: list[Any] = [uuid for uuid, _ in items]
    names: dict[Any, str | None] = dict(items)
    added: list[dict[str, Any]] = []
    removed: list[str] = []
    modified: dict[str, dict[str, Any]] = {}
    for mod in mods:
        where = f"{_what(kind)} {mod.identifier}:{mod.action}"
        if mod.action == ADD:
            prm = check(ADD, where, mod.params)
            if not isinstance(mod.identifier, int):
                raise errors.ParameterError(f"{where}: add takes an index (N:add) or none, "
                                            f"not {mod.identifier!r}")
            at = len(current) if mod.identifier == -1 else mod.identifier
            if not 0 <= at <= len(current):
                raise errors.ParameterError(
                    f"{where}: cannot add at index {mod.identifier}: allowed are 0 to "
                    f"{len(current)} or -1 (the end)")
            token = ("new", len(added))
            added.append(prm)
            names[token] = prm.get("name")
            current.insert(at, token)
            continue
        token = _find(kind, where, mod.identifier, current, names)
        if isinstance(token, tuple):
            raise errors.ParameterError(f"{where}: {kind} {mod.identifier} is added by this "
                                        f"command; give its parameters in the add")
        if mod.action == REMOVE:
            if mod.params:
                raise errors.ParameterError(f"{where}: remove takes no parameters")
            current.remove(token)
            removed.append(token)
            continue
        prm = check(MODIFY, where, mod.params)
        if not prm:
            raise errors.ParameterError(f"{where}: nothing to modify")
        modified.setdefault(token, {}).update(prm)
        if "name" in prm:
            names[token] = prm["name"]
    if len(current) > MAX_ITEMS[kind]:
        raise errors.ParameterError(f"too many {kind}s: {len(current)}, at most "
                                    f"{MAX_ITEMS[kind]} are allowed")
    seen: dict[str, int] = {}
    for index, token in enumerate(current):
        name = names.get(token)
        if name is None:
            continue
        if name in seen:
            raise errors.ParameterError(f"{kind} name '{name}' would be used twice (by "
                                        f"{kind} {seen[name]} and {index}); names are unique "
                                        "within an instance")
        seen[name] = index
    return Plan(kind, current, added, removed, modified)


def _find(kind: str, where: str, ident: int | str, current: list[Any],
          names: dict[Any, str | None]) -> Any:
    if isinstance(ident, int):
        if not current:
            raise errors.ParameterError(f"{where}: the instance has no {kind}s")
        if not -1 <= ident < len(current):
            raise errors.ParameterError(f"{where}: no {kind} with index {ident}: allowed are 0 "
                                        f"to {len(current) - 1} or -1 (the last)")
        return current[ident]
    for token in current:
        if token == ident or (names.get(token) is not None and names[token] == ident):
            return token
    raise errors.ParameterError(f"{where}: no {kind} named or with uuid '{ident}'")


def restart_needed(beparams: dict[str, Any], hvparams: dict[str, Any],
                   deferred: list[str]) -> list[str]:
    """What of a modify of a running instance waits for its next restart: the backend
    parameters fixed at start (memory, CPUs), every hypervisor parameter (they make the
    QEMU command line) and the device changes not hot-plugged (``deferred``, named by
    the caller). Empty: nothing waits."""
    out = [f"be/{k}" for k in beparams if k in BE_NEED_RESTART]
    out += [f"hv/{k}" for k in hvparams]
    return out + deferred


def restart_notice(instance: str, pending: list[str]) -> str:
    """The line saying what waits for a restart (Ganeti says it too, without a list)."""
    return (f"instance {instance} is running: {', '.join(pending)} take(s) effect at its next "
            "restart by Herd (gnt-instance reboot, or shutdown and startup; a reboot from "
            "inside the guest is not enough)")
