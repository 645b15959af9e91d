"""A small asyncio client for etcd v3, over etcd's JSON gateway with httpx.

Why the gateway and not a gRPC library: every etcd v3 call that Herd needs (range, put, txn with
compares on revisions, delete, leases, watch, membership, status) is served by etcd itself as
JSON over HTTPS on the client port (``/v3/...``; bytes are base64, 64-bit integers are JSON
strings). Herd's daemons already speak HTTPS with httpx and the cluster's mutual TLS, so this
costs no new dependency, no C extension and no code generation, and follows Herd's TLS
material as every other client does. The gRPC clients on PyPI cost more and give little here:
``aetcd`` and ``etcd3`` pull in ``grpcio`` (a C++ runtime that starts threads of its own)
and ``protobuf``; ``etcd3gw`` is the same gateway idea but synchronous (requests), so it
would block the daemons' event loops. Measured on this machine (Python 3.11, max RSS of a
process, issue 10):
importing this module in a process that has httpx already (every Herd daemon) adds 1.5 MiB;
importing ``aetcd`` (grpcio 1.85, protobuf) adds 15 MiB, and its first call starts a
thread and adds ~3 MiB more. The price: a watch or keepalive stream is
one HTTP/1.1 request each (no multiplexing), which is fine for Herd's handful of streams.

Errors: any failure is :class:`EtcdError` (a HerdError, so it reaches users as one line);
an endpoint that refuses or does not accept the connection is skipped for the next one, so a
client given every candidate's URL keeps working while one member is down. A connection lost
after the request was sent is not retried elsewhere (the request may have been applied):
:class:`EtcdOutcomeUnknown` says so, and the caller decides (a txn comparing revisions can
simply be read back).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from herd import errors
from herd.etcd.members import Member

#: How long one call may take; a member without quorum answers requests only after its own
#: request timeout (about 7 s with Herd's election timeout), so keep this above that.
DEFAULT_TIMEOUT = 10.0
CONNECT_TIMEOUT = 3.0
#: A read one member has not answered within this is also sent to the next member, and the
#: first answer counts: a member cut off from its leader (an asymmetric partition) answers a
#: linearizable read only after etcd's own request timeout (~7 s), while a member with a
#: leader answers within milliseconds. Every CLI command on such a node used to sit out those
#: 7 s per read. A read has no effect, so asking two members costs only the second request.
HEDGE_AFTER = 1.0


class EtcdError(errors.HerdError):
    code = "EtcdError"

    def __init__(self, message: str, grpc_code: int | None = None) -> None:
        super().__init__(message)
        self.grpc_code = grpc_code


class EtcdUnavailable(EtcdError):
    """No endpoint could be reached."""


class EtcdOutcomeUnknown(EtcdUnavailable):
    """The connection broke after the request was sent: it may or may not have been applied."""


def b64(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: bytes | str) -> bytes:
    """The range end that selects every key starting with ``prefix`` (etcd's rule)."""
    key = bytearray(prefix.encode() if isinstance(prefix, str) else prefix)
    while key:
        if key[-1] < 0xFF:
            key[-1] += 1
            return bytes(key)
        key.pop()
    return b"\0"  # every key


def _leaderless(message: str) -> bool:
    """etcd's answers of a member that cannot serve a linearizable request now."""
    text = message.lower()
    return any(m in text for m in ("no leader", "timed out", "leader changed",
                                   "not capable", "too many requests"))


def _int(value: Any) -> int:
    return int(value) if value not in (None, "") else 0


@dataclass(frozen=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @classmethod
    def from_json(cls, kv: dict[str, Any]) -> KeyValue:
        return cls(unb64(kv.get("key")), unb64(kv.get("value")), _int(kv.get("create_revision")),
                   _int(kv.get("mod_revision")), _int(kv.get("version")), _int(kv.get("lease")))


@dataclass(frozen=True)
class RangeResult:
    kvs: list[KeyValue]
    revision: int
    count: int
    more: bool


@dataclass(frozen=True)
class Compare:
    """One condition of a transaction: ``target`` of ``key`` ``result`` ``value``.

    The usual one for Herd: ``Compare.mod_revision(key, "=", rev)`` (the key is unchanged
    since it was read; rev 0 means the key does not exist).
    """

    key: bytes | str
    target: str  # VERSION, CREATE, MOD, VALUE, LEASE
    result: str  # EQUAL, GREATER, LESS, NOT_EQUAL
    value: Any

    _RESULTS = {"=": "EQUAL", "==": "EQUAL", ">": "GREATER", "<": "LESS", "!=": "NOT_EQUAL"}
    _FIELDS = {"VERSION": "version", "CREATE": "create_revision", "MOD": "mod_revision",
               "VALUE": "value", "LEASE": "lease"}

    @classmethod
    def mod_revision(cls, key: bytes | str, op: str, revision: int) -> Compare:
        return cls(key, "MOD", cls._RESULTS[op], revision)

    @classmethod
    def version(cls, key: bytes | str, op: str, version: int) -> Compare:
        return cls(key, "VERSION", cls._RESULTS[op], version)

    @classmethod
    def create_revision(cls, key: bytes | str, op: str, revision: int) -> Compare:
        return cls(key, "CREATE", cls._RESULTS[op], revision)

    @classmethod
    def value_is(cls, key: bytes | str, value: bytes | str) -> Compare:
        return cls(key, "VALUE", "EQUAL", value)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": b64(self.key), "target": self.target,
                               "result": self.result}
        out[self._FIELDS[self.target]] = b64(self.value) if self.target == "VALUE" else \
            str(self.value)
        return out


@dataclass(frozen=True)
class Op:
    """One operation of a transaction branch (put, delete or range)."""

    kind: str
    key: bytes | str
    value: bytes | str = b""
    range_end: bytes | None = None
    lease: int = 0

    @classmethod
    def put(cls, key: bytes | str, value: bytes | str, lease: int = 0) -> Op:
        return cls("put", key, value, lease=lease)

    @classmethod
    def delete(cls, key: bytes | str, prefix: bool = False) -> Op:
        return cls("delete", key, range_end=prefix_end(key) if prefix else None)

    @classmethod
    def get(cls, key: bytes | str, prefix: bool = False) -> Op:
        return cls("range", key, range_end=prefix_end(key) if prefix else None)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"key": b64(self.key)}
        if self.range_end is not None:
            body["range_end"] = b64(self.range_end)
        if self.kind == "put":
            body["value"] = b64(self.value)
            if self.lease:
                body["lease"] = str(self.lease)
            return {"request_put": body}
        if self.kind == "delete":
            return {"request_delete_range": body}
        return {"request_range": body}


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: list[dict[str, Any]]

    def ranges(self) -> list[list[KeyValue]]:
        """The key-values read by the range ops of the branch that ran, in order."""
        return [[KeyValue.from_json(kv) for kv in r["response_range"].get("kvs", [])]
                for r in self.responses if "response_range" in r]


