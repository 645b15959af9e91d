"""Running Ganeti hook scripts on a node (the node half of Ganeti's hooks interface).

Admins keep hook scripts where Ganeti looks for them, ``/etc/ganeti/hooks`` (under HERD_ROOT,
so that every lab node has its own), in ``<hooks path>-pre.d`` and ``<hooks path>-post.d``
directories, and ``watcher/`` for the watcher. The rules are Ganeti's, so that existing scripts
work unchanged:

- a directory that does not exist means "no hooks" (Ganeti does not create them);
- entries are taken in Python's string order; hidden ones (leading dot) are not listed;
- an entry runs only if its name matches ``^[a-zA-Z0-9_-]+$`` (so ``x.sh`` does not) and it is
  an executable file; any other entry is reported as skipped, never as a failure;
- a script gets no arguments, stdin from /dev/null, no controlling terminal, stdout and stderr
  together in one file, and only the environment it is given (``PATH`` reset);
- exit status 0 is success, anything else a failure.

What Herd adds: a timeout per script (Ganeti waits for ever; a hung pre hook would hold the
job and its locks), after which the script's whole process group is killed by its PID and the
failure says so; output captured to a bounded size; and a time budget per directory, so the
master always gets an answer before its RPC gives up.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from herd import errors

log = logging.getLogger(__name__)

#: Ganeti's rule for hook script names (as run-parts): no dots, so no extensions.
SCRIPT_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
#: Hooks paths are Ganeti's directory stems (``instance-add``, ``cluster-verify``, ...).
HOOKS_PATH = re.compile(r"^[a-z0-9][a-z0-9-]*$")
PHASES = ("pre", "post")
#: Ganeti's PATH for hook scripts (constants.HOOKS_PATH).
SCRIPT_PATH_ENV = "/sbin:/bin:/usr/sbin:/usr/bin"

SUCCESS, FAIL, SKIP = "success", "fail", "skip"

#: Seconds one script may run (Ganeti's hooks timeout); ``HERD_HOOKS_TIMEOUT`` changes it.
DEFAULT_TIMEOUT = 3600.0
TIMEOUT_ENV = "HERD_HOOKS_TIMEOUT"
#: A directory's scripts together may take this many script timeouts; scripts not started by
#: then are reported as failed. The master's RPC waits a little longer than this.
BUDGET_TIMEOUTS = 4
#: Bytes of a script's output kept (the rest is counted, not kept).
OUTPUT_LIMIT = 16 * 1024
#: Files looked at by :func:`inventory` (a hooks tree is a few dozen files).
INVENTORY_LIMIT = 2000


@dataclass(frozen=True)
class Entry:
    """One directory entry and whether Ganeti's rules let it run."""

    name: str
    path: Path
    runnable: bool


@dataclass(frozen=True)
class ScriptResult:
    """Ganeti's (script, status, output) triple; ``script`` is ``<subdir>/<name>``."""

    script: str
    status: str
    output: str

    def to_list(self) -> list[str]:
        return [self.script, self.status, self.output]


def configured_timeout(environ: Mapping[str, str] | None = None) -> float:
    """The per-script timeout from ``HERD_HOOKS_TIMEOUT`` (seconds), else Ganeti's hour."""
    raw = (os.environ if environ is None else environ).get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86400:
        raise errors.ParameterError(f"invalid {TIMEOUT_ENV} '{raw}': give seconds, more than 0 "
                                    "and at most 86400")
    return value


def discover(directory: Path) -> list[Entry]:
    """The entries of a hooks directory in running order; none if it does not exist."""
    try:
        names = sorted(n for n in os.listdir(directory) if not n.startswith("."))
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        return []
    entries = []
    for name in names:
        path = directory / name
        runnable = (SCRIPT_NAME.match(name) is not None and path.is_file()
                    and os.access(path, os.X_OK))
        entries.append(Entry(name, path, runnable))
    return entries


def check_request(hpath: str, phase: str) -> None:
    """Refuse a hooks path or phase that is not one of Ganeti's (nor a way out of the dir)."""
    if not isinstance(hpath, str) or not HOOKS_PATH.match(hpath):
        raise errors.ParameterError(f"invalid hooks path {hpath!r}: lower-case letters, digits "
                                    "and '-' only (e.g. instance-add)")
    if phase not in PHASES:
        raise errors.ParameterError(f"invalid hooks phase {phase!r}: allowed are pre, post")


