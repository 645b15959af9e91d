"""noded's HTTPS endpoints: ``POST /rpc/<method>`` and the console websockets (serial, VNC).

Mutual TLS is enforced by the server's SSL context (see :mod:`herd.rpc.tls`): a client without
a certificate signed by the cluster CA, or whose certificate is not for TLS clients, never gets
past the handshake. Then, before a byte of the request is read, the connection is checked for the
node role (:class:`NodePeerGate`): the handshake cannot tell a node certificate from the RAPI
certificate of clusters made before certificate roles, which was signed by the cluster CA for
both TLS ends. Every answer is ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": {"code", "message"}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from herd import errors
from herd.config.facts import read_facts
from herd.node import rfb
from herd.node.console_hub import ConsoleHubs, serve_viewer
from herd.node.service import NodeService
from herd.paths import HerdPaths
from herd.rpc import tls

log = logging.getLogger(__name__)

#: The methods of NodeService that the master may call.
RPC_METHODS = frozenset({
    "ping", "node_info",
    "disks_create", "disks_remove", "disks_check", "disk_copy", "storage_list",
    "blockdev_create", "blockdev_remove", "blockdev_info", "blockdev_list",
    "blockdev_assemble", "blockdev_shutdown", "blockdev_grow",
    "vg_info", "storage_units",
    "instance_start", "instance_stop", "instance_reboot", "instance_resume",
    "instance_pause",
    "instance_list", "instance_info", "instance_usage", "usage_history",
    "instance_accept_migration",
    "instance_migrate", "instance_hotplug",
    "instance_finish_migration", "instance_abort_migration", "instance_runstate",
    "instance_grow_disk", "instance_rename",
    "os_diagnose", "os_run", "hooks_run", "hooks_inventory",
    "master_info", "config_upload", "facts_upload", "files_checksums",
    "file_upload", "run_command", "master_demote", "node_leave",
    "mirror_create", "mirror_remove", "mirror_generation", "mirror_start_secondary",
    "mirror_start_primary", "mirror_status", "mirror_wait_sync", "mirror_reconnect",
    "mirror_stop", "mirror_mark_synced",
    "blockdev_generation", "blockdev_sync_status", "blockdev_wait_sync", "blockdev_reconnect",
    "blockdev_sync_record", "blockdev_mark_synced", "blockdev_copy",
    "blockdev_grow_hold", "blockdev_grow_serve",
    "blockdev_export", "blockdev_unexport", "blockdev_fetch",
    "etcd_join", "etcd_leave", "etcd_status", "etcd_force_new_cluster",
    "export_list", "export_info", "export_remove", "export_begin", "export_finish",
    "export_abort", "export_disk", "import_disk",
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

    async def open_console(name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The guest's serial console socket; attaching resumes a paused instance (Ganeti)."""
        hv = service.hypervisor()
        info = await hv.instance_info(name)
        if info is None:
            hubs.forget(name)
            raise errors.NotFoundError(f"instance {name} is not running on this node")
        try:
            reader, writer = await asyncio.open_unix_connection(str(hv.console_socket(name)))
        except OSError as exc:
            raise errors.HypervisorError(f"serial console of {name} unavailable: {exc}"
                                         ) from None
        if info.state == "paused":
            await hv.resume(name)
        return reader, writer

    hubs = ConsoleHubs(open_console)

    async def console(ws: WebSocket) -> None:
        """One viewer of an instance's serial console (the CLI's or a browser's, relayed by
        herd-rapi): the connection to the guest is shared (:mod:`herd.node.console_hub`)."""
        name = ws.path_params["name"]
        peer = f"{ws.client.host}:{ws.client.port}" if ws.client else "?"
        try:
            hub, viewer = await hubs.attach(name, peer)
        except errors.NotFoundError as exc:
            await ws.close(code=4404, reason=exc.message)
            return
        except errors.HerdError as exc:
            await ws.close(code=4500, reason=exc.message)
            return
        try:
            await ws.accept()
        except Exception:
            hub.remove(viewer)
            raise

        async def receive() -> bytes | None:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return None
            return message.get("bytes") or (message.get("text") or "").encode()

        reason = await serve_viewer(hub, viewer, ws.send_bytes, receive)
        log.debug("console viewer %s of %s ended: %s", peer, name, reason)
        with contextlib.suppress(Exception, WebSocketDisconnect):
            await ws.close(code=1000 if reason == "viewer left" else 4410, reason=reason[:120])

    async def vnc(ws: WebSocket) -> None:
        """A relay to the instance's VNC server on this node, for herd-rapi's noVNC relay;
        each viewer has its own RFB connection (QEMU shares the screen). noded does the
        security handshake with QEMU (password, VeNCrypt TLS: herd.node.rfb) and offers the
        viewer none, then relays bytes from the viewer's ClientInit on."""
        name = ws.path_params["name"]
        hv = service.hypervisor()
        try:
            endpoint = await hv.vnc_endpoint(name)
        except errors.HerdError as exc:
            await ws.close(code=4500, reason=exc.message)
            return
        if endpoint is None:
            await ws.close(code=4404, reason=f"instance {name} has no VNC console on this node")
            return
        try:
            reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        except OSError as exc:
            await ws.close(code=4500, reason=f"VNC server of {name} unavailable: {exc}")
            return
        failure: str | None = None
        try:
            await rfb.authenticate(reader, writer, endpoint)
        except errors.HerdError as exc:  # told to the viewer in RFB terms, below
            failure = f"VNC console of {name}: {exc.message}"
            log.info("%s", failure)
            writer.close()
        await ws.accept()

        async def receive() -> bytes | None:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return None
            return message.get("bytes") or (message.get("text") or "").encode()

        viewer = rfb.MessageReader(receive)
        try:
            await rfb.greet_viewer(viewer, ws.send_bytes, failure)
        except errors.HerdError as exc:
            if failure is None:
                log.info("VNC viewer of %s: %s", name, exc.message)
                writer.close()
            with contextlib.suppress(Exception, WebSocketDisconnect):
                await ws.close(code=4403 if failure else 1000, reason=exc.message[:120])
            return
        writer.write(viewer.rest())  # the viewer's ClientInit (and anything after it)

        async def to_client() -> None:
            while data := await reader.read(65536):
                await ws.send_bytes(data)

        async def to_guest() -> None:
            while (data := await receive()) is not None:
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

    async def export_data(request: Request) -> Response:
        """A disk dump of an export, streamed between nodes (herd.node.exports): PUT stores
        one into the export being written here, GET sends one of a finished export."""
        name, dump = request.path_params["name"], request.path_params["dump"]
        try:
            if request.method == "PUT":
                size = await service.exports.receive(name, dump, request.stream())
                return JSONResponse({"ok": True, "result": size})
            path = service.exports.dump_path(name, dump, staging=False)
            if not path.is_file():
                raise errors.NotFoundError(f"export {name} has no file {dump} on this node")
            return StreamingResponse(_file_chunks(path),
                                     media_type="application/octet-stream")
        except errors.HerdError as exc:
            log.info("export transfer %s/%s failed: %s", name, dump, exc.message)
            return JSONResponse({"ok": False, "error": exc.to_dict()}, status_code=409)

    return Starlette(routes=[
        Route("/rpc/{method}", rpc, methods=["POST"]),
        Route("/export-data/{name}/{dump}", export_data, methods=["PUT", "GET"]),
        WebSocketRoute("/console/{name}", console),
        WebSocketRoute("/vnc/{name}", vnc),
    ])


