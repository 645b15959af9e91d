"""Discovery and parsing of OS definitions (Ganeti's OS API, versions 10, 15 and 20).

Why: Herd promises that existing Ganeti OS definitions work unchanged, so an OS is exactly
what Ganeti calls one (see ganeti-os-interface(7)): a directory named after the OS holding
the executable scripts ``create``, ``import``, ``export``, ``rename`` (and ``verify`` from
API 20) and the text files ``ganeti_api_version``, ``variants.list`` (optional, API >= 15)
and ``parameters.list`` (API >= 20). Directories are searched in order and the first
directory of a given name wins, as in Ganeti. Broken definitions are reported, not hidden,
so ``gnt-os diagnose`` can tell the administrator what is wrong.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd import errors

#: OS API versions Herd can drive (Ganeti 2.3+ supports the same three).
SUPPORTED_API_VERSIONS = (10, 15, 20)
#: Scripts every definition must have, and the extra one API 20 adds.
BASE_SCRIPTS = ("create", "import", "export", "rename")
VERIFY_SCRIPT = "verify"
ALL_SCRIPTS = (*BASE_SCRIPTS, VERIFY_SCRIPT)

API_FILE = "ganeti_api_version"
VARIANTS_FILE = "variants.list"
PARAMETERS_FILE = "parameters.list"


@dataclass
class OsDefinition:
    """One OS definition found on disk (valid or not: ``error`` says why not)."""

    name: str
    path: Path
    api_versions: list[int] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)
    parameters: list[tuple[str, str]] = field(default_factory=list)
    valid: bool = True
    error: str | None = None

    @property
    def api_version(self) -> int:
        """The API version scripts are run with: the highest one both sides support."""
        common = set(self.api_versions).intersection(SUPPORTED_API_VERSIONS)
        return max(common) if common else 0

    @property
    def parameter_names(self) -> list[str]:
        return [name for name, _ in self.parameters]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, sent over node RPC."""
        return {
            "name": self.name,
            "path": str(self.path),
            "api_versions": list(self.api_versions),
            "variants": list(self.variants),
            "parameters": [[n, d] for n, d in self.parameters],
            "valid": self.valid,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OsDefinition:
        return cls(
            name=str(data["name"]),
            path=Path(data["path"]),
            api_versions=[int(v) for v in data.get("api_versions", [])],
            variants=[str(v) for v in data.get("variants", [])],
            parameters=[(str(n), str(d)) for n, d in data.get("parameters", [])],
            valid=bool(data.get("valid", False)),
            error=data.get("error"),
        )


class _Invalid(Exception):
    """Internal: why a definition directory is not usable."""


def _read_list(path: Path) -> list[str]:
    """Non-empty lines of a text file, without ``#`` comments (Ganeti skips them too)."""
    lines = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _parse_api_versions(os_dir: Path) -> list[int]:
    api_file = os_dir / API_FILE
    if not api_file.is_file():
        raise _Invalid(f"missing file {API_FILE}")
    versions = []
    for line in _read_list(api_file):
        try:
            versions.append(int(line))
        except ValueError:
            raise _Invalid(f"{API_FILE} has a non-numeric line {line!r}") from None
    if not versions:
        raise _Invalid(f"{API_FILE} is empty")
    if not set(versions).intersection(SUPPORTED_API_VERSIONS):
        supported = ", ".join(str(v) for v in SUPPORTED_API_VERSIONS)
        declared = ", ".join(str(v) for v in versions)
        raise _Invalid(f"unsupported OS API version(s) {declared}; supported: {supported}")
    return versions


def _parse_parameters(os_dir: Path) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    for line in _read_list(os_dir / PARAMETERS_FILE):
        name, _, desc = line.partition(" ") if " " in line else line.partition("\t")
        name = name.strip()
        if not name.replace("_", "").replace("-", "").isalnum():
            raise _Invalid(f"{PARAMETERS_FILE} has an invalid parameter name {name!r}")
        params.append((name, desc.strip()))
    return params


def load(name: str, os_dir: Path) -> OsDefinition:
    """Parse one OS directory; never raises for a broken definition (valid=False instead)."""
    osdef = OsDefinition(name=name, path=os_dir)
    try:
        if "+" in name:
            raise _Invalid("the directory name must not contain '+' (it separates variants)")
        osdef.api_versions = _parse_api_versions(os_dir)
        api = osdef.api_version
        scripts = BASE_SCRIPTS + ((VERIFY_SCRIPT,) if api >= 20 else ())
        for script in scripts:
            spath = os_dir / script
            if not spath.is_file():
                raise _Invalid(f"missing script {script}")
            if not os.access(spath, os.X_OK):
                raise _Invalid(f"script {script} is not executable")
        if api >= 15 and (os_dir / VARIANTS_FILE).is_file():
            osdef.variants = _read_list(os_dir / VARIANTS_FILE)
        if api >= 20:
            if not (os_dir / PARAMETERS_FILE).is_file():
                raise _Invalid(f"missing file {PARAMETERS_FILE} (required by OS API 20)")
            osdef.parameters = _parse_parameters(os_dir)
    except (_Invalid, OSError) as exc:
        osdef.valid = False
        osdef.error = str(exc)
    return osdef


def discover(search_path: list[Path]) -> dict[str, OsDefinition]:
    """Every OS definition in the search path; for a name, the first directory found wins."""
    found: dict[str, OsDefinition] = {}
    for top in search_path:
        try:
            entries = sorted(os.listdir(top))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.startswith(".") or entry in found:
                continue
            # Absolute, because scripts are started with their directory as cwd.
            os_dir = Path(top).absolute() / entry
            if os_dir.is_dir():
                found[entry] = load(entry, os_dir)
    return found


def split_name(full_name: str) -> tuple[str, str | None]:
    """``name+variant`` -> (name, variant); a bare name has no variant."""
    name, sep, variant = full_name.partition("+")
    return name, (variant if sep else None)


def lookup(full_name: str, search_path: list[Path]) -> tuple[OsDefinition, str | None]:
    """Find a valid OS by ``name`` or ``name+variant``; return it and the variant.

    A bare name of an OS with variants is accepted (the scripts then get the first declared
    variant, as Ganeti's script environment does).
    """
    name, variant = split_name(full_name)
    found = discover(search_path)
    osdef = found.get(name)
    if osdef is None:
        available = ", ".join(sorted(n for n, d in found.items() if d.valid)) or "none"
        raise errors.NotFoundError(f"OS '{name}' not found; available: {available}")
    if not osdef.valid:
        raise errors.ParameterError(f"OS '{name}' in {osdef.path} is invalid: {osdef.error}")
    if variant is not None:
        if not osdef.variants:
            raise errors.ParameterError(f"OS '{name}' does not support variants "
                                        f"(got '{full_name}')")
        if variant not in osdef.variants:
            raise errors.ParameterError(f"OS '{name}' has no variant '{variant}'; allowed: "
                                        + ", ".join(osdef.variants))
    return osdef, variant


def check_osparams(osdef: OsDefinition, osparams: dict[str, str]) -> None:
    """Refuse OS parameters the definition does not declare in parameters.list."""
    allowed = osdef.parameter_names
    unknown = sorted(set(osparams) - set(allowed))
    if unknown:
        allowed_text = ", ".join(allowed) if allowed else "none (it declares no parameters)"
        raise errors.ParameterError(f"unknown OS parameter(s) for OS '{osdef.name}': "
                                    f"{', '.join(unknown)}; allowed: {allowed_text}")
