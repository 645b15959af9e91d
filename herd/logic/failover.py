"""``gnt-cluster master-failover``: make this master candidate the master.

Runs on the candidate itself, without masterd (the old master may be dead): check that a
majority of nodes answers and agrees (unless --no-voting), take the newest config any candidate
holds, name this node master, tell the old master to step down if it answers, push the new
config everywhere, then start masterd here (which takes the master IP).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from herd import errors
from herd.config import vote
from herd.config.facts import node_name, write_facts
from herd.config.replication import Replicator
from herd.config.store import ConfigStore
from herd.daemons import util as daemon_util
from herd.objects import ConfigData
from herd.paths import HerdPaths
from herd.rpc.client import RpcRunner


async def _failover(p: HerdPaths, no_voting: bool, say: Callable[[str], None]) -> str:
    me = node_name(p)
    if not p.config_file.exists() or me is None:
        raise errors.OpPrereqError("this node holds no cluster configuration: only a master "
                                   "candidate can become master")
    store = ConfigStore.load(p.config_file)
    cfg = store.data
    node = cfg.find_node(me)
    if node is None:
        raise errors.OpPrereqError(f"this node ({me}) is not in the cluster configuration")
    old = cfg.master
    if old.uuid == node.uuid:
        raise errors.OpPrereqError(f"this node ({me}) is already the master")
    if not node.master_candidate:
        raise errors.OpPrereqError(f"node {me} is not a master candidate; only candidates can "
                                   "become master (gnt-node modify -C yes first)")
    rpc = RpcRunner(p, cfg.cluster.noded_port)
    try:
        votes = await vote.collect(rpc, cfg, me)
        answered = 1 + sum(1 for v in votes if v.answer is not None)
        total = len([n for n in cfg.nodes.values() if not n.offline])
        if not no_voting:
            if answered * 2 <= total:
                raise errors.OpPrereqError(
                    f"only {answered} of {total} nodes answered; a majority is needed for a "
                    "master failover (use --no-voting if most nodes are gone)")
            named = {v.answer.get("master_node") for v in votes if v.answer}
            named.discard(None)
            if len(named) > 1:
                raise errors.OpPrereqError(
                    f"the nodes disagree about who the master is ({', '.join(sorted(named))}); "
                    "fix that first (gnt-cluster redist-conf on the real master)")
        best = vote.newest(votes)
        if best is not None and best.answer and best.answer["config_serial"] > cfg.serial_no:
            say(f"taking the newer configuration of {best.node} (serial "
                f"{best.answer['config_serial']} > {cfg.serial_no})")
            newer = await rpc.node(cfg.get_node(best.node)).config_download()
            if newer:
                cfg = ConfigData.from_dict(newer)
                store.data = cfg
                node = cfg.get_node(me)
                old = cfg.master
        cfg.cluster.master_node = node.uuid
        node.master_candidate = True
        cfg.cluster.touch()
        cfg.serial_no += 1
        store.write()
        write_facts(p, cfg)
        cluster = cfg.cluster
        old_vote = next((v for v in votes if v.node == old.name), None)
        if old_vote is not None and old_vote.answer is not None:
            say(f"asking the old master {old.name} to step down")
            try:
                await rpc.node(old).master_demote(cluster.master_netdev, cluster.master_ip,
                                                  cluster.master_netmask)
            except errors.HerdError as exc:
                say(f"WARNING: the old master did not step down cleanly: {exc.message}")
        else:
            say(f"the old master {old.name} does not answer; it will learn of the new master "
                "when it comes back")
        failures = await Replicator(p, rpc).push(cfg)
        for name, error in sorted(failures.items()):
            say(f"WARNING: node {name} did not get the new configuration ({error}); it will "
                "be updated when it answers")
    finally:
        await rpc.close()
    return old.name


def master_failover(p: HerdPaths, no_voting: bool, say: Callable[[str], None]) -> str:
    old = asyncio.run(_failover(p, no_voting, say))
    # the vote above just settled who the master is; masterd need not ask again
    daemon_util.start(p, "masterd", extra_args=("--no-voting",))
    daemon_util.start(p, "rapi", daemon_util.RAPI_PORT)
    return old