async def _file_chunks(path: Any) -> AsyncIterator[bytes]:
    """A file's bytes in chunks read off the event loop."""
    from herd.node.exports import CHUNK

    with open(path, "rb") as f:
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            yield chunk


class NodePeerGate:
    """Decides, once per distinct client certificate, whether a TLS peer is a node."""

    MAX_REMEMBERED = 256

    def __init__(self, paths: HerdPaths) -> None:
        self.paths = paths
        self._decided: dict[bytes, str | None] = {}

    def refusal(self, transport: asyncio.BaseTransport) -> str | None:
        """Why this connection must be closed unread, or None for a node of the cluster."""
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            return "no client certificate"
        digest = hashlib.sha256(der).digest()
        if digest not in self._decided:
            if len(self._decided) >= self.MAX_REMEMBERED:
                self._decided.clear()
            if tls.peer_role(ssl_object.getpeercert()) == tls.ROLE_NODE:
                # the common case, decided without loading cryptography: the handshake
                # verified the CA's signature and the key usage; a node's role is a node's
                self._decided[digest] = None
                return None
            from cryptography import x509

            from herd.rpc import certs

            try:
                cert = x509.load_der_x509_certificate(der)
            except ValueError:
                problem: str | None = "unreadable client certificate"
            else:
                cluster = (read_facts(self.paths) or {}).get("cluster_name")
                problem = certs.node_peer_refusal(cert, cluster)
                if problem:
                    log.warning("refusing node RPC to %s: %s (certificate %s)",
                                transport.get_extra_info("peername"), problem,
                                digest.hex()[:16])
            self._decided[digest] = problem
        return self._decided[digest]


def node_only_protocol(paths: HerdPaths,
                       base: type[asyncio.Protocol] | None = None) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, closing connections whose client is not a node of the cluster.

    ``connection_made`` runs once the TLS handshake is complete and before any request data is
    read (asyncio's SSL transport reads nothing more once the connection is aborted), so a
    refused client gets no answer and no handler runs. uvicorn does not put the peer
    certificate into the ASGI scope, hence this hook at the protocol level.
    """
    if base is None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        base = AutoHTTPProtocol
    gate = NodePeerGate(paths)

    class NodeOnlyProtocol(base):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            if gate.refusal(transport) is not None:
                transport.abort()  # type: ignore[attr-defined]

    return NodeOnlyProtocol


def uvicorn_tls_options(paths: HerdPaths) -> dict[str, Any]:
    """The uvicorn.Config arguments that make noded serve mutual TLS to nodes only."""
    return {"ssl_context_factory": lambda _config, _default: tls.server_context(paths),
            "http": node_only_protocol(paths)}
