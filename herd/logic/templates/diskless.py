"""The ``diskless`` template: an instance without disks (network boot, tests).

Every action of :class:`~herd.logic.templates.base.DiskTemplate` already does nothing for a
template without volumes; only its name and capabilities are set here.
"""

from __future__ import annotations

from herd.logic.templates.base import DiskTemplate


class DisklessTemplate(DiskTemplate):
    name = "diskless"
    copies = 0
