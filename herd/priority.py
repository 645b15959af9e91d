"""CPU priority of the cluster's control plane: masterd and the etcd member before guests and
clients.

A master node is an ordinary node: its guests' QEMU processes, ``gnt-*`` commands, RAPI
clients and the web manager all compete with masterd and etcd for the same cores. Under the
kernel's fair scheduler each runnable process gets an equal share, so four clients listing
20,000 instances in a loop on a two-core master doubled a trivial job's latency, and a busy
guest delays etcd's heartbeats (etcd's own tuning advice, and distributions' etcd units, raise
its priority for that reason). Herd gives the two processes every job waits on a higher weight
(a lower ``nice``): they still cannot starve anything — a nice difference of 5 is about a
threefold weight, not a real-time class — but a job's own work is no longer split evenly with
whatever else is runnable. noded keeps the default: it is the parent of guests' QEMU and of the
storage daemons, which must not inherit a raised priority, and herd-rapi serves clients, whose
requests reach masterd anyway.

An administrator's choice wins: a daemon already started with a non-default nice (systemd's
``Nice=``, ``nice -n``) keeps it, and so does an etcd member when noded runs niced. Raising a
priority needs CAP_SYS_NICE (root); without it the daemon says so once and runs as it is.
"""

from __future__ import annotations

import logging
import os
import shutil

log = logging.getLogger(__name__)

#: Nice value of each process Herd starts (0: the default, left alone). Lower is more CPU.
NICE: dict[str, int] = {"masterd": -5, "etcd": -10, "noded": 0, "rapi": 0}


def raise_own(daemon: str) -> int:
    """Give the calling daemon its :data:`NICE` value and return the nice it runs at.

    Call it first in ``main``, before any thread exists: Linux keeps a nice value per thread
    and new threads copy their creator's, so a value set later would leave earlier threads
    (asyncio's executors, job threads) behind."""
    wanted = NICE.get(daemon, 0)
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if wanted == 0 or current != 0:
        return current
    try:
        os.setpriority(os.PRIO_PROCESS, 0, wanted)
    except OSError as exc:
        log.warning("herd-%s runs at nice %d, not %d: %s", daemon, current, wanted,
                    exc.strerror)
        return current
    return wanted


def niced_argv(program: str, argv: list[str]) -> list[str]:
    """``argv`` started at ``program``'s :data:`NICE` value, through coreutils' ``nice``.

    For programs with threads of their own (etcd is written in Go, whose runtime starts
    threads before any of its code runs): the value must be set before ``exec``, and a
    ``preexec_fn`` in a threaded parent is unsafe. ``nice -n`` adds to the parent's value, so
    it is asked for the difference; a parent already niced by its administrator passes its
    own value on unchanged."""
    wanted = NICE.get(program, 0)
    nice = shutil.which("nice")
    if wanted == 0 or nice is None or os.getpriority(os.PRIO_PROCESS, 0) != 0:
        return argv
    return [nice, "-n", str(wanted), *argv]
