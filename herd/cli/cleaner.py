"""herd-cleaner: remove expired join tokens, old OS logs and, on the master, old archived jobs.

Run daily on every node (the package's herd-cleaner.timer; or from cron as Ganeti's
ganeti-cleaner). Prints what it removed, one line each; exit status 1 if something failed.
"""

from __future__ import annotations

import argparse

from herd import paths
from herd.cleaner import ARCHIVE_DAYS, OS_LOG_DAYS, clean
from herd.cli.client import MasterClient
from herd.cli.common import run_command
from herd.config.facts import is_master


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="herd-cleaner", description=__doc__.splitlines()[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    parser.add_argument("--os-log-days", type=float, default=OS_LOG_DAYS,
                        help=f"keep OS script logs this many days (default {OS_LOG_DAYS})")
    parser.add_argument("--archive-days", type=float, default=ARCHIVE_DAYS,
                        help=f"keep archived jobs this many days (default {ARCHIVE_DAYS})")
    opts = parser.parse_args(argv)
    for name in ("os_log_days", "archive_days"):
        if getattr(opts, name) < 0:
            parser.error(f"invalid --{name.replace('_', '-')} {getattr(opts, name):g}: "
                         "expected 0 or more days")

    def once() -> int:
        p = paths.current()
        if is_master(p):
            with MasterClient(p) as client:
                report = clean(p, master_call=client.call, os_log_days=opts.os_log_days,
                               archive_days=opts.archive_days)
        else:
            report = clean(p, os_log_days=opts.os_log_days, archive_days=opts.archive_days)
        if not opts.quiet:
            for path in report.removed:
                print(f"removed {path}")
            if report.purged_jobs:
                print(f"purged {report.purged_jobs} archived jobs")
        for problem in report.problems:
            print(f"herd-cleaner: {problem}")
        return 1 if report.problems else 0

    return run_command("herd-cleaner", once)
