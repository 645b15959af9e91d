"""noded's HTTPS endpoints: ``POST /rpc/<method>`` and the console websocket.

Mutual TLS is enforced by the server's SSL context (see :mod:`herd.rpc.tls`): a client without
a certificate signed by the cluster CA never gets past the handshake. Every answer is
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {"code", "message"}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from herd import errors
from herd.node.service import NodeService

log = logging.getLogger(__name__)

#: The methods of NodeService that the master may call.
RPC_METHODS = frozenset({
    "ping", "node_info",
    "disks_create", "disks_remove", "disks_check", "disk_copy",
    "instance_start", "instance_stop", "instance_reboot", "instance_resume",
    "instance_list", "instance_info", "instance_accept_migration", "instance_migrate",
    "instance_finish_migration", "instance_abort_migration", "instance_runstate",
    "os_diagnose", "os_run",
    "master_info", "config_upload", "facts_upload", "config_download", "files_checksums",
    "file_upload", "run_command", "master_demote", "node_leave",
    "mirror_create", "mirror_remove", "mirror_generation", "mirror_start_secondary",
    "mirror_start_primary", "mirror_status", "mirror_wait_sync", "mirror_reconnect",
    "mirror_stop", "mirror_mark_synced",
})


def build_app(service: NodeService) -> Starlette:
    async def rpc(request: Request) -> JSONResponse:
        method = request.path_params["method"]
        if method not in RPC_METHODS:
            err = errors.ParameterError(f"unknown node RPC method '{method}'")
            return JSONResponse({"ok": False, "error": err.to_dict()}, status_code=404)
        try:
            args: dict[str, Any] = await request.json()
        except ValueError:
            args = {}
        try:
            result = await getattr(service, method)(**args)
        except errors.HerdError as exc:
            log.info("rpc %s failed: %s", method, exc.message)
            return JSONResponse({"ok": False, "error": exc.to_dict()})
        except TypeError as exc:
            err = errors.ParameterError(f"bad arguments for node RPC '{method}': {exc}")
            return JSONResponse({"ok": False, "error": err.to_dict()})
        except Exception as exc:  # report, never crash the daemon
            log.exception("rpc %s crashed", method)
            err = errors.HerdError(f"node RPC '{method}' failed: {type(exc).__name__}: {exc}")
            return JSONResponse({"ok": False, "error": err.to_dict()})
        return JSONResponse({"ok": True, "result": result})

    async def console(ws: WebSocket) -> None:
        """Relay an instance's serial console; attaching resumes a paused instance (Ganeti)."""
        name = ws.path_params["name"]
        hv = service.hypervisor()
        info = await hv.instance_info(name)
        if info is None:
            await ws.close(code=4404, reason=f"instance {name} is not running on this node")
            return
        try:
            reader, writer = await asyncio.open_unix_connection(str(hv.console_socket(name)))
        except OSError as exc:
            await ws.close(code=4500, reason=f"serial console of {name} unavailable: {exc}")
            return
        await ws.accept()
        if info.state == "paused":
            await hv.resume(name)

        async def to_client() -> None:
            while data := await reader.read(4096):
                await ws.send_bytes(data)

        async def to_guest() -> None:
            while True:
                data = await ws.receive_bytes()
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.create_task(to_client()), asyncio.create_task(to_guest())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()
            with contextlib.suppress(Exception, WebSocketDisconnect):
                await ws.close()

    return Starlette(routes=[
        Route("/rpc/{method}", rpc, methods=["POST"]),
        WebSocketRoute("/console/{name}", console),
    ])
