"""The master's typed client for node RPC (HTTPS with mutual TLS).

One method per node operation, so that call sites name what they ask and the wire format lives
here only. Connections are pooled and kept alive: a job that talks to a node several times pays
for one TLS handshake.

A lost answer is not a failure: when the connection breaks during an RPC with side effects
(start, stop, reboot, migrate; see :mod:`herd.rpc.outcome`), the client waits a bounded time
for the node to answer again and asks it what happened, here, once for every call site.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import httpx

from herd import errors
from herd.objects import Node
from herd.paths import HerdPaths
from herd.rpc import outcome, tls

DEFAULT_TIMEOUT = 60.0
#: A node that does not accept a connection within this is down or cut off; fail fast.
CONNECT_TIMEOUT = 3.0
#: How long to wait for a node to answer again after the answer to a side effect was lost
#: (noded restarted by an admin or the watcher), before calling the outcome unknown. 30 s in
#: production (the watcher's restart); HERD_LOST_ANSWER_WAIT in masterd's environment lets a
#: test that keeps noded down on purpose wait less (test_lost_answer: 30 s of a 40 s test).
LOST_ANSWER_WAIT = float(os.environ.get("HERD_LOST_ANSWER_WAIT") or 30.0)
#: Pause between attempts to reach the node again.
LOST_ANSWER_POLL = 0.5
#: Errors that mean the request never reached the node (no connection was made): nothing can
#: have happened there, so a dead node fails at once instead of being waited for (failover
#: from a crashed primary must not wait LOST_ANSWER_WAIT for every stop it sends there).
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

#: How long, within one opcode, a node that did not accept a connection within
#: CONNECT_TIMEOUT is not waited for again: a failover from a dead primary pinged it, then ran
#: the pre and the post hooks on it, 3 s each, to learn three times what the first call
#: knew. Calls to it fail at once, saying when it was last tried (lost-answer checks, which
#: wait for a node to return, always try).
DOWN_MEMORY = 15.0
#: The nodes this opcode found down: node address -> when (set per opcode by the job
#: executor; shared by the tasks the opcode starts, e.g. hooks on every node at once).
NODES_DOWN: ContextVar[dict[str, float] | None] = ContextVar("nodes_down", default=None)

#: Where the client reports a lost answer and how it was confirmed: the running job's log
#: (set by the job executor for each opcode), so that the admin reads what happened.
RPC_FEEDBACK: ContextVar[Callable[[str], None] | None] = ContextVar("rpc_feedback",
                                                                     default=None)


class OutcomeUnknown(errors.RpcError):
    """The answer to an RPC with side effects was lost and the node has not answered since:
    nobody knows whether it acted, so nothing may be claimed or undone on that basis."""


def _note(message: str) -> None:
    feedback = RPC_FEEDBACK.get()
    if feedback is not None:
        feedback(message)


def decode_answer(node_name: str, method: str, status: int, raw: bytes) -> Any:
    """noded's answer to ``method``: its result, or the error it reports raised as the
    HerdError it names (one place for the HTTP client and the tests' in-process one)."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise errors.RpcError(f"node {node_name}: invalid answer to '{method}' "
                              f"(HTTP {status})") from None
    if not body.get("ok"):
        if status == 404:  # a method this noded does not know: it is older than the master
            raise errors.RpcError(
                f"node {node_name} runs an older herd-noded that lacks the '{method}' call: "
                "upgrade it first (gnt-cluster verify names each node's version)")
        raise errors.from_dict(body.get("error") or {})
    return body.get("result")


