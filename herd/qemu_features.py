"""What a QEMU version can do that Herd relies on or works around, as pure functions.

Herd runs on Debian 12's QEMU 7.2 and on QEMU 10.0 (bookworm-backports, Debian 13). The
differences that change what Herd does are decided here, once, from the version string a node
reports (``qemu-system-x86_64 --version`` / ``qemu-storage-daemon --version``, detected once
per host boot, see :mod:`herd.hypervisor.kvm.detect`), so that every 7.2 fallback is one
visible branch with a unit test instead of a scattered version compare. No imports from the
rest of Herd: both the hypervisor and the storage layer use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Version = tuple[int, int, int]

#: First QEMU whose TCG keeps the migration dirty bitmap coherent with its TLB ("physmem: Fix
#: migration dirty bitmap coherency with TCG memory access", 9.0). Before it, live migration
#: under TCG loses guest stores (reproduced with 7.2: guest kernel list corruption).
TCG_LIVE_SAFE_FROM: Version = (9, 0, 0)
#: ``block-job-change`` (mirror copy-mode background -> write-blocking) and the mirror job's
#: ``actively-synced`` flag in query-block-jobs.
JOB_CHANGE_FROM: Version = (8, 2, 0)
#: ``keep-alive-idle/-interval/-count`` on inet socket addresses (per-connection TCP
#: keep-alive timing; 10.0 has only the on/off ``keep-alive`` with the system's 2 h idle).
KEEPALIVE_TUNING_FROM: Version = (10, 1, 0)
#: Growing a mirrored disk under a running guest: the storage daemons serve the grown copies
#: again, the guest's NBD client reconnects (on one read) and so learns the new size (an NBD
#: client knows an export's size from its connect), then block_resize shows it to the guest.
#: Verified in the lab on 10.0; 7.2 has the same reconnecting client but the sequence was
#: never run there, so it keeps the stopped path.
MIRROR_ONLINE_GROW_FROM: Version = (10, 0, 0)

_VERSION_RE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def parse(text: str) -> Version | None:
    """(major, minor, micro) from '7.2.22', '10.0.2', 'QEMU emulator version 10.0.2 (Debian
    ...)' or '9.0'; None when ``text`` holds no version (QEMU missing or unrunnable)."""
    found = _VERSION_RE.search(text or "")
    if found is None:
        return None
    major, minor, micro = found.groups()
    return int(major), int(minor), int(micro or 0)


@dataclass(frozen=True)
class Features:
    """The version-dependent facts Herd acts on; every flag False for an unknown version
    (the safe, 7.2-like choice)."""

    version: Version | None
    tcg_live_migration: bool
    mirror_job_change: bool
    keepalive_tuning: bool
    mirror_online_grow: bool = False

    @property
    def label(self) -> str:
        return ".".join(map(str, self.version)) if self.version else "unknown"


def features(text: str) -> Features:
    """The :class:`Features` of the QEMU whose version string is ``text``."""
    version = parse(text)
    at_least = (lambda v: version is not None and version >= v)  # noqa: E731
    return Features(version=version, tcg_live_migration=at_least(TCG_LIVE_SAFE_FROM),
                    mirror_job_change=at_least(JOB_CHANGE_FROM),
                    keepalive_tuning=at_least(KEEPALIVE_TUNING_FROM),
                    mirror_online_grow=at_least(MIRROR_ONLINE_GROW_FROM))


@dataclass(frozen=True)
class MigrationPlan:
    """How to move a running guest: live or not, and the reason when it is not what was
    asked (shown in the job log)."""

    live: bool
    note: str = ""


def migration_plan(accel: str, qemu_version: str, requested_live: bool) -> MigrationPlan:
    """Live migration as asked, except under TCG on a QEMU that loses guest writes then
    (before 9.0): non-live there, with the reason. KVM tracks dirty pages itself."""
    if not requested_live:
        return MigrationPlan(live=False)
    if accel != "tcg" or features(qemu_version).tcg_live_migration:
        return MigrationPlan(live=True)
    return MigrationPlan(
        live=False,
        note=(f"non-live instead: live migration under TCG loses guest writes with QEMU "
              f"{features(qemu_version).label} (fixed in QEMU 9.0); KVM nodes and QEMU >= 9.0 "
              "migrate live"))


@dataclass(frozen=True)
class MirrorPlan:
    """How a storage daemon of this version runs a mirror job.

    ``copy_mode`` is the job's mode at start. A full sync on a QEMU with block-job-change
    starts in 'background' (guest writes are not held up by the bulk copy, the peer is not
    in sync yet anyway) and is switched to 'write-blocking' once the bulk copy is done
    (``switch_when_ready``); only then is the disk in sync. Without block-job-change (7.2)
    the job is write-blocking from the start. A mirror started with nothing to copy ('none',
    after a live migration) is write-blocking at once: the copies are equal and every write
    from then on must reach both.
    """

    copy_mode: str
    switch_when_ready: bool


def mirror_plan(qsd_version: str, sync: str) -> MirrorPlan:
    if sync != "none" and features(qsd_version).mirror_job_change:
        return MirrorPlan(copy_mode="background", switch_when_ready=True)
    return MirrorPlan(copy_mode="write-blocking", switch_when_ready=False)


def mirror_grow_refusal(qemu_version: str) -> str | None:
    """Why a mirrored disk of a running guest cannot grow with this node's QEMU (the stopped
    path still can); None when it can. An unknown version is refused (the safe choice)."""
    feats = features(qemu_version)
    if feats.mirror_online_grow:
        return None
    want = ".".join(map(str, MIRROR_ONLINE_GROW_FROM))
    return (f"its mirrored disks grow under a running guest with QEMU >= {want} only (the "
            f"primary node has {feats.label})")
