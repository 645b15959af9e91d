"""Ganeti's command-line option grammar, parsed in one place for every ``gnt-*`` command.

Users move scripts from Ganeti to Herd unchanged, so ``-B memory=1G,vcpus=2``,
``-H kvm:boot_order=cdrom``, ``--disk 0:size=10G``, ``--net 0:link=br0``, ``-n pnode:snode``
and the list options must mean exactly what they mean in Ganeti (see ganeti(7), gnt-instance(8)).
Each command module builds its parser from :func:`add_common_options` so that flags and ``dest``
names never drift between commands, and every parse error is one line with exit code 1.

Parsers here only check syntax and the values whose form is fixed by the grammar (sizes, MACs,
modes); whether a parameter name is valid for a hypervisor or backend is the objects' business.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
from collections.abc import Callable, Sequence

from herd.errors import HerdError, ParameterError, ProgrammerError
from herd.units import parse_size

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing costs each gnt-* command ~2 ms at start
    from typing import Any, Literal, NoReturn, overload

    _Spec = tuple[tuple[str, ...], dict[str, Any]]

#: Ganeti's "no_x" (x=False) and "-x" (x=None: reset to the inherited default) prefixes.
NO_PREFIX = "no_"
UN_PREFIX = "-"

#: Names Ganeti knows, so that ``-H xen-pvm`` reads as a hypervisor (and is then refused with a
#: clear message by the logic layer) rather than as a boolean parameter called "xen-pvm".
KNOWN_HYPERVISORS = ("kvm", "fake", "xen-pvm", "xen-hvm", "lxc", "chroot")
#: Ganeti's disk templates; the cluster's enabled subset is checked by the logic layer.
DISK_TEMPLATES = ("diskless", "file", "sharedfile", "plain", "drbd", "rbd", "blockdev", "ext",
                  "gluster")
#: Ganeti's opcode priorities (lower is more urgent).
PRIORITIES = {"low": 10, "normal": 0, "high": -10}
#: Ganeti's default for --timeout and --shutdown-timeout, in seconds.
DEFAULT_SHUTDOWN_TIMEOUT = 120

DISK_KEYS = ("size", "spindles", "mode", "name", "vg", "metavg", "access", "adopt", "provider")
DISK_MODIFY_KEYS = ("mode", "name")
DISK_MODES = ("rw", "ro")
DISK_ACCESS = ("kernel", "userspace")
NIC_KEYS = ("mac", "ip", "mode", "link", "network", "name", "vlan")
NIC_MODES = ("bridged", "routed", "openvswitch")
MAC_SPECIAL = ("generate", "auto")
ACTIONS = ("add", "remove", "modify")

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_HV_PREFIX_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.+-]*):(.*)\Z", re.S)
_INT_RE = re.compile(r"^-?\d+$")


# --- key=value lists ---------------------------------------------------------------------------

def split_escaped(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep``; a backslash makes the next character literal (``a\\,b`` is one item)."""
    items: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i + 1])
            i += 2
            continue
        if ch == sep:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    items.append("".join(current))
    return items


def parse_keyval(text: str, *, option: str = "") -> dict[str, Any]:
    """Parse ``key=val,no_flag,-reset,flag`` into a dict, Ganeti's way.

    ``no_x`` gives x=False, ``-x`` gives x=None (reset to default), a bare ``x`` gives True;
    values stay strings. ``option`` names the option in error messages.
    """
    where = f" in option {option}" if option else ""
    result: dict[str, Any] = {}
    if not text:
        return result
    for item in split_escaped(text):
        value: Any
        if "=" in item:
            key, value = item.split("=", 1)
        elif item.startswith(NO_PREFIX):
            key, value = item[len(NO_PREFIX):], False
        elif item.startswith(UN_PREFIX):
            key, value = item[len(UN_PREFIX):], None
        else:
            key, value = item, True
        if not key:
            raise ParameterError(f"empty parameter name in '{text}'{where}")
        if key in result:
            raise ParameterError(f"duplicate key '{key}'{where}")
        result[key] = value
    return result


def _split_ident(value: str) -> tuple[str, str]:
    """Split ``ident:rest`` (Ganeti's "identkeyval"); no colon means no parameters."""
    ident, _, rest = value.partition(":")
    return ident, rest


