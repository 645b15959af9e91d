"""Mirrored disks (the ``drbd`` template) on QEMU's block layer: the node-local layer.

One qemu-storage-daemon per disk and node; the primary's mirrors every guest write
synchronously (write-blocking) to the secondary's over NBD on the secondary network, keeps a
dirty map while the peer is away, and generation ids decide how much a reconnect must copy
(DESIGN §7). noded drives :class:`MirrorManager`; the master decides roles with
:func:`decide_sync` on both nodes' :meth:`MirrorManager.generation`.

The names below are imported on first use: noded's link watchdog needs only the small
``daemon`` and ``watchdog`` modules at start, not QMP and netlink (~9 MiB of noded's memory).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from herd.storage.mirror.generation import SplitBrainError, decide_sync
    from herd.storage.mirror.manager import MirrorManager
    from herd.storage.mirror.model import MirrorDisk, MirrorStatus

_WHERE = {"SplitBrainError": "generation", "decide_sync": "generation",
          "MirrorManager": "manager", "MirrorDisk": "model", "MirrorStatus": "model"}

__all__ = ["MirrorDisk", "MirrorManager", "MirrorStatus", "SplitBrainError", "decide_sync"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
