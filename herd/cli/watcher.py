"""herd-watcher: one pass of the watcher (run it from cron or a systemd timer, on every node).

Ganeti runs ganeti-watcher every five minutes from cron; so can Herd::

    */5 * * * * root herd-watcher

Prints what it did, one line each; exit status 1 if something it tried failed.
"""

from __future__ import annotations

import argparse

from herd import paths
from herd.cli.common import run_command
from herd.watcher import watch_once


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="herd-watcher", description=__doc__.splitlines()[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    opts = parser.parse_args(argv)

    def once() -> int:
        report = watch_once(paths.current())
        if not opts.quiet:
            for line in report.lines:
                print(line)
        return 1 if report.failed else 0

    return run_command("herd-watcher", once)
