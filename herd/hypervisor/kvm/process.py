"""Launching a daemonized QEMU and ending it, without ever blocking the event loop for long.

QEMU is started with ``-daemonize`` in a new session: the process we spawn exits once the VM
is set up (its exit status is the start result), and the VM process runs on in its own session,
reparented to init, so neither noded exiting nor a signal to noded's process group touches it.
Ending a VM always targets its verified PID, never a name.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from herd.daemonize import LaunchTimeout, run_daemonizing, wait_gone
from herd.errors import HypervisorError
from herd.hypervisor.kvm.runtime import InstanceFiles, read_pidfile

#: Seconds QEMU may take to set up a VM before daemonizing.
LAUNCH_TIMEOUT = 30.0


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


async def launch(argv: list[str], files: InstanceFiles, scope: list[str] | None = None) -> int:
    """Run QEMU until it daemonizes; the VM's PID. HypervisorError with QEMU's message.
    ``scope``: herd.daemonize.scope_argv's prefix (the guest's own systemd scope)."""
    try:
        rc = await run_daemonizing(argv, files.qemu_log, LAUNCH_TIMEOUT, scope)
    except OSError as exc:
        raise HypervisorError(f"cannot run {argv[0]}: {exc}") from None
    except LaunchTimeout:
        raise HypervisorError(
            f"QEMU did not finish starting within {LAUNCH_TIMEOUT:g} s: "
            f"{_tail(files.qemu_log) or 'no output'}") from None
    if rc != 0:
        raise HypervisorError(
            f"QEMU failed to start (exit status {rc}): {_tail(files.qemu_log) or 'no output'}")
    pid = read_pidfile(files.pidfile)
    if pid is None:
        raise HypervisorError(f"QEMU started but wrote no pidfile {files.pidfile}")
    return pid


async def terminate(pid: int, grace: float = 1.0) -> None:
    """SIGTERM (QEMU exits cleanly), SIGKILL after ``grace`` s; error if it still lives."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if await wait_gone(pid, wait):
            return
    state = "?"
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return
    raise HypervisorError(f"QEMU process {pid} did not exit after SIGKILL (state {state})")
