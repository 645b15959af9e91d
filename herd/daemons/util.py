"""herd-daemon-util: start, stop and check Herd's daemons on this node (as Ganeti's daemon-util).

Daemons are started detached (own session, output to their log) so that they outlive the
command that started them; "started" means ready: noded answers on its port, masterd on its
socket. Stopping sends SIGTERM to the pid in the daemon's pid file and waits for it to exit.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from herd import paths, upgrade
from herd.fileutil import pid_alive, read_pid
from herd.systemd import SYSTEMD_RUNTIME, systemd_manages

DAEMONS = ("noded", "masterd", "rapi")
EXIT_NOT_MASTER = 11  # herd-masterd's (and herd-rapi's) exit code when this node is not master
RAPI_PORT = 5080


class NotMaster(RuntimeError):
    """masterd refused to start because another node is the master (not an error)."""
START_TIMEOUT = 30.0
UNIT_DIRS = (Path("/etc/systemd/system"), Path("/lib/systemd/system"),
             Path("/usr/lib/systemd/system"))


def systemd_unit(root: Path, daemon: str, runtime: Path = SYSTEMD_RUNTIME,
                 unit_dirs: tuple[Path, ...] = UNIT_DIRS) -> str | None:
    """The unit that runs ``daemon`` on this node, or None to start it ourselves.

    A unit is used when systemd is the init system, the package installed the unit, and
    this is the node's real root: lab nodes (HERD_ROOT elsewhere) share the host's systemd
    and must never start the host's units. Under systemd, noded's KillMode=process lets
    guests outlive a noded restart, and masterd and RAPI run in their own units, so that
    ``systemctl status`` and the journal show them and a noded restart leaves them alone."""
    unit = f"herd-{daemon}.service"
    if not systemd_manages(root, runtime):
        return None
    return unit if any((d / unit).is_file() for d in unit_dirs) else None


def _executable(root: Path, name: str) -> tuple[list[str], dict[str, str]]:
    """The daemon's command line and environment: the interpreter of the version this node
    runs (``current``, herd.upgrade) when it has versions, else this command's own (the
    project's venv). A version's interpreter brings its own import path: a PYTHONPATH of
    the code that runs this command must not leak into the other version."""
    env = dict(os.environ, HERD_ROOT=str(root))
    python = upgrade.current_python(root)
    if python is None:
        return [sys.executable, "-m", f"herd.daemons.{name}"], env
    env.pop("PYTHONPATH", None)
    return [str(python), "-m", f"herd.daemons.{name}"], env


def is_running(p: paths.HerdPaths, daemon: str) -> int | None:
    pid = read_pid(p.pid_file(daemon))
    return pid if pid_alive(pid) else None


def _ready(p: paths.HerdPaths, daemon: str, port: int) -> bool:
    if daemon == "masterd":
        target: object = str(p.master_socket)
        family = socket.AF_UNIX
    else:
        target, family = ("127.0.0.1", port), socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        try:
            sock.connect(target)  # type: ignore[arg-type]
        except OSError:
            return False
    return True


def _held_marker(p: paths.HerdPaths) -> Path:
    return p.run_dir / "masterd.held"


def master_held(p: paths.HerdPaths) -> bool:
    """masterd was stopped on purpose here: noded's master watch must not start it again
    (herd.node.master_watch)."""
    return os.path.exists(_held_marker(p))


def start(p: paths.HerdPaths, daemon: str, port: int = 1811,
          extra_args: tuple[str, ...] = ()) -> int:
    """Start ``daemon`` unless it runs; return its pid once it is ready.

    Two starters at once (``gnt-cluster init`` and noded's master watch both start masterd on
    a new cluster) take turns on a lock file: the second finds the first's daemon running
    instead of starting a rival that campaigns against its own node for seconds and fails."""
    p.ensure()
    with open(p.run_dir / f"{daemon}.start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _start_locked(p, daemon, port, extra_args)


def _start_locked(p: paths.HerdPaths, daemon: str, port: int,
                  extra_args: tuple[str, ...]) -> int:
    if daemon == "masterd":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_held_marker(p))
    pid = is_running(p, daemon)
    if pid:
        return pid
    p.ensure()
    unit = systemd_unit(p.root, daemon)
    if unit is not None:
        return _start_unit(p, daemon, port, unit)
    log = open(p.daemon_log(daemon), "ab")  # noqa: SIM115 - handed to the child
    argv, env = _executable(p.root, daemon)
    proc = subprocess.Popen([*argv, *extra_args], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log, env=env, start_new_session=True,
                            close_fds=True)
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            other = is_running(p, daemon)
            if other and other != proc.pid:
                # started meanwhile by someone else (noded's master watch): that one is it
                wait_ready(p, daemon, port, max(0.1, deadline - time.monotonic()))
                return other
            tail = p.daemon_log(daemon).read_text(errors="replace").strip().splitlines()[-1:]
            if daemon in ("masterd", "rapi") and proc.returncode == EXIT_NOT_MASTER:
                raise NotMaster(tail[-1] if tail else "not the master")
            raise RuntimeError(f"herd-{daemon} exited at start (code {proc.returncode}): "
                               + " | ".join(tail))
        if read_pid(p.pid_file(daemon)) == proc.pid and _ready(p, daemon, port):
            return proc.pid
        time.sleep(0.05)
    raise RuntimeError(f"herd-{daemon} did not become ready within {START_TIMEOUT:.0f} s; "
                       f"see {p.daemon_log(daemon)}")


def _unit_state(unit: str) -> tuple[str, int]:
    out = subprocess.run(["systemctl", "show", "--property=ActiveState,ExecMainStatus",
                          unit], capture_output=True, text=True, check=False).stdout
    props = dict(line.partition("=")[::2] for line in out.splitlines())
    status = props.get("ExecMainStatus", "0")
    return props.get("ActiveState", ""), int(status) if status.isdigit() else 0


def _start_unit(p: paths.HerdPaths, daemon: str, port: int, unit: str) -> int:
    """Start ``daemon`` through systemd and wait until it answers, as _start_locked does for
    a process of our own (exit 11: another node is the master)."""
    proc = subprocess.run(["systemctl", "start", "--no-block", unit], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"systemctl start {unit} failed: {proc.stderr.strip()}")
    deadline = time.monotonic() + START_TIMEOUT
    began = False  # "inactive" before the start job ran says nothing yet
    while time.monotonic() < deadline:
        pid = is_running(p, daemon)
        if pid and _ready(p, daemon, port):
            return pid
        state, status = _unit_state(unit)
        began = began or state in ("activating", "active", "deactivating", "reloading")
        if (state == "failed" or (state == "inactive" and began)) and not pid:
            if daemon in ("masterd", "rapi") and status == EXIT_NOT_MASTER:
                raise NotMaster(f"{unit}: another node is the master")
            raise RuntimeError(f"{unit} is {state} (exit status {status}); see journalctl "
                               f"-u {unit}")
        time.sleep(0.1)
    raise RuntimeError(f"{unit} did not become ready within {START_TIMEOUT:.0f} s; see "
                       f"journalctl -u {unit}")


def wait_ready(p: paths.HerdPaths, daemon: str, port: int = 1811,
               timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not _ready(p, daemon, port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"herd-{daemon} does not answer after {timeout:.0f} s")
        time.sleep(0.05)


def stop(p: paths.HerdPaths, daemon: str, timeout: float = 30.0) -> bool:
    """Stop ``daemon`` if it runs; return True if it was running. A stopped masterd stays
    stopped: the node's master watch does not start it again (see master_held)."""
    if daemon == "masterd" and p.run_dir.exists():
        with open(_held_marker(p), "w"):
            pass
    pid = is_running(p, daemon)
    if not pid:
        return False
    unit = systemd_unit(p.root, daemon)
    if unit is not None:  # so that systemd does not count it as failed and restart it
        subprocess.run(["systemctl", "stop", unit], capture_output=True, check=False,
                       timeout=timeout + 5)
        if not pid_alive(pid):
            return True
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return True