def script_env(env: Mapping[str, object]) -> dict[str, str]:
    """The environment a script gets: exactly the given variables (as strings), PATH reset
    to Ganeti's unless the caller gave one."""
    out = {str(k): str(v) for k, v in env.items()}
    out.setdefault("PATH", SCRIPT_PATH_ENV)
    return out


def _read_output(handle: IO[bytes], limit: int) -> str:
    size = handle.seek(0, os.SEEK_END)
    handle.seek(0)
    data = handle.read(limit)
    text = data.decode(errors="replace").strip()
    if size > limit:
        text += f"\n... ({size - limit} more bytes of output not kept)"
    return text


def run_script(path: Path, env: Mapping[str, str], timeout: float,
               limit: int = OUTPUT_LIMIT) -> tuple[str, str]:
    """Run one script as Ganeti does; return (status, output).

    The script leads its own session, so at the timeout its process group (the script and what
    it started) is killed with the script's PID as the group id, and the output says so.
    """
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen([str(path)], stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=dict(env), cwd="/",
                                    close_fds=True, start_new_session=True)
        except OSError as exc:
            return FAIL, f"Hook script execution error: {exc}"
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            log.warning("hook %s timed out after %g s; killed process group %d", path, timeout,
                        proc.pid)
            output = _read_output(out, limit)
            note = f"hook script timed out after {timeout:g} s and was killed (pid {proc.pid})"
            return FAIL, f"{output}\n{note}" if output else note
        output = _read_output(out, limit)
    if code != 0:
        reason = f"exit code {code}" if code > 0 else f"killed by signal {-code}"
        log.info("hook %s failed (%s)", path, reason)
        return FAIL, output
    return SUCCESS, output


def run_parts(directory: Path, env: Mapping[str, str], timeout: float,
              label: str = "", budget: float | None = None) -> list[ScriptResult]:
    """Run a directory's scripts in order (run-parts); every entry gets a result.

    ``label`` prefixes the reported script names (Ganeti reports ``<subdir>/<name>``).
    Scripts not started within ``budget`` seconds are reported as failed, not run.
    """
    started = time.monotonic()
    results = []
    for entry in discover(directory):
        name = f"{label}/{entry.name}" if label else entry.name
        if not entry.runnable:
            results.append(ScriptResult(name, SKIP, ""))
            continue
        if budget is not None and time.monotonic() - started >= budget:
            results.append(ScriptResult(name, FAIL, f"not run: the scripts before it used up "
                                                    f"this directory's {budget:g} s"))
            continue
        status, output = run_script(entry.path, env, timeout)
        results.append(ScriptResult(name, status, output))
    return results


def run_hooks(hooks_dir: Path, hpath: str, phase: str, env: Mapping[str, object],
              timeout: float) -> list[ScriptResult]:
    """Run ``<hooks_dir>/<hpath>-<phase>.d``: Ganeti's HooksRunner.RunHooks."""
    check_request(hpath, phase)
    subdir = f"{hpath}-{phase}.d"
    return run_parts(hooks_dir / subdir, script_env(env), timeout, label=subdir,
                     budget=timeout * BUDGET_TIMEOUTS)


def inventory(hooks_dir: Path) -> dict[str, list[object]]:
    """Every file of the hooks tree (two levels deep), by path relative to ``hooks_dir``:
    [sha256, executable], so that verify can tell where nodes' hooks differ."""
    found: dict[str, list[object]] = {}
    try:
        top = sorted(os.listdir(hooks_dir))
    except (FileNotFoundError, NotADirectoryError):
        return found
    candidates: list[tuple[str, Path]] = []
    for name in top:
        path = hooks_dir / name
        if path.is_dir():
            candidates += [(f"{name}/{sub}", path / sub) for sub in sorted(os.listdir(path))]
        else:
            candidates.append((name, path))
    for rel, path in candidates[:INVENTORY_LIMIT]:
        if not path.is_file():
            continue
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 16), b""):
                    digest.update(block)
        except OSError as exc:
            found[rel] = [f"unreadable: {exc.strerror}", False]
            continue
        found[rel] = [digest.hexdigest(), os.access(path, os.X_OK)]
    return found
