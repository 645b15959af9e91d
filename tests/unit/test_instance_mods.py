"""The decisions of ``gnt-instance modify --net/--disk``: the accepted spellings of a
modification list (Herd's CLI, Ganeti's 3-tuple and legacy 2-tuple opcode forms), where
each change lands, what is refused, and what waits for a restart."""

from __future__ import annotations

import pytest

from herd import errors
from herd.logic import instance_mods as m

NICS = [("u0", "lan"), ("u1", None), ("u2", "wan")]


@pytest.mark.parametrize("raw, expected", [
    ([{"action": "add", "identifier": -1, "params": {"size": 1024}}],
     [m.Mod("add", -1, {"size": 1024})]),
    ([["add", -1, {"size": "1G"}]], [m.Mod("add", -1, {"size": "1G"})]),
    ([["add", {"size": 5}]], [m.Mod("add", -1, {"size": 5})]),
    ([["remove", {}]], [m.Mod("remove", -1, {})]),
    ([[1, {"mode": "ro"}]], [m.Mod("modify", 1, {"mode": "ro"})]),
    ([["-1", {"mode": "ro"}]], [m.Mod("modify", -1, {"mode": "ro"})]),
    ([("modify", "data", {"name": "x"})], [m.Mod("modify", "data", {"name": "x"})]),
    ([["remove", "2", None]], [m.Mod("remove", 2, {})]),
    (None, []),
])
def test_every_spelling_of_a_modification_is_understood(raw: object,
                                                        expected: list[m.Mod]) -> None:
    assert m.normalize(m.DISK, raw) == expected


@pytest.mark.parametrize("raw, fragment", [
    ("add", "expected a list"),
    ([["attach", 0, {}]], "invalid disk action 'attach'"),
    ([["bogus", {}]], "the first element is add, remove or an index"),
    ([["add", "x"]], "expected a dictionary"),
    ([[1, 2, 3, 4]], "expected [action, identifier, params]"),
    ([["add", True, {}]], "invalid disk identifier True"),
])
def test_malformed_lists_are_refused_naming_the_bad_part(raw: object, fragment: str) -> None:
    with pytest.raises(errors.ParameterError, match=None) as exc:
        m.normalize(m.DISK, raw)
    assert fragment in str(exc.value)


def test_adds_go_at_any_index_and_apply_in_order() -> None:
    plan = m.plan(m.NIC, [m.Mod("add", 0, {"name": "first"}), m.Mod("add", -1, {}),
                          m.Mod("remove", 2, {})], NICS)
    # after the add at 0, index 2 is what was index 1
    assert plan.final == [("new", 0), "u0", "u2", ("new", 1)]
    assert plan.removed == ["u1"]
    assert plan.added == [{"name": "first"}, {}]


def test_items_are_found_by_index_name_or_uuid_and_changes_merge() -> None:
    plan = m.plan(m.NIC, [m.Mod("modify", "wan", {"link": "br1"}),
                          m.Mod("modify", "u2", {"mac": "AA:00:00:00:00:01"}),
                          m.Mod("remove", -1, {})], NICS)
    assert plan.final == ["u0", "u1"]
    assert plan.removed == ["u2"]
    assert plan.modified == {"u2": {"link": "br1", "mac": "aa:00:00:00:00:01"}}


@pytest.mark.parametrize("mods, fragment", [
    ([m.Mod("remove", 3, {})], "no nic with index 3: allowed are 0 to 2 or -1"),
    ([m.Mod("add", 5, {})], "cannot add at index 5: allowed are 0 to 3 or -1"),
    ([m.Mod("modify", "dmz", {"link": "b"})], "no nic named or with uuid 'dmz'"),
    ([m.Mod("add", -1, {"name": "lan"})], "nic name 'lan' would be used twice"),
    ([m.Mod("modify", 1, {"name": "wan"})], "nic name 'wan' would be used twice"),
    ([m.Mod("add", -1, {"name": "x"}), m.Mod("remove", "x", {})], "is added by this command"),
    ([m.Mod("remove", 0, {"mac": "generate"})], "remove takes no parameters"),
    ([m.Mod("modify", 0, {})], "nothing to modify"),
    ([m.Mod("add", -1, {"speed": 1})], "unknown NIC parameter 'speed'"),
    ([m.Mod("add", -1, {"mac": "zz"})], "invalid mac 'zz'"),
    ([m.Mod("add", -1, {"ip": "10.1"})], "invalid ip '10.1'"),
    ([m.Mod("add", -1, {"mode": "vepa"})], "invalid mode 'vepa'"),
    ([m.Mod("modify", 0, {"mac": "auto"})], "mac=auto only applies to a new NIC"),
    ([m.Mod("add", -1, {})] * 6, "too many nics: 9, at most 8"),
])
def test_nic_plans_refuse_with_the_offending_modification(mods: list[m.Mod],
                                                          fragment: str) -> None:
    with pytest.raises(errors.ParameterError) as exc:
        m.plan(m.NIC, mods, NICS)
    assert fragment in str(exc.value)


def test_removing_and_renaming_frees_a_name_for_a_later_add() -> None:
    plan = m.plan(m.NIC, [m.Mod("remove", "lan", {}), m.Mod("add", -1, {"name": "lan"})],
                  NICS)
    assert plan.final == ["u1", "u2", ("new", 0)]


@pytest.mark.parametrize("mod, fragment", [
    (m.Mod("add", -1, {"mode": "rw"}), "a new disk needs a size"),
    (m.Mod("add", -1, {"size": "0"}), "must be positive"),
    (m.Mod("add", -1, {"size": "lots"}), "invalid size of --disk -1:add 'lots'"),
    (m.Mod("add", -1, {"size": 1, "vg": "x"}), "unknown disk parameter 'vg': allowed are "
                                               "size, mode, name"),
    (m.Mod("modify", 0, {"size": "2G"}), "changed with 'gnt-instance grow-disk'"),
    (m.Mod("modify", 0, {"mode": "rx"}), "invalid mode 'rx': allowed are rw, ro"),
])
def test_disk_parameters_are_checked(mod: m.Mod, fragment: str) -> None:
    with pytest.raises(errors.ParameterError) as exc:
        m.plan(m.DISK, [mod], [("d0", None)])
    assert fragment in str(exc.value)


def test_disk_add_sizes_are_in_mib_and_none_clears_a_name() -> None:
    plan = m.plan(m.DISK, [m.Mod("add", 1, {"size": "1G", "name": "data"}),
                           m.Mod("modify", 0, {"name": "none", "mode": "ro"})],
                  [("d0", "boot")])
    assert plan.final == ["d0", ("new", 0)]
    assert plan.added == [{"size": 1024, "name": "data"}]
    assert plan.modified == {"d0": {"name": None, "mode": "ro"}}
    assert plan.index_of(("new", 0)) == 1


def test_what_waits_for_a_restart() -> None:
    assert m.restart_needed({"maxmem": 512, "auto_balance": False}, {}, []) == ["be/maxmem"]
    assert m.restart_needed({"auto_balance": True}, {}, []) == []
    assert m.restart_needed({}, {"kernel_args": "x"}, ["nic.1 add"]) == \
        ["hv/kernel_args", "nic.1 add"]
    line = m.restart_notice("i1", ["be/maxmem"])
    assert "i1 is running: be/maxmem take(s) effect at its next restart" in line