def _merge(into: dict[str, Any], more: dict[str, Any], what: str) -> None:
    for key, value in more.items():
        if key in into:
            raise ParameterError(f"duplicate key '{key}' in {what}")
        into[key] = value


# --- -H -----------------------------------------------------------------------------------------

if TYPE_CHECKING:
    @overload
    def parse_hv_option(
        text: str | Sequence[str], *, with_hypervisor: Literal[True]
    ) -> dict[str, dict[str, Any]]: ...

    @overload
    def parse_hv_option(
        text: str | Sequence[str], *, with_hypervisor: Literal[False]
    ) -> tuple[str | None, dict[str, Any]]: ...


def parse_hv_option(
    text: str | Sequence[str], *, with_hypervisor: bool
) -> dict[str, dict[str, Any]] | tuple[str | None, dict[str, Any]]:
    """Parse ``-H`` values.

    with_hypervisor=True (cluster init/modify, option repeatable): every value is
    ``HV[:key=val,...]``; returns {hv: params}, merging repeats of one hypervisor.
    with_hypervisor=False (instances): ``key=val,...``, ``HV:key=val,...`` or a bare known
    hypervisor name; returns (hypervisor or None, params).
    """
    texts = [text] if isinstance(text, str) else list(text)
    if with_hypervisor:
        per_hv: dict[str, dict[str, Any]] = {}
        for one in texts:
            match = _HV_PREFIX_RE.match(one)
            if match:
                hv, rest = match.group(1), match.group(2)
            elif one and "=" not in one and "," not in one:
                hv, rest = one, ""
            else:
                raise ParameterError(
                    f"invalid -H value '{one}': expected HYPERVISOR:param=value,..."
                )
            _merge(per_hv.setdefault(hv, {}), parse_keyval(rest, option=f"-H {hv}"), f"-H {hv}")
        return per_hv
    chosen: str | None = None
    params: dict[str, Any] = {}
    for one in texts:
        match = _HV_PREFIX_RE.match(one)
        if match:
            hv, rest = match.group(1), match.group(2)
        elif one in KNOWN_HYPERVISORS:
            hv, rest = one, ""
        else:
            hv, rest = None, one
        if hv is not None:
            if chosen is not None and chosen != hv:
                raise ParameterError(f"-H names two hypervisors: '{chosen}' and '{hv}'")
            chosen = hv
        _merge(params, parse_keyval(rest, option="-H"), "-H")
    return chosen, params


# --- -n -----------------------------------------------------------------------------------------

def parse_node_spec(text: str) -> tuple[str, str | None]:
    """Parse ``-n pnode[:snode]`` into (primary, secondary or None)."""
    parts = text.split(":")
    if len(parts) > 2 or not all(parts):
        raise ParameterError(f"invalid node specification '{text}': expected NODE[:SECONDARY]")
    return parts[0], (parts[1] if len(parts) == 2 else None)


# --- --disk / --net -----------------------------------------------------------------------------

