"""Waiting for a condition in tests: poll until it holds, fail with what was awaited.

Tests wait for conditions, never for fixed times, so that they pass on a busy machine and stay
fast on a quiet one; this is the one helper they share for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(what: str, condition: Callable[[], T], timeout: float = 60.0,
               interval: float = 0.05) -> T:
    """Return the first truthy value of ``condition()``; AssertionError naming ``what`` if
    none came within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {timeout} s")
        time.sleep(interval)
