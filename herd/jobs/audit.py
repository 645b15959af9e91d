"""Who submitted a job, from where, and one audit line when it ends.

The origin is stamped by masterd, not told by the client: masterd reads the peer's uid and pid
from its unix socket (SO_PEERCRED), and only a peer running as root or as masterd itself (the
RAPI daemon) may say that it submits on behalf of a RAPI user and address. It is stored in
Ganeti's own place for such facts, each opcode's reason trail, as ``["herd:origin", text,
timestamp_ns]``; an entry of that source given by a client is dropped first, so a trail can not
be made to lie. Ganeti keeps no such record; its reason trail holds what clients say.

The audit line (``job 42 success OP_INSTANCE_STARTUP(w1) by via=cli user=root uid=0 pid=7 in
1.20 s``) goes to masterd's ``audit.log`` and log; opcode inputs are not in it (they are in the
job, secrets redacted), the first line of an error is.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

SOURCE = "herd:origin"
#: how much of an error message an audit line carries
ERROR_CHARS = 200


@dataclasses.dataclass(frozen=True)
class Origin:
    """Where a job came from: ``via`` is cli (a local program: gnt-*, the watcher), rapi or
    local (masterd's own callers and tests, no socket peer)."""

    via: str
    user: str
    uid: int | None = None
    pid: int | None = None
    address: str | None = None

    def text(self) -> str:
        parts = [f"via={self.via}", f"user={_token(self.user)}"]
        if self.uid is not None:
            parts.append(f"uid={self.uid}")
        if self.pid is not None:
            parts.append(f"pid={self.pid}")
        if self.address:
            parts.append(f"from={_token(self.address)}")
        return " ".join(parts)


def _token(value: str) -> str:
    """A value safe in a key=value line: no blanks or controls (a RAPI user name is the
    admin's choice, an address is ours, but neither may split or forge a field)."""
    cleaned = "".join(c if c.isprintable() and not c.isspace() else "_" for c in value)
    return cleaned[:64] or "-"


def stamp(ops: list[dict[str, Any]], origin: Origin,
          now_ns: int | None = None) -> list[dict[str, Any]]:
    """The opcodes with ``origin`` as the last entry of each reason trail (entries of our
    source given by the client removed)."""
    entry = [SOURCE, origin.text(), time.time_ns() if now_ns is None else now_ns]
    out = []
    for op in ops:
        trail = op.get("reason")
        kept = [r for r in trail if not (isinstance(r, list | tuple) and r and r[0] == SOURCE)] \
            if isinstance(trail, list) else []
        out.append({**op, "reason": [*kept, entry]})
    return out


def origin_of(ops: list[dict[str, Any]]) -> str | None:
    """The origin text stamped on a job's first opcode (None: a job from before stamping)."""
    trail = ops[0].get("reason") if ops else None
    for entry in reversed(trail if isinstance(trail, list) else []):
        if isinstance(entry, list | tuple) and len(entry) >= 2 and entry[0] == SOURCE:
            return str(entry[1])
    return None


def audit_line(job: dict[str, Any]) -> str:
    """One line for a job that ended, from its ``to_dict()`` form."""
    took = ""
    if job.get("end_ts") and job.get("start_ts"):
        took = f" in {job['end_ts'] - job['start_ts']:.2f} s"
    elif job.get("end_ts") and job.get("received_ts"):
        took = f" after {job['end_ts'] - job['received_ts']:.2f} s"
    line = (f"job {job['id']} {job['status']} {','.join(job.get('summary') or []) or '-'} "
            f"by {origin_of(job.get('ops') or []) or 'unknown'}{took}")
    error = first_error(job.get("opstatus") or [], job.get("opresult") or [])
    return f"{line}: {error}" if error else line


def first_error(statuses: list[str], results: list[Any]) -> str | None:
    """The first line of the first failed opcode's result (Ganeti's encoding:
    ``[class name, [message, ...]]``)."""
    for status, result in zip(statuses, results, strict=False):
        if status not in ("error", "canceled"):
            continue
        if isinstance(result, list) and len(result) == 2 and isinstance(result[1], list):
            lines = str(result[1][0] if result[1] else "").strip().splitlines()
            return f"{result[0]}: {lines[0][:ERROR_CHARS] if lines else ''}"
        return str(result)[:ERROR_CHARS]
    return None
