"""The allocator options of the gnt-* commands reach their opcodes (``-I hail`` on instance
add used to be parsed and dropped, so the instance landed wherever Herd chose)."""

from __future__ import annotations

from typing import Any

import pytest

from herd import errors
from herd.cli import gnt_cluster, gnt_instance, gnt_node


def submitted(module: Any, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The one opcode the command submits (masterd is not asked)."""
    ops: list[dict[str, Any]] = []

    def capture(opts: Any, given: list[dict[str, Any]], client: Any = None) -> None:
        ops.extend(given)

    monkeypatch.setattr(module, "submit_or_run", capture)
    opts = module.build_parser().parse_args(argv)
    opts.func(opts)
    (op,) = ops
    return op


def test_instance_add_passes_the_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    op = submitted(gnt_instance, ["add", "-t", "drbd", "-s", "2G", "-o", "busybox", "-I",
                                  "hail", "inst1.example.com"], monkeypatch)
    assert (op["iallocator"], op["pnode"], op["snode"]) == ("hail", None, None)
    op = submitted(gnt_instance, ["add", "-t", "file", "-s", "2G", "-o", "busybox",
                                  "inst1.example.com"], monkeypatch)
    assert (op["iallocator"], op["pnode"]) == (None, None)  # masterd uses the default


@pytest.mark.parametrize(("module", "argv", "expected"), [
    (gnt_instance, ["replace-disks", "-I", "hail", "i1"],
     {"mode": "replace_new_secondary", "iallocator": "hail"}),
    (gnt_instance, ["recreate-disks", "-I", ".", "i1"], {"iallocator": "."}),
    (gnt_node, ["evacuate", "-s", "-I", "hail", "node2"],
     {"mode": "secondary-only", "iallocator": "hail", "remote_node": None}),
    (gnt_cluster, ["modify", "--default-iallocator", "hail",
                   "--default-iallocator-params", "no-capacity-checks,static-kvm-node-memory=0"],
     {"default_iallocator": "hail",
      "default_iallocator_params": {"no-capacity-checks": None,
                                    "static-kvm-node-memory": "0"}}),
    (gnt_cluster, ["modify", "--default-iallocator", "", "--default-iallocator-params", ""],
     {"default_iallocator": "", "default_iallocator_params": {}}),
])
def test_allocator_options_reach_the_opcode(module: Any, argv: list[str],
                                            expected: dict[str, Any],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    op = submitted(module, argv, monkeypatch)
    assert {k: op.get(k) for k in expected} == expected


def test_replace_disks_takes_one_way_to_choose(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(errors.ParameterError, match="give exactly one of"):
        submitted(gnt_instance, ["replace-disks", "-I", "hail", "-n", "node3", "i1"],
                  monkeypatch)
    with pytest.raises(errors.ParameterError, match="invalid allocator parameter"):
        submitted(gnt_cluster, ["modify", "--default-iallocator-params", "a b"], monkeypatch)


def test_cluster_info_shows_the_default_allocator(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from herd.logic import query
    from tests.harness import InProcessCluster, scratch_root

    with scratch_root(tmp_path) as root, InProcessCluster(root, nodes=1) as cluster:
        cluster.config.cluster.default_iallocator_params = {"no-capacity-checks": None,
                                                            "static-kvm-node-memory": "0"}
        info = query.cluster_info(cluster.ctx)

    class Client:
        def __enter__(self) -> Client:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def call(self, method: str, **args: Any) -> Any:
            assert method == "query_cluster"
            return info

    monkeypatch.setattr(gnt_cluster, "MasterClient", Client)
    opts = gnt_cluster.build_parser().parse_args(["info"])
    assert opts.func(opts) == 0
    out = capsys.readouterr().out
    assert "default instance allocator: herd (built-in)" in out
    assert ("default instance allocator parameters: no-capacity-checks, "
            "static-kvm-node-memory=0") in out
