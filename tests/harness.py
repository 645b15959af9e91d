"""An in-process cluster for testing logical units in milliseconds.

Logical units talk to nodes over node RPC, so until now each of them was tested only with real
daemons (and often real QEMU) in the integration and lab suites: seconds to minutes per case.
Here every node is a real :class:`~herd.node.service.NodeService` with its own root under a
temporary directory, the cluster's hypervisor is the fake one (no processes) and disks are
files. The master side is the real one: a :class:`~herd.logic.base.MasterContext` with a
file-backed :class:`~herd.config.store.ConfigStore`, the real lock manager, the real
:class:`~herd.config.replication.Replicator` and the real :class:`~herd.jobs.executor.JobExecutor`
over a real SQLite job queue.

Only the network is replaced. The master's :class:`~herd.rpc.client.RpcRunner` hands out
:class:`InProcessNodeClient`, the production :class:`~herd.rpc.client.NodeClient` (so every
typed method builds its request as in masterd) whose ``call`` posts the JSON body straight to
the node's real ``noded`` application (:func:`herd.rpc.server.build_app`) and decodes the answer
as ``NodeClient.call`` does. So arguments and results are JSON both ways, ``RPC_METHODS`` and
the mapping of node failures to :mod:`herd.errors` are the server's own code, and the answer is
decoded by the client's own :func:`~herd.rpc.client.decode_answer` (also checked against the
unmodified client talking HTTP to the same application: ``InProcessRunner.wire``,
tests/unit/test_logical_units.py). What is not
there: TLS and its peer check (connection level, below HTTP) and the client's lost-answer
recovery (it needs a connection that breaks after the request was sent).

Two faults can be injected, for the paths users rely on when things go wrong:

- :meth:`InProcessCluster.set_unreachable`: the node does not answer; the client raises its
  "unreachable" :class:`~herd.errors.RpcError` (that of a refused connection);
- :meth:`InProcessCluster.fail_once`: the next call of one RPC method on one node raises an
  error inside noded (before or after the real method ran), which the server answers as it
  answers any failing method: the way to test a logical unit's rollback.

Nothing sleeps and nothing is started (no QEMU, no hook scripts, no OS scripts): an RPC costs
0.2-0.9 ms, an operation 3-20 ms, a new cluster about 8 ms (all in tmpfs, see
:func:`scratch_root`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx

from herd import errors
from herd.config.facts import write_facts
from herd.config.replication import Replicator
from herd.config.store import ConfigStore
from herd.errors import StorageError
from herd.hypervisor.kvm import detect
from herd.jobs import queue as q
from herd.jobs.executor import JobExecutor
from herd.jobs.locking import LockManager
from herd.logic.base import MasterContext, lu_for
from herd.logic.bootstrap import create_rapi_users_file
from herd.node.service import NodeService
from herd.objects import Cluster, ConfigData, Instance, Node, NodeGroup, params
from herd.opcodes import OpCode, opcode_from_dict
from herd.paths import HerdPaths
from herd.rpc import certs, tls
from herd.rpc.client import DEFAULT_TIMEOUT, NodeClient, RpcRunner, decode_answer
from herd.rpc.server import build_app
from herd.storage.lvm import (
    MIB,
    ActivationMode,
    LogicalVolume,
    PeRange,
    PhysicalVolume,
    Segment,
    VolumeGroup,
    validate_lv_name,
)
from herd.storage.mirror.generation import bump
from herd.storage.mirror.manager import MirrorManager
from herd.storage.mirror.model import MirrorDisk, MirrorStatus
from herd.storage.mirror.states import Event, State, transition

T = TypeVar("T")

CLUSTER_NAME = "cluster.example.com"
#: Every address is in TEST-NET-1 (RFC 5737): nothing here could ever reach a real host.
MASTER_IP = "192.0.2.254"
NODED_PORT = 1811
#: Free space a tmpfs needs to hold test clusters (sparse disk files count in full there).
SCRATCH_MIN_FREE = 4 << 30


def node_name(index: int) -> str:
    """The name of node ``index`` (1-based): node1.example.com is the master."""
    return f"node{index}.example.com"


@contextlib.contextmanager
def scratch_root(fallback: Path) -> Iterator[Path]:
    """A directory for a cluster's node roots: in tmpfs (/dev/shm) when there is one, else
    ``fallback``. On disk an operation mostly waits for fsyncs (each job queue commit, config
    write and new disk file syncs), 2-4 times its time in memory; durability is not what these
    tests look at."""
    shm = Path("/dev/shm")
    # a container's /dev/shm is often 64 MiB: too small for the disks tests create
    if not (shm.is_dir() and os.access(shm, os.W_OK)
            and shutil.disk_usage(shm).free >= SCRATCH_MIN_FREE):
        yield fallback
        return
    with tempfile.TemporaryDirectory(prefix="herd-harness-", dir=shm) as root:
        yield Path(root)


def node_ip(index: int) -> str:
    """Node ``index``'s primary IP (its secondary IP is 100 higher)."""
    return f"192.0.2.{index}"


