"""What masterd counts about the jobs it ran, for ``/metrics`` (herd.rapi.metrics).

Plain counters and fixed-bucket histograms kept in memory, not prometheus_client objects:
masterd stays small (that library costs several MiB and is imported only by herd-rapi when
somebody scrapes). The counts start at zero with each masterd, as Prometheus counters may (a
master failover is a counter reset to Prometheus' rate()). Ganeti's exporter reports one
gauge per job id instead, which grows without bound; histograms by opcode do not.
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Any

#: seconds: from an instant query to a long migration or a full resync
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)


@dataclasses.dataclass
class Histogram:
    """Cumulative buckets as Prometheus wants them (``le`` = upper bound)."""

    counts: list[int] = dataclasses.field(default_factory=lambda: [0] * len(BUCKETS))
    total: int = 0
    sum: float = 0.0

    def observe(self, value: float) -> None:
        value = max(0.0, value)
        index = bisect.bisect_left(BUCKETS, value)
        if index < len(BUCKETS):
            self.counts[index] += 1
        self.total += 1
        self.sum += value

    def to_dict(self) -> dict[str, Any]:
        cumulative, running = [], 0
        for bound, count in zip(BUCKETS, self.counts, strict=True):
            running += count
            cumulative.append([bound, running])
        return {"buckets": cumulative, "count": self.total, "sum": self.sum}


class JobStats:
    """Finished jobs by opcode and status, how long they ran and waited."""

    def __init__(self) -> None:
        self.finished: dict[tuple[str, str], int] = {}
        self.run_seconds: dict[str, Histogram] = {}
        self.wait_seconds: dict[str, Histogram] = {}

    def job_done(self, job: dict[str, Any]) -> None:
        """Count a job that reached a final state (its ``to_dict()`` form)."""
        ops = job.get("ops") or []
        opcode = str(ops[0].get("OP_ID", "unknown")) if ops else "unknown"
        key = (opcode, str(job.get("status")))
        self.finished[key] = self.finished.get(key, 0) + 1
        start, end, received = job.get("start_ts"), job.get("end_ts"), job.get("received_ts")
        if start is not None and end is not None:
            self.run_seconds.setdefault(opcode, Histogram()).observe(end - start)
        if start is not None and received is not None:
            self.wait_seconds.setdefault(opcode, Histogram()).observe(start - received)

    def to_dict(self) -> dict[str, Any]:
        return {
            "finished": [[op, status, n] for (op, status), n in sorted(self.finished.items())],
            "run_seconds": {op: h.to_dict() for op, h in sorted(self.run_seconds.items())},
            "wait_seconds": {op: h.to_dict() for op, h in sorted(self.wait_seconds.items())},
        }
