"""DeviceFactory: the one place that maps a device kind to the class that handles it.

Everything else asks the factory for a :class:`BlockDevice` and calls its methods, so no caller
branches on kinds. The classes of LVM and mirrors are imported on first use: noded at rest
should not carry QMP, netlink or LVM parsing for nodes that have none of them (it is measured,
see tests/integration/test_etcd.py's RSS check).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from herd.errors import StorageError
from herd.paths import HerdPaths
from herd.storage.blockdev.base import BlockDevice, DeviceInfo
from herd.storage.blockdev.spec import FILE, LVM, MIRROR, NONE, DeviceSpec
from herd.storage.file import FileStorage

if TYPE_CHECKING:
    from herd.storage.lvm import LvmNode
    from herd.storage.mirror.manager import MirrorManager

log = logging.getLogger(__name__)

#: kind -> (module, class): the only kind table on the node.
CLASSES: dict[str, tuple[str, str]] = {
    FILE: ("herd.storage.blockdev.file", "FileDevice"),
    LVM: ("herd.storage.blockdev.lvm", "LvmDevice"),
    MIRROR: ("herd.storage.blockdev.mirror", "MirrorDevice"),
    NONE: ("herd.storage.blockdev.none", "NoneDevice"),
}


class DeviceFactory:
    """Devices of one node (its paths, its volume groups, its mirror manager)."""

    def __init__(self, paths: HerdPaths, volume_groups: Iterable[LvmNode] = ()) -> None:
        self.paths = paths
        self.file_storage = FileStorage(paths)
        self._vgs: dict[str, LvmNode] = {}
        for node in volume_groups:
            self.add_volume_group(node)
        self._mirror: MirrorManager | None = None
        self._classes: dict[str, type[Any]] = {}
        #: Finds a VG not added yet (noded: the cluster's VG from the facts file), so that the
        #: first lvm device after a start or a ``--vg-name`` change needs no other call first;
        #: None when the VG is not this node's, StorageError when the node lacks it.
        self.resolve_vg: Callable[[str], LvmNode | None] | None = None

    # -- what the kinds need from the node ------------------------------------------------------
    def add_volume_group(self, node: LvmNode) -> None:
        """Make VG ``node.vg_name`` (on its PVs) available to lvm devices."""
        self._vgs[node.vg_name] = node

    def remove_volume_group(self, vg: str) -> None:
        """Forget VG ``vg`` (the cluster's VG changed); its LVs stay on disk."""
        self._vgs.pop(vg, None)

    def lvm_node(self, vg: str) -> LvmNode:
        if vg not in self._vgs and self.resolve_vg is not None:
            found = self.resolve_vg(vg)
            if found is not None:
                self.add_volume_group(found)
        try:
            return self._vgs[vg]
        except KeyError:
            raise StorageError(f"volume group {vg} is not configured on this node") from None

    @property
    def volume_groups(self) -> list[LvmNode]:
        return list(self._vgs.values())

    @property
    def mirror(self) -> MirrorManager:
        if self._mirror is None:
            from herd.storage.mirror.manager import MirrorManager

            self._mirror = MirrorManager(self.paths, devices=self)
        return self._mirror

    # -- devices --------------------------------------------------------------------------------
    def _class(self, kind: str) -> type[Any]:
        if kind not in self._classes:
            if kind not in CLASSES:  # DeviceSpec refuses these already; a clear error anyway
                raise StorageError(f"no device kind {kind!r} on this node")
            module, name = CLASSES[kind]
            self._classes[kind] = getattr(importlib.import_module(module), name)
        return self._classes[kind]

    def device(self, spec: DeviceSpec | dict[str, Any]) -> BlockDevice:
        if isinstance(spec, dict):
            spec = DeviceSpec.from_dict(spec)
        device: BlockDevice = self._class(spec.kind)(spec, self)
        return device

    async def create_all(self, specs: Sequence[DeviceSpec]) -> list[BlockDevice]:
        """Create every device or none: on failure, remove those already made (in reverse
        order), then raise the error. A device whose create failed cleans up after itself."""
        made: list[BlockDevice] = []
        try:
            for spec in specs:
                device = self.device(spec)
                await device.create()
                made.append(device)
        except BaseException:
            for device in reversed(made):
                try:
                    await device.remove()
                except Exception as exc:  # keep the original error; say what is left
                    log.warning(
                        "rollback could not remove %s: %s", device.spec.describe(), exc)
            raise
        return made

    async def remove_all(self, specs: Sequence[DeviceSpec]) -> None:
        """Remove every device; those that fail do not stop the others, and one error names
        them all."""
        problems = []
        for spec in specs:
            try:
                await self.device(spec).remove()
            except StorageError as exc:
                problems.append(f"{spec.describe()}: {exc.message}")
        if problems:
            raise StorageError("could not remove " + "; ".join(problems))

    async def info_many(self, specs: Sequence[DeviceSpec]) -> list[DeviceInfo]:
        """``info`` of each spec, in order, each kind asked once for all of its devices."""
        by_class: dict[type[Any], list[tuple[int, BlockDevice]]] = {}
        for i, spec in enumerate(specs):
            device = self.device(spec)
            by_class.setdefault(type(device), []).append((i, device))
        out: list[DeviceInfo | None] = [None] * len(specs)
        for cls, group in by_class.items():
            infos = await cls.info_many([d for _, d in group])
            for (i, _), info in zip(group, infos, strict=True):
                out[i] = info
        return [i for i in out if i is not None]

    # -- listing (verify's orphan check) --------------------------------------------------------
    async def list_all(self) -> dict[str, Any]:
        """Everything this node holds for disks, whoever owns it: files under the file storage
        directory (relative paths), LVs of its volume groups, running storage daemons, and
        mirror generation records kept apart from their data."""
        out = await asyncio.to_thread(self._list_local)
        lvs = []
        for node in self.volume_groups:
            for lv in await asyncio.to_thread(node.list_lvs):
                lvs.append({"vg": lv.vg_name, "lv": lv.name, "size": lv.size,
                            "tags": list(lv.tags), "active": lv.path is not None,
                            "pvs": list(lv.pvs)})
        out["lvs"] = lvs
        return out

    def _list_local(self) -> dict[str, Any]:
        base = self.file_storage.base
        files = []
        if base.is_dir():
            for dirpath, _dirs, names in os.walk(base):
                for name in names:
                    path = os.path.join(dirpath, name)
                    if os.path.isfile(path) and not os.path.islink(path):
                        files.append(os.path.relpath(path, base))
        daemons = []
        run_dir = self.paths.run_dir / "mirror"
        if run_dir.is_dir():
            from herd.storage.mirror.daemon import DaemonFiles

            for pidfile in sorted(run_dir.glob("*.pid")):
                files_of = DaemonFiles(run_dir, pidfile.stem)
                pid = files_of.pid()
                if pid is None:
                    continue
                disk = (files_of.read_runtime() or {}).get("disk") or {}
                daemons.append({"key": pidfile.stem, "pid": pid, "uuid": disk.get("uuid"),
                                "relpath": disk.get("relpath")})
        meta_dir = self.paths.data_dir / META_DIR
        meta = sorted(f"{META_DIR}/{p.name}" for p in meta_dir.glob("*.gen")) \
            if meta_dir.is_dir() else []
        return {"files": sorted(files), "mirror_daemons": daemons, "meta": meta}


#: Where generation records of mirrors over block devices live, under the data directory.
META_DIR = "mirror-meta"
