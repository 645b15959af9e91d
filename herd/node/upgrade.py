"""The node's part of ``gnt-cluster upgrade``: point ``current`` at a version and restart this
node's daemons on it (see herd.upgrade for the layout and the procedure).

Run as ``versions/V/bin/python -m herd.node.upgrade switch V`` by the master through noded's
``run_command``: the code doing the switch is the target's, so the running noded may be of any
version. ``switch`` answers at once and leaves the restart to a process of its own session
(noded, which runs the command, is among the daemons restarted; its answer must reach the
master first). The restart stops and starts only the daemons that run here now (noded;
masterd and RAPI on the master), never the guests, storage daemons or the etcd member.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time

from herd import paths, upgrade
from herd.daemons import util as daemon_util


def switch(p: paths.HerdPaths, version: str) -> str:
    """Point ``current`` at ``version`` (atomically: a new link renamed over the old)."""
    upgrade.check_version_name(version)
    target = upgrade.versions_dir(p.root) / version
    if not (target / "bin" / "python").exists():
        raise upgrade.UpgradeRefused(f"Herd {version} is not installed here ({target})")
    link = upgrade.current_link(p.root)
    tmp = link.with_name(link.name + ".new")
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(target, link.parent), tmp)
    os.replace(tmp, link)
    return str(target)


def restart(p: paths.HerdPaths, delay: float = 0.5) -> list[str]:
    """Restart the daemons running here on the code ``current`` points at (herd.daemons.util
    starts them with that version's interpreter); noded first, masterd and RAPI after."""
    time.sleep(delay)  # let noded send the answer of the command that started us
    running = [d for d in daemon_util.DAEMONS if daemon_util.is_running(p, d)]
    for daemon in running:
        daemon_util.stop(p, daemon)
    for daemon in daemon_util.DAEMONS:
        if daemon in running or daemon == "noded":
            # NotMaster: another node took the role meanwhile, nothing to run here
            with contextlib.suppress(daemon_util.NotMaster):
                daemon_util.start(p, daemon, daemon_util.daemon_port(p, daemon))
    return running


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="herd-node-upgrade")
    sub = parser.add_subparsers(dest="action", required=True)
    sw = sub.add_parser("switch", help="run VERSION on this node (restarts its daemons)")
    sw.add_argument("version")
    sub.add_parser("restart", help="restart this node's daemons on the current version")
    args = parser.parse_args(argv)
    p = paths.current()
    try:
        if args.action == "switch":
            where = switch(p, args.version)
            p.ensure()
            log = open(p.log_dir / "upgrade.log", "ab")  # noqa: SIM115 - handed to the child
            subprocess.Popen([sys.executable, "-m", "herd.node.upgrade", "restart"],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             start_new_session=True, close_fds=True)
            log.close()
            print(f"switched to {where}; restarting this node's daemons")
        else:
            began = time.strftime("%Y-%m-%d %H:%M:%S")
            done = restart(p)
            print(f"{began} .. {time.strftime('%H:%M:%S')} restarted: "
                  f"{', '.join(done) or 'nothing was running'}", flush=True)
    except (upgrade.UpgradeRefused, RuntimeError, OSError) as exc:
        print(f"herd-node-upgrade: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
