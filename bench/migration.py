"""Migration of a guest with mirrored disks on a real three-node lab: total time and downtime.

Runs `gnt-instance migrate` back and forth while the test guest writes, and prints what QEMU
reports (total time, guest pause) and the wall time of the whole job (target start, memory,
mirror hand-over). Ganeti 3.0.2's recorded figure for a 2-node sharedfile migration on this
machine kind is 7.2 s. On TCG with QEMU < 9.0 Herd migrates non-live (see README), so the
pause equals the memory transfer. Run: `.venv/bin/python bench/migration.py` (as root).
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from herd.lab.cluster import lab_cluster
from herd.lab.single import build_test_guest
from tests.lab.conftest import LabCluster

GANETI_MIGRATION_S = 7.2
ROUNDS = 4


def main() -> int:
    kernel, initrd = build_test_guest()
    with lab_cluster(3) as lab:
        cluster = LabCluster(lab, kernel, initrd)
        cluster.init()
        cluster.add_node("node2")
        cluster.add_node("node3")
        cluster.gnt("gnt-instance", "add", "-t", "drbd", "-n", "node2:node3", "-o",
                    "busybox+writer", "-s", "256M", "--no-name-check", "--no-ip-check", "m1")
        time.sleep(8)  # let the guest boot and start writing
        walls, totals, pauses = [], [], []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            out = cluster.gnt("gnt-instance", "migrate", "m1").stdout
            walls.append(time.perf_counter() - start)
            found = re.search(r"Migration done in ([\d.]+) s, guest paused for (\d+) ms", out)
            if found:
                totals.append(float(found.group(1)))
                pauses.append(int(found.group(2)))
            time.sleep(2)
    print(f"{'migration of a 128 MiB guest (mirrored disk)':48} {'herd':>8} {'ganeti':>8}")
    print(f"{'job wall time, median of ' + str(ROUNDS) + ' (s)':48} "
          f"{statistics.median(walls):8.2f} {GANETI_MIGRATION_S:8.1f}")
    if totals:
        print(f"{'QEMU total time, median (s)':48} {statistics.median(totals):8.2f}")
        print(f"{'guest paused, median (ms)':48} {statistics.median(pauses):8.0f}")
    print(f"speed-up of the whole job vs Ganeti: "
          f"{GANETI_MIGRATION_S / statistics.median(walls):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
