"""The control plane's CPU priority (herd.priority): masterd and etcd run with a higher weight
than guests and clients, on every thread, unless an administrator chose otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from herd.priority import NICE, niced_argv

REPO = Path(__file__).resolve().parents[2]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="raising a priority needs root")

#: A process with threads (as masterd and etcd have) that reports each thread's nice value.
THREADS = """
import json, os, threading
seen = []
def report():
    seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
threads = [threading.Thread(target=report) for _ in range(3)]
for t in threads: t.start()
for t in threads: t.join()
report()
print(json.dumps(seen))
"""


def _run(argv: list[str], prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*(prefix or []), *argv], capture_output=True, text=True,
                          check=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60)


def test_only_the_processes_every_job_waits_on_are_raised() -> None:
    assert NICE["masterd"] < 0 and NICE["etcd"] < 0
    # noded parents the guests' QEMU and the storage daemons: they must not inherit a raise
    assert NICE["noded"] == 0 and NICE["rapi"] == 0


@needs_root
def test_masterd_raises_itself_before_its_threads_so_all_of_them_run_raised() -> None:
    code = ("from herd.priority import raise_own\nprint(raise_own('masterd'))\n" + THREADS)
    out = _run([sys.executable, "-c", code]).stdout.splitlines()
    assert int(out[0]) == NICE["masterd"]
    assert json.loads(out[1]) == [NICE["masterd"]] * 4


@needs_root
def test_an_administrators_nice_wins_over_herds() -> None:
    code = "from herd.priority import raise_own\nprint(raise_own('masterd'))"
    assert _run([sys.executable, "-c", code], ["nice", "-n", "3"]).stdout.strip() == "3"


def test_a_daemon_left_at_the_default_is_not_touched() -> None:
    code = "from herd.priority import raise_own\nprint(raise_own('rapi'))"
    assert _run([sys.executable, "-c", code]).stdout.strip() == str(os.nice(0))


@needs_root
def test_etcd_starts_raised_on_every_thread_from_a_parent_at_the_default() -> None:
    argv = niced_argv("etcd", [sys.executable, "-c", THREADS])
    assert json.loads(_run(argv).stdout) == [NICE["etcd"]] * 4
    # exec'd, not a child: the pid noded records is the member's own
    assert argv[-3:] == [sys.executable, "-c", THREADS]


def test_etcd_under_a_niced_noded_keeps_the_administrators_value() -> None:
    code = ("import json, sys\nfrom herd.priority import niced_argv\n"
            "print(json.dumps(niced_argv('etcd', ['etcd'])))")
    assert json.loads(_run([sys.executable, "-c", code], ["nice", "-n", "2"]).stdout) \
        == ["etcd"]
