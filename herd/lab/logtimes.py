"""When something happened on a lab node, from its daemons' own log lines.

All lab nodes share this machine's clock, so a daemon's log time is the precise moment of an
event, where an observer polling with CLI commands would add its own start-up time (about a
second per look on a busy machine) to every figure. Used by the failover test and bench.
"""

from __future__ import annotations

import datetime
import re

from herd.paths import HerdPaths

#: herd.daemons.common's log format: "2026-11-30 21:08:50,123 PID LOGGER LEVEL message"
_LINE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \d+ \S+ \S+ (.*)")


def first_after(paths: HerdPaths, daemon: str, text: str, since: float) -> float | None:
    """Seconds from ``since`` (a time.time()) to the first line of ``daemon``'s log at or
    after it that contains ``text``; None if there is none (yet)."""
    try:
        lines = paths.daemon_log(daemon).read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        match = _LINE.match(line)
        if not match or text not in match.group(2):
            continue
        at = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").replace(
            tzinfo=datetime.UTC).timestamp()
        if at >= since:
            return at - since
    return None
