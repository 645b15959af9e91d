"""Typed disk ids: what a disk's ``logical_id`` says, as named fields instead of list positions.

The config (and the node RPC) store a disk's id as a Ganeti-style list whose meaning depends
on the disk template ("v1"):

- ``file``: ``[driver, path]``, e.g. ``["loop", "<inst>/<disk uuid>.file.disk<i>"]``;
- ``drbd``: ``[pnode, snode, port, path]``, e.g. ``[p, s, 11000, "<inst>/<uuid>.drbd.disk<i>"]``.

Code that indexed those lists had to know each shape, and the drbd list repeated which nodes
hold the disk, a fact the disk (``Disk.nodes``) and the instance (``Instance.primary_node``)
already store. So in memory a disk holds one of the frozen ids below, parsed once when the disk
is built, and the ids carry **no nodes**: :meth:`DrbdId.to_v1` takes them from the one source
(the instance's primary and the disk's other node) when the list is written back, so the
stored form stays byte for byte what it was. A list of any other shape (a template this version
does not know, a damaged entry) is kept verbatim as a :class:`RawId`, so loading and saving
never changes what it does not understand.

Pure data: no dependency on the rest of Herd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The driver of file disks written by Herd (Ganeti's ``loop``; the node ignores it).
FILE_DRIVER = "loop"


@dataclass(frozen=True)
class FileId:
    """A file disk: ``path`` is relative to each node's file storage directory."""

    driver: str
    path: str

    def to_v1(self, primary: str | None = None, secondary: str | None = None) -> list[Any]:
        """The stored list; a file disk's id names no node."""
        return [self.driver, self.path]

    def file_path(self) -> str | None:
        """Where the data lives under a node's file storage directory."""
        return self.path

    def hook_vars(self, primary: str | None = None,
                  secondary: str | None = None) -> dict[str, Any]:
        """``INSTANCE_DISKn_*`` suffixes (Ganeti's BuildDiskLogicalIDEnv for file disks)."""
        return {"DRIVER": self.driver, "ID": self.path}

    def display(self, primary: str | None = None, secondary: str | None = None) -> str:
        """The parts joined by ``/`` (what ``gnt-instance info`` has always shown)."""
        return f"{self.driver}/{self.path}"


@dataclass(frozen=True)
class DrbdId:
    """A mirrored disk: its mirror's TCP port and the path of each node's copy (relative to
    the file storage directory, the same on both nodes). The nodes are not part of the id."""

    port: int
    path: str

    def to_v1(self, primary: str | None = None, secondary: str | None = None) -> list[Any]:
        """The stored list ``[pnode, snode, port, path]``: the nodes come from the caller
        (the instance's primary and the disk's other node), never from this object."""
        if not primary or not secondary:
            raise ValueError(f"a mirrored disk (port {self.port}) needs a primary and a "
                             f"secondary node, got {primary!r} and {secondary!r}")
        return [primary, secondary, self.port, self.path]

    def file_path(self) -> str | None:
        return self.path

    def hook_vars(self, primary: str | None = None,
                  secondary: str | None = None) -> dict[str, Any]:
        """Ganeti's names for a drbd id: the node uuids and the port (not the path)."""
        return {"PNODE": primary, "SNODE": secondary, "PORT": self.port}

    def display(self, primary: str | None = None, secondary: str | None = None) -> str:
        return f"{primary}/{secondary}/{self.port}/{self.path}"


@dataclass(frozen=True)
class RawId:
    """An id of a shape this version does not know: kept as stored, written back unchanged."""

    values: tuple[Any, ...] = ()

    def to_v1(self, primary: str | None = None, secondary: str | None = None) -> list[Any]:
        return list(self.values)

    def file_path(self) -> str | None:
        return None

    def hook_vars(self, primary: str | None = None,
                  secondary: str | None = None) -> dict[str, Any]:
        return {}

    def display(self, primary: str | None = None, secondary: str | None = None) -> str:
        return "/".join(str(v) for v in self.values)


DiskId = FileId | DrbdId | RawId
TYPED = (FileId, DrbdId, RawId)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse(dev_type: str, logical_id: Any) -> DiskId:
    """The typed id of a stored (v1) ``logical_id`` of a disk of type ``dev_type``.

    Only exact shapes become a FileId or DrbdId (so that :func:`to_v1` gives the same list
    back); anything else is a RawId. A drbd list's nodes are dropped here: the shape check of
    the config (``herd.config.shape``) makes sure they agree with the nodes stored elsewhere.
    An already typed id is returned as it is.
    """
    if isinstance(logical_id, TYPED):
        return logical_id
    values = logical_id if isinstance(logical_id, list | tuple) else ()
    if (dev_type == "file" and len(values) == 2 and isinstance(values[0], str)
            and isinstance(values[1], str)):
        return FileId(values[0], values[1])
    if (dev_type == "drbd" and len(values) == 4 and isinstance(values[0], str)
            and isinstance(values[1], str) and _is_int(values[2])
            and isinstance(values[3], str)):
        return DrbdId(values[2], values[3])
    return RawId(tuple(values))


def v1_nodes(dev_type: str, logical_id: Any) -> list[Any] | None:
    """The nodes a stored list names (drbd: ``[pnode, snode]``), None for ids naming none."""
    if dev_type == "drbd" and isinstance(logical_id, list) and len(logical_id) >= 2:
        return list(logical_id[:2])
    return None


def to_v1(disk_id: DiskId, primary: str | None = None,
          secondary: str | None = None) -> list[Any]:
    """The stored list of ``disk_id``; drbd needs the two nodes (from the one source)."""
    return disk_id.to_v1(primary, secondary)


def display(dev_type: str, logical_id: Any) -> str:
    """How ``gnt-instance info`` shows a stored id (from a query row, which has the list)."""
    nodes = v1_nodes(dev_type, logical_id) or [None, None]
    return parse(dev_type, logical_id).display(*nodes)
