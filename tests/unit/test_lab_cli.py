"""herd-lab's command line as a newcomer uses it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_status_piped_into_head_ends_quietly() -> None:
    """`herd-lab status | head` used to end in a BrokenPipeError traceback."""
    script = """
import sys
from herd.lab import cli

class Big:
    def status(self):
        return {f"node{i}": {"state": "running"} for i in range(20000)}

cli.Lab.load = staticmethod(lambda name: Big())
sys.exit(cli.main(["status"]))
"""
    proc = subprocess.run(f"{sys.executable} -c '{script}' | head -n 2", shell=True,
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.stdout.splitlines() == ["{", ' "node0": {'], proc.stdout[:200]
    assert proc.stderr == "", proc.stderr


def test_the_demo_prints_console_transcripts_without_terminal_controls() -> None:
    from herd.lab.demo import printable

    raw = ("\x1b[6nguest# uname -sr; hostname\r\nLinux 6.1.0\r\n\x1b]0;title\x07web1\r\n"
           "\x1b[1;32mok\x1b[0m \x1b7saved\x1b8\r\nguest# \x1b[6n")
    assert printable(raw) == "guest# uname -sr; hostname\nLinux 6.1.0\nweb1\nok saved\nguest# "
