"""``gnt-cluster rebalance``: print hbal's kind of plan, and with ``--execute`` carry it out.

The plan is a masterd query (``plan_rebalance``: herd.logic.rebalance); carrying it out is
ordinary jobs submitted batch after batch as ``hbal -X`` submits its jobsets: the jobs of a
batch touch each node at most once, so they run side by side; the next batch is submitted
when every job of this one has ended, and the first failure stops the run (the jobs already
running in its batch are waited for, nothing more is submitted).

Options (hbal's names where hbal has them):
  -G/--group GROUP       balance this node group only (default: each group, one at a time)
  -l/--max-length N      at most N moves per group (hbal -l; default: no limit)
  -g/--min-gain G        a round must gain at least G once the score is below
  --min-gain-limit L     ... L (hbal's defaults: 0.01 and 0.1)
  -e/--min-score S       stop once the score is at most S (hbal's default 1e-9)
  --no-disk-moves        failovers only (no new secondaries: no disk copies)
  --no-instance-moves    new secondaries only (no failovers or migrations)
  --evac-mode            move only instances with a node offline or drained
  --static-kvm-node-memory MIB   count MIB as each KVM node's own memory, as hbal does
                         (hbal's default is 4096; Herd's is what the node reports)
  --execute              submit the moves (default: print the plan only, a dry run)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, Protocol

from herd import errors
from herd.allocator import balance
from herd.cli.client import MasterClient
from herd.cli.common import job_error, wait_for_job
from herd.jobs import states as q

#: Said in every opcode's comment, as hbal says "rebalancing via hbal VERSION".
COMMENT = "rebalancing via gnt-cluster rebalance"


class Client(Protocol):
    def call(self, method: str, **args: Any) -> Any: ...


def add_parser(sub: Any) -> None:
    cmd = sub.add_parser("rebalance", help="move instances to lower the cluster score "
                         "(hbal's); a dry run unless --execute")
    cmd.add_argument("-G", "--group", dest="group", default=None,
                     help="the node group to balance (default: each group in turn)")
    cmd.add_argument("-l", "--max-length", dest="max_length", type=int, default=-1,
                     metavar="N", help="at most N moves per group (default: no limit)")
    cmd.add_argument("-g", "--min-gain", dest="min_gain", type=float,
                     default=balance.MIN_GAIN, metavar="G",
                     help="the least gain of a move once the score is below --min-gain-limit")
    cmd.add_argument("--min-gain-limit", dest="min_gain_limit", type=float,
                     default=balance.MIN_GAIN_LIMIT, metavar="L")
    cmd.add_argument("-e", "--min-score", dest="min_score", type=float,
                     default=balance.MIN_SCORE, metavar="S",
                     help="stop once the score is at most S")
    cmd.add_argument("--no-disk-moves", dest="disk_moves", action="store_false",
                     help="failovers only (no new secondaries)")
    cmd.add_argument("--no-instance-moves", dest="instance_moves", action="store_false",
                     help="new secondaries only (no failovers or migrations)")
    cmd.add_argument("--evac-mode", dest="evac_mode", action="store_true",
                     help="move only instances with a node offline or drained")
    cmd.add_argument("--static-kvm-node-memory", dest="static_kvm_node_memory", type=int,
                     default=0, metavar="MIB",
                     help="each KVM node's own memory as hbal counts it (default: as reported)")
    cmd.add_argument("--execute", action="store_true",
                     help="submit the moves as jobs, batch after batch (default: dry run)")
    cmd.set_defaults(func=cmd_rebalance)


def plan_args(opts: argparse.Namespace) -> dict[str, Any]:
    """The ``plan_rebalance`` arguments from the command line; a bad value is refused here
    with the option's name."""
    if opts.max_length < -1 or opts.max_length == 0:
        raise errors.ParameterError(f"invalid --max-length {opts.max_length}: a number of "
                                    "moves >= 1, or -1 for no limit")
    for flag, value in (("--min-gain", opts.min_gain), ("--min-gain-limit", opts.min_gain_limit),
                        ("--min-score", opts.min_score),
                        ("--static-kvm-node-memory", opts.static_kvm_node_memory)):
        if value < 0:
            raise errors.ParameterError(f"invalid {flag} {value}: expected a number >= 0")
    return {"group": opts.group, "max_length": opts.max_length, "min_gain": opts.min_gain,
            "min_gain_limit": opts.min_gain_limit, "min_score": opts.min_score,
            "disk_moves": opts.disk_moves, "instance_moves": opts.instance_moves,
            "evac_mode": opts.evac_mode, "static_kvm_node_memory": opts.static_kvm_node_memory}


