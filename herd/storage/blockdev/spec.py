"""DeviceSpec: what the master tells a node about one volume, whatever stores it.

It crosses the node RPC as a plain dict (``to_dict``/``from_dict``), so it holds only JSON
values. One flat record with per-kind fields instead of a class per kind: the master builds
specs from the config without importing node code, and an unknown field from a newer master is
dropped instead of refused (a rolling upgrade has both versions talking).

Locations are relative or named, never absolute: nodes whose roots differ (the lab runs several
on one machine) resolve a file path under their own file storage directory.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from herd.errors import ParameterError

FILE, LVM, MIRROR, NONE = "file", "lvm", "mirror", "none"
KINDS = (FILE, LVM, MIRROR, NONE)
#: What a mirror may keep its data on (one level of composition: a mirror of a mirror is
#: nothing anybody needs, and the generation rules assume one local copy).
MIRROR_DATA_KINDS = (FILE, LVM)


@dataclass
class DeviceSpec:
    """One volume of one disk as one node sees it.

    ``name`` is the volume name the config stores (for messages and listings); ``index`` is the
    disk's index, for messages only. Per kind: ``file`` has ``path`` (relative to the file
    storage directory); ``lvm`` has ``vg`` and ``lv``; ``mirror`` has ``data`` (a file or lvm
    spec: the local copy), ``port``, ``local_ip``, ``peer_ip`` and ``meta`` (where the
    generation record lives, relative to the node's data directory; None keeps it beside a file
    backing, as mirrors made before block devices have it).
    """

    uuid: str
    kind: str
    size_mib: int
    name: str = ""
    index: int | None = None
    path: str | None = None
    vg: str | None = None
    lv: str | None = None
    data: DeviceSpec | None = None
    port: int | None = None
    local_ip: str | None = None
    peer_ip: str | None = None
    meta: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ParameterError(f"invalid device kind {self.kind!r} for {self.uuid}: "
                                 f"expected one of {', '.join(KINDS)}")
        if self.size_mib < 0:
            raise ParameterError(f"invalid size {self.size_mib} MiB for device {self.uuid}")
        required = {FILE: ("path",), LVM: ("vg", "lv"), MIRROR: ("data", "port")}
        missing = [f for f in required.get(self.kind, ()) if getattr(self, f) in (None, "")]
        if missing:
            raise ParameterError(f"{self.kind} device {self.uuid} lacks {', '.join(missing)}")
        if self.data is not None and (self.kind != MIRROR
                                      or self.data.kind not in MIRROR_DATA_KINDS):
            raise ParameterError(f"device {self.uuid}: only a mirror has a data volume, and it "
                                 f"is one of {', '.join(MIRROR_DATA_KINDS)}")

    @property
    def size_bytes(self) -> int:
        return self.size_mib * 1024 * 1024

    def describe(self) -> str:
        """A short name for messages: the disk index when known, and the volume."""
        where = self.name or self.path or (f"{self.vg}/{self.lv}" if self.lv else self.uuid)
        if self.data is not None:
            where = self.data.describe()
        disk = f"disk {self.index} " if self.index is not None else ""
        return f"{disk}({self.kind} {where})"

    def to_dict(self) -> dict[str, Any]:
        """Only the fields that are set: a file spec does not carry null LVM fields."""
        out: dict[str, Any] = {"uuid": self.uuid, "kind": self.kind, "size_mib": self.size_mib}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in out or value is None or (f.name == "name" and not value):
                continue
            out[f.name] = value.to_dict() if isinstance(value, DeviceSpec) else value
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeviceSpec:
        if not isinstance(d, dict):
            raise ParameterError(f"a device spec is a JSON object, got {type(d).__name__}")
        try:
            names = {f.name for f in fields(cls)}
            kwargs = {k: v for k, v in d.items() if k in names}
            if kwargs.get("data") is not None:
                kwargs["data"] = cls.from_dict(kwargs["data"])
            for key in ("size_mib", "port", "index"):
                if kwargs.get(key) is not None:
                    kwargs[key] = int(kwargs[key])
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"invalid device spec {d!r}: {exc}") from None
