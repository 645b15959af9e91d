"""Fixtures for end-to-end tests: a real one-node cluster in a network namespace."""

from __future__ import annotations

import itertools
import os
import select
import subprocess
import time
from collections.abc import Iterator

import pytest

from herd.lab.single import SingleNodeCluster, build_test_guest

_counter = itertools.count()


@pytest.fixture(scope="session")
def test_guest() -> tuple[str, str]:
    kernel, initrd = build_test_guest()
    return str(kernel), str(initrd)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory,
            test_guest: tuple[str, str]) -> Iterator[SingleNodeCluster]:
    netns = f"herdt{os.getpid()}x{next(_counter)}"
    c = SingleNodeCluster(netns, tmp_path_factory.mktemp("herd-root"))
    c.create(*map(__import__("pathlib").Path, test_guest))
    try:
        yield c
    finally:
        c.destroy()


def read_until(proc: subprocess.Popen[bytes], marker: bytes, timeout: float) -> bytes:
    """Read a process's stdout until ``marker`` appears; fail after ``timeout`` seconds."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{marker!r} not seen within {timeout} s; got:\n"
                                 f"{data.decode(errors='replace')[-2000:]}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"output ended before {marker!r}:\n"
                                     f"{data.decode(errors='replace')[-2000:]}")
            data += chunk
    return data
