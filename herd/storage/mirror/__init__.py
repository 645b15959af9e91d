"""Mirrored disks (the ``drbd`` template) on QEMU's block layer: the node-local layer.

One qemu-storage-daemon per disk and node; the primary's mirrors every guest write
synchronously (write-blocking) to the secondary's over NBD on the secondary network, keeps a
dirty map while the peer is away, and generation ids decide how much a reconnect must copy
(DESIGN §7). noded drives :class:`MirrorManager`; the master decides roles with
:func:`decide_sync` on both nodes' :meth:`MirrorManager.generation`.
"""

from herd.storage.mirror.generation import SplitBrainError, decide_sync
from herd.storage.mirror.manager import MirrorManager
from herd.storage.mirror.model import MirrorDisk, MirrorStatus

__all__ = ["MirrorDisk", "MirrorManager", "MirrorStatus", "SplitBrainError", "decide_sync"]
