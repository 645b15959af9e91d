"""Intent records: what a job is about to create on nodes, written down before it does.

A job that creates disks on nodes (files, mirrored volumes and their storage daemons) and dies
with masterd (kill -9, power cut) never runs its rollback, and nothing in the config names
what it made: the disks stay behind, owned by no instance. So, before creating, the job writes
an intent record (one small JSON file per record under the master's data directory, fsync'd);
it removes the record when the config owns what was made or its rollback removed it.

At start, masterd's recovery reads the records left (their jobs are dead), decides with
:func:`plan_cleanup` (pure) what of each is not owned by the config, removes that on the nodes,
then marks the job failed saying what it removed. A record whose removal failed (a node down)
stays for the next start; ``gnt-cluster verify`` reports such leftovers as unknown volumes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid as uuidlib
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from herd import errors
from herd.objects import ConfigData
from herd.objects.disk_ids import parse
from herd.rpc import legacy_storage
from herd.storage.blockdev.spec import DeviceSpec

log = logging.getLogger(__name__)

#: Item kinds: ``device`` (a DeviceSpec, removed with blockdev_remove) is what templates
#: record; ``file`` and ``mirror`` are read from records written before block devices.
FILE, MIRROR, DEVICE = "file", "mirror", "device"
#: The job whose opcode runs in this task (set by the executor), recorded with each intent.
CURRENT_JOB: ContextVar[int | None] = ContextVar("current_job", default=None)
#: Records of jobs running in this masterd (verify must not call their disks orphans).
_LIVE: dict[str, Intent] = {}


@dataclass
class Item:
    """One thing a job creates on one node: a volume (``device``: ``disk`` is a DeviceSpec
    dict), a mirrored disk (``mirror``: the MirrorDisk dict; its storage daemon goes with it),
    or, in records of older masterds, a file disk (``file``: the node RPC disk dict)."""

    node: str
    kind: str
    disk: dict[str, Any]

    @property
    def relpath(self) -> str:
        """Where the volume is under the file storage directory (its name for others)."""
        if self.kind == DEVICE:
            spec = DeviceSpec.from_dict(self.disk)
            return str(spec.path or (spec.data.path if spec.data else None) or spec.name)
        if self.kind == FILE:
            path = parse(str(self.disk.get("template", "file")),
                         self.disk["logical_id"]).file_path()
            return str(path)
        return str(self.disk["relpath"])

    def describe(self, cfg: ConfigData | None = None) -> str:
        node = cfg.node_name(self.node) if cfg is not None and self.node in cfg.nodes \
            else self.node
        kind = str(self.disk.get("kind")) if self.kind == DEVICE else self.kind
        what = {FILE: "disk file", MIRROR: "mirrored disk"}.get(kind, f"{kind} volume")
        return f"{what} {self.relpath} on {node}"


@dataclass
class Intent:
    instance_name: str
    instance_uuid: str
    items: list[Item]
    job_id: int | None = None
    created: float = field(default_factory=time.time)
    key: str = field(default_factory=lambda: uuidlib.uuid4().hex)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Intent:
        items = [Item(node=str(i["node"]), kind=str(i["kind"]), disk=dict(i["disk"]))
                 for i in data.get("items", [])]
        return cls(instance_name=str(data["instance_name"]),
                   instance_uuid=str(data["instance_uuid"]), items=items,
                   job_id=data.get("job_id"), created=float(data.get("created", 0)),
                   key=str(data["key"]))


# -- pure decisions ---------------------------------------------------------------------------
def owned_paths(cfg: ConfigData) -> set[tuple[str, str]]:
    """(node uuid, relative path) of every disk file the config gives to an instance."""
    out: set[tuple[str, str]] = set()
    for inst in cfg.instances.values():
        for disk in inst.disks:
            rel = disk.logical_id.file_path()
            if rel is not None:
                out.update((node, rel) for node in disk.nodes)
    return out


@dataclass
class CleanupPlan:
    remove: list[Item]
    #: What is not removed and why (already owned by the config, node gone or offline).
    kept: list[str]


def plan_cleanup(intent: Intent, cfg: ConfigData) -> CleanupPlan:
    """What to remove of a dead job's intent: everything not owned by the config.

    The instance being in the config means the creation was committed: nothing is removed.
    An item the config gives to some instance (by node and path) is kept, whatever the record
    says. Items on nodes that left the cluster or are offline cannot be reached: kept, named.
    """
    if intent.instance_uuid in cfg.instances:
        return CleanupPlan([], [])
    owned = owned_paths(cfg)
    remove, kept = [], []
    for item in intent.items:
        node = cfg.nodes.get(item.node)
        if (item.node, item.relpath) in owned:
            kept.append(f"{item.describe(cfg)} (an instance owns it)")
        elif node is None:
            kept.append(f"{item.describe(cfg)} (the node left the cluster)")
        elif node.offline:
            kept.append(f"{item.describe(cfg)} (the node is offline; 'gnt-cluster verify' "
                        "reports it once the node is back)")
        else:
            remove.append(item)
    return CleanupPlan(remove, kept)


def in_flight(intents: Iterable[Intent]) -> set[tuple[str, str]]:
    """(node uuid, relative path) of what running jobs are creating now."""
    return {(i.node, i.relpath) for intent in intents for i in intent.items}


def live_intents() -> list[Intent]:
    return list(_LIVE.values())


# -- the journal ------------------------------------------------------------------------------
class IntentJournal:
    """One JSON file per record in ``directory``, written atomically and durably."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def for_master(cls, data_dir: Path) -> IntentJournal:
        return cls(data_dir / "intents")

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def record(self, intent: Intent) -> None:
        """Write ``intent`` so that it survives a crash right after this returns."""
        if intent.job_id is None:
            intent.job_id = CURRENT_JOB.get()
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(intent.key)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(intent.to_dict()).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        self._sync_dir()
        _LIVE[intent.key] = intent

    def done(self, intent: Intent) -> None:
        """The record is no longer needed: the config owns the items, or they are removed."""
        _LIVE.pop(intent.key, None)
        self._path(intent.key).unlink(missing_ok=True)
        self._sync_dir()

    def release(self, intent: Intent) -> None:
        """The job ends but its record stays on disk (its rollback could not remove all):
        no longer in flight, so verify reports what is left, and the next start retries."""
        _LIVE.pop(intent.key, None)

    def load(self) -> list[Intent]:
        """Every record on disk, oldest first; an unreadable one is set aside (renamed
        ``*.bad``) with a log line, never a reason for masterd not to start."""
        if not self.directory.is_dir():
            return []
        out = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                out.append(Intent.from_dict(json.loads(path.read_text())))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("intent record %s is unreadable (%s); set aside as .bad", path, exc)
                with contextlib.suppress(OSError):
                    path.rename(path.with_suffix(".bad"))
        return sorted(out, key=lambda i: i.created)

    def _sync_dir(self) -> None:
        with contextlib.suppress(OSError):
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


