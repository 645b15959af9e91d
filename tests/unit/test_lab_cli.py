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
