"""Cluster facts and files on every node: who the master is, the node list, the TLS files.

The config itself lives in etcd (herd.config.etcdstore): candidates read it from there when
they take over, so no config document is pushed. What nodes keep locally is the small facts
file (``gnt-cluster getmaster`` answers from it, also when the master is down) and the TLS
files a node of its role needs (candidates: also the CA key and RAPI certificate, to take
over). They are pushed when they change, not on every config change: a save that touches only
instances costs no RPC. A node that cannot be reached is remembered and retried in the
background until it is current. Offline nodes are skipped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from herd import errors
from herd.config.facts import facts_from_config
from herd.node.cluster_files import CANDIDATE_SSL_FILES, NODE_SSL_FILES, ClusterFiles
from herd.objects import ConfigData, Node
from herd.paths import HerdPaths
from herd.rpc.client import RpcRunner

log = logging.getLogger(__name__)
RETRY_INTERVAL = 5.0


class Replicator:
    def __init__(self, paths: HerdPaths, rpc: RpcRunner) -> None:
        self.paths = paths
        self.rpc = rpc
        #: node uuid -> last error, for nodes that did not get the newest copy
        self.behind: dict[str, str] = {}
        self._latest: ConfigData | None = None
        self._task: asyncio.Task[None] | None = None
        #: nodes that must drop their copy of the config (demoted candidates)
        self._demoted: set[str] = set()
        #: the facts (less the serial) last pushed: a save that leaves them alone pushes nothing
        self._pushed: dict[str, Any] | None = None

    def ssl_files(self, candidate: bool = True) -> dict[str, str]:
        """The distributed files (TLS material, RAPI users) a node of that role gets."""
        files = ClusterFiles(self.paths)
        out = {}
        for name in (CANDIDATE_SSL_FILES if candidate else ()) + NODE_SSL_FILES:
            path = files.path_of(name)
            if path.exists():
                out[name] = path.read_text()
        return out

    def mark_demoted(self, node_uuid: str) -> None:
        self._demoted.add(node_uuid)

    async def push_node(self, cfg: ConfigData, node: Node, force: bool = False) -> None:
        facts = facts_from_config(cfg)
        client = self.rpc.node(node)
        if node.master_candidate:
            await client.config_upload(None, facts, self.ssl_files(), force=force)
        else:
            await client.facts_upload(facts, drop_config=node.uuid in self._demoted,
                                      force=force, ssl=self.ssl_files(candidate=False))
            self._demoted.discard(node.uuid)

    async def push(self, cfg: ConfigData, force: bool = False,
                   only: list[Node] | None = None) -> dict[str, str]:
        """Push to every online node but the master; return {node name: error} of failures."""
        self._latest = cfg
        targets = only if only is not None else [
            n for n in cfg.nodes.values()
            if n.uuid != cfg.cluster.master_node and not n.offline]

        async def one(node: Node) -> tuple[Node, str | None]:
            try:
                await self.push_node(cfg, node, force)
            except errors.HerdError as exc:
                return node, exc.message
            return node, None

        failures: dict[str, str] = {}
        for node, error in await asyncio.gather(*(one(n) for n in targets)):
            if error is None:
                self.behind.pop(node.uuid, None)
            else:
                self.behind[node.uuid] = error
                failures[node.name] = error
                log.warning("config serial %s not delivered to %s: %s", cfg.serial_no,
                            node.name, error)
        if self.behind:
            self._ensure_retry()
        return failures

    async def on_save(self, cfg: ConfigData) -> None:
        facts = facts_from_config(cfg)
        facts.pop("serial_no", None)
        if facts != self._pushed or self._demoted:
            self._pushed = facts
            await self.push(cfg)

    def _ensure_retry(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._retry_loop())

    async def _retry_loop(self) -> None:
        while self.behind and self._latest is not None:
            await asyncio.sleep(RETRY_INTERVAL)
            cfg = self._latest
            nodes = [cfg.nodes[u] for u in list(self.behind)
                     if u in cfg.nodes and not cfg.nodes[u].offline]
            for uuid in [u for u in self.behind if u not in cfg.nodes or cfg.nodes[u].offline]:
                self.behind.pop(uuid, None)
            if nodes:
                await self.push(cfg, only=nodes)

    def status(self) -> dict[str, Any]:
        return {"behind": dict(self.behind)}

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