def format_plans(plans: list[dict[str, Any]]) -> list[str]:
    """The plans as hbal prints its solution: a line per move with the score after it."""
    lines: list[str] = []
    for p in plans:
        moves = p["moves"]
        lines.append(f"Node group {p['group_name']}: initial score {p['initial_score']:.8f}")
        width = max([len(m["instance"]) for m in moves] + [1])
        nwidth = max([len(":".join(m["old_nodes"])) for m in moves]
                     + [len(":".join(m["new_nodes"])) for m in moves] + [1])
        for index, m in enumerate(moves, 1):
            lines.append(f"  {index:3d}. {m['instance']:<{width}} "
                         f"{':'.join(m['old_nodes']):<{nwidth}} => "
                         f"{':'.join(m['new_nodes']):<{nwidth}} {m['score']:12.8f} "
                         f"a={m['code']}")
        for why in p["unmovable"]:
            lines.append(f"  not moved: {why}")
        if moves:
            lines.append(f"Cluster score improved from {p['initial_score']:.8f} to "
                         f"{p['final_score']:.8f} in {len(moves)} move(s), "
                         f"{len(p['batches'])} batch(es)")
        else:
            lines.append(f"No move lowers the score (it stays {p['initial_score']:.8f})")
    return lines


def _quiet(_entry: Any) -> None:
    """The jobs' own logs stay in the queue (gnt-job info); the run says one line a job."""


def _wait(client: Client, job_id: int) -> dict[str, Any]:
    return wait_for_job(client, job_id, _quiet)  # type: ignore[arg-type]


def execute(client: Client, plans: list[dict[str, Any]], say: Callable[[str], None],
            wait: Callable[[Client, int], dict[str, Any]] | None = None) -> int:
    """Submit each plan's moves batch after batch and wait for each batch; stop at the
    first failure. Returns 0 when every move was done, 1 otherwise; ``say`` gets the report
    (what was submitted, what ended how, and, on a failure, what was done and what not)."""
    wait = wait or _wait
    done: list[str] = []
    total = sum(len(p["moves"]) for p in plans)
    for p in plans:
        moves = p["moves"]
        for number, batch in enumerate(p["batches"], 1):
            jobs = [[dict(op, comment=COMMENT) for op in moves[i]["opcodes"]] for i in batch]
            submitted = client.call("submit_many", jobs=jobs)
            failures: list[str] = []
            ended: list[tuple[int, dict[str, Any]]] = []
            ids = []
            for index, (ok, value) in zip(batch, submitted, strict=True):
                if ok:
                    ids.append((index, int(value)))
                else:
                    failures.append(f"{_label(moves[index])}: not submitted: {value}")
            say(f"Group {p['group_name']}, batch {number}/{len(p['batches'])}: jobs "
                + (", ".join(str(j) for _, j in ids) or "none"))
            for index, job_id in ids:
                job = wait(client, job_id)
                ended.append((index, job))
                if job["status"] == q.SUCCESS:
                    done.append(_label(moves[index]))
                    say(f"  job {job_id} {_label(moves[index])}: success "
                        f"(score {moves[index]['score']:.8f})")
                else:
                    failures.append(f"job {job_id} {_label(moves[index])}: "
                                    f"{job_error(job).message}")
                    say(f"  job {job_id} {_label(moves[index])}: {job['status']}")
            if failures:
                say(f"Stopped at the first failure: {'; '.join(failures)}")
                say(f"Done {len(done)} of {total} move(s)"
                    + (f": {', '.join(done)}" if done else "")
                    + "; nothing further was submitted")
                return 1
    say(f"Done {len(done)} of {total} move(s)")
    return 0


def _label(move: dict[str, Any]) -> str:
    return f"{move['instance']} ({':'.join(move['old_nodes'])} => " \
           f"{':'.join(move['new_nodes'])}, a={move['code']})"


def cmd_rebalance(opts: argparse.Namespace, client: Client | None = None) -> int:
    args = plan_args(opts)
    own = client is None
    client = client or MasterClient()
    try:
        plans = client.call("plan_rebalance", **args)
        for line in format_plans(plans):
            print(line, flush=True)
        if not opts.execute:
            if any(p["moves"] for p in plans):
                print("This was a dry run: --execute submits the moves")
            return 0
        return execute(client, plans, lambda line: print(line, flush=True))
    finally:
        if own and isinstance(client, MasterClient):
            client.close()
