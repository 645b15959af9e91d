"""``gnt-instance move`` and ``gnt-node failover``: Ganeti's options, prompts and output.

``gnt-node failover`` is, as in Ganeti, a client-side loop: one OP_INSTANCE_FAILOVER job per
primary instance of the node, all submitted at once and then followed, so that one instance
that cannot fail over (no mirrored disks, secondary short of memory) does not hold back the
others, and each outcome is reported on its own.
"""

from __future__ import annotations

import sys

from herd import errors
from herd.cli.client import MasterClient
from herd.cli.common import CommandFailed, job_error, op_common, submit_or_run, wait_for_job
from herd.jobs import states as q

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing costs each gnt-* command ~2 ms at start
    from typing import Any


def ask_user(question: str) -> bool:
    """Ganeti's confirmation prompt: y/[n]; no terminal means no (use -f in scripts)."""
    if not sys.stdin.isatty():
        raise errors.OpPrereqError("this command asks for confirmation and there is no "
                                   "terminal to ask on; pass -f to go ahead")
    answer = input(f"{question}\ny/[n]: ").strip().lower()
    return answer in ("y", "yes")


def cmd_move(opts: Any) -> int:
    """gnt-instance move [-f] [--shutdown-timeout N] [--ignore-consistency] -n NODE NAME."""
    if not opts.target_node:
        raise errors.ParameterError("the target node is required (-n NODE)")
    if not opts.force and not ask_user(
            f"Instance {opts.instance} will be moved. This requires a shutdown of the "
            "instance. Continue?"):
        raise CommandFailed(2)
    submit_or_run(opts, [{"OP_ID": "OP_INSTANCE_MOVE", "instance_name": opts.instance,
                          "target_node": opts.target_node,
                          "shutdown_timeout": opts.shutdown_timeout,
                          "ignore_consistency": opts.ignore_consistency}])
    return 0


def failover_ops(instances: list[str], ignore_consistency: bool,
                 iallocator: str | None) -> list[dict[str, Any]]:
    """One OP_INSTANCE_FAILOVER per instance, in name order (Ganeti's NiceSort order)."""
    out = []
    for name in sorted(instances):
        op: dict[str, Any] = {"OP_ID": "OP_INSTANCE_FAILOVER", "instance_name": name,
                              "ignore_consistency": ignore_consistency}
        if iallocator:
            op["iallocator"] = iallocator
        out.append(op)
    return out


def cmd_node_failover(opts: Any) -> int:
    """gnt-node failover [-f] [--ignore-consistency] NODE."""
    with MasterClient() as client:
        rows = client.call("query_nodes", names=[opts.node], live=False)
        node, primaries = rows[0]["name"], list(rows[0]["pinst_list"])
        if not primaries:
            print(f"No primary instances on node {node}, exiting.", file=sys.stderr)
            return 0
        ops = failover_ops(primaries, opts.ignore_consistency, opts.iallocator)
        names = [op["instance_name"] for op in ops]
        if not opts.force and not ask_user(
                "Fail over instance(s) " + ",".join(f"'{n}'" for n in names) + "?"):
            raise CommandFailed(2)
        common = op_common(opts)
        jobs = [(name, client.call("submit_job", ops=[dict(common, **op)]))
                for name, op in zip(names, ops, strict=True)]
        if getattr(opts, "submit_only", False):
            for _name, job_id in jobs:
                print(f"JobID: {job_id}")
            return 0
        print(f"Submitted jobs {', '.join(str(j) for _n, j in jobs)}")
        bad = 0
        for name, job_id in jobs:
            print(f"Waiting for job {job_id} for {name} ...")
            job = wait_for_job(client, job_id)
            if job["status"] != q.SUCCESS:
                bad += 1
                print(f"Job {job_id} for {name} has failed: {job_error(job).message}",
                      file=sys.stderr)
    if bad:
        print(f"There were errors during the failover:\n{bad} error(s) out of "
              f"{len(jobs)} instance(s).")
        return 1
    print(f"All {len(jobs)} instance(s) failed over successfully.")
    return 0