class NodeClient:
    def __init__(self, http: httpx.AsyncClient, node_name: str, address: str, port: int) -> None:
        self._http = http
        self.node_name = node_name
        self.base = f"https://{address}:{port}"

    async def call(self, method: str, timeout: float = DEFAULT_TIMEOUT, **args: Any) -> Any:
        return await self._call(method, timeout, args, remember_down=True)

    async def _call(self, method: str, timeout: float, args: dict[str, Any],
                    remember_down: bool) -> Any:
        down = NODES_DOWN.get() if remember_down else None
        since = down.get(self.base) if down is not None else None
        if since is not None and time.monotonic() - since < DOWN_MEMORY:
            raise errors.RpcError(
                f"node {self.node_name} ({self.base}) unreachable for '{method}': it did not "
                f"accept a connection {time.monotonic() - since:.0f} s ago (not tried again)")
        try:
            resp = await self._http.post(
                f"{self.base}/rpc/{method}", json=args,
                timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout)))
        except httpx.HTTPError as exc:
            if down is not None and isinstance(exc, httpx.ConnectTimeout):
                down[self.base] = time.monotonic()
            lost = errors.RpcError(
                f"node {self.node_name} ({self.base}) unreachable for '{method}': "
                f"{type(exc).__name__}: {exc}")
            effect = outcome.side_effect(method, args)
            if effect is None or isinstance(exc, NOT_SENT):
                raise lost from None
            return await self._after_lost_answer(effect, args, lost)
        return decode_answer(self.node_name, method, resp.status_code, resp.content)

    async def _after_lost_answer(self, effect: outcome.SideEffect, args: dict[str, Any],
                                 lost: errors.RpcError, wait: float | None = None) -> Any:
        """Ask the node, once it answers again, whether ``effect`` happened (see module doc)."""
        wait = LOST_ANSWER_WAIT if wait is None else wait
        what = f"{effect.verb} of {effect.instance}"
        _note(f"  the answer of node {self.node_name} to the {what} was lost ({lost.message}); "
              f"asking the node again (up to {wait:g} s)")
        deadline = time.monotonic() + wait
        verdict: outcome.Verdict | None = None
        last_error = lost.message
        while True:
            try:
                observed = await self._call(effect.observe, 10, {"name": effect.instance},
                                            remember_down=False)
            except errors.HerdError as exc:
                last_error, verdict = exc.message, None
            else:
                verdict = outcome.judge(effect.method, args, observed)
                if verdict.kind == outcome.DONE:
                    _note(f"  confirmed by asking node {self.node_name} again: {verdict.detail};"
                          f" the {what} happened")
                    return outcome.result_for(effect.method, args, observed)
                if verdict.kind == outcome.NOT_DONE:
                    raise errors.RpcError(
                        f"the answer of node {self.node_name} to the {what} was lost; asked "
                        f"again, the node says {verdict.detail}: the {what} did not happen")
                if verdict.kind == outcome.UNKNOWN:
                    break
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(LOST_ANSWER_POLL)
        if verdict is not None and verdict.kind == outcome.PENDING:
            raise errors.RpcError(
                f"the answer of node {self.node_name} to the {what} was lost and after "
                f"{wait:g} s {verdict.detail}; check with 'gnt-instance list "
                f"{effect.instance}'")
        seen = (f"asked again, the node says {verdict.detail}" if verdict is not None else
                f"the node has not answered for {wait:g} s ({last_error})")
        raise OutcomeUnknown(
            f"outcome unknown: the answer of node {self.node_name} to the {what} was lost and "
            f"{seen}; once its node daemon runs again (herd-watcher or 'herd-daemon-util start "
            f"noded' on {self.node_name}), check with 'gnt-instance list {effect.instance}' "
            "and 'gnt-cluster verify'")

    # -- node ---------------------------------------------------------------------------------
    async def node_info(self) -> dict[str, Any]:
        return await self.call("node_info")

    async def ping(self) -> dict[str, Any]:
        return await self.call("ping", timeout=10)

    # -- cluster files and membership -------------------------------------------------------
    async def master_info(self, timeout: float = 5.0) -> dict[str, Any]:
        return await self.call("master_info", timeout=timeout)

    async def config_upload(self, config: dict[str, Any] | None, facts: dict[str, Any],
                            ssl: dict[str, str] | None = None, force: bool = False,
                            timeout: float = 10.0) -> int:
        return await self.call("config_upload", config=config, facts=facts, ssl=ssl or {},
                               force=force, timeout=timeout)

    async def facts_upload(self, facts: dict[str, Any], drop_config: bool = False,
                           force: bool = False, ssl: dict[str, str] | None = None,
                           timeout: float = 10.0) -> int:
        return await self.call("facts_upload", facts=facts, drop_config=drop_config,
                               force=force, ssl=ssl or {}, timeout=timeout)

    async def files_checksums(self, paths: list[str]) -> dict[str, str | None]:
        return await self.call("files_checksums", paths=paths, timeout=15)

    async def file_upload(self, path: str, content_b64: str, mode: int) -> None:
        await self.call("file_upload", path=path, content=content_b64, mode=mode, timeout=60)

    async def run_command(self, command: str, timeout: float) -> dict[str, Any]:
        return await self.call("run_command", command=command, command_timeout=timeout,
                               timeout=timeout + 10)

    async def master_demote(self, netdev: str, address: str, netmask: int) -> None:
        await self.call("master_demote", netdev=netdev, address=address, netmask=netmask,
                        timeout=45)

    async def node_leave(self) -> None:
        await self.call("node_leave", timeout=10)

    # -- instances ----------------------------------------------------------------------------
    async def instance_start(self, spec: dict[str, Any], paused: bool = False) -> dict[str, Any]:
        return await self.call("instance_start", spec=spec, paused=paused, timeout=120)

    async def instance_stop(self, name: str, timeout: float) -> None:
        await self.call("instance_stop", name=name, stop_timeout=timeout, timeout=timeout + 60)

    async def instance_reboot(self, name: str, reboot_type: str, spec: dict[str, Any],
                              shutdown_timeout: float) -> None:
        await self.call("instance_reboot", name=name, reboot_type=reboot_type, spec=spec,
                        shutdown_timeout=shutdown_timeout, timeout=shutdown_timeout + 120)

    async def instance_hotplug(self, name: str, action: str, kind: str,
                               device: dict[str, Any]) -> None:
        """Hot-plug (``add``) or unplug (``remove``) one disk or NIC of a running guest; an
        unplug waits for the guest to release the device."""
        await self.call("instance_hotplug", name=name, action=action, kind=kind,
                        device=device, timeout=90)

    async def instance_accept_migration(self, spec: dict[str, Any], port: int,
                                        listen_address: str) -> dict[str, Any]:
        return await self.call("instance_accept_migration", spec=spec, port=port,
                               listen_address=listen_address, timeout=120)

    async def instance_migrate(self, name: str, target_address: str, port: int, live: bool,
                               bandwidth_mibps: int | None = None,
                               downtime_ms: int | None = None,
                               timeout: float = 3600,
                               hand_over: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """QEMU's figures; ``hand_over``: the source's mirrored disks, turned secondary as
        soon as QEMU completed (see the node's ``instance_migrate``)."""
        args: dict[str, Any] = {}
        if hand_over is not None:
            args["hand_over"] = hand_over
        return await self.call("instance_migrate", name=name, target_address=target_address,
                               port=port, live=live, bandwidth_mibps=bandwidth_mibps,
                               downtime_ms=downtime_ms, timeout=timeout, **args)

    async def instance_finish_migration(self, name: str, source: bool, success: bool,
                                        take_over: list[dict[str, Any]] | None = None,
                                        syncs: list[str] | None = None,
                                        peers: list[dict[str, Any]] | None = None
                                        ) -> dict[str, Any]:
        """The target's ``resumed_at`` (wall clock) and ``mirror_back_ms`` (with
        ``take_over``: its mirrored disks turned primary first, in the same call; ``peers``,
        RPC 5: what the source serves, so that they attach without probing it)."""
        args: dict[str, Any] = {}
        if take_over is not None:
            args.update(take_over=take_over, syncs=syncs)
        if peers is not None:
            args["peers"] = peers
        answer = await self.call("instance_finish_migration", name=name, source=source,
                                 success=success, timeout=120, **args)
        return answer if isinstance(answer, dict) else {}

    async def instance_abort_migration(self, name: str) -> None:
        await self.call("instance_abort_migration", name=name, timeout=120)

    async def instance_pause(self, name: str) -> None:
        await self.call("instance_pause", name=name, timeout=90)

    async def instance_resume(self, name: str) -> None:
        await self.call("instance_resume", name=name)

    async def instance_list(self) -> list[dict[str, Any]]:
        return await self.call("instance_list", timeout=30)

    async def instance_info(self, name: str) -> dict[str, Any] | None:
        return await self.call("instance_info", name=name, timeout=30)

    async def instance_usage(self) -> list[dict[str, Any]]:
        return await self.call("instance_usage", timeout=15)

    async def usage_history(self, name: str | None = None) -> dict[str, Any]:
        return await self.call("usage_history", name=name, timeout=15)

    async def instance_runstate(self, name: str) -> dict[str, Any] | None:
        return await self.call("instance_runstate", name=name, timeout=30)

    # -- storage (a master sends only blockdev_*; noded still answers disks_*/mirror_*, the
    # calls of masters before protocol 3, through herd.rpc.legacy_storage) ------------------
    async def blockdev_copy(self, source: dict[str, Any], target: dict[str, Any]) -> None:
        """Copy one device's data into another on the node (conversions; both DeviceSpecs)."""
        await self.call("blockdev_copy", source=source, target=target, timeout=3600)

    async def blockdev_export(self, device: dict[str, Any], address: str) -> int:
        """Serve a stopped device read-only over NBD on ``address``; the port (a move)."""
        result = await self.call("blockdev_export", device=device, address=address,
                                 timeout=60)
        return int(result["port"])

    async def blockdev_unexport(self, device: dict[str, Any]) -> bool:
        return bool(await self.call("blockdev_unexport", device=device, timeout=60))

    async def blockdev_fetch(self, device: dict[str, Any], host: str, port: int,
                             source_uuid: str) -> None:
        """Fill ``device`` from another node's export of disk ``source_uuid`` (a move)."""
        await self.call("blockdev_fetch", device=device, host=host, port=port,
                        source_uuid=source_uuid, timeout=3600)


    # -- block devices (storage RPC 2: DeviceSpec dicts; noded answers ping with "rpc": 2) ----
    async def blockdev_create(self, devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Create all of ``devices`` or none; their DeviceInfo dicts."""
        return await self.call("blockdev_create", devices=devices, timeout=600)

    async def blockdev_remove(self, devices: list[dict[str, Any]]) -> None:
        await self.call("blockdev_remove", devices=devices, timeout=120)

    async def blockdev_info(self, devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return await self.call("blockdev_info", devices=devices, timeout=60)

    async def blockdev_assemble(self, devices: list[dict[str, Any]], role: str = "primary",
                                syncs: list[str] | None = None,
                                allow_degraded: bool = False) -> list[str]:
        """Activate each device (an LV: its loop or device-mapper device; a mirror: its
        storage daemon as ``role``, a primary copying at least ``syncs[i]`` to its peer);
        their paths."""
        args: dict[str, Any] = {"devices": devices, "role": role}
        if syncs is not None:
            args["syncs"] = syncs
        if allow_degraded:
            args["allow_degraded"] = True
        return await self.call("blockdev_assemble", timeout=120, **args)

    async def blockdev_shutdown(self, devices: list[dict[str, Any]]) -> None:
        """Undo ``blockdev_assemble``; the data stays (refused while a VM holds a device)."""
        await self.call("blockdev_shutdown", devices=devices, timeout=120)

    async def blockdev_grow(self, devices: list[dict[str, Any]],
                            undo: bool = False) -> list[dict[str, Any]]:
        """Grow each device to its spec's size_mib (zeroing an LV's new tail under a mirror
        takes a while: a long timeout); ``undo``: cut back what a grow beyond it added."""
        args: dict[str, Any] = {"undo": True} if undo else {}
        return await self.call("blockdev_grow", devices=devices, timeout=1800, **args)

    async def instance_grow_disk(self, name: str, index: int, size_mib: int,
                                 uuid: str | None = None) -> None:
        await self.call("instance_grow_disk", name=name, index=index, size_mib=size_mib,
                        uuid=uuid,
                        timeout=60)

    async def instance_rename(self, old: str, new: str) -> None:
        await self.call("instance_rename", old=old, new=new, timeout=60)

    async def blockdev_list(self) -> dict[str, Any]:
        return await self.call("blockdev_list", timeout=60)

    # -- mirrors (DeviceSpecs of kind mirror; create/remove/assemble/shutdown above) -------
    async def blockdev_generation(self, devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return await self.call("blockdev_generation", devices=devices, timeout=30)

    async def blockdev_sync_status(self, devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each mirror's replication state; the node only reads (queries call this)."""
        return await self.call("blockdev_sync_status", devices=devices, timeout=30)

    async def blockdev_wait_sync(self, devices: list[dict[str, Any]],
                                 timeout: float) -> list[dict[str, Any]]:
        return await self.call("blockdev_wait_sync", devices=devices, sync_timeout=timeout,
                               timeout=timeout + 30)

    async def blockdev_reconnect(self, devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return await self.call("blockdev_reconnect", devices=devices, timeout=120)

    async def blockdev_grow_hold(self, devices: list[dict[str, Any]]) -> None:
        """On the primary, its guest paused: end the mirrors' jobs and VM exports for a grow."""
        await self.call("blockdev_grow_hold", devices=devices, timeout=90)

    async def blockdev_grow_serve(self, devices: list[dict[str, Any]]) -> None:
        """The mirrors' copies take the specs' sizes under their daemons and serve again."""
        await self.call("blockdev_grow_serve", devices=devices, timeout=120)

    async def blockdev_sync_record(self, devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """On the primary, per mirror in one atomic read: in_sync, the generation (current,
        history) and the export the job replicates to (see MirrorManager.sync_record)."""
        return await self.call("blockdev_sync_record", devices=devices, timeout=60)

    async def blockdev_mark_synced(self, devices: list[dict[str, Any]],
                                   generations: list[dict[str, Any]],
                                   exports: list[str | None]) -> list[bool]:
        """On the secondary: adopt the primary's generations, each only if the secondary
        serves the named export (compare-and-set); which mirrors adopted."""
        return list(await self.call("blockdev_mark_synced", devices=devices,
                                    generations=generations, exports=exports, timeout=30))

    # -- OS definitions -----------------------------------------------------------------------
    async def os_diagnose(self) -> list[dict[str, Any]]:
        return await self.call("os_diagnose", timeout=30)

    async def os_run(self, script: str, os_name: str, instance: dict[str, Any],
                     extra_env: dict[str, str] | None = None, timeout: float = 3600) -> None:
        await self.call("os_run", script=script, os_name=os_name, instance=instance,
                        extra_env=extra_env or {}, timeout=timeout + 30)

    # -- exports (gnt-backup; the disk data goes node to node, herd.node.exports) -----------
    async def export_list(self) -> list[str]:
        return list(await self.call("export_list", timeout=30))

    async def export_info(self, name: str) -> str:
        return str(await self.call("export_info", name=name, timeout=30))

    async def export_remove(self, name: str) -> bool:
        return bool(await self.call("export_remove", name=name, timeout=120))

    async def export_begin(self, name: str) -> None:
        await self.call("export_begin", name=name, timeout=60)

    async def export_finish(self, name: str, config: str) -> None:
        await self.call("export_finish", name=name, config=config, timeout=60)

    async def export_abort(self, name: str) -> None:
        await self.call("export_abort", name=name, timeout=120)

    async def export_disk(self, instance: dict[str, Any], os_name: str, index: int,
                          peer: dict[str, Any], name: str, dump: str,
                          timeout: float = 6 * 3600) -> int:
        """On the primary: stream disk ``index`` through the OS export script into export
        ``name`` on node ``peer``; the bytes stored there."""
        return int(await self.call("export_disk", instance=instance, os_name=os_name,
                                   index=index, peer=peer, name=name, dump=dump,
                                   timeout=timeout))

    async def import_disk(self, instance: dict[str, Any], os_name: str, index: int,
                          peer: dict[str, Any], name: str, dump: str,
                          timeout: float = 6 * 3600) -> None:
        """On the new primary: feed dump ``dump`` of export ``name`` on ``peer`` to the OS
        import script of disk ``index``."""
        await self.call("import_disk", instance=instance, os_name=os_name, index=index,
                        peer=peer, name=name, dump=dump, timeout=timeout)


class RpcRunner:
    """Hands out clients for nodes of the config, sharing one connection pool."""

    def __init__(self, paths: HerdPaths, port: int) -> None:
        self.paths = paths
        self.port = port
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                verify=tls.client_context(self.paths), timeout=DEFAULT_TIMEOUT,
                limits=httpx.Limits(max_keepalive_connections=32, keepalive_expiry=60))
        return self._http

    def node(self, node: Node) -> NodeClient:
        return NodeClient(self._client(), node.name, node.primary_ip, self.port)

    def address(self, name: str, address: str) -> NodeClient:
        return NodeClient(self._client(), name, address, self.port)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
