"""Whether systemd runs this node: one rule for the daemons' units (herd.daemons.util) and the
guests' and storage daemons' scopes (herd.daemonize). Imports nothing heavy: every gnt-*
command loads it."""

from __future__ import annotations

from pathlib import Path

#: sd_booted(3): this directory exists only when systemd is the init system
SYSTEMD_RUNTIME = Path("/run/systemd/system")


def systemd_manages(root: Path, runtime: Path = SYSTEMD_RUNTIME) -> bool:
    """Whether systemd runs this node: it is the init system, and ``root`` is the node's real
    root. Lab nodes (HERD_ROOT elsewhere) share the host's systemd and must never start or
    create units in it."""
    return root == Path("/") and runtime.is_dir()
