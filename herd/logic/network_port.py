"""An instance's console port (Ganeti's ``network_port``), allocated cluster-wide.

Ganeti hands each KVM instance a port from the cluster's TCP/UDP port pool (the range its DRBD
ports come from, 11000-14999) and its VNC display is ``network_port - 5900``. Herd allocates
one only to an instance whose hvparams enable VNC (``vnc_bind_address`` set): at add, or when
``modify -H vnc_bind_address=...`` turns VNC on. Turning VNC off keeps the port (as Ganeti
keeps it): the running guest still listens on it until its next restart, so handing it to
another instance then would be a collision. Removing the instance frees it (a port is free
when no instance and no mirrored disk holds it). Because the
port belongs to the instance, not to a node, two guests with VNC never collide, on one node or
after a migration, and the admin's console address stays the same wherever the guest runs.

The pool is the mirror port range (``drbd_port_first``-``drbd_port_last``), shared with mirrored
disks as in Ganeti, so :func:`herd.logic.drbd.used_ports` counts network ports as well.
"""

from __future__ import annotations

from typing import Any

from herd.logic import drbd
from herd.logic.base import MasterContext
from herd.logic.specs import filled_hvparams
from herd.objects import Instance

KEEP, ALLOCATE = "keep", "allocate"


def wants_port(hvparams: dict[str, Any]) -> bool:
    """Whether an instance with these (filled) hvparams needs a console port: VNC is on."""
    return bool(hvparams.get("vnc_bind_address"))


def decide(current: int | None, wanted: bool) -> str:
    """What to do with an instance's port: allocate one it lacks and needs, else keep (a port
    once given never changes and stays with the instance until it is removed)."""
    if wanted and not current:
        return ALLOCATE
    return KEEP


def update(ctx: MasterContext, inst: Instance, owner: object) -> str:
    """Bring ``inst.network_port`` in line with its hvparams (the instance's in-memory
    object; the caller saves the config). A new port is claimed for ``owner``'s job until the
    config holds it. Returns the decision taken (for a change line)."""
    cfg = ctx.config.data
    action = decide(inst.network_port, wants_port(filled_hvparams(cfg, inst, ctx.paths)))
    if action == ALLOCATE:
        inst.network_port = drbd.allocate_ports(cfg, 1, ctx.reservations, owner)[0]
    return action
