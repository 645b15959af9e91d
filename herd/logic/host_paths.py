"""Host paths in hypervisor parameters: what a user who is not an admin may name.

A KVM parameter such as ``cdrom_image_path`` or ``kernel_path`` names a file on the node that
QEMU, running as root, opens for the guest; ``kvm_path`` names the program itself. Ganeti lets
any RAPI ``write`` user set them, which hands anyone who may modify an instance every file of
every node (attach /etc/shadow as a CD-ROM) or the node itself (``kvm_path``). Herd lets
non-admins name image files only inside directories an admin chose (``gnt-cluster modify
--user-image-dirs``), and no other host path at all. Checked by masterd when a RAPI or web job
is submitted (admins and local ``gnt-*`` commands, run as root, are not limited), so a refusal
leaves no job behind.

Which parameters are host paths comes from the hypervisor's own parameter table (those it
converts as paths), so a new one cannot be forgotten here.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

#: Parameters that name a file a guest reads as a disk image, a kernel or an initrd: allowed
#: to non-admins inside the admin's image directories. Every other host path is admin-only.
IMAGE_PARAMS = frozenset({"kernel_path", "initrd_path", "floppy_image_path",
                          "cdrom_image_path", "cdrom2_image_path"})


def host_path_params() -> frozenset[str]:
    """The KVM parameters whose values are paths on the node (from its parameter table)."""
    from herd.hypervisor.kvm import params

    return frozenset(name for name, p in params.PARAMS.items() if p.convert is params._path)


def _hvparams(op: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    """Every (parameter, value) an opcode sets: instance-level ``hvparams`` are flat, cluster
    and group ones keyed by hypervisor."""
    raw = op.get("hvparams")
    if not isinstance(raw, Mapping):
        return []
    out: list[tuple[str, Any]] = []
    for key, value in raw.items():
        if isinstance(value, Mapping):
            out.extend(value.items())
        else:
            out.append((key, value))
    return out


def inside(path: str, dirs: Iterable[str]) -> bool:
    """Whether ``path`` (absolute, normalized: no way out by ``..``) lies below one of
    ``dirs``."""
    if not path.startswith("/"):
        return False
    norm = posixpath.normpath(path)
    return any(norm.startswith(posixpath.normpath(d).rstrip("/") + "/") for d in dirs)


def refusal(ops: Iterable[Mapping[str, Any]], image_dirs: Iterable[str],
            paths: frozenset[str] | None = None) -> str | None:
    """The first host path a non-admin may not set in these opcodes, as one line, or None."""
    dirs = list(image_dirs)
    names = host_path_params() if paths is None else paths
    for op in ops:
        for key, value in _hvparams(op):
            if key not in names or value in (None, ""):
                continue
            if key in IMAGE_PARAMS and inside(str(value), dirs):
                continue
            if key not in IMAGE_PARAMS:
                return (f"hypervisor parameter {key}={value!r}: only an admin may set this "
                        "host path")
            where = ", ".join(dirs) if dirs else ("nowhere yet: an admin sets them with "
                                                  "gnt-cluster modify --user-image-dirs")
            return (f"hypervisor parameter {key}={value!r}: only an admin may name a file "
                    f"outside the image directories ({where})")
    return None
