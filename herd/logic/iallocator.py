"""Running an instance allocator for a logical unit, as Ganeti's masterd does.

The input document is built from the config and the nodes' runtime facts (one ``node_info``
RPC per online vm_capable node; a node that does not answer is described as offline, so that
nothing is placed there and an unreachable node elsewhere does not fail the request, unlike
Ganeti #973). Herd's built-in allocator (``herd``) answers in-process; any other name is a
program looked up in the iallocator search path (Herd's directory, then Ganeti's
``/usr/lib/ganeti/iallocators``) and run on the master, where masterd runs, as Ganeti runs it:
``PROGRAM INPUTFILE [--key=value ...]`` (``default_iallocator_params``), stdout parsed as the
answer, stderr passed on to the job log, a non-zero exit a hard error. The last input and
answer are kept in ``<data_dir>/iallocator-last.json`` (no secrets in it), because rerunning
an allocator by hand on what it saw is how its answers get understood (Ganeti #559).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from herd import errors
from herd.allocator import builtin, protocol
from herd.fileutil import atomic_write_json
from herd.logic.base import Feedback, MasterContext
from herd.logic.templates import template_of
from herd.objects import ConfigData, Instance

log = logging.getLogger(__name__)

#: How long an external allocator may take (hail answers in well under a second).
TIMEOUT = 300.0


def find_program(ctx: MasterContext, name: str) -> Path:
    """The first regular file ``name`` in the search path (Ganeti's utils.FindFile)."""
    protocol.check_name(name)
    search = ctx.paths.iallocator_search_path
    for directory in search:
        path = directory / name
        if path.is_file():
            return path
    raise protocol.AllocatorError(
        f"instance allocator '{name}' not found in the search path "
        f"({':'.join(str(d) for d in search)}); the built-in one is '{protocol.BUILTIN}'")


def disk_space(inst: Instance) -> int:
    return template_of(inst).disk_space_total([d.size for d in inst.disks])


async def node_runtimes(ctx: MasterContext, cfg: ConfigData, *, lvm: bool,
                        feedback: Feedback | None = None) -> dict[str, protocol.NodeRuntime]:
    """The runtime facts of every online vm_capable node that answers."""
    up_maxmem: dict[str, int] = {}
    for inst in cfg.instances.values():
        if inst.admin_state == "up":
            up_maxmem[inst.primary_node] = (up_maxmem.get(inst.primary_node, 0)
                                            + protocol.instance_memory(cfg, inst))
    nodes = [n for n in cfg.nodes.values() if n.vm_capable and not n.offline]
    answers = await asyncio.gather(*(ctx.rpc.node(n).node_info() for n in nodes),
                                   return_exceptions=True)
    out: dict[str, protocol.NodeRuntime] = {}
    for node, answer in zip(nodes, answers, strict=True):
        if isinstance(answer, BaseException):
            if not isinstance(answer, errors.HerdError):
                raise answer
            if feedback is not None:
                feedback(f"WARNING: node {node.name} did not answer ({answer.message}); "
                         "the allocator sees it as offline")
            continue
        out[node.uuid] = protocol.node_runtime(answer, lvm=lvm,
                                               up_maxmem=up_maxmem.get(node.uuid, 0))
    return out


async def run(ctx: MasterContext, name: str, request: dict[str, Any], *, lvm: bool = False,
              extra_params: dict[str, Any] | None = None,
              feedback: Feedback | None = None) -> tuple[bool, str, Any]:
    """Run allocator ``name`` (already resolved: see protocol.resolve_name) on ``request``.
    Returns (success, info, result) from a well-formed answer; raises AllocatorError for a
    missing or failing program or a malformed answer."""
    cfg = ctx.config.data
    runtime = await node_runtimes(ctx, cfg, lvm=lvm, feedback=feedback)
    data = protocol.build_input(cfg, runtime, request, disk_space=disk_space)
    stderr = ""
    if name == protocol.BUILTIN:
        answer: Any = builtin.run(data)
    else:
        params = {**cfg.cluster.default_iallocator_params, **(extra_params or {})}
        answer, stderr = await _run_program(find_program(ctx, name), data,
                                            protocol.argv_params(params))
        for line in stderr.splitlines():
            if line.strip():
                log.info("allocator %s: %s", name, line)
                if feedback is not None:
                    feedback(f"allocator {name}: {line.strip()}")
    _keep_last(ctx, name, data, answer, stderr)
    return protocol.validate_answer(name, data, answer)


async def plan_moves(ctx: MasterContext, name: str, request: dict[str, Any],
                     instances: list[Instance], *, cannot: str, note: str = "",
                     extra_params: dict[str, Any] | None = None,
                     feedback: Feedback) -> protocol.EvacResult:
    """The moves an evacuation-kind request (node-evacuate, change-group) gets from allocator
    ``name``: OpPrereqError when it refuses (``cannot`` says what: "evacuate node n1") or
    fails any instance, each instance's destination in the job log otherwise."""
    lvm = any(template_of(i).uses_vg(ctx.config.data) for i in instances)
    success, info, result = await run(ctx, name, request, lvm=lvm, extra_params=extra_params,
                                      feedback=feedback)
    if not success:
        raise errors.OpPrereqError(f"instance allocator '{name}' cannot {cannot}: {info}")
    assert isinstance(result, protocol.EvacResult)
    if result.failed:
        raise errors.OpPrereqError(protocol.evac_failure_message(name, result.failed))
    for inst, group, nodes in result.moved:
        feedback(f"Instance {inst}{note} will go to group {group}, nodes {', '.join(nodes)} "
                 f"(iallocator {name})")
    return result


def allocate_request(name: str, disk_template: str, be: dict[str, Any], disks: list[Any],
                     nics: list[Any], **rest: Any) -> dict[str, Any]:
    """An allocate request for an instance (made or to be made) from its filled beparams and
    its disks and NICs (objects with size/mode and mac/ip/network), as add and recreate-disks
    ask; ``rest`` holds the other fields of :func:`protocol.allocate_request`."""
    return protocol.allocate_request(
        name=name, disk_template=disk_template, memory=int(be["maxmem"]),
        vcpus=int(be["vcpus"]), spindle_use=int(be.get("spindle_use", 1)),
        disks=[{"size": d.size, "mode": d.mode} for d in disks],
        nics=[{"mac": n.mac, "ip": n.ip, "network": n.network} for n in nics], **rest)


async def choose(ctx: MasterContext, name: str, request: dict[str, Any], *, lvm: bool,
                 feedback: Feedback, refusal: str, chose: str) -> list[str]:
    """The node names allocator ``name`` picks for an allocate or relocate ``request``; a
    refusal is the operation's prerequisite error ("instance allocator 'hail' cannot place
    instance x: ..."), and the pick is said as Ganeti says it. ``refusal`` and ``chose`` name
    what was asked ("cannot place instance x", "new secondary for instance x")."""
    success, info, result = await run(ctx, name, request, lvm=lvm, feedback=feedback)
    if not success:
        raise errors.OpPrereqError(f"instance allocator '{name}' {refusal}: {info}")
    feedback(f"Selected {chose} via iallocator {name}: {', '.join(result)}")
    return [str(n) for n in result]


async def _run_program(program: Path, data: dict[str, Any],
                       params: list[str]) -> tuple[Any, str]:
    fd, tmp = tempfile.mkstemp(prefix="herd-iallocator.", suffix=".json")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        try:
            proc = await asyncio.create_subprocess_exec(
                str(program), tmp, *params, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise protocol.AllocatorError(
                f"instance allocator {program} cannot be run: {exc.strerror}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise protocol.AllocatorError(
                f"instance allocator {program} gave no answer within {TIMEOUT:g} s") from None
    finally:
        os.unlink(tmp)
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    if proc.returncode != 0:
        said = (stderr.strip() or stdout.strip() or "no output").splitlines()[-3:]
        raise protocol.AllocatorError(f"instance allocator {program.name} failed (exit "
                                      f"{proc.returncode}): {' / '.join(said)}")
    try:
        return json.loads(stdout), stderr
    except ValueError:
        raise protocol.AllocatorError(
            f"instance allocator {program.name} did not answer JSON on stdout: "
            f"{stdout.strip()[:200]!r}") from None


def _keep_last(ctx: MasterContext, name: str, data: dict[str, Any], answer: Any,
               stderr: str) -> None:
    try:
        atomic_write_json(ctx.paths.data_dir / "iallocator-last.json",
                          {"allocator": name, "input": data, "answer": answer,
                           "stderr": stderr})
    except OSError as exc:  # a record for people; never fail the job for it
        log.warning("cannot keep the last allocator run: %s", exc)
