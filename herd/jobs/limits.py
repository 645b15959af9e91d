"""What one job may store: a bound on the size of its opcodes.

A 41.6 MB instance-create body was once accepted and stored whole in the queue; afterwards
``gnt-job info`` hung and ``/2/jobs?bulk=1`` failed for everyone, because every listing carries
every job's opcodes. Real jobs hold a few KiB (Ganeti's biggest, setting the 4096 longest tags
of an object, about half a MiB), so a job whose opcodes encode to more than
:data:`MAX_JOB_BYTES` is refused before it is queued. RAPI checks it before it submits (and
answers 413); masterd checks it where it accepts a job, for every client.
"""

from __future__ import annotations

import json
from typing import Any

from herd.errors import ParameterError

#: The most a job's opcodes may take, as compact JSON.
MAX_JOB_BYTES = 1024 * 1024


def job_size(ops: list[Any]) -> int:
    """Bytes of the opcodes as compact JSON (as the queue stores them, give or take)."""
    return len(json.dumps(ops, separators=(",", ":"), default=str).encode())


def check_job_size(ops: list[Any], limit: int | None = None) -> None:
    """Raise ParameterError when the job's opcodes are larger than ``limit`` bytes (default
    :data:`MAX_JOB_BYTES`)."""
    limit = MAX_JOB_BYTES if limit is None else limit
    size = job_size(ops)
    if size > limit:
        raise ParameterError(f"job too large: its opcodes take {size} bytes; at most {limit} "
                             f"bytes ({limit // 1024} KiB) are allowed")
