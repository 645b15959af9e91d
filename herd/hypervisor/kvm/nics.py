"""Set up and tear down the host side of an instance's NICs (one tap per NIC).

Kept apart from the Kvm class so the mode dispatch (bridged / routed / unsupported) is in one
place and runs in a worker thread: pyroute2's netlink calls are synchronous.
"""

from __future__ import annotations

import asyncio
import logging

from herd.errors import HerdError, ParameterError
from herd.hypervisor.base import NicSpec
from herd.network import routed, tap
from herd.network.mac import normalize_mac

log = logging.getLogger(__name__)

SUPPORTED_MODES = ("bridged", "routed")


def check_nics(nics: list[NicSpec]) -> None:
    """Reject what cannot be started before anything is created."""
    for nic in nics:
        normalize_mac(nic.mac)
        if nic.mode not in SUPPORTED_MODES:
            raise ParameterError(
                f"NIC {nic.index} mode '{nic.mode}' is not supported by Herd's kvm yet; "
                f"expected one of {', '.join(SUPPORTED_MODES)}")
        if nic.mode == "routed" and not nic.ip:
            raise ParameterError(f"NIC {nic.index} is in routed mode and needs an IP address")


def _setup_one(uuid: str, nic: NicSpec) -> str:
    return _setup_named(tap.tap_name(uuid, nic.index), nic)


def _setup_named(name: str, nic: NicSpec) -> str:
    if nic.mode == "bridged":
        tap.setup_bridged(name, nic.link)
    else:
        routed.setup_routed(name, nic.ip, nic.link)
    return name


def _setup_all(uuid: str, nics: list[NicSpec]) -> list[str]:
    done: list[str] = []
    try:
        for nic in nics:
            done.append(_setup_one(uuid, nic))
    except BaseException:
        _remove_all(done)
        raise
    return done


def _remove_all(taps: list[str]) -> None:
    for name in taps:
        try:
            tap.remove_tap(name)
        except HerdError as exc:  # keep going: the others must still go
            log.warning("%s", exc)


async def setup(uuid: str, nics: list[NicSpec]) -> list[str]:
    """Create the taps of ``nics`` (all or none); their names in NIC order."""
    if not nics:
        return []
    return await asyncio.to_thread(_setup_all, uuid, nics)


async def setup_named(name: str, nic: NicSpec) -> None:
    """Create the tap ``name`` for one NIC (a hot-plugged one: its name is chosen by the
    caller among those the instance does not use yet)."""
    check_nics([nic])
    await asyncio.to_thread(_setup_named, name, nic)


async def teardown(taps: list[str]) -> None:
    if taps:
        await asyncio.to_thread(_remove_all, taps)
