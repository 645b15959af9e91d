"""The one interface every kind of volume offers a node: :class:`BlockDevice`.

noded's RPCs (``blockdev_*``, and the older ``disks_*``/``mirror_*`` names translated to it)
call these methods and never ask what kind a device is: adding a kind (LVM now, others later)
is one class and one row in :data:`herd.storage.blockdev.factory.CLASSES`.

Contracts that callers rely on:

* ``create`` refuses to overwrite an existing volume; ``remove`` is idempotent (a retried
  removal, or one for a volume that was never made, succeeds), so rollbacks can always run it.
* ``grow`` takes a target size, so a retried grow does not grow twice.
* ``info`` is read-only: a listing or a query never changes what it looks at.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from herd.errors import StorageError
from herd.storage.blockdev.spec import DeviceSpec

MIB = 1024 * 1024
ROLES = ("primary", "secondary")


@dataclass
class DeviceInfo:
    """What a node holds for one device: whether it exists, its size in bytes (an LV is rounded
    up to whole extents), and the local path it has now (a file's path even when missing, so
    that a message names where it was looked for; an LV's device only while active)."""

    uuid: str
    kind: str
    exists: bool
    size_bytes: int | None = None
    path: str | None = None
    active: bool = False

    @property
    def size_mib(self) -> int | None:
        return None if self.size_bytes is None else self.size_bytes // MIB

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "size_mib": self.size_mib}


@dataclass
class Attached:
    """Where an assembled device is used: a block device or file path, or an NBD URI."""

    path: str


@runtime_checkable
class BlockDevice(Protocol):
    spec: DeviceSpec

    async def create(self) -> None:
        """Make the volume (refused if it exists)."""

    async def remove(self) -> None:
        """Remove the volume and everything kept for it; nothing to do if it is gone."""

    async def assemble(self, role: str = "primary", *, sync: str = "auto",
                       allow_degraded: bool = False) -> Attached:
        """Make it usable on this node (idempotent) and say where. A mirror's primary also
        takes ``sync`` (the least it copies to its peer: 'auto', 'none', 'dirty', 'full')
        and ``allow_degraded`` (start without a peer that does not answer); the other
        kinds have no peer and ignore both."""

    async def shutdown(self) -> None:
        """Undo ``assemble``; the data stays."""

    async def grow(self, size_mib: int) -> None:
        """Grow to ``size_mib`` (a target: at or below the current size changes nothing)."""

    async def undo_grow(self, size_mib: int) -> None:
        """Give back what a grow beyond ``size_mib`` added, which nothing has used yet (a
        grow-disk that failed on another node): a file is cut back, so that both copies of a
        mirror keep one length; an LV keeps its extents (its users open it at the config's
        size)."""

    async def info(self) -> DeviceInfo:
        """Exists, size, active path; read-only."""

    async def local_path(self) -> str:
        """The local volume that OS scripts and copies write (a mirror's data volume)."""

    async def vm_path(self, incoming: bool = False) -> str:
        """Where a VM on this node opens the device now; refused if it is not assembled for
        that (``incoming``: the VM receiving a live migration)."""

    async def sync_status(self) -> dict[str, Any] | None:
        """A mirror's replication state; None for kinds that do not replicate."""


class DeviceBase:
    """Defaults shared by the kinds (subclassing is optional: the factory needs only the
    :class:`BlockDevice` methods)."""

    def __init__(self, spec: DeviceSpec) -> None:
        self.spec = spec

    def check_role(self, role: str) -> None:
        if role not in ROLES:
            raise StorageError(f"invalid role {role!r} for {self.spec.describe()}")

    async def assemble(self, role: str = "primary", *, sync: str = "auto",
                       allow_degraded: bool = False) -> Attached:
        self.check_role(role)
        return Attached(await self.local_path())

    async def shutdown(self) -> None:
        return None

    async def vm_path(self, incoming: bool = False) -> str:
        return (await self.assemble()).path

    async def sync_status(self) -> dict[str, Any] | None:
        return None

    async def undo_grow(self, size_mib: int) -> None:
        return None

    async def written_offline(self) -> None:
        """A tool of this node (an OS script) wrote the local volume directly; kinds whose
        copies must then be told apart (a mirror) record it. Nothing for the others."""
        return None

    async def open_export(self) -> Any:
        """Interface only: export/backup streams come with the next issue."""
        raise StorageError(f"exporting {self.spec.describe()} is not supported yet")

    async def snapshot(self) -> Any:
        """Interface only: snapshots come with the next issue."""
        raise StorageError(f"snapshots of {self.spec.describe()} are not supported yet")

    @classmethod
    async def info_many(cls, devices: Sequence[Any]) -> list[DeviceInfo]:
        """``info`` of several devices of this kind; kinds that can answer for many at the
        cost of one (LVM: one ``lvs``) override this."""
        return [await d.info() for d in devices]
