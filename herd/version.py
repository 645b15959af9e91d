"""Herd's version and the node-RPC protocol version, and the rule for mixing them.

Nodes and masters of one cluster talk the node-RPC protocol (herd.rpc); a change to a call's
arguments or answer raises ``RPC_VERSION``. A node speaking another protocol is refused when
it joins, and ``gnt-cluster verify`` names any member that does, with both versions, so a
rolling upgrade (every noded first, then the master candidates, the master last) shows
what is left. A node from before versions were announced counts as protocol 1.
"""

from __future__ import annotations

from herd import __version__

#: 1: disks_*/mirror_* storage calls; 2: blockdev_* calls, instance_usage; 3: the mirror's
#: status only reads, ``mirror_sync_record`` + ``mirror_mark_synced(exports=...)`` mark a
#: secondary (compare-and-set on its export); 4: ``instance_migrate(hand_over=...)`` and
#: ``instance_finish_migration(take_over=..., syncs=...)`` (the disk hand-over of a live
#: migration in the same calls), whose answer is a dict (``resumed_at``, ``mirror_back_ms``);
#: 5: ``instance_migrate``'s answer says what the source then serves (``served``) and
#: ``instance_finish_migration(peers=...)`` takes it, so the target attaches without a probe
#: (a master passes ``peers`` only when the source answered it and asks a node refusing the
#: argument again without it)
RPC_VERSION = 5


def announced(answer: dict[str, object]) -> tuple[int, str]:
    """(protocol, Herd version) from a node's ping or join answer."""
    rpc = answer.get("rpc")
    version = answer.get("herd_version")
    return (rpc if isinstance(rpc, int) else 1,
            version if isinstance(version, str) and version else "unknown")


def mismatch(node: str, theirs: tuple[int, str],
             ours: tuple[int, str] = (RPC_VERSION, __version__)) -> str | None:
    """One line when ``node`` speaks another node-RPC protocol than this master; None when
    they match (the Herd versions may differ then: a bug-fix release keeps the protocol)."""
    if theirs[0] == ours[0]:
        return None
    older = "an older" if theirs[0] < ours[0] else "a newer"
    return (f"node {node} runs {older} Herd: node RPC protocol {theirs[0]} (Herd {theirs[1]}), "
            f"this master speaks protocol {ours[0]} (Herd {ours[1]}); upgrade "
            f"{'that node' if theirs[0] < ours[0] else 'the master'} first")


def release_note(node: str, theirs: tuple[int, str],
                 ours: tuple[int, str] = (RPC_VERSION, __version__)) -> str | None:
    """A warning when ``node`` speaks this master's protocol but runs another Herd release
    (a rolling upgrade left unfinished: they work together, and should not stay so)."""
    if theirs[0] != ours[0] or theirs[1] == ours[1]:
        return None
    return (f"node {node} runs Herd {theirs[1]}, the master Herd {ours[1]} (same node RPC "
            f"protocol {ours[0]}); finish the upgrade: gnt-cluster upgrade --resume, or "
            f"--to {ours[1]}")
