"""The cluster configuration kept in etcd, one key per object (layout: herd.config.layout).

masterd holds the whole document in memory (queries never wait for etcd) and is its only
writer. A save writes, in one transaction, only the objects that changed among those the
running operation holds locked exclusively (``SAVE_SCOPE``, set by the job executor), and only
if (a) this node still holds the master election (``guard``) and (b) none of the keys changed
since this master last wrote them. The transaction is on a quorum of the candidates' members
when etcd answers, so a job never reports success for a change that a later master lacks.

A save that fails puts the in-memory objects back as they are stored, so the config never
holds a change that etcd refused. Saves that come while a transaction is on its way are sent
together in the next one (group commit; each save's change stays whole in one transaction).

The cluster serial number users see is ``serial_base + revision`` of the newest config write,
``serial_base`` being the serial of the config.data an upgraded cluster came from, so serials
never go back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from herd import errors
from herd.config import layout
from herd.config.tracking import KeyTrackingDict
from herd.etcd.client import (
    Compare,
    EtcdClient,
    EtcdError,
    EtcdOutcomeUnknown,
    EtcdUnavailable,
    Op,
)
from herd.etcd.election import report_loss
from herd.objects import ConfigData, Instance, Network, Node, NodeGroup

log = logging.getLogger(__name__)

#: The objects the running operation may change (see herd.config.layout.Scope).
SAVE_SCOPE: ContextVar[layout.Scope] = ContextVar("herd_config_save_scope",
                                                  default=layout.EVERYTHING)

SaveListener = Callable[[ConfigData], Awaitable[None]]
Guard = Callable[[], list[Compare]]

#: How long a save waits for an etcd that does not answer (a member restarting) before the
#: job fails with the change undone.
UNAVAILABLE_WAIT = 20.0

_CLASSES: dict[str, Any] = {"nodegroups": NodeGroup, "nodes": Node, "instances": Instance,
                            "networks": Network}


def _ops(change: layout.Change) -> int:
    return len(change.puts) + len(change.deletes)


class MasterRoleLost(errors.OpExecError):
    code = "OpExecError"


class NotImported(errors.ConfigurationError):
    """etcd holds no configuration yet (a new or upgraded cluster: import config.data)."""


class EtcdConfigStore:
    def __init__(self, client: EtcdClient, data: ConfigData, texts: dict[str, str],
                 revisions: dict[str, int], serial_base: int, guard: Guard) -> None:
        self.client = client
        self.data = data
        for collection in layout.COLLECTIONS:  # saves find added/removed objects by these
            setattr(data, collection, KeyTrackingDict(getattr(data, collection)))
        self.serial_base = serial_base
        self._texts = texts
        self._revs = revisions
        self._index = layout.uuid_index(texts)
        #: instance name -> uuid, for saves scoped by instance locks (kept by layout.diff)
        self._names = {inst.name: uuid for uuid, inst in data.instances.items()}
        self._guard = guard
        self._listeners: list[SaveListener] = []
        #: bumped by every save and after every opcode (see note_change)
        self.generation = 0
        #: saves waiting for the next transaction, and the task that sends them
        self._pending: list[tuple[layout.Change, asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: called when a save finds that this node is no longer the master
        self.on_lost: Callable[[str], Awaitable[None]] | None = None

    # -- reading --------------------------------------------------------------------------------
    @classmethod
    async def load(cls, client: EtcdClient, guard: Guard) -> EtcdConfigStore:
        result = await client.range(layout.PREFIX, prefix=True)
        texts: dict[str, str] = {}
        revs: dict[str, int] = {}
        for kv in result.kvs:  # one str per key for both maps (20,000 keys at a time)
            key = kv.key.decode()
            texts[key], revs[key] = kv.value.decode(), kv.mod_revision
        del result
        if layout.META_KEY not in texts or layout.CLUSTER_KEY not in texts:
            raise NotImported("etcd holds no cluster configuration yet")
        meta = json.loads(texts.pop(layout.META_KEY))
        revs.pop(layout.META_KEY, None)
        if int(meta.get("version", 0)) > layout.LAYOUT_VERSION:
            raise errors.ConfigurationError(
                f"the configuration in etcd has layout version {meta['version']}; this Herd "
                f"knows up to {layout.LAYOUT_VERSION}: upgrade Herd on this node first")
        if int(meta.get("version", 1)) < layout.LAYOUT_VERSION:
            await _migrate(client, guard, texts, meta)
            return await cls.load(client, guard)
        base = int(meta.get("serial_base", 0))
        try:
            # CPU for seconds at 20,000 instances: off the event loop, so that the master
            # lease keeps being renewed meanwhile
            data = await asyncio.to_thread(layout.assemble, texts, base + max(revs.values()))
        except layout.DamagedConfig as exc:
            raise errors.ConfigurationError(
                f"the cluster configuration in etcd is damaged ({exc}); put a good object "
                "back (gnt-debug dump-config shows what is stored; config.data.pre-etcd on "
                "the first master is the imported copy)") from None
        data.version = layout.LAYOUT_VERSION  # the schema it has now (gnt-cluster info)
        return cls(client, data, texts, revs, base, guard)

    def add_listener(self, listener: SaveListener) -> None:
        self._listeners.append(listener)

    def note_change(self) -> None:
        """See :meth:`herd.config.store.ConfigStore.note_change`."""
        self.generation += 1

    # -- writing --------------------------------------------------------------------------------
    async def save(self) -> None:
        """Persist the changes of the running operation (see the module doc)."""
        self.note_change()
        try:
            change = layout.diff(self.data, self._texts, SAVE_SCOPE.get(), self._index,
                                 self._names)
            if change:
                done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._pending.append((change, done))
                if self._committer is None or self._committer.done():
                    self._committer = asyncio.get_running_loop().create_task(
                        self._commit_all())
                await done
        finally:
            self.note_change()
        for listener in self._listeners:
            await listener(self.data)

    async def _commit_all(self) -> None:
        """Group commit: the changes of the saves that came while a transaction was on its
        way go together in the next one (each change whole, up to the transaction limit),
        so sixteen jobs saving at once cost about one round trip each, not sixteen."""
        while self._pending:
            batch = [self._pending.pop(0)]
            size = _ops(batch[0][0])
            while self._pending and size + _ops(self._pending[0][0]) <= layout.MAX_TXN_OPS:
                size += _ops(self._pending[0][0])
                batch.append(self._pending.pop(0))
            merged = layout.Change()
            for change, _done in batch:
                merged.puts.update(change.puts)
            merged.deletes = sorted({k for change, _done in batch for k in change.deletes
                                     if k not in merged.puts})
            try:
                for piece in (layout.batches(merged) if size > layout.MAX_TXN_OPS
                              else [merged]):
                    # (only a change too big for one transaction is cut: not atomic then)
                    await self._commit(piece)
            except BaseException as exc:
                for _change, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for _change, done in batch:
                if not done.done():
                    done.set_result(None)

    async def _commit(self, change: layout.Change) -> None:
        compares = list(self._guard())
        compares += [Compare.mod_revision(k, "=", self._revs.get(k, 0))
                     for k in (*change.puts, *change.deletes)]
        ops = [Op.put(k, v) for k, v in change.puts.items()]
        ops += [Op.delete(k) for k in change.deletes]
        deadline = time.monotonic() + UNAVAILABLE_WAIT
        while True:
            try:
                result = await self.client.txn(compares, ops)
                succeeded, revision = result.succeeded, result.revision
                break
            except EtcdOutcomeUnknown as exc:
                succeeded, revision = await self._learn_outcome(change, exc)
                break
            except EtcdUnavailable as exc:
                # not sent: safe to try again while the member restarts (noded restart)
                if time.monotonic() > deadline:
                    self._restore(change)
                    raise errors.OpExecError(
                        f"configuration change not saved: {exc.message}") from None
                await asyncio.sleep(0.5)
            except EtcdError as exc:
                # etcd answered with an error (timeout, leader change): maybe applied
                succeeded, revision = await self._learn_outcome(change, exc)
                break
        if not succeeded:
            self._restore(change)
            reason = "this node is no longer the master (the change was not saved)"
            report_loss(self.on_lost, self._tasks, reason)
            raise MasterRoleLost(reason)
        for key, text in change.puts.items():
            self._texts[key], self._revs[key] = text, revision
            parsed = layout.parse_key(key)
            if parsed is not None and parsed[0] in self._index:
                self._index[parsed[0]].add(parsed[1])
        for key in change.deletes:
            self._texts.pop(key, None)
            self._revs.pop(key, None)
            parsed = layout.parse_key(key)
            if parsed is not None and parsed[0] in self._index:
                self._index[parsed[0]].discard(parsed[1])
        self.data.serial_no = self.serial_base + revision
        self.data.mtime = time.time()

    async def _learn_outcome(self, change: layout.Change,
                             exc: EtcdError) -> tuple[bool, int]:
        """The answer was lost: read back one key the transaction wrote to learn whether it
        applied (the compares make the two outcomes tell apart)."""
        for _attempt in range(int(UNAVAILABLE_WAIT * 2)):
            try:
                if change.puts:
                    key, text = next(iter(change.puts.items()))
                    kv = await self.client.get(key)
                    if kv is not None and kv.value.decode() == text and \
                            kv.mod_revision > self._revs.get(key, 0):
                        return True, kv.mod_revision
                    return False, 0
                key = change.deletes[0]
                kv = await self.client.get(key)
                if kv is None:
                    status = await self.client.status()
                    return True, status.revision
                return False, 0
            except EtcdError:
                await asyncio.sleep(0.5)
        self._restore(change)
        raise errors.OpExecError(f"configuration change may not be saved: {exc.message}")

    def _restore(self, change: layout.Change) -> None:
        """Put the objects of a refused change back as etcd holds them."""
        cfg = self.data
        for key in (*change.puts, *change.deletes):
            parsed = layout.parse_key(key)
            if parsed is None:
                continue
            collection, uuid = parsed
            stored = self._texts.get(key)
            if collection == "cluster":
                if stored is not None:
                    cfg.cluster = type(cfg.cluster).from_dict(json.loads(stored))
                continue
            objects = getattr(cfg, collection)
            if stored is None:
                objects.pop(uuid, None)
            else:
                objects[uuid] = _CLASSES[collection].from_dict(json.loads(stored))


async def _migrate(client: EtcdClient, guard: Guard, texts: dict[str, str],
                   meta: dict[str, Any]) -> None:
    """Bring the stored config to this code's schema (layout.migrate), the meta key last so
    that a migration cut short is redone from the old version's meta."""
    try:
        new = await asyncio.to_thread(layout.migrate, texts, int(meta.get("version", 1)))
    except layout.DamagedConfig as exc:
        raise errors.ConfigurationError(f"cannot migrate the cluster configuration: {exc}") \
            from None
    for piece in layout.batches(layout.change_between(texts, new)):
        ops = [Op.put(k, v) for k, v in piece.puts.items()] + \
            [Op.delete(k) for k in piece.deletes]
        if not (await client.txn([*guard()], ops)).succeeded:
            raise MasterRoleLost("this node lost the master role while migrating the config")
    meta = {**meta, "version": layout.LAYOUT_VERSION, "migrated_at": time.time()}
    if not (await client.txn([*guard()], [Op.put(layout.META_KEY, layout.dumps(meta))])
            ).succeeded:
        raise MasterRoleLost("this node lost the master role while migrating the config")
    log.info("config migrated to schema %d", layout.LAYOUT_VERSION)


