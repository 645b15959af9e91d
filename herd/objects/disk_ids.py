"""Typed disk ids: what a disk's ``logical_id`` says, as named fields instead of list positions.

The config (and the node RPC) store a disk's id as a Ganeti-style list whose meaning depends
on the disk template ("v1"):

- ``file``: ``[driver, path]``, e.g. ``["loop", "<inst>/<disk uuid>.file.disk<i>"]``;
- ``plain``: ``[vg, lv]`` (Ganeti's), e.g. ``["herdvg", "<disk uuid>_plain"]``;
- ``drbd``: ``[pnode, snode, port, path]``, e.g. ``[p, s, 11000, "<inst>/<uuid>.drbd.disk<i>"]``,
  or, for a mirror whose data is an LV of each node, ``[pnode, snode, port, [vg, lv], meta]``
  (``meta``: where each node keeps the generation record, under its data directory).

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
class LvId:
    """An LVM logical volume: ``lv`` in volume group ``vg``, the same names on every node
    that holds a copy (each node has its own VG of that name)."""

    vg: str
    lv: str

    def to_v1(self, primary: str | None = None, secondary: str | None = None) -> list[Any]:
        """Ganeti's plain ``logical_id``: ``[vg, lv]``; it names no node."""
        return [self.vg, self.lv]

    def file_path(self) -> str | None:
        return None  # an LV is no file under the file storage directory

    def hook_vars(self, primary: str | None = None,
                  secondary: str | None = None) -> dict[str, Any]:
        """Ganeti's names for a plain disk: the VG and the LV."""
        return {"VG": self.vg, "ID": self.lv}

    def display(self, primary: str | None = None, secondary: str | None = None) -> str:
        return f"{self.vg}/{self.lv}"


@dataclass(frozen=True)
class DrbdId:
    """A mirrored disk: its mirror's TCP port and where each node keeps its copy, the same on
    both nodes: a file (``path``, relative to the file storage directory; the generation
    record beside it) or, when ``data`` is set, an LV (the record at ``meta``, relative to
    the data directory, since an LV has no sibling file). The nodes are not part of the id."""

    port: int
    path: str = ""
    data: LvId | None = None
    meta: str | None = None

    def __post_init__(self) -> None:
        if (self.data is None) == (not self.path) or (self.data is not None and not self.meta):
            raise ValueError(f"a mirrored disk (port {self.port}) keeps its data in a file "
                             f"(path) or an LV with a generation record (data and meta), got "
                             f"path={self.path!r} data={self.data!r} meta={self.meta!r}")

    def to_v1(self, primary: str | None = None, secondary: str | None = None) -> list[Any]:
        """The stored list ``[pnode, snode, port, path]`` (``[pnode, snode, port, [vg, lv],
        meta]`` over an LV): the nodes come from the caller (the instance's primary and the
        disk's other node), never from this object."""
        if not primary or not secondary:
            raise ValueError(f"a mirrored disk (port {self.port}) needs a primary and a "
                             f"secondary node, got {primary!r} and {secondary!r}")
        if self.data is not None:
            return [primary, secondary, self.port, self.data.to_v1(), self.meta]
        return [primary, secondary, self.port, self.path]

    def file_path(self) -> str | None:
        return self.path if self.data is None else None

    def hook_vars(self, primary: str | None = None,
                  secondary: str | None = None) -> dict[str, Any]:
        """Ganeti's names for a drbd id: the node uuids and the port (not the path), and
        over an LV its VG and name (Ganeti's DATA_VG/DATA_ID; the record is no LV here)."""
        out: dict[str, Any] = {"PNODE": primary, "SNODE": secondary, "PORT": self.port}
        if self.data is not None:
            out.update(DATA_VG=self.data.vg, DATA_ID=self.data.lv)
        return out

    def display(self, primary: str | None = None, secondary: str | None = None) -> str:
        where = self.data.display() if self.data is not None else self.path
        return f"{primary}/{secondary}/{self.port}/{where}"


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


DiskId = FileId | LvId | DrbdId | RawId
TYPED = (FileId, LvId, DrbdId, RawId)


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
    if dev_type == "plain" and _is_lv(values):
        return LvId(values[0], values[1])
    nodes_port = (len(values) >= 4 and isinstance(values[0], str)
                  and isinstance(values[1], str) and _is_int(values[2]))
    if dev_type == "drbd" and nodes_port and len(values) == 4 and isinstance(values[3], str) \
            and values[3]:
        return DrbdId(values[2], values[3])
    if dev_type == "drbd" and nodes_port and len(values) == 5 and _is_lv(values[3]) \
            and isinstance(values[4], str) and values[4]:
        return DrbdId(values[2], data=LvId(values[3][0], values[3][1]), meta=values[4])
    return RawId(tuple(values))


def _is_lv(values: Any) -> bool:
    return (isinstance(values, list | tuple) and len(values) == 2
            and all(isinstance(v, str) and v for v in values))


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