def _need_string(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ParameterError(f"{where}: parameter '{key}' needs a value ({key}=...)")
    return value


def _check_choice(where: str, key: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ParameterError(
            f"{where}: invalid {key} '{value}': allowed are {', '.join(allowed)}"
        )


def _disk_params(where: str, raw: dict[str, Any], allowed: Sequence[str],
                 *, need_size: bool) -> dict[str, Any]:
    """Check one disk's parameters; size becomes MiB, spindles an int, the rest stay strings."""
    extra_ok = "provider" in raw and "provider" in allowed  # ExtStorage takes free parameters
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in allowed and not extra_ok:
            raise ParameterError(
                f"{where}: unknown parameter '{key}': allowed are {', '.join(allowed)}"
            )
        value = _need_string(where, key, value)
        if key == "size":
            try:
                out[key] = parse_size(value, "size")
            except ParameterError as err:
                raise ParameterError(f"{where}: {err.message}") from None
        elif key == "spindles":
            if not value.isdigit():
                raise ParameterError(f"{where}: invalid spindles '{value}': expected a number")
            out[key] = int(value)
        else:
            if key == "mode":
                _check_choice(where, key, value, DISK_MODES)
            elif key == "access":
                _check_choice(where, key, value, DISK_ACCESS)
            out[key] = value
    if "size" in out and "adopt" in out:
        raise ParameterError(f"{where}: give either size or adopt, not both")
    if need_size and "size" not in out and "adopt" not in out:
        raise ParameterError(f"{where}: missing size (size=10G) or adopt=VOLUME")
    return out


def _nic_params(where: str, raw: dict[str, Any]) -> dict[str, Any]:
    """Check one NIC's parameters; the MAC is lower-cased as Ganeti does."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in NIC_KEYS:
            raise ParameterError(
                f"{where}: unknown parameter '{key}': allowed are {', '.join(NIC_KEYS)}"
            )
        value = _need_string(where, key, value)
        if key == "mac":
            value = value.lower()
            if value not in MAC_SPECIAL and not _MAC_RE.match(value):
                raise ParameterError(
                    f"{where}: invalid mac '{value}': expected aa:bb:cc:dd:ee:ff, "
                    "generate or auto"
                )
        elif key == "mode":
            _check_choice(where, key, value, NIC_MODES)
        elif key == "ip" and value.lower() not in ("none", "pool"):
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ParameterError(
                    f"{where}: invalid ip '{value}': expected an address, pool or none"
                ) from None
        out[key] = value
    if "network" in out and ("mode" in out or "link" in out):
        raise ParameterError(f"{where}: network= sets mode and link; do not give them too")
    return out


def _index(opt: str, ident: str, value: str) -> int:
    if not ident.isdigit():
        raise ParameterError(
            f"invalid {opt} '{value}': expected {opt} N:param=value,... with N = 0, 1, ..."
        )
    return int(ident)


def _indexed(opt: str, values: Sequence[str]) -> dict[int, tuple[str, dict[str, Any]]]:
    by_index: dict[int, tuple[str, dict[str, Any]]] = {}
    for value in values:
        ident, rest = _split_ident(value)
        idx = _index(opt, ident, value)
        if idx in by_index:
            raise ParameterError(f"{opt} {idx} given twice")
        by_index[idx] = (f"{opt} {idx}", parse_keyval(rest, option=f"{opt} {idx}"))
    return by_index


def _modifications(
    opt: str, values: Sequence[str],
    check_add: Callable[[str, dict[str, Any]], dict[str, Any]],
    check_modify: Callable[[str, dict[str, Any]], dict[str, Any]],
) -> list[dict[str, Any]]:
    """Ganeti's modify grammar: ``add:p``, ``N:add,p``, ``remove``, ``ID:remove``, ``ID:modify,p``.

    ``ID`` is an index, a name or a UUID; an index with no action means modify. The result is
    Ganeti's opcode form: {"action", "identifier" (int index, -1 = last, or name/UUID), "params"}.
    """
    ops: list[dict[str, Any]] = []
    for value in values:
        ident, rest = _split_ident(value)
        params = parse_keyval(rest, option=f"{opt} {ident}")
        where = f"{opt} {ident}"
        identifier: int | str
        if ident in ("add", "remove"):
            action, identifier = ident, -1
        elif ident in ("attach", "detach"):
            raise ParameterError(f"{where}: '{ident}' is not supported; allowed are add, "
                                 "remove, modify")
        elif not ident:
            raise ParameterError(f"invalid {opt} '{value}': expected ID:ACTION[,param=value...]")
        else:
            identifier = int(ident) if _INT_RE.match(ident) else ident
            given = [a for a in (*ACTIONS, "attach", "detach") if a in params]
            for name in given:
                if params.pop(name) is not True:
                    raise ParameterError(f"{where}: '{name}' takes no value")
                if name not in ACTIONS:
                    raise ParameterError(f"{where}: '{name}' is not supported; allowed are "
                                         "add, remove, modify")
            if len(given) > 1:
                raise ParameterError(f"{where}: give only one of {', '.join(given)}")
            action = given[0] if given else "modify"
            if action == "add" and not isinstance(identifier, int):
                raise ParameterError(f"{where}: add needs an index (N:add,...) or add:...")
        if action == "remove":
            if params:
                raise ParameterError(f"{where}: remove takes no parameters")
        elif action == "add":
            params = check_add(where, params)
        else:
            params = check_modify(where, params)
            if not params:
                raise ParameterError(f"{where}: nothing to modify")
        ops.append({"action": action, "identifier": identifier, "params": params})
    return ops


def parse_disk_option(values: Sequence[str], *, modify: bool = False) -> list[dict[str, Any]]:
    """Parse repeated ``--disk``.

    Creation (default): ``N:size=10G[,mode=rw,name=x,...]``, indices contiguous from 0; returns
    one dict per disk in index order, size in MiB. modify=True: returns the operations of
    ``gnt-instance modify`` (see :func:`_modifications`).
    """
    if modify:
        return _modifications(
            "--disk", values,
            lambda where, p: _disk_params(where, p, DISK_KEYS, need_size=True),
            lambda where, p: _disk_params(where, p, DISK_MODIFY_KEYS, need_size=False),
        )
    by_index = _indexed("--disk", values)
    for expected in range(len(by_index)):
        if expected not in by_index:
            raise ParameterError(f"--disk indices must be contiguous from 0: {expected} is "
                                 "missing")
    return [_disk_params(where, raw, DISK_KEYS, need_size=True)
            for where, raw in (by_index[i] for i in range(len(by_index)))]


def parse_net_option(values: Sequence[str], *, modify: bool = False) -> list[dict[str, Any]]:
    """Parse repeated ``--net``.

    Creation (default): ``N[:mac=...,link=...,mode=...,ip=...,network=...,name=...]``; like
    Ganeti, an index skipped gets a NIC with cluster defaults ({}). modify=True: returns the
    operations of ``gnt-instance modify`` (``add:...``, ``N:add,...``, ``ID:remove``,
    ``ID:modify,...``).
    """
    if modify:
        return _modifications("--net", values, _nic_params, _nic_params)
    by_index = _indexed("--net", values)
    nics: list[dict[str, Any]] = [{} for _ in range(max(by_index, default=-1) + 1)]
    for idx, (where, raw) in by_index.items():
        nics[idx] = _nic_params(where, raw)
    return nics


# --- list output --------------------------------------------------------------------------------

def resolve_fields(spec: str | None, default_fields: Sequence[str]) -> list[str]:
    """Expand ``-o``: None gives the defaults, ``+a,b`` appends to them, ``a,b`` replaces them."""
    if spec is None:
        return list(default_fields)
    base: list[str] = []
    if spec.startswith("+"):
        base, spec = list(default_fields), spec[1:]
    fields = spec.split(",")
    if not all(fields):
        raise ParameterError(f"invalid field list '{spec}': empty field name")
    return base + fields


# --- argparse -----------------------------------------------------------------------------------

def terminal_columns() -> int:
    """The width help text is wrapped to: ``shutil.get_terminal_size``'s answer ($COLUMNS,
    else the terminal of stdout, else 80), found without importing shutil, which argparse
    imports for it once per ``add_argument`` and which loads bz2, lzma and zlib with it: a few
    milliseconds of every command's start (issue 17)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class HerdArgumentParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line, ``<prog>: error: <message>``, exit code 1.

    argparse's default (usage dump, exit code 2) breaks scripts written against Ganeti, whose
    commands exit 1 on bad options; -h still prints the full usage. Sub-parsers made with
    ``add_subparsers()`` inherit this class.
    """

    def _get_formatter(self) -> argparse.HelpFormatter:
        # the width argparse would find, without its ``import shutil`` (see terminal_columns)
        return self.formatter_class(prog=self.prog, width=terminal_columns() - 2)

    def error(self, message: str) -> NoReturn:
        one_line = message.replace("\r", " ").replace("\n", " ")
        self.exit(1, f"{self.prog}: error: {one_line}\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        argv = list(sys.argv[1:] if args is None else args)
        opts, extras = super().parse_known_args(self._attach_dash_values(argv), namespace)
        for action in self._actions:  # a caller may mutate opts.beparams: never the default
            value = getattr(opts, action.dest, None)
            if value is action.default and isinstance(value, dict | list | tuple):
                import copy  # here: few commands have such defaults (copy loads weakref)

                setattr(opts, action.dest, copy.deepcopy(value))
        return opts, extras

    def _attach_dash_values(self, argv: list[str]) -> list[str]:
        """Let ``-H -kernel_path`` mean what it means in Ganeti (optparse): a value, not a flag.

        argparse refuses a value starting with "-"; an option that takes one value and is
        followed by a word that is not one of our options gets it attached as ``-H=-x``.
        """
        out: list[str] = []
        i = 0
        while i < len(argv):
            arg = argv[i]
            if arg == "--":
                out.extend(argv[i:])
                break
            action = self._option_string_actions.get(arg)
            nxt = argv[i + 1] if i + 1 < len(argv) else ""
            if (action is not None and action.nargs is None and len(nxt) > 1
                    and nxt.startswith("-") and nxt != "--"
                    and nxt.split("=", 1)[0] not in self._option_string_actions):
                out.append(f"{arg}={nxt}")
                i += 2
                continue
            out.append(arg)
            i += 1
        return out


def herd_type(fn: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """Wrap a parser raising HerdError into an argparse type (errors become one-line messages)."""

    def convert(text: str) -> Any:
        try:
            return fn(text)
        except HerdError as err:
            raise argparse.ArgumentTypeError(err.message) from None

    convert.__name__ = name
    return convert


def _positive_int(text: str) -> int:
    if not text.isdigit():
        raise ParameterError(f"invalid number '{text}': expected a whole number of seconds")
    return int(text)


#: ``-s 10X`` -> "invalid size '10X': expected a number with an optional unit M, G or T".
size_type = herd_type(parse_size, "size")
keyval_type = herd_type(parse_keyval, "key=value list")
node_spec_type = herd_type(parse_node_spec, "node specification")
seconds_type = herd_type(_positive_int, "seconds")
instance_hv_type = herd_type(lambda t: parse_hv_option(t, with_hypervisor=False), "-H value")


class _HvListAction(argparse.Action):
    """``-H kvm:a=b -H fake:c=d`` (repeatable) merged into {hypervisor: params}."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        current = dict(getattr(namespace, self.dest) or {})
        try:
            for hv, params in parse_hv_option(str(values), with_hypervisor=True).items():
                merged = dict(current.get(hv, {}))
                _merge(merged, params, f"-H {hv}")
                current[hv] = merged
        except HerdError as err:
            parser.error(f"argument {option_string}: {err.message}")
        setattr(namespace, self.dest, current)


class _PriorityAction(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, PRIORITIES[str(values)])


#: name -> (flags, argparse keyword arguments); flags and dest names are Ganeti's.
_SPECS: dict[str, _Spec] = {
    "submit": (("--submit",), dict(dest="submit_only", action="store_true", help=(
        "submit the job and print its id, do not wait for it"))),
    "print_jobid": (("--print-jobid", "--print-job-id"), dict(
        dest="print_jobid", action="store_true",
        help="also print the job id as the first line of output")),
    "dry_run": (("--dry-run",), dict(dest="dry_run", action="store_true", help=(
        "only check whether the operation could be done"))),
    "priority": (("--priority",), dict(dest="priority", action=_PriorityAction, default=None,
                                       choices=tuple(PRIORITIES), metavar="low|normal|high",
                                       help="priority of the submitted job")),
    "debug": (("-d", "--debug"), dict(dest="debug", action="count", default=0,
                                      help="increase debugging level")),
    "verbose": (("-v", "--verbose"), dict(dest="verbose", action="store_true",
                                          help="verbose output")),
    "force": (("-f", "--force"), dict(dest="force", action="store_true",
                                      help="do not ask for confirmation")),
    "no_headers": (("--no-headers",), dict(dest="no_headers", action="store_true",
                                           help="do not print the header line")),
    "separator": (("--separator",), dict(dest="separator", default=None, metavar="SEP",
                                         help="separator between fields (default: aligned "
                                              "columns; sizes then default to MiB)")),
    "units": (("--units",), dict(dest="units", default=None, choices=("h", "m", "g", "t"),
                                 help="units for sizes: h (human), m, g or t")),
    "output": (("-o", "--output"), dict(dest="output", default=None, metavar="FIELDS",
                                        help="comma-separated fields; +FIELDS appends to the "
                                             "default list")),
    "json": (("--json",), dict(dest="json", action="store_true",
                               help="print a JSON list of objects with raw values")),
    "backend": (("-B", "--backend-parameters"), dict(dest="beparams", type=keyval_type,
                                                     default={}, help="backend parameters")),
    "hypervisor": (("-H", "--hypervisor-parameters"), dict(
        dest="hypervisor", type=instance_hv_type, default=(None, {}),
        metavar="[HYPERVISOR:]PARAMS", help="hypervisor and/or hypervisor parameters")),
    "hvparams": (("-H", "--hypervisor-parameters"), dict(
        dest="hvparams", type=keyval_type, default={}, help="hypervisor parameters")),
    "hvparams_list": (("-H", "--hypervisor-parameters"), dict(
        dest="hvparams", action=_HvListAction, default={}, metavar="HYPERVISOR:PARAMS",
        help="hypervisor parameters, as hypervisor:key=value,... (repeatable)")),
    "osparams": (("-O", "--os-parameters"), dict(dest="osparams", type=keyval_type,
                                                  default={}, help="OS parameters")),
    "node": (("-n", "--node"), dict(dest="node", default=None, metavar="NODE",
                                    help="target node")),
    "node_placement": (("-n", "--node"), dict(dest="node", type=node_spec_type, default=None,
                                              metavar="PNODE[:SNODE]",
                                              help="primary and optional secondary node")),
    "disk_template": (("-t", "--disk-template"), dict(dest="disk_template", default=None,
                                                      choices=DISK_TEMPLATES, metavar="TEMPL",
                                                      help="disk template")),
    "os_size": (("-s", "--os-size"), dict(dest="sd_size", type=size_type, default=None,
                                          metavar="SIZE", help="single disk of this size")),
    "os_type": (("-o", "--os-type"), dict(dest="os", default=None, metavar="OS",
                                          help="operating system")),
    "disk": (("--disk",), dict(dest="disks", action="append", default=[],
                               metavar="N:size=SIZE[,...]", help="disk (repeatable)")),
    "net": (("--net",), dict(dest="nics", action="append", default=[],
                             metavar="N[:params]", help="network card (repeatable)")),
    "no_nics": (("--no-nics",), dict(dest="no_nics", action="store_true",
                                     help="create no network card")),
    "no_start": (("--no-start",), dict(dest="start", action="store_false", default=True,
                                       help="do not start the instance")),
    "no_install": (("--no-install",), dict(dest="no_install", action="store_true",
                                           help="do not install the OS (implies --no-start)")),
    "no_ip_check": (("--no-ip-check",), dict(dest="ip_check", action="store_false",
                                             default=True,
                                             help="do not check that the IP is unused")),
    "no_name_check": (("--no-name-check",), dict(dest="name_check", action="store_false",
                                                 default=True,
                                                 help="do not resolve the instance name")),
    "no_wait_for_sync": (("--no-wait-for-sync",), dict(dest="wait_for_sync",
                                                       action="store_false", default=True,
                                                       help="do not wait for disks to sync")),
    "timeout": (("--timeout",), dict(dest="timeout", type=seconds_type,
                                     default=DEFAULT_SHUTDOWN_TIMEOUT, metavar="SECONDS",
                                     help="maximum time to wait")),
    "shutdown_timeout": (("--shutdown-timeout",), dict(
        dest="shutdown_timeout", type=seconds_type, default=DEFAULT_SHUTDOWN_TIMEOUT,
        metavar="SECONDS", help="maximum time to wait for the instance to shut down")),
}

#: What every ``list`` command takes.
LIST_OPTIONS = ("no_headers", "separator", "units", "output", "json")
#: What every job-submitting command takes (Ganeti's SUBMIT_OPTS plus the common ones).
JOB_OPTIONS = ("submit", "print_jobid", "dry_run", "priority")

#: Groups of names that claim the same short flag; a parser may take only one of each.
_EXCLUSIVE = (("output", "os_type"), ("hypervisor", "hvparams", "hvparams_list"),
              ("node", "node_placement"))


def add_common_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                       *names: str) -> None:
    """Add Ganeti's options by name (see ``_SPECS``), with Ganeti's flags and dest names.

    ``-o`` is --output in list commands ("output") and --os-type in add/reinstall ("os_type");
    ``-H`` is (hypervisor, params) for instance add ("hypervisor"), params for modify/start
    ("hvparams") and {hypervisor: params} for the cluster ("hvparams_list").
    """
    unknown = [name for name in names if name not in _SPECS]
    if unknown:
        raise ProgrammerError(f"unknown option names {unknown}: known are {sorted(_SPECS)}")
    for group in _EXCLUSIVE:
        clash = [name for name in group if name in names]
        if len(clash) > 1:
            raise ProgrammerError(f"options {clash} share a flag; choose one")
    for name in names:
        flags, kwargs = _SPECS[name]
        parser.add_argument(*flags, **kwargs)



def yes_no(value: str | None, option: str) -> bool | None:
    """Ganeti's yes/no option values (None: not given)."""
    if value is None:
        return None
    if value.lower() in ("yes", "true"):
        return True
    if value.lower() in ("no", "false"):
        return False
    raise ParameterError(f"invalid value '{value}' for {option}: expected yes or no")
