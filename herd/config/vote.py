"""Who is the master? Asking the other nodes before taking or keeping the master role.

A master that was cut off or crashed may come back after another node took over; its own files
still say it is the master. Before masterd starts, the node asks every other node what it
believes, and with what config serial: a majority must answer, and nobody may know of a newer
config naming another master. ``--no-voting`` skips this for when most nodes are gone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from herd import errors
from herd.objects import ConfigData
from herd.rpc.client import RpcRunner


@dataclass
class Vote:
    node: str
    answer: dict[str, Any] | None  # master_info of that node, None if unreachable
    error: str | None = None


async def collect(rpc: RpcRunner, cfg: ConfigData, me: str, timeout: float = 5.0) -> list[Vote]:
    others = [n for n in cfg.nodes.values() if n.name != me and not n.offline]

    async def ask(node: Any) -> Vote:
        try:
            return Vote(node.name, await rpc.node(node).master_info(timeout=timeout))
        except errors.HerdError as exc:
            return Vote(node.name, None, exc.message)

    return list(await asyncio.gather(*(ask(n) for n in others)))


def check_still_master(cfg: ConfigData, me: str, votes: list[Vote]) -> str | None:
    """None if ``me`` may act as master; otherwise why not."""
    for vote in votes:
        answer = vote.answer
        if answer and answer.get("master_node") not in (None, me) and \
                int(answer.get("serial_no", 0)) > cfg.serial_no:
            return (f"node {vote.node} knows a newer configuration (serial "
                    f"{answer['serial_no']} > {cfg.serial_no}) naming "
                    f"{answer['master_node']} as master")
    total = len([n for n in cfg.nodes.values() if not n.offline])
    answered = 1 + sum(1 for v in votes if v.answer is not None)
    if answered * 2 <= total:
        return (f"only {answered} of {total} nodes answered; a majority is needed to be sure "
                "no other node took over (use --no-voting if most nodes are gone)")
    agreeing = 1 + sum(1 for v in votes if v.answer and v.answer.get("master_node") == me)
    if agreeing * 2 <= total:
        masters = sorted({str(v.answer.get("master_node")) for v in votes if v.answer})
        return (f"only {agreeing} of {total} nodes agree that {me} is the master "
                f"(others name: {', '.join(masters)})")
    return None


def newest(votes: list[Vote]) -> Vote | None:
    """The reachable node holding the newest full config, if any."""
    best = None
    for vote in votes:
        if vote.answer and vote.answer.get("has_config") and (
                best is None or vote.answer["config_serial"] > best.answer["config_serial"]):
            best = vote
    return best
