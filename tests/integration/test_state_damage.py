"""A real one-node cluster whose state directory (config, job queue) lives on a small tmpfs
mounted for this module: a full filesystem makes submits fail with one line and leaves no job
to run later; a damaged queue or config stops masterd at start with one line and the way out.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd.jobs import queue as q
from herd.lab.single import SingleNodeCluster

pytestmark = pytest.mark.slow

SIZE_MIB = 24  # more than the queue's reserve (8 MiB) plus what the cluster keeps there
_counter = itertools.count()


def mount_tmpfs(path: Path, size_mib: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0755",
                    "herd-test-state", str(path)], check=True)


def unmount(path: Path) -> None:
    proc = subprocess.run(["umount", str(path)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:  # something still holds a file open: detach it anyway
        subprocess.run(["umount", "-l", str(path)], check=True)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory,
          test_guest: tuple[str, str]) -> Iterator[SingleNodeCluster]:
    root = tmp_path_factory.mktemp("herd-root")
    cluster = SingleNodeCluster(f"herds{os.getpid()}x{next(_counter)}", root)
    data_dir = cluster.paths.data_dir
    mount_tmpfs(data_dir, SIZE_MIB)
    try:
        cluster.create(Path(test_guest[0]), Path(test_guest[1]))  # destroys itself on failure
        try:
            yield cluster
        finally:
            cluster.destroy()
    finally:
        unmount(data_dir)


def one_line(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def job_ids(cluster: SingleNodeCluster) -> list[int]:
    out = cluster.run("gnt-job", "list", "--no-headers", "-o", "id").stdout
    return [int(line) for line in out.split()]


def maxmem(cluster: SingleNodeCluster) -> object:
    return cluster.config()["cluster"]["beparams"]["maxmem"]


def fill(path: Path) -> None:
    """Write ``path`` until the filesystem has no room left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    block = b"\0" * (1 << 20)
    try:
        while True:
            try:
                os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(block) == 1:
                    return
                block = block[: len(block) // 2]
    finally:
        os.close(fd)


def restart_masterd(cluster: SingleNodeCluster) -> subprocess.CompletedProcess[str]:
    cluster.run("herd-daemon-util", "stop", "masterd")
    return cluster.run("herd-daemon-util", "start", "masterd", check=False)


def test_state_files_are_private(small: SingleNodeCluster) -> None:
    small.run("gnt-debug", "delay", "0")
    imported = small.paths.config_file.with_name("config.data.pre-etcd")
    assert imported.exists()  # the first masterd moved config.data into etcd
    for path in (imported, *q.queue_files(small.paths.queue_db)):
        if path.exists():
            assert path.stat().st_mode & 0o777 == 0o600, path
    assert small.paths.etcd_dir.stat().st_mode & 0o777 == 0o700


def test_full_filesystem_fails_submits_cleanly_and_nothing_runs_later(
        small: SingleNodeCluster) -> None:
    before_ids, before_maxmem = job_ids(small), maxmem(small)
    filler = small.paths.data_dir / "filler"
    fill(filler)
    try:
        for value in ("301M", "302M", "303M", "304M"):  # as in the report: four attempts
            proc = small.run("gnt-cluster", "modify", "-B", f"maxmem={value}", check=False)
            one_line(proc, f"job queue {small.paths.queue_db}", "full")
        proc = small.run("gnt-cluster", "modify", "--submit", "-B", "maxmem=305M", check=False)
        one_line(proc, "queue.db", "full")
        assert "JobID" not in proc.stdout
        assert job_ids(small) == before_ids
    finally:
        filler.unlink()
    # room again, and a restarted masterd: no job of those commands exists or runs
    started = restart_masterd(small)
    assert started.returncode == 0, started.stderr
    small.run("gnt-debug", "delay", "0")  # the queue works, and every earlier job is final
    after = job_ids(small)
    assert after[:-1] == before_ids and len(after) == len(before_ids) + 1
    deadline = time.monotonic() + 10
    while maxmem(small) != before_maxmem and time.monotonic() < deadline:
        time.sleep(0.1)  # (a job that slipped through would change it now)
    assert maxmem(small) == before_maxmem


def corrupt_a_page(path: Path) -> None:
    pages = path.stat().st_size // 4096
    with open(path, "r+b") as fh:
        fh.seek(4096 * (pages // 2))
        fh.write(b"\xa5" * 512)


def follow_the_way_out(cluster: SingleNodeCluster, line: str) -> None:
    command = q.way_out_command(line)
    assert command, line
    subprocess.run(["sh", "-c", command], check=True)
    started = cluster.run("herd-daemon-util", "start", "masterd", check=False)
    assert started.returncode == 0, started.stderr
    cluster.run("gnt-debug", "delay", "0")


def test_corrupted_queue_page_stops_masterd_with_the_way_out(small: SingleNodeCluster) -> None:
    for _ in range(20):  # enough jobs for a queue of several pages
        small.run("gnt-debug", "delay", "0", "--submit")
    small.run("herd-daemon-util", "stop", "masterd")  # a clean stop checkpoints the WAL
    queue_db = small.paths.queue_db
    assert not queue_db.with_name("queue.db-wal").exists()
    corrupt_a_page(queue_db)
    proc = small.run("herd-daemon-util", "start", "masterd", check=False)
    line = one_line(proc, f"job queue {queue_db} is damaged", "mkdir queue-damaged-")
    assert small.daemon_pid("masterd") is None
    follow_the_way_out(small, line)


def test_truncated_queue_stops_masterd_with_the_way_out(small: SingleNodeCluster) -> None:
    small.run("gnt-debug", "delay", "0")
    small.run("herd-daemon-util", "stop", "masterd")
    os.truncate(small.paths.queue_db, 0)
    proc = small.run("herd-daemon-util", "start", "masterd", check=False)
    line = one_line(proc, "is damaged", "zero length")
    assert small.daemon_pid("masterd") is None
    follow_the_way_out(small, line)
    assert len(job_ids(small)) == 1  # a new, empty history (the old one is set aside)


ETCD_PUT = """
import asyncio, sys
from herd import paths
from herd.config.facts import node_name, read_facts
from herd.etcd.client import EtcdClient
from herd.etcd.members import client_urls_from_facts
p = paths.current()
async def main():
    urls = client_urls_from_facts(read_facts(p), node_name(p))
    async with EtcdClient.for_node(p, urls) as c:
        await c.put(sys.argv[1], sys.argv[2])
asyncio.run(main())
"""


def test_config_of_the_wrong_shape_stops_masterd(small: SingleNodeCluster) -> None:
    config = small.config()
    node_uuid = next(iter(config["nodes"]))
    key = f"/herd/config/nodes/{node_uuid}"
    good = json.dumps(config["nodes"][node_uuid])
    small.run("herd-daemon-util", "stop", "masterd")
    try:
        small.run(sys.executable, "-c", ETCD_PUT, key, json.dumps(["not", "a", "node"]))
        proc = small.run("herd-daemon-util", "start", "masterd", check=False)
        one_line(proc, "configuration in etcd is damaged", f"nodes[{node_uuid}] is list",
                 "gnt-debug dump-config")
        assert small.daemon_pid("masterd") is None
    finally:
        small.run(sys.executable, "-c", ETCD_PUT, key, good)
    started = small.run("herd-daemon-util", "start", "masterd", check=False)
    assert started.returncode == 0, started.stderr