@dataclass
class Fault:
    """An error noded raises for the next call of one method (see ``fail_once``)."""

    #: a HerdError travels as itself; anything else as noded reports a crashed method
    error: Exception
    #: run the real method first: the node acted, then reported a failure
    after: bool = False


@dataclass
class HarnessNode:
    """One node: its root, its real node service and the faults armed on it."""

    name: str
    primary_ip: str
    secondary_ip: str
    paths: HerdPaths
    service: NodeService
    unreachable: bool = False
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    #: (method, arguments as decoded by noded) of every request that reached the node
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def disk_files(self) -> list[str]:
        """The files in this node's file storage directory, relative to it, sorted: what a
        user would find with ``ls -R`` on the node."""
        base = self.paths.file_storage_dir
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())

    def methods_called(self) -> list[str]:
        return [method for method, _ in self.calls]

    @property
    def lvm(self) -> FakeLvmNode:
        """The node's fake volume group (clusters made with ``vg=``)."""
        vg = self.service._vg[1]
        assert isinstance(vg, FakeLvmNode), "the cluster has no volume group (vg=...)"
        return vg


class FakeMirrorManager(MirrorManager):
    """The mirror manager of one harness node without storage daemons, so that LUs on
    ``drbd`` instances (failover, migrate, replace-disks, conversions) run in milliseconds.

    What is real: creating and removing the data volume and the generation record, and the
    generation rules (``decide_sync`` on the master, ``_choose_sync`` and ``bump`` here), so
    the master's decisions see the records they would. What is faked: the daemon and the
    replication. A secondary "listens" in :class:`FakeMirrorNet` (by its address and port),
    a primary is connected while its peer listens there, and a connected mirror is in sync at
    once (no data is copied: these tests are about the LU logic; the lab tests the data path).
    Installed through the node's device factory, the one place noded looks the manager up.
    """

    def __init__(self, paths: HerdPaths, devices: Any, net: FakeMirrorNet, name: str) -> None:
        super().__init__(paths, devices)
        self.net = net
        self.name = name
        #: disk uuid -> (role, the disk as last started)
        self.active: dict[str, tuple[str, MirrorDisk]] = {}
        #: disks held for a grow (grow_hold): no job, no exports
        self.holding: set[str] = set()

    def _peer(self, disk: MirrorDisk) -> FakeMirrorManager | None:
        peer = self.net.listening.get((disk.peer_ip, disk.port))
        if peer is None or peer is self or peer.active.get(disk.uuid, ("",))[0] != "secondary":
            return None
        return peer

    def _state(self, disk: MirrorDisk) -> MirrorStatus:
        role = self.active.get(disk.uuid, ("down",))[0]
        gen = self._gen(disk).read() if self._gen(disk).exists() else {}
        connected = role == "primary" and self._peer(disk) is not None
        uri = {"primary": f"nbd+unix:///{disk.uuid}?socket=/fake/{self.name}",
               "secondary": f"nbd://{disk.local_ip}:{disk.port}/vm"}.get(role)
        return MirrorStatus(role=role, connected=connected, in_sync=connected,
                            sync_percent=100.0 if connected else None,
                            degraded=role == "primary" and not connected,
                            generation=str(gen.get("current", "")), vm_uri=uri)

    def generation(self, disk: MirrorDisk) -> dict[str, Any]:
        gen = self._gen(disk).read()
        running = disk.uuid in self.active
        gen["running"] = running
        gen["dirty_map_valid"] = bool(gen.get("dirty_map_valid") and running
                                      and self.active[disk.uuid][0] == "primary")
        return gen

    async def start_secondary(self, disk: MirrorDisk) -> None:
        if not self._gen(disk).exists():
            raise StorageError(f"mirrored disk {disk.relpath} does not exist on {self.name}")
        # a primary handing over (live migration) becomes the secondary of the new one
        self.active[disk.uuid] = ("secondary", disk)
        self.net.listening[(disk.local_ip, disk.port)] = self

    def served(self, disk: MirrorDisk) -> dict[str, Any] | None:
        if self.active.get(disk.uuid, ("",))[0] != "secondary":
            return None
        gen = self._gen(disk).read()
        return {"export": f"{disk.uuid}.{gen['current']}", "generation": gen}

    async def start_primary(self, disk: MirrorDisk, sync: str, *,
                            allow_degraded: bool = False,
                            peer_served: dict[str, Any] | None = None) -> MirrorStatus:
        if self.active.get(disk.uuid, ("",))[0] == "primary":
            return self._state(disk)
        gf = self._gen(disk)
        own = gf.read()
        peer = self._peer(disk)
        if peer is None and not allow_degraded:
            raise StorageError(f"cannot attach mirrored disk {disk.relpath}: peer "
                               f"{disk.peer_ip}:{disk.port} does not answer (start degraded "
                               "only if the peer is dead)")
        if peer is not None:
            _, own = self._choose_sync(disk, own, peer.generation(disk), sync)
            map_since = own["current"]
        else:
            map_since = own["current"]
            own = bump(own)
        own.update(role="primary", clean=False, fresh=False, needs_full=False,
                   degraded=peer is None, dirty_map_valid=True, map_since=map_since)
        gf.write(own)
        self.active[disk.uuid] = ("primary", disk)
        self.net.listening.pop((disk.local_ip, disk.port), None)
        return self._state(disk)

    async def status(self, disk: MirrorDisk) -> MirrorStatus:
        return self._state(disk)

    async def wait_sync(self, disk: MirrorDisk, timeout: float) -> MirrorStatus:
        return self._state(disk)

    async def reconnect(self, disk: MirrorDisk) -> MirrorStatus:
        return self._state(disk)

    async def _state_of(self, disk: MirrorDisk) -> State:
        """The fake's state (no storage daemons: ``active`` says who runs what)."""
        if not self._gen(disk).exists():
            return State.ABSENT
        role = self.active.get(disk.uuid, ("down",))[0]
        if role == "primary" and disk.uuid in self.holding:
            return State.GROWING
        if role == "primary":
            return State.SYNCED if self._peer(disk) is not None else State.DEGRADED
        return State.SECONDARY if role == "secondary" else State.STOPPED

    _phase = _state_of  # what the real manager's mark_synced and hand-over ask

    async def grow_hold(self, disk: MirrorDisk) -> None:
        """As the real one's rules: only a mirror in sync is held; the copy stays as it is."""
        transition(await self._state_of(disk), Event.GROW_HOLD, f"disk {disk.relpath}")
        self.holding.add(disk.uuid)

    async def grow_serve(self, disk: MirrorDisk) -> None:
        """The copy takes ``disk.size`` (real file or LV) and is served again."""
        role, served = self.active.get(disk.uuid, ("down", disk))
        if role == "primary" and disk.uuid not in self.holding and served.size == disk.size:
            return  # as the real one: an undo of a hold that never began
        state = State.GROWING if disk.uuid in self.holding else await self._state_of(disk)
        transition(state, Event.GROW_SERVE, f"disk {disk.relpath}")
        data = self._data(disk)
        await data.grow(disk.size)
        await data.undo_grow(disk.size)
        self.holding.discard(disk.uuid)
        role = self.active[disk.uuid][0]
        self.active[disk.uuid] = (role, disk)

    async def observe(self, disk: MirrorDisk) -> State:
        return await self._state_of(disk)

    async def sync_record(self, disk: MirrorDisk) -> dict[str, Any]:
        """As the real one: in sync while the peer listens, and the export a job would
        replicate to, named by the peer's own record."""
        state = await self._state_of(disk)
        gen = self._gen(disk).read()
        peer = self._peer(disk)
        export = (peer._export_name(disk, peer._gen(disk).read())
                  if peer is not None and state is State.SYNCED else None)
        return {"in_sync": state is State.SYNCED, "state": str(state),
                "current": gen["current"], "history": list(gen.get("history", [])),
                "export": export}

    async def stop(self, disk: MirrorDisk) -> None:
        role = self.active.pop(disk.uuid, ("down",))[0]
        if self.net.listening.get((disk.local_ip, disk.port)) is self:
            del self.net.listening[(disk.local_ip, disk.port)]
        gf = self._gen(disk)
        if role == "down" or not gf.exists():
            if gf.exists():  # as the real one: a data volume active without a daemon
                await self._data(disk).shutdown()
            return
        if role == "primary" and self._peer(disk) is None and not gf.read().get("degraded"):
            gf.write({**bump(gf.read()), "degraded": True})  # the peer misses something
        gf.update(clean=True, dirty_map_valid=False)

    async def remove(self, disk: MirrorDisk) -> None:
        await self.stop(disk)
        await super().remove(disk)

    async def list_active(self) -> list[str]:
        return sorted(self.active)


