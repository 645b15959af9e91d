"""Running one OS script (create, import, export, rename, verify) under asyncio.

Why: noded runs OS scripts while it keeps serving RPC, so this is async; scripts come from
third parties and may hang or leave children behind, so each runs in its own session
(process group) that is killed as a whole on timeout or cancellation; and the administrator
needs their output, so stderr (and stdout unless it carries export/import data) goes to a
per-instance log file whose last lines also end up in the error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from herd import errors
from herd.osdef.definition import ALL_SCRIPTS, OsDefinition

#: Seconds between SIGTERM and SIGKILL when a script is stopped.
KILL_GRACE = 2.0
#: How much of the log ends up in an error message.
_TAIL_LINES = 10
_TAIL_CHARS = 1500


def _log_tail(log_file: Path, start: int) -> str:
    """The last lines this run appended to the log, joined into one line."""
    try:
        with open(log_file, "rb") as f:
            f.seek(start)
            data = f.read()
    except OSError:
        return "(log unreadable)"
    lines = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("=== ")]
    text = "; ".join(lines[-_TAIL_LINES:])
    if len(text) > _TAIL_CHARS:
        text = "..." + text[-_TAIL_CHARS:]
    return text or "(no output)"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """Terminate the script's whole process group, escalating to SIGKILL."""
    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), KILL_GRACE)
    _signal_group(proc.pid, signal.SIGKILL)
    await proc.wait()


async def run_script(osdef: OsDefinition, script: str, env: dict[str, str], log_file: Path,
                     *, stdin: int | None = None, stdout: int | None = None,
                     timeout: float = 3600, close_after_start: tuple[int, ...] = ()) -> None:
    """Run ``script`` of ``osdef`` in its directory with exactly ``env``.

    ``stdin``/``stdout`` are file descriptors (import reads its stream from stdin, export
    writes it to stdout); without them stdin is /dev/null and stdout goes to the log. The
    verify script gets the argument ``parameters`` (the only check of OS API 20).
    ``close_after_start`` are descriptors the caller hands over: closed here once the script
    holds its copies (a pipe's far end must be held by the script alone, or the reader at the
    other end never sees EOF), and also when the script could not start.
    Raises OpExecError when the script fails, is killed or times out.
    """
    handed = list(close_after_start)
    try:
        await _run(osdef, script, env, log_file, stdin, stdout, timeout, handed)
    finally:
        _close_all(handed)


def _close_all(fds: list[int]) -> None:
    """Close and forget each descriptor (never twice: its number may be reused)."""
    while fds:
        with contextlib.suppress(OSError):
            os.close(fds.pop())


async def _run(osdef: OsDefinition, script: str, env: dict[str, str], log_file: Path,
               stdin: int | None, stdout: int | None, timeout: float,
               handed: list[int]) -> None:
    if script not in ALL_SCRIPTS:
        raise errors.ProgrammerError(f"unknown OS script {script!r}; known: "
                                     + ", ".join(ALL_SCRIPTS))
    if not osdef.valid:
        raise errors.OpExecError(f"OS '{osdef.name}' is invalid: {osdef.error}")
    path = osdef.path / script
    if not path.is_file():
        raise errors.OpExecError(f"OS '{osdef.name}' has no {script} script ({path})")
    args = ["parameters"] if script == "verify" else []

    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        start = log.tell()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"=== {stamp} {osdef.name} {script} for "
                  f"{env.get('INSTANCE_NAME', '?')} ===\n".encode())
        log.flush()
        proc = await asyncio.create_subprocess_exec(
            str(path), *args, cwd=str(osdef.path), env=env,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=stdout if stdout is not None else log, stderr=log,
            start_new_session=True)
        _close_all(handed)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            await _stop(proc)
            raise errors.OpExecError(
                f"OS {script} script timed out after {timeout:g} s and was killed; "
                f"last lines of log: {_log_tail(log_file, start)}") from None
        except asyncio.CancelledError:
            await _stop(proc)
            raise
    rc = proc.returncode
    if rc != 0:
        how = f"killed by signal {-rc}" if rc is not None and rc < 0 else f"exit {rc}"
        raise errors.OpExecError(f"OS {script} script failed ({how}); last lines of log: "
                                 f"{_log_tail(log_file, start)}")
