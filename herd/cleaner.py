"""herd-cleaner's work: what a node keeps that nobody needs any more.

Run daily on every node (herd-cleaner.timer, as Ganeti's ganeti-cleaner from cron):
- a join token that expired (a node that never joined, or joined long ago): the secret is
  useless by then, but a secret on disk that nobody needs is one too many;
- what OS scripts printed (``log/os/*.log``) after ``OS_LOG_DAYS``;
- on the master, archived jobs after ``ARCHIVE_DAYS`` (they were archived by the watcher
  six hours after they ended; the archive is this node's only, etcd holds none of it).

What to remove is decided by pure functions (``expired_token``, ``old_files``) so that the
rules have tests without a clock.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from herd.paths import HerdPaths
from herd.rpc.join import read_token

OS_LOG_DAYS = 14
ARCHIVE_DAYS = 21
DAY = 86400.0


@dataclasses.dataclass
class CleanReport:
    removed: list[str] = dataclasses.field(default_factory=list)
    purged_jobs: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)


def expired_token(token_path: Path, now: float) -> bool:
    token = read_token(token_path)
    return token is not None and now >= token.expires


def old_files(directory: Path, pattern: str, now: float, max_age: float) -> list[Path]:
    """Regular files matching ``pattern`` last written more than ``max_age`` seconds ago."""
    if not directory.is_dir():
        return []
    out = []
    for path in sorted(directory.glob(pattern)):
        try:
            st = path.lstat()
        except OSError:
            continue
        if path.is_file() and not path.is_symlink() and now - st.st_mtime > max_age:
            out.append(path)
    return out


def clean(p: HerdPaths, now: float | None = None,
          master_call: Callable[..., Any] | None = None,
          os_log_days: float = OS_LOG_DAYS, archive_days: float = ARCHIVE_DAYS) -> CleanReport:
    """Remove what the rules select; ``master_call(method, **args)`` reaches masterd when
    this node is the master (None: it is not, or it does not answer)."""
    now = time.time() if now is None else now
    report = CleanReport()
    token = p.data_dir / "join-token"
    victims = [token] if expired_token(token, now) else []
    victims += old_files(p.os_log_dir, "*.log", now, os_log_days * DAY)
    for path in victims:
        try:
            path.unlink()
            report.removed.append(str(path))
        except FileNotFoundError:
            pass
        except OSError as exc:
            report.problems.append(f"cannot remove {path}: {exc.strerror}")
    if master_call is not None:
        report.purged_jobs = int(master_call("purge_archive", age=archive_days * DAY))
    return report
