"""Mixing versions: a node speaking another node-RPC protocol is named with both versions."""

from __future__ import annotations

from herd import __version__
from herd.version import RPC_VERSION, announced, mismatch, release_note


def test_same_protocol_mixes_whatever_the_release() -> None:
    assert mismatch("n2", (RPC_VERSION, "9.9.9")) is None


def test_an_older_node_is_refused_naming_both_versions() -> None:
    line = mismatch("node2.example.com", announced({"pid": 5}))  # a noded from before
    assert line == (f"node node2.example.com runs an older Herd: node RPC protocol 1 (Herd "
                    f"unknown), this master speaks protocol {RPC_VERSION} (Herd {__version__}); "
                    "upgrade that node first")


def test_a_newer_node_says_to_upgrade_the_master() -> None:
    line = mismatch("n3", announced({"rpc": RPC_VERSION + 1, "herd_version": "0.2.0"}))
    assert line is not None and "runs a newer Herd" in line and "(Herd 0.2.0)" in line
    assert line.endswith("upgrade the master first")
    assert announced({"rpc": "2", "herd_version": 7}) == (1, "unknown")  # junk is not trusted


def test_verify_says_a_finding_shared_by_nodes_once() -> None:
    from herd.logic.cluster import same_reason

    assert same_reason({"n1": "no /dev/kvm", "n2": "no /dev/kvm", "n3": "kvm hangs"}) == [
        ("nodes n1, n2", "no /dev/kvm"), ("node n3", "kvm hangs")]
    assert same_reason({}) == []


def test_another_release_on_the_same_protocol_is_a_warning_naming_both() -> None:
    line = release_note("n2", (RPC_VERSION, "0.1.0"), (RPC_VERSION, "0.2.0"))
    assert line is not None and "n2 runs Herd 0.1.0, the master Herd 0.2.0" in line
    assert release_note("n2", (RPC_VERSION, "0.2.0"), (RPC_VERSION, "0.2.0")) is None
    assert release_note("n2", (RPC_VERSION - 1, "0.1.0")) is None  # mismatch() names that