def noded_port(p: paths.HerdPaths) -> int:
    from herd.daemons.noded import default_port

    return default_port(p)


def daemon_port(p: paths.HerdPaths, daemon: str) -> int:
    return RAPI_PORT if daemon == "rapi" else noded_port(p)


def start_all(p: paths.HerdPaths, master: bool) -> None:
    """Run this node normally: noded, and masterd and RAPI if it was the master (masterd
    finds out whether it still is); a candidate may take the master role again."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_held_marker(p))
    start(p, "noded", noded_port(p))
    if master:
        try:
            start(p, "masterd")
            start(p, "rapi", RAPI_PORT)
        except NotMaster as exc:
            print(f"herd-daemon-util: {exc}", file=sys.stderr)


def stop_all(p: paths.HerdPaths) -> None:
    """Stop every Herd process of this node, the etcd member too (it outlives a noded
    restart on purpose, see herd.node.etcd_member)."""
    from herd.node.etcd_member import stop_stale_member

    for daemon in reversed(DAEMONS):
        stop(p, daemon)
    stop_stale_member(p)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="herd-daemon-util")
    sub = parser.add_subparsers(dest="action", required=True)
    for action in ("start", "stop", "check"):
        cmd = sub.add_parser(action)
        cmd.add_argument("daemon", choices=DAEMONS)
    sub.add_parser("start-all")
    sub.add_parser("stop-all")
    args = parser.parse_args(argv)
    p = paths.current()
    try:
        if args.action == "start":
            print(start(p, args.daemon, daemon_port(p, args.daemon)))
        elif args.action == "stop":
            stop(p, args.daemon)
        elif args.action == "check":
            pid = is_running(p, args.daemon)
            print(f"herd-{args.daemon}: {'running, pid ' + str(pid) if pid else 'stopped'}")
            return 0 if pid else 1
        elif args.action == "start-all":
            from herd.config.facts import is_master

            start_all(p, is_master(p))
        else:
            stop_all(p)
    except RuntimeError as exc:
        print(f"herd-daemon-util: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
