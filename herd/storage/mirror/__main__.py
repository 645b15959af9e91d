"""``python -m herd.storage.mirror OP DISK_JSON [ARG]``: one MirrorManager call, JSON out.

For tests, benchmarks and debugging inside a node (its namespace and HERD_ROOT), where noded
is not involved. OP: create remove generation start-secondary start-primary [SYNC [degraded|-]
[SERVED_JSON]] served reconnect status wait-sync stop list-active sync-record mark-synced
[GEN_JSON [EXPORT]] observe, and watch (the
supervisor: link watchdog and observation of this node's primaries, until interrupted).
DISK_JSON is a MirrorDisk dict or the DeviceSpec (kind mirror) a master sends. Errors: JSON
``{"error": {...}}`` and exit status 1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

from herd import paths
from herd.errors import HerdError
from herd.storage.mirror import MirrorDisk, MirrorManager


async def run(op: str, disk: MirrorDisk | None, args: list[str]) -> Any:
    mgr = MirrorManager(paths.current())
    # no cluster facts to name the VG here: any VG on this node's own devices will do
    mgr.devices.resolve_vg = lambda vg: _vg(mgr.paths, vg)
    if op == "list-active":
        return await mgr.list_active()
    if op == "watch":
        from herd.storage.mirror.watchdog import LinkWatchdog

        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        await LinkWatchdog(mgr.run_dir,
                           observer=lambda d: mgr.observe(MirrorDisk.from_dict(d))).run()
    assert disk is not None
    if op == "create":
        return await mgr.create(disk)
    if op == "remove":
        return await mgr.remove(disk)
    if op == "generation":
        return mgr.generation(disk)
    if op == "mark-synced":
        return await mgr.mark_synced(disk, json.loads(args[0]), args[1] if len(args) > 1 else None)
    if op == "sync-record":
        return await mgr.sync_record(disk)
    if op == "observe":
        return str(await mgr.observe(disk))
    if op == "start-secondary":
        return await mgr.start_secondary(disk)
    if op == "served":
        return mgr.served(disk)
    if op == "start-primary":  # SYNC [degraded|-] [SERVED_JSON: the peer's 'served']
        degraded = len(args) > 1 and args[1] == "degraded"
        hint = json.loads(args[2]) if len(args) > 2 else None
        return (await mgr.start_primary(disk, args[0] if args else "auto",
                                        allow_degraded=degraded,
                                        peer_served=hint)).to_dict()
    if op == "reconnect":
        return (await mgr.reconnect(disk)).to_dict()
    if op == "status":
        return (await mgr.status(disk)).to_dict()
    if op == "wait-sync":
        return (await mgr.wait_sync(disk, float(args[0]) if args else 60.0)).to_dict()
    if op == "stop":
        return await mgr.stop(disk)
    raise SystemExit(f"unknown operation {op!r}")


def _vg(where: paths.HerdPaths, vg: str) -> Any:
    from herd.storage import node_vg

    return node_vg.lvm_node_for(where, vg)


def parse_disk(data: dict[str, Any]) -> MirrorDisk:
    """A MirrorDisk dict, or a DeviceSpec of kind mirror as the master sends it
    (``herd.logic.drbd.mirror_disk``)."""
    if "kind" in data:
        from herd.storage.blockdev.mirror import to_mirror_disk
        from herd.storage.blockdev.spec import DeviceSpec

        return to_mirror_disk(DeviceSpec.from_dict(data))
    return MirrorDisk.from_dict(data)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    op = argv[0]
    disk = parse_disk(json.loads(argv[1])) if len(argv) > 1 and op != "watch" else None
    try:
        result = asyncio.run(run(op, disk, argv[2:]))
    except HerdError as exc:
        print(json.dumps({"error": exc.to_dict()}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