# -- recovery ---------------------------------------------------------------------------------
async def remove_items(ctx: Any, items: list[Item]) -> tuple[list[Item], list[str]]:
    """Remove ``items`` on their nodes (file disks; mirrored disks with their storage
    daemons): those removed, and one line per node where removal failed."""
    cfg = ctx.config.data
    removed: list[Item] = []
    problems = []
    by_node: dict[tuple[str, str], list[Item]] = {}
    for item in items:
        by_node.setdefault((item.node, item.kind), []).append(item)
    for (node_uuid, kind), group in by_node.items():
        node = cfg.nodes[node_uuid]
        rpc = ctx.rpc.node(node)
        disks = [i.disk for i in group]
        try:
            # records of older masterds hold node RPC disk dicts or MirrorDisk dicts
            if kind == FILE:
                disks = [s.to_dict() for s in legacy_storage.for_disks_remove(disks)]
            elif kind == MIRROR:
                disks = [legacy_storage.from_mirror_disk(d).to_dict() for d in disks]
            await rpc.blockdev_remove(disks)
        except errors.HerdError as exc:
            problems.append(f"could not remove {', '.join(i.relpath for i in group)} on "
                            f"{node.name}: {exc.message}")
        else:
            removed += group
    return removed, problems


async def recover(ctx: Any, journal: IntentJournal) -> dict[int | None, list[str]]:
    """Clean up after the jobs that died with the last masterd: for each record left, remove
    what the config does not own; the lines to add to each dead job's log, by job id."""
    cfg = ctx.config.data
    notes: dict[int | None, list[str]] = {}
    for intent in journal.load():
        plan = plan_cleanup(intent, cfg)
        lines = notes.setdefault(intent.job_id, [])
        removed, problems = await remove_items(ctx, plan.remove) if plan.remove else ([], [])
        for item in removed:
            lines.append(f"recovery: removed {item.describe(cfg)}, made for instance "
                         f"{intent.instance_name} before masterd stopped")
        lines += [f"recovery: kept {what}" for what in plan.kept]
        if problems:
            lines += [f"recovery: {p}; retried at the next masterd start, 'gnt-cluster "
                      "verify' reports what is left" for p in problems]
            log.warning("intent %s (instance %s): %s", intent.key, intent.instance_name,
                        "; ".join(problems))
            continue
        journal.done(intent)
    return notes