class FakeLvmNode:
    """One node's volume group without LVM: what :class:`herd.storage.lvm.LvmNode` offers the
    device factory (create, remove, assemble, deactivate, grow, listings), with each LV a
    sparse file under the node's root and its "device" that file while active.

    What is real: names checked by LVM's rules, sizes in whole 4 MiB extents, free space
    counted (a create that does not fit is refused as lvcreate refuses it), removal of an
    active LV detaching it first, and deactivation refused while the LV is "held" (``held``,
    a test's stand-in for a VM or daemon keeping it open). So templates' plans, rollbacks and
    "no LV and no active device left" run in milliseconds; the lab runs the real LVM.
    """

    EXTENT = 4 * MIB

    def __init__(self, vg_name: str, root: Path, size_mib: int) -> None:
        self.vg_name = vg_name
        self.dir = root
        self.dir.mkdir(parents=True, exist_ok=True)
        self.size = size_mib * MIB // self.EXTENT * self.EXTENT
        self.lvs: dict[str, tuple[int, tuple[str, ...]]] = {}  # name -> (size, tags)
        self.active: set[str] = set()
        self.held: set[str] = set()
        self.activation = ActivationMode("loop", "in-process test node: LVs are files")
        self.mode = "loop"

    def _file(self, name: str) -> Path:
        return self.dir / name

    def vg_info(self) -> VolumeGroup:
        used = sum(size for size, _ in self.lvs.values())
        pv = PhysicalVolume(name=str(self.dir / "pv"), vg_name=self.vg_name, pe_start=MIB,
                            size=self.size, free=self.size - used,
                            pe_count=self.size // self.EXTENT)
        return VolumeGroup(name=self.vg_name, uuid=f"fake-{self.vg_name}", size=self.size,
                           free=self.size - used, extent_size=self.EXTENT,
                           extent_count=self.size // self.EXTENT,
                           free_count=(self.size - used) // self.EXTENT, pvs=(pv,))

    def list_lvs(self) -> list[LogicalVolume]:
        pv = str(self.dir / "pv")
        return [LogicalVolume(name=name, vg_name=self.vg_name, uuid=f"lv-{name}", size=size,
                              tags=tags, segments=(Segment(0, (PeRange(pv, 0, 0),)),),
                              path=str(self._file(name)) if name in self.active else None)
                for name, (size, tags) in sorted(self.lvs.items())]

    def find(self, name: str) -> LogicalVolume | None:
        return next((lv for lv in self.list_lvs() if lv.name == name), None)

    def create(self, name: str, size_mib: int, tags: tuple[str, ...] = ()) -> LogicalVolume:
        validate_lv_name(name, self.vg_name)
        if name in self.lvs:
            raise StorageError(f"cannot create LV {self.vg_name}/{name} ({size_mib} MiB): "
                               f"Logical Volume \"{name}\" already exists in volume group "
                               f"\"{self.vg_name}\"")
        size = -(-size_mib * MIB // self.EXTENT) * self.EXTENT
        if size > self.vg_info().free:
            raise StorageError(f"cannot create LV {self.vg_name}/{name} ({size_mib} MiB): "
                               f"Volume group \"{self.vg_name}\" has insufficient free space "
                               f"({self.vg_info().free_count} extents): "
                               f"{size // self.EXTENT} required.")
        with open(self._file(name), "wb") as handle:
            handle.truncate(size)
        self.lvs[name] = (size, tuple(tags))
        return self.get(name)

    def get(self, name: str) -> LogicalVolume:
        lv = self.find(name)
        if lv is None:
            raise StorageError(f"LV {self.vg_name}/{name} does not exist")
        return lv

    def assemble(self, name: str) -> str:
        self.get(name)
        self.active.add(name)
        return str(self._file(name))

    def deactivate(self, name: str) -> None:
        if name in self.held:
            raise StorageError(f"LV {self.vg_name}/{name} is in use; not deactivated")
        self.active.discard(name)

    def remove(self, name: str) -> None:
        if name not in self.lvs:
            return
        self.deactivate(name)
        del self.lvs[name]
        self._file(name).unlink(missing_ok=True)

    def grow(self, name: str, size_mib: int) -> LogicalVolume:
        size, tags = self.lvs[self.get(name).name]
        if size_mib * MIB > size:
            self.lvs[name] = (-(-size_mib * MIB // self.EXTENT) * self.EXTENT, tags)
            os.truncate(self._file(name), self.lvs[name][0])
        return self.get(name)


@dataclass
class FakeMirrorNet:
    """Where fake secondaries listen: (secondary IP, port) -> the node's manager."""

    listening: dict[tuple[str | None, int], FakeMirrorManager] = field(default_factory=dict)


class _FaultyService:
    """What noded's application dispatches to: the node's real service, except for a method
    with an armed fault. ``build_app`` looks methods up with ``getattr``, so a failing method
    goes through the server's own error handling, as a real failure on the node would."""

    def __init__(self, node: HarnessNode) -> None:
        self._node = node

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._node.service, name)
        armed = self._node.faults.get(name)
        if not armed:
            return real
        fault = armed.pop(0)

        async def failing(**args: Any) -> Any:
            if fault.after:
                await real(**args)
            raise fault.error

        return failing


#: What the node RPC client reports for a node that does not answer (httpx's ConnectError).
NO_ROUTE = "[Errno 113] No route to host"


class _InProcessNetwork(httpx.AsyncBaseTransport):
    """The nodes' noded applications, by primary IP, called as an ASGI server calls them.

    :class:`InProcessNodeClient` posts here directly; as an httpx transport it also carries the
    production :class:`NodeClient` (``InProcessRunner.wire``), against which the harness
    client is checked (tests/unit/test_logical_units.py)."""

    def __init__(self, nodes: dict[str, HarnessNode]) -> None:
        self._by_address = {n.primary_ip: n for n in nodes.values()}
        self._apps = {n.primary_ip: build_app(cast(NodeService, _FaultyService(n)))
                      for n in nodes.values()}

    def reachable(self, address: str) -> bool:
        node = self._by_address.get(address)
        return node is not None and not node.unreachable

    async def post(self, address: str, path: str, body: bytes,
                   headers: list[tuple[bytes, bytes]] | None = None,
                   ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """POST ``body`` to ``path`` of the node at ``address``: (status, headers, body)."""
        node = self._by_address[address]
        try:
            node.calls.append((path.rsplit("/", 1)[-1], json.loads(body or b"{}")))
        except ValueError:
            node.calls.append((path.rsplit("/", 1)[-1], {}))
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "https", "path": path,
                 "raw_path": path.encode(), "query_string": b"",
                 "headers": headers or [(b"content-type", b"application/json")],
                 "server": (address, NODED_PORT), "client": (node_ip(1), 40000),
                 "root_path": ""}
        sent = False
        status, answer_headers, parts = 500, [], []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, answer_headers
            if message["type"] == "http.response.start":
                status, answer_headers = message["status"], message.get("headers", [])
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))

        await self._apps[address](scope, receive, send)
        return status, answer_headers, b"".join(parts)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if not self.reachable(host):
            # what httpx raises when the host does not answer: the client's NOT_SENT case
            raise httpx.ConnectError(NO_ROUTE, request=request)
        headers = [(k.lower(), v) for k, v in request.headers.raw]
        status, answer_headers, body = await self.post(host, request.url.path,
                                                       await request.aread(), headers)
        return httpx.Response(status, headers=answer_headers, content=body)


class InProcessNodeClient(NodeClient):
    """The production NodeClient (its typed methods build every request) with ``call`` posting
    straight to the node's noded application: the same JSON both ways and the same decoding
    of the answer, without httpx's client, which took 70% of an RPC's time here."""

    def __init__(self, network: _InProcessNetwork, node_name: str, address: str) -> None:
        super().__init__(cast(httpx.AsyncClient, None), node_name, address, NODED_PORT)
        self._network = network
        self._address = address

    async def call(self, method: str, timeout: float = DEFAULT_TIMEOUT, **args: Any) -> Any:
        if not self._network.reachable(self._address):
            # NodeClient.call's message for a request that never reached the node
            raise errors.RpcError(f"node {self.node_name} ({self.base}) unreachable for "
                                  f"'{method}': ConnectError: {NO_ROUTE}")
        # encoded as httpx encodes NodeClient's json= body (a NaN fails here as it does there)
        body = json.dumps(args, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        status, _, raw = await self._network.post(self._address, f"/rpc/{method}",
                                                  body.encode())
        return decode_answer(self.node_name, method, status, raw)  # as NodeClient.call does


class InProcessRunner(RpcRunner):
    """The master's RpcRunner, handing out clients of the nodes in this process."""

    def __init__(self, paths: HerdPaths, network: _InProcessNetwork) -> None:
        super().__init__(paths, NODED_PORT)
        self._network = network

    def node(self, node: Node) -> NodeClient:
        return InProcessNodeClient(self._network, node.name, node.primary_ip)

    def address(self, name: str, address: str) -> NodeClient:
        return InProcessNodeClient(self._network, name, address)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(transport=self._network)
        return self._http

    def wire(self, node: Node) -> NodeClient:
        """The unmodified production client over HTTP (in process): the reference that
        :class:`InProcessNodeClient` must agree with."""
        return super().node(node)


@dataclass
class JobOutcome:
    """What ``gnt-job info`` would show of a finished job."""

    job_id: int
    status: str
    op_status: list[str]
    #: each opcode's result; for a failed opcode Ganeti's encoding [error class, [message]]
    results: list[Any]
    #: the job log's messages, in order (feedback, warnings, "Error: ..." lines)
    log: list[str]

    @property
    def result(self) -> Any:
        return self.results[-1]

    @property
    def error(self) -> tuple[str, str] | None:
        """(error class, message) of the first failed opcode, None if none failed."""
        for status, result in zip(self.op_status, self.results, strict=True):
            if status == q.ERROR:
                return str(result[0]), str(result[1][0])
        return None


@functools.cache
def _cluster_pki() -> tuple[bytes, bytes, bytes, bytes]:
    """The cluster CA and RAPI certificate: made once per test process (key generation is the
    slowest step of a cluster's creation; tests never check which CA they got)."""
    ca_cert, ca_key = certs.create_ca(CLUSTER_NAME)
    rapi_cert, rapi_key = certs.create_rapi_certificate(CLUSTER_NAME, [MASTER_IP])
    return ca_cert, ca_key, rapi_cert, rapi_key


def _seed_kvm_probe(paths: HerdPaths) -> None:
    """Record a KVM probe result in the node's probe cache, as noded's first start leaves one.
    node_info reports the kvm hypervisor's facts on every node (also on fake-hypervisor
    clusters), and without a cached result it would boot a QEMU probe guest (up to 2 s)."""
    probe = detect.KvmProbe(kvm_usable=False, qemu_version="",
                            kvm_reason="in-process test node: KVM not probed",
                            boot_id=detect._boot_id(), binary_id=detect.binary_id())
    detect._write_cache(detect._cache_file(paths), probe)


class InProcessCluster:
    """N nodes on the fake hypervisor with file storage, a master context and a job executor.

    Use as a context manager (it owns an event loop, the job queue and the HTTP client)::

        with InProcessCluster(tmp_path, nodes=2) as cluster:
            outcome = cluster.run(OpInstanceCreate(...))

    node1 is the master; its root holds the config, the queue and the cluster's TLS files.
    """

    def __init__(self, root: Path, nodes: int = 2, *,
                 disk_templates: tuple[str, ...] = ("file", "diskless"),
                 hypervisors: tuple[str, ...] = ("fake",), vg: str = "",
                 vg_mib: int | dict[str, int] = 4096) -> None:
        if not 1 <= nodes <= 99:
            raise ValueError(f"between 1 and 99 nodes, not {nodes}")
        self.root = root
        self.loop = asyncio.new_event_loop()
        self.nodes: dict[str, HarnessNode] = {}
        self.mirror_net = FakeMirrorNet()
        for index in range(1, nodes + 1):
            paths = HerdPaths(root / f"node{index}")
            paths.ensure()
            name = node_name(index)
            (paths.data_dir / "node-name").write_text(name + "\n")
            _seed_kvm_probe(paths)
            service = NodeService(paths)
            # the device factory builds the manager on first use: give it the fake one
            service.devices._mirror = FakeMirrorManager(paths, service.devices,
                                                        self.mirror_net, name)
            if vg:  # the cluster's VG, as noded would have resolved it from its facts
                size = vg_mib.get(name, 4096) if isinstance(vg_mib, dict) else vg_mib
                lvm = FakeLvmNode(vg, paths.data_dir / "fake-vg", size)
                service.devices.add_volume_group(lvm)
                service._vg = (vg, lvm, None)
            self.nodes[name] = HarnessNode(name=name, primary_ip=node_ip(index),
                                           secondary_ip=f"192.0.2.{100 + index}",
                                           paths=paths, service=service)
        self.master = self.nodes[node_name(1)]
        self.paths = self.master.paths
        data = self._initial_config(disk_templates, hypervisors)
        data.cluster.volume_group_name = vg
        self._write_master_files()
        self.store = ConfigStore.create(self.paths.config_file, data)
        write_facts(self.paths, data)
        self.network = _InProcessNetwork(self.nodes)
        self.rpc = InProcessRunner(self.paths, self.network)
        self.replicator = Replicator(self.paths, self.rpc)
        self.ctx = MasterContext(paths=self.paths, config=self.store, locks=LockManager(),
                                 rpc=self.rpc, replicator=self.replicator)
        # what masterd attaches to its store: facts on the master, files on the other nodes
        self.store.add_listener(self._write_master_facts)
        self.store.add_listener(self.replicator.on_save)
        self.queue = q.JobQueue(self.paths.queue_db)
        self.executor = JobExecutor(self.queue, self.ctx)

        async def submit_job(ops: list[dict[str, Any]]) -> int:
            return self.executor.submit(ops)

        self.ctx.submit_job = submit_job
        failures = self.wait(self.replicator.push(data, force=True))
        if failures:
            raise RuntimeError(f"harness nodes did not take the cluster files: {failures}")

    # -- building ---------------------------------------------------------------------------
    def _initial_config(self, disk_templates: tuple[str, ...],
                        hypervisors: tuple[str, ...]) -> ConfigData:
        """The config ``gnt-cluster init`` makes (herd.logic.bootstrap), with every node
        added as ``gnt-node add`` adds it (candidates while the pool has room)."""
        cluster = Cluster(
            cluster_name=CLUSTER_NAME, master_ip=MASTER_IP,
            enabled_hypervisors=list(hypervisors), enabled_disk_templates=list(disk_templates),
            beparams=params.fill(params.BE_DEFAULTS, params.check_beparams({})),
            nicparams=params.fill(params.NIC_DEFAULTS, params.check_nicparams({})),
            ndparams=params.fill(params.ND_DEFAULTS, params.check_ndparams({})),
            file_storage_dir=str(self.paths.file_storage_dir), noded_port=NODED_PORT)
        group = NodeGroup(name="default")
        nodes: dict[str, Node] = {}
        for hnode in self.nodes.values():
            node = Node(name=hnode.name, primary_ip=hnode.primary_ip,
                        secondary_ip=hnode.secondary_ip, group=group.uuid,
                        master_candidate=len(nodes) < cluster.candidate_pool_size)
            nodes[node.uuid] = node
        cluster.master_node = next(iter(nodes))
        return ConfigData(cluster=cluster, nodegroups={group.uuid: group}, nodes=nodes)

    def _write_master_files(self) -> None:
        ca_cert, ca_key, rapi_cert, rapi_key = _cluster_pki()
        tls.write_pair(self.paths.ca_cert, self.paths.ca_key, ca_cert, ca_key)
        tls.write_pair(self.paths.rapi_cert, self.paths.rapi_key, rapi_cert, rapi_key)
        create_rapi_users_file(self.paths)

    async def _write_master_facts(self, cfg: ConfigData) -> None:
        write_facts(self.paths, cfg)

    # -- the event loop ---------------------------------------------------------------------
    def wait(self, awaitable: Awaitable[T]) -> T:
        """Run ``awaitable`` on the cluster's loop (where its executor and locks live)."""

        async def main() -> T:
            return await awaitable

        return self.loop.run_until_complete(main())

    def close(self) -> None:
        async def shutdown() -> None:
            await self.executor.shutdown()
            await self.replicator.close()
            await self.rpc.close()

        try:
            self.loop.run_until_complete(shutdown())
        finally:
            self.queue.close()
            self.loop.close()

    def __enter__(self) -> InProcessCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- faults -----------------------------------------------------------------------------
    def set_unreachable(self, name: str, unreachable: bool = True) -> None:
        """Cut (or restore) the node: its RPCs fail as for a host that does not answer."""
        self.nodes[name].unreachable = unreachable

    def fail_once(self, name: str, method: str, error: Exception | None = None, *,
                  after: bool = False) -> None:
        """Make the next ``method`` RPC on node ``name`` fail inside noded with ``error``
        (default: a StorageError naming the method); with ``after`` the real method runs
        first, as when a node acts and then reports a failure."""
        error = error or errors.StorageError(f"injected failure of '{method}' on {name}")
        self.nodes[name].faults.setdefault(method, []).append(Fault(error, after))

    # -- running operations -----------------------------------------------------------------
    @staticmethod
    def _op_dict(op: OpCode | dict[str, Any]) -> dict[str, Any]:
        return op.to_dict() if isinstance(op, OpCode) else dict(op)

    def submit(self, *ops: OpCode | dict[str, Any]) -> int:
        """Submit a job as masterd does (validation included); returns its id."""
        return self.executor.submit([self._op_dict(op) for op in ops])

    def run(self, *ops: OpCode | dict[str, Any], timeout: float = 10.0) -> JobOutcome:
        """Run one job of ``ops`` through the job executor (locks, check, hooks, execute) and
        return how it ended."""
        return self.wait(self.run_async(*ops, timeout=timeout))

    async def run_async(self, *ops: OpCode | dict[str, Any],
                        timeout: float = 10.0) -> JobOutcome:
        job_id = self.submit(*ops)
        return await self.finish(job_id, timeout)

    async def finish(self, job_id: int, timeout: float = 10.0) -> JobOutcome:
        """Wait for job ``job_id`` to end (a timeout is a harness failure: nothing here may
        wait for anything but other jobs' locks)."""
        deadline = self.loop.time() + timeout
        status: str | None = None
        serial = 0
        while status not in q.FINAL_STATES:
            change = await self.executor.wait_for_change(job_id, status, serial,
                                                         deadline - self.loop.time())
            if change is None:
                raise AssertionError(f"job {job_id} did not end within {timeout} s")
            status = change["status"]
            if change["log"]:
                serial = change["log"][-1][0]
        job = self.queue.get(job_id)
        return JobOutcome(job_id=job.id, status=job.status,
                          op_status=[op.status for op in job.ops],
                          results=[op.result for op in job.ops],
                          log=[message for _, _, _, _, message in job.log])

    def check(self, op: OpCode | dict[str, Any]) -> list[str]:
        """Run only the check phase of ``op``'s logical unit, under its locks, as the
        executor does before execute; raises what check raises. Returns the feedback."""
        lines: list[str] = []
        parsed = opcode_from_dict(self._op_dict(op))

        async def main() -> None:
            lu = lu_for(parsed)(parsed, self.ctx, lines.append)
            try:
                async with self.ctx.locks.hold("harness-check", lu.locks()):
                    await lu.check()
            finally:
                lu.cleanup()

        self.wait(main())
        return lines

    # -- looking at the cluster -------------------------------------------------------------
    @property
    def config(self) -> ConfigData:
        """The master's config in memory (what the next operation will see)."""
        return self.store.data

    def saved_config(self) -> ConfigData:
        """The config as stored on the master's disk (what a restarted masterd would load)."""
        return ConfigStore.load(self.paths.config_file).data

    def instance(self, name: str) -> Instance | None:
        return self.config.find_instance(name)

    def running(self, name: str) -> dict[str, dict[str, Any]]:
        """The fake hypervisor's guests on node ``name``: instance name -> runtime record."""
        hv = self.nodes[name].service.hypervisor("fake")
        return {info.name: info.to_dict() for info in self.wait(hv.list_instances())}

    def all_calls(self) -> list[tuple[str, str]]:
        """(node, method) of every RPC that reached a node, node by node."""
        return [(n.name, method) for n in self.nodes.values() for method in n.methods_called()]

    def clear_calls(self) -> None:
        for node in self.nodes.values():
            node.calls.clear()


def create_op(name: str, *, node: str | None = None, disks: list[dict[str, Any]] | None = None,
              template: str = "file", start: bool = False, **extra: Any) -> dict[str, Any]:
    """``gnt-instance add -t TEMPLATE --no-install --no-name-check --no-ip-check [-n NODE]``
    as the CLI submits it (no OS: installing runs the OS scripts as processes)."""
    op: dict[str, Any] = {
        "OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "disk_template": template,
        "disks": [{"size": 64}] if disks is None and template != "diskless" else disks or [],
        "pnode": node, "start": start, "no_install": True, "name_check": False,
        "ip_check": False}
    op.update(extra)
    return op
