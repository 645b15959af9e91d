"""Node-side block devices: one interface for every kind of volume a disk can have.

:class:`DeviceSpec` is what the master sends (JSON-safe); :class:`DeviceFactory` turns it into a
:class:`BlockDevice` (file, lvm, mirror, none) whose methods noded's ``blockdev_*`` RPCs call.
Only the spec, the interface and the factory are imported here: the LVM and mirror kinds load
on first use (noded's memory at rest).
"""

from herd.storage.blockdev.base import Attached, BlockDevice, DeviceInfo
from herd.storage.blockdev.factory import DeviceFactory
from herd.storage.blockdev.spec import KINDS, DeviceSpec

__all__ = ["KINDS", "Attached", "BlockDevice", "DeviceFactory", "DeviceInfo", "DeviceSpec"]
