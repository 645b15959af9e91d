"""The load test of bench/rapi_load.py, short: concurrent bulk instance listings on a cluster
of fake-hypervisor instances, from a second process over loopback, with no error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench/rapi_load.py"


def test_concurrent_bulk_listing_without_errors() -> None:
    proc = subprocess.run([sys.executable, str(BENCH), "--instances", "60", "--duration", "5",
                           "--concurrency", "8", "--json"], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["errors"] == 0 and result["requests"] > 10, result
    assert result["p99_ms"] > 0
