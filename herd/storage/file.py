"""The ``file`` disk template: raw files in the node's file storage directory.

The config records a path relative to that directory, so that nodes whose HERD_ROOT differs (the
lab runs several on one machine) agree on a disk's identity; each node resolves it under its own
root. Files are created sparse: space is allocated by the guest's writes, as with Ganeti's
file disks.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath

from herd.errors import StorageError
from herd.paths import HerdPaths


def volume_name(disk_uuid: str, template: str) -> str:
    """The file of a new disk: named by the disk's uuid and template, never by its instance
    or index, so that renaming an instance or removing another disk moves nothing. The
    template is in the name because a conversion keeps both volumes of one disk for a while.
    Disks made before keep the path the config stores (``<instance>/<uuid>.file.disk<i>``)."""
    return f"{disk_uuid}.{template}"


class FileStorage:
    def __init__(self, paths: HerdPaths) -> None:
        self.base = paths.file_storage_dir

    def path_for(self, relpath: str) -> Path:
        rel = PurePosixPath(relpath)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise StorageError(f"invalid file disk path '{relpath}': must be relative, "
                               "inside the file storage directory")
        return self.base / rel

    def create(self, relpath: str, size_mib: int) -> Path:
        path = self.path_for(relpath)
        if path.exists():
            raise StorageError(f"disk file {path} already exists; refusing to overwrite it")
        free = self.free_mib()
        if size_mib > free:
            raise StorageError(f"not enough space for a {size_mib} MiB disk in {self.base}: "
                               f"{free} MiB free")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "xb") as handle:
            handle.truncate(size_mib * 1024 * 1024)
            os.fsync(handle.fileno())
        return path

    def remove(self, relpath: str) -> None:
        path = self.path_for(relpath)
        path.unlink(missing_ok=True)
        parent = path.parent
        if parent != self.base and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()

    def size_mib(self, relpath: str) -> int | None:
        path = self.path_for(relpath)
        try:
            return path.stat().st_size // (1024 * 1024)
        except FileNotFoundError:
            return None

    def total_mib(self) -> int:
        self.base.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.base).total // (1024 * 1024)

    def free_mib(self) -> int:
        self.base.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.base).free // (1024 * 1024)