@dataclass(frozen=True)
class WatchEvent:
    type: str  # PUT or DELETE
    kv: KeyValue
    prev_kv: KeyValue | None = None


@dataclass(frozen=True)
class Status:
    version: str
    db_size: int
    leader: int
    member_id: int
    raft_term: int
    raft_index: int
    revision: int
    is_learner: bool
    errors: list[str] = field(default_factory=list)
    #: bytes of the database file holding live data (the rest is free pages a defragment
    #: gives back to the filesystem)
    db_size_in_use: int = 0


def _member(m: dict[str, Any]) -> Member:
    return Member(id=_int(m.get("ID")), name=m.get("name", ""),
                  peer_urls=tuple(m.get("peerURLs", [])),
                  client_urls=tuple(m.get("clientURLs", [])),
                  is_learner=bool(m.get("isLearner", False)))


class EtcdClient:
    """Calls etcd at the first endpoint that answers; see the module doc."""

    def __init__(self, endpoints: Sequence[str], ssl_context: ssl.SSLContext,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        if not endpoints:
            raise ValueError("an etcd client needs at least one endpoint URL")
        self.endpoints = list(dict.fromkeys(endpoints))
        self._timeout = timeout
        #: endpoints kept last while they cannot answer (see :meth:`avoiding`)
        self._avoided: set[str] = set()
        self._http = httpx.AsyncClient(
            verify=ssl_context, timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
            limits=httpx.Limits(max_keepalive_connections=8, keepalive_expiry=30))

    @classmethod
    def for_node(cls, paths: Any, endpoints: Sequence[str],
                 timeout: float = DEFAULT_TIMEOUT) -> EtcdClient:
        """A client holding this node's certificate (the only kind etcd lets in)."""
        from herd.rpc import tls

        return cls(endpoints, tls.client_context(paths), timeout)

    @contextlib.contextmanager
    def avoiding(self, endpoint: str) -> Iterator[None]:
        """Send requests to the other members while ``endpoint`` is busy (a defragmenting
        member answers nothing until it is done: the master's lease renewals must not wait
        for it)."""
        if endpoint not in self.endpoints or len(self.endpoints) < 2:
            yield
            return
        self._avoided.add(endpoint)
        self.endpoints.remove(endpoint)
        self.endpoints.append(endpoint)
        try:
            yield
        finally:
            self._avoided.discard(endpoint)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- transport ------------------------------------------------------------------------------
    async def call(self, path: str, body: dict[str, Any], read: bool = False,
                   endpoint: str | None = None,
                   timeout: float | None = None) -> dict[str, Any]:
        """POST ``body`` to ``/v3/<path>`` at the first endpoint that answers.

        ``read``: the request changes nothing, so a member that answers without a leader
        (cut off from the leader, e.g. by an asymmetric partition) or times out is passed
        over for the next one; a write is never sent twice. ``endpoint``: ask that member
        only (a member's own status, its defragmentation)."""
        problems = []
        bases = [endpoint] if endpoint else list(self.endpoints)
        extra = {} if timeout is None else {"timeout": timeout}
        if read and len(bases) > 1:
            return await self._read(path, body, bases, extra)
        for index, base in enumerate(bases):
            try:
                resp = await self._http.post(f"{base}/v3/{path}", json=body, **extra)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                problems.append(f"{base}: {type(exc).__name__}: {exc}".rstrip(": "))
                continue
            except httpx.TransportError as exc:
                if read:
                    problems.append(f"{base}: {type(exc).__name__}: {exc}".rstrip(": "))
                    continue
                raise EtcdOutcomeUnknown(
                    f"etcd {path}: connection to {base} lost ({type(exc).__name__}: {exc}); "
                    "the request may or may not have been applied") from None
            try:
                answer = self._answer(path, resp)
            except EtcdError as exc:
                if read and index + 1 < len(bases) and _leaderless(exc.message):
                    problems.append(f"{base}: {exc.message}")
                    continue
                raise
            if index:
                self._prefer(base)
            return answer
        raise EtcdUnavailable(f"etcd unreachable for {path}: " + "; ".join(problems))

    def _prefer(self, base: str) -> None:
        """Send requests to ``base`` first from now on (it answered when another did not)."""
        if base in self.endpoints and base not in self._avoided:
            self.endpoints.remove(base)
            self.endpoints.insert(0, base)

    async def _read(self, path: str, body: dict[str, Any], bases: list[str],
                    extra: dict[str, Any]) -> dict[str, Any]:
        """A read at the first of ``bases`` that answers it, hedged (see HEDGE_AFTER): the
        next member is asked when the ones asked failed or stay silent for HEDGE_AFTER.
        Errors as :meth:`call`'s: a member's own error (not a leaderless one) is raised at
        once; when every member failed, the last one's leaderless error, or EtcdUnavailable."""
        problems: list[str] = []
        waiting = list(bases)
        asked: dict[asyncio.Task[httpx.Response], str] = {}

        def ask_next() -> None:
            base = waiting.pop(0)
            task = asyncio.ensure_future(self._http.post(f"{base}/v3/{path}", json=body,
                                                         **extra))
            asked[task] = base

        ask_next()
        try:
            while asked:
                done, _ = await asyncio.wait(asked, timeout=HEDGE_AFTER if waiting else None,
                                             return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    base = asked.pop(task)
                    try:
                        answer = self._answer(path, task.result())
                    except httpx.TransportError as exc:
                        problems.append(f"{base}: {type(exc).__name__}: {exc}".rstrip(": "))
                        continue
                    except EtcdError as exc:
                        if (waiting or asked) and _leaderless(exc.message):
                            problems.append(f"{base}: {exc.message}")
                            continue
                        raise
                    if base != bases[0]:
                        self._prefer(base)
                    return answer
                if waiting:
                    ask_next()  # those asked failed, or are silent for HEDGE_AFTER
        finally:
            for task in asked:
                task.cancel()
            if asked:
                await asyncio.wait(asked)
        raise EtcdUnavailable(f"etcd unreachable for {path}: " + "; ".join(problems))

    @staticmethod
    def _answer(path: str, resp: httpx.Response) -> dict[str, Any]:
        try:
            data = resp.json()
        except ValueError:
            raise EtcdError(f"etcd: invalid answer to {path} (HTTP {resp.status_code}): "
                            f"{resp.text[:200]}") from None
        if resp.status_code != 200 or (isinstance(data, dict) and "error" in data
                                       and "header" not in data):
            message = data.get("message") or data.get("error") or resp.text[:200]
            raise EtcdError(f"etcd {path}: {message}", _int(data.get("code")) or None)
        return data  # type: ignore[no-any-return]

    # -- keys -----------------------------------------------------------------------------------
    async def range(self, key: bytes | str, range_end: bytes | None = None, *,
                    prefix: bool = False, revision: int = 0, limit: int = 0,
                    keys_only: bool = False, serializable: bool = False) -> RangeResult:
        body: dict[str, Any] = {"key": b64(key)}
        if prefix:
            range_end = prefix_end(key)
        if range_end is not None:
            body["range_end"] = b64(range_end)
        if revision:
            body["revision"] = str(revision)
        if limit:
            body["limit"] = str(limit)
        if keys_only:
            body["keys_only"] = True
        if serializable:
            body["serializable"] = True
        data = await self.call("kv/range", body, read=True)
        return RangeResult([KeyValue.from_json(kv) for kv in data.get("kvs", [])],
                           _int(data["header"].get("revision")), _int(data.get("count")),
                           bool(data.get("more")))

    async def get(self, key: bytes | str) -> KeyValue | None:
        result = await self.range(key)
        return result.kvs[0] if result.kvs else None

    async def put(self, key: bytes | str, value: bytes | str, lease: int = 0) -> int:
        """Store ``value``; return the revision of the change."""
        body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        data = await self.call("kv/put", body)
        return _int(data["header"].get("revision"))

    async def delete(self, key: bytes | str, *, prefix: bool = False) -> int:
        """Delete ``key`` (or every key under it); return how many were deleted."""
        body: dict[str, Any] = {"key": b64(key)}
        if prefix:
            body["range_end"] = b64(prefix_end(key))
        data = await self.call("kv/deleterange", body)
        return _int(data.get("deleted"))

    async def txn(self, compare: Sequence[Compare], success: Sequence[Op],
                  failure: Sequence[Op] = ()) -> TxnResult:
        """If every compare holds, run ``success``, else ``failure``: atomically, on a quorum."""
        data = await self.call("kv/txn", {"compare": [c.to_json() for c in compare],
                                          "success": [o.to_json() for o in success],
                                          "failure": [o.to_json() for o in failure]})
        return TxnResult(bool(data.get("succeeded")), _int(data["header"].get("revision")),
                         data.get("responses", []))

    # -- leases ---------------------------------------------------------------------------------
    async def lease_grant(self, ttl: int, lease_id: int = 0) -> tuple[int, int]:
        """A new lease: (id, granted TTL in seconds)."""
        data = await self.call("lease/grant", {"TTL": str(ttl), "ID": str(lease_id)})
        if data.get("error"):
            raise EtcdError(f"etcd lease grant: {data['error']}")
        return _int(data.get("ID")), _int(data.get("TTL"))

    async def lease_keepalive(self, lease_id: int) -> int:
        """Renew a lease once; return its TTL now (0: the lease has expired)."""
        data = await self.call("lease/keepalive", {"ID": str(lease_id)})
        return _int((data.get("result") or {}).get("TTL"))

    async def lease_revoke(self, lease_id: int) -> None:
        await self.call("lease/revoke", {"ID": str(lease_id)})

    async def lease_ttl(self, lease_id: int) -> int:
        """Seconds left on a lease (-1: it does not exist)."""
        data = await self.call("lease/timetolive", {"ID": str(lease_id)})
        return _int(data.get("TTL"))

    async def lease_left(self, lease_id: int) -> tuple[int, int]:
        """(seconds left on a lease (-1: it does not exist), etcd's raft term of the answer):
        the term says whether a leader change, which renews every lease, came in between."""
        data = await self.call("lease/timetolive", {"ID": str(lease_id)}, read=True)
        return _int(data.get("TTL")), _int((data.get("header") or {}).get("raft_term"))

    # -- watch ----------------------------------------------------------------------------------
    async def watch(self, key: bytes | str, *, prefix: bool = False, start_revision: int = 0,
                    prev_kv: bool = False) -> AsyncIterator[list[WatchEvent]]:
        """Yield the events on ``key`` (or under it) as they happen, one batch per revision.

        The stream runs until the caller stops iterating; a lost connection ends it with
        EtcdUnavailable (resume with ``start_revision`` = last seen + 1). A compacted
        ``start_revision`` raises EtcdError naming the oldest revision still kept.
        """
        create: dict[str, Any] = {"key": b64(key)}
        if prefix:
            create["range_end"] = b64(prefix_end(key))
        if start_revision:
            create["start_revision"] = str(start_revision)
        if prev_kv:
            create["prev_kv"] = True
        problems = []
        for base in self.endpoints:
            try:
                async with self._http.stream(
                        "POST", f"{base}/v3/watch", json={"create_request": create},
                        timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT)) as resp:
                    if resp.status_code != 200:
                        await resp.aread()
                        self._answer("watch", resp)
                    async for line in resp.aiter_lines():
                        if not line.strip():
                            continue
                        message = json.loads(line)
                        if "error" in message:
                            raise EtcdError(f"etcd watch: {message['error'].get('message')}")
                        result = message.get("result", {})
                        if result.get("compact_revision") not in (None, "", "0"):
                            raise EtcdError(f"etcd watch: revision {start_revision} was "
                                            "compacted; the oldest kept is "
                                            f"{result['compact_revision']}")
                        if result.get("canceled"):
                            raise EtcdError(f"etcd watch canceled: "
                                            f"{result.get('cancel_reason', 'no reason given')}")
                        events = [WatchEvent(e.get("type", "PUT"), KeyValue.from_json(e["kv"]),
                                             KeyValue.from_json(e["prev_kv"])
                                             if e.get("prev_kv") else None)
                                  for e in result.get("events", [])]
                        if events:
                            yield events
                return
            except httpx.TransportError as exc:
                problems.append(f"{base}: {type(exc).__name__}: {exc}")
                continue
        raise EtcdUnavailable("etcd watch: " + "; ".join(problems))

    # -- cluster --------------------------------------------------------------------------------
    async def member_list(self) -> list[Member]:
        data = await self.call("cluster/member/list", {})
        return [_member(m) for m in data.get("members", [])]

    async def member_add(self, peer_urls: Sequence[str],
                         learner: bool = False) -> tuple[Member, list[Member]]:
        """Add a member (as a non-voting learner if asked); return it and the new list."""
        data = await self.call("cluster/member/add", {"peerURLs": list(peer_urls),
                                                      "isLearner": learner})
        return _member(data["member"]), [_member(m) for m in data.get("members", [])]

    async def member_remove(self, member_id: int) -> list[Member]:
        data = await self.call("cluster/member/remove", {"ID": str(member_id)})
        return [_member(m) for m in data.get("members", [])]

    async def member_promote(self, member_id: int) -> list[Member]:
        data = await self.call("cluster/member/promote", {"ID": str(member_id)})
        return [_member(m) for m in data.get("members", [])]

    async def move_leader(self, target_id: int, endpoint: str | None = None) -> None:
        """Hand the leadership to member ``target_id`` (send it to the leader's endpoint)."""
        await self.call("maintenance/transfer-leadership", {"targetID": str(target_id)},
                        endpoint=endpoint)

    async def hand_over_leadership(self, leader_id: int, leader_url: str, target_id: int,
                                   target_url: str | None = None, wait: float = 10.0) -> bool:
        """Move etcd's leadership from ``leader_id`` (reached at ``leader_url``) to
        ``target_id``; True once a member (``target_url``, or any) names another leader."""
        await self.move_leader(target_id, endpoint=leader_url)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(EtcdError):
                if (await self.status(endpoint=target_url)).leader not in (0, leader_id):
                    return True
            await asyncio.sleep(0.1)
        return False

    async def defragment(self, endpoint: str, timeout: float = 120.0) -> None:
        """Defragment the member at ``endpoint``: its database file shrinks to its live data.
        The member answers nothing meanwhile (see :meth:`avoiding`)."""
        await self.call("maintenance/defragment", {}, endpoint=endpoint, timeout=timeout)

    async def compact(self, revision: int, physical: bool = True) -> None:
        """Forget the history before ``revision`` (etcd's auto-compaction does this too)."""
        await self.call("kv/compaction", {"revision": str(revision), "physical": physical})

    async def status(self, endpoint: str | None = None) -> Status:
        """The answering member's status (the first endpoint that answers, or ``endpoint``)."""
        data = await self.call("maintenance/status", {}, endpoint=endpoint)
        return Status(version=data.get("version", ""), db_size=_int(data.get("dbSize")),
                      leader=_int(data.get("leader")),
                      member_id=_int(data["header"].get("member_id")),
                      raft_term=_int(data.get("raftTerm")),
                      raft_index=_int(data.get("raftIndex")),
                      revision=_int(data["header"].get("revision")),
                      is_learner=bool(data.get("isLearner")),
                      errors=list(data.get("errors", [])),
                      db_size_in_use=_int(data.get("dbSizeInUse")))
