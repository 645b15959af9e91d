"""gnt-cluster verify on a real three-node cluster with mirrored disks: the volumes and storage
daemons of instances are known, a mirrored disk made behind Herd's back (backing file,
generation file and a running qemu-storage-daemon) is reported as unknown, and nothing is
removed by verify."""

from __future__ import annotations

import json

import pytest

from tests.lab.conftest import LabCluster

pytestmark = pytest.mark.slow

ROGUE = {"uuid": "0000rogue", "index": 0, "size": 16, "relpath": "rogue/0000rogue.drbd.disk0",
         "port": 11999, "local_ip": "203.0.113.3", "peer_ip": "203.0.113.2"}


def mirror_manager_call(lab: LabCluster, node: str, calls: str) -> None:
    """Run MirrorManager methods on ``node`` directly, as an admin's script would."""
    script = (
        "import asyncio, json\n"
        "from herd import paths\n"
        "from herd.storage.mirror import MirrorDisk, MirrorManager\n"
        f"disk = MirrorDisk.from_dict(json.loads({json.dumps(json.dumps(ROGUE))}))\n"
        "m = MirrorManager(paths.current())\n"
        f"async def main():\n" + "".join(f"    await m.{c}(disk)\n" for c in calls.split())
        + "asyncio.run(main())\n")
    lab.lab.run(node, "python3", "-c", script)


def unknown_lines(lab: LabCluster) -> list[str]:
    out = lab.gnt("gnt-cluster", "verify", check=False).stdout
    return [line.strip() for line in out.splitlines() if "is unknown" in line]


def test_verify_knows_mirrors_and_reports_a_rogue_one(lab3: LabCluster) -> None:
    lab = lab3
    lab.init()
    lab.add_node("node2")
    lab.add_node("node3")
    lab.gnt("gnt-instance", "add", "-t", "drbd", "-n", "node2.example.com:node3.example.com",
            "-o", "busybox+default", "-s", "64M", "--no-name-check", "--no-ip-check",
            "--no-start", "m1")
    lab.gnt("gnt-instance", "activate-disks", "m1")  # storage daemons run on both nodes
    assert unknown_lines(lab) == []
    mirror_manager_call(lab, "node3", "create start_secondary")
    node3 = lab.lab.node("node3").paths
    made = [node3.file_storage_dir / ROGUE["relpath"],
            node3.file_storage_dir / (ROGUE["relpath"] + ".gen")]
    try:
        lines = unknown_lines(lab)
        assert len(lines) == 3, lines
        text = "\n".join(lines)
        for rel in ("rogue/0000rogue.drbd.disk0", "rogue/0000rogue.drbd.disk0.gen"):
            assert f"WARNING: node node3.example.com: volume {rel} is unknown (a disk file " \
                   "no instance owns)" in text, text
        assert "WARNING: node node3.example.com: storage daemon of mirrored disk 0000rogue " \
               "(rogue/0000rogue.drbd.disk0, pid " in text, text
        assert all(p.exists() for p in made), "verify removed something"
    finally:
        mirror_manager_call(lab, "node3", "remove")
    assert unknown_lines(lab) == []
    lab.gnt("gnt-instance", "remove", "m1")