async def import_config(client: EtcdClient, data: ConfigData, guard: Guard) -> int:
    """Write a whole config document (``gnt-cluster init``'s, or an upgraded cluster's
    config.data) into an etcd that holds none; the meta key goes last, so a half-done import
    is redone, never loaded. Returns the revision."""
    no_meta = Compare.version(layout.META_KEY, "=", 0)
    revision = 0
    change = await asyncio.to_thread(layout.diff, data, {})
    for piece in layout.batches(change):
        ops = [Op.put(k, v) for k, v in piece.puts.items()]
        result = await client.txn([*guard(), no_meta], ops)
        if not result.succeeded:
            raise errors.ConfigurationError(
                "etcd already holds a configuration, or this node lost the master role, "
                "during the import")
        revision = result.revision
    meta = {"version": layout.LAYOUT_VERSION, "serial_base": data.serial_no,
            "imported_at": time.time()}
    result = await client.txn([*guard(), no_meta], [Op.put(layout.META_KEY, layout.dumps(meta))])
    if not result.succeeded:
        raise errors.ConfigurationError("etcd already holds a configuration")
    return max(revision, result.revision)


async def read_document(client: EtcdClient) -> dict[str, Any]:
    """The stored config as one document (for gnt-debug, tests and backups)."""
    result = await client.range(layout.PREFIX, prefix=True)
    texts = {kv.key.decode(): kv.value.decode() for kv in result.kvs}
    if layout.CLUSTER_KEY not in texts:
        raise NotImported("etcd holds no cluster configuration yet")
    meta = json.loads(texts.pop(layout.META_KEY, "{}"))
    revs = [kv.mod_revision for kv in result.kvs if kv.key.decode() != layout.META_KEY]
    return layout.assemble_document(texts, int(meta.get("serial_base", 0)) + max(revs))
