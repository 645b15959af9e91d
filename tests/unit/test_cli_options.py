"""Ganeti's option grammar as herd.cli.options parses it."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from herd.cli.options import (
    DEFAULT_SHUTDOWN_TIMEOUT,
    LIST_OPTIONS,
    HerdArgumentParser,
    add_common_options,
    parse_disk_option,
    parse_hv_option,
    parse_keyval,
    parse_net_option,
    parse_node_spec,
    resolve_fields,
    split_escaped,
)
from herd.errors import ParameterError, ProgrammerError

# --- key=value ----------------------------------------------------------------------------------


def test_keyval_values_stay_strings() -> None:
    assert parse_keyval("memory=1G,vcpus=2") == {"memory": "1G", "vcpus": "2"}


def test_keyval_prefixes() -> None:
    assert parse_keyval("acpi,no_serial_console,-kernel_path") == {
        "acpi": True, "serial_console": False, "kernel_path": None,
    }


def test_keyval_prefix_only_without_value() -> None:
    assert parse_keyval("no_x=1,-y=2") == {"no_x": "1", "-y": "2"}


def test_keyval_value_keeps_equals_and_colons() -> None:
    assert parse_keyval("kernel_args=console=ttyS0,cdrom_image_path=/a:b.iso") == {
        "kernel_args": "console=ttyS0", "cdrom_image_path": "/a:b.iso",
    }


def test_keyval_escaped_comma() -> None:
    assert parse_keyval(r"kernel_path=an\,example,vcpus=1") == {
        "kernel_path": "an,example", "vcpus": "1",
    }
    assert split_escaped(r"a\\,b") == ["a\\", "b"]


def test_keyval_empty() -> None:
    assert parse_keyval("") == {}


def test_keyval_duplicate_key() -> None:
    with pytest.raises(ParameterError, match="duplicate key 'memory' in option -B"):
        parse_keyval("memory=1G,memory=2G", option="-B")


def test_keyval_empty_key() -> None:
    with pytest.raises(ParameterError, match="empty parameter name"):
        parse_keyval("a=1,,b=2")


# --- -H -----------------------------------------------------------------------------------------


def test_hv_cluster_repeated_and_merged() -> None:
    got = parse_hv_option(["kvm:boot_order=cdrom,acpi", "fake", "kvm:no_usb_mouse"],
                          with_hypervisor=True)
    assert got == {"kvm": {"boot_order": "cdrom", "acpi": True, "usb_mouse": False},
                   "fake": {}}


def test_hv_cluster_needs_prefix() -> None:
    with pytest.raises(ParameterError, match="HYPERVISOR:param=value"):
        parse_hv_option("boot_order=cdrom", with_hypervisor=True)


def test_hv_cluster_duplicate_key_across_repeats() -> None:
    with pytest.raises(ParameterError, match="duplicate key 'acpi'"):
        parse_hv_option(["kvm:acpi", "kvm:no_acpi"], with_hypervisor=True)


@pytest.mark.parametrize(("text", "expected"), [
    ("boot_order=cdrom,cdrom_image_path=/iso/x:1.iso",
     (None, {"boot_order": "cdrom", "cdrom_image_path": "/iso/x:1.iso"})),
    ("kvm:boot_order=disk", ("kvm", {"boot_order": "disk"})),
    ("kvm", ("kvm", {})),
    ("kvm:", ("kvm", {})),
    ("acpi", (None, {"acpi": True})),
    ("-kernel_path", (None, {"kernel_path": None})),
])
def test_hv_instance(text: str, expected: tuple[str | None, dict[str, object]]) -> None:
    assert parse_hv_option(text, with_hypervisor=False) == expected


# --- -n -----------------------------------------------------------------------------------------


def test_node_spec() -> None:
    assert parse_node_spec("node1") == ("node1", None)
    assert parse_node_spec("node1.example.com:node2") == ("node1.example.com", "node2")


@pytest.mark.parametrize("text", ["", ":b", "a:", "a:b:c"])
def test_node_spec_invalid(text: str) -> None:
    with pytest.raises(ParameterError, match="NODE\\[:SECONDARY\\]"):
        parse_node_spec(text)


# --- --disk -------------------------------------------------------------------------------------


def test_disks_in_index_order_with_sizes_in_mib() -> None:
    got = parse_disk_option(["1:size=512,mode=ro", "0:size=10G,name=root,spindles=2"])
    assert got == [{"size": 10240, "name": "root", "spindles": 2},
                   {"size": 512, "mode": "ro"}]


def test_disk_adopt() -> None:
    assert parse_disk_option(["0:adopt=lv0"]) == [{"adopt": "lv0"}]


def test_disk_ext_provider_takes_free_params() -> None:
    got = parse_disk_option(["0:size=1G,provider=pvdr1,param1=val1"])
    assert got == [{"size": 1024, "provider": "pvdr1", "param1": "val1"}]


@pytest.mark.parametrize(("values", "message"), [
    (["0:size=10X"], "--disk 0: invalid size '10X': expected a number with an optional unit"),
    (["0:size=1G,sise=2"], "unknown parameter 'sise': allowed are size, spindles, mode"),
    (["0:mode=rw"], "missing size"),
    (["0:size=1G,adopt=lv"], "either size or adopt"),
    (["0:size=1G,mode=rx"], "invalid mode 'rx': allowed are rw, ro"),
    (["0:size=1G,access=fast"], "invalid access 'fast'"),
    (["0:size=1G,spindles=two"], "invalid spindles 'two'"),
    (["0:size"], "parameter 'size' needs a value"),
    (["0:size=1G", "0:size=2G"], "--disk 0 given twice"),
    (["0:size=1G", "2:size=1G"], "contiguous from 0: 1 is missing"),
    (["1:size=1G"], "contiguous from 0: 0 is missing"),
    (["x:size=1G"], "expected --disk N:param=value"),
    (["size=1G"], "expected --disk N:param=value"),
])
def test_disk_errors(values: list[str], message: str) -> None:
    with pytest.raises(ParameterError, match=message.replace("[", "\\[")):
        parse_disk_option(values)


def test_disk_modifications() -> None:
    got = parse_disk_option(
        ["add:size=2G,mode=ro", "1:add,size=1G", "remove", "data:remove", "0:modify,mode=ro",
         "2:name=scratch"],
        modify=True,
    )
    assert got == [
        {"action": "add", "identifier": -1, "params": {"size": 2048, "mode": "ro"}},
        {"action": "add", "identifier": 1, "params": {"size": 1024}},
        {"action": "remove", "identifier": -1, "params": {}},
        {"action": "remove", "identifier": "data", "params": {}},
        {"action": "modify", "identifier": 0, "params": {"mode": "ro"}},
        {"action": "modify", "identifier": 2, "params": {"name": "scratch"}},
    ]


@pytest.mark.parametrize(("value", "message"), [
    ("0:remove,mode=ro", "remove takes no parameters"),
    ("0:add,remove", "only one of add, remove"),
    ("0:modify,size=2G", "unknown parameter 'size': allowed are mode, name"),
    ("0:modify", "nothing to modify"),
    ("add:mode=rw", "missing size"),
    ("disk1:add,size=1G", "add needs an index"),
    ("0:attach,name=x", "'attach' is not supported"),
    ("0:add=yes,size=1G", "'add' takes no value"),
])
def test_disk_modification_errors(value: str, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        parse_disk_option([value], modify=True)


# --- --net --------------------------------------------------------------------------------------


def test_nets_fill_skipped_indices_with_defaults() -> None:
    got = parse_net_option(["2:mac=AA:00:00:11:22:33,link=br0,mode=bridged", "0"])
    assert got == [{}, {}, {"mac": "aa:00:00:11:22:33", "link": "br0", "mode": "bridged"}]


def test_net_all_keys() -> None:
    got = parse_net_option(["0:mac=generate,ip=192.0.2.5,name=eth0,network=net1"])
    assert got == [{"mac": "generate", "ip": "192.0.2.5", "name": "eth0", "network": "net1"}]
    assert parse_net_option(["0:mac=auto,ip=pool,mode=routed,link=100"])[0]["ip"] == "pool"


@pytest.mark.parametrize(("value", "message"), [
    ("0:mac=zz:00:00:11:22:33", "invalid mac 'zz:00:00:11:22:33'"),
    ("0:mode=nat", "invalid mode 'nat': allowed are bridged, routed, openvswitch"),
    ("0:ip=300.1.1.1", "invalid ip '300.1.1.1'"),
    ("0:network=n1,link=br0", "network= sets mode and link"),
    ("0:bridge=br0", "unknown parameter 'bridge': allowed are mac, ip"),
    ("add:link=br0", "expected --net N:param=value"),
])
def test_net_errors(value: str, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        parse_net_option([value])


def test_net_modifications() -> None:
    got = parse_net_option(
        ["add:mac=generate,mode=bridged,link=br1", "1:add,link=br2", "eth1:remove",
         "0:modify,ip=none", "0:link=br3"],
        modify=True,
    )
    assert got == [
        {"action": "add", "identifier": -1,
         "params": {"mac": "generate", "mode": "bridged", "link": "br1"}},
        {"action": "add", "identifier": 1, "params": {"link": "br2"}},
        {"action": "remove", "identifier": "eth1", "params": {}},
        {"action": "modify", "identifier": 0, "params": {"ip": "none"}},
        {"action": "modify", "identifier": 0, "params": {"link": "br3"}},
    ]


# --- -o -----------------------------------------------------------------------------------------


def test_resolve_fields() -> None:
    default = ["name", "os", "pnode"]
    assert resolve_fields(None, default) == default
    assert resolve_fields("+snodes,tags", default) == [*default, "snodes", "tags"]
    assert resolve_fields("name,status", default) == ["name", "status"]
    with pytest.raises(ParameterError, match="empty field name"):
        resolve_fields("name,,os", default)


# --- argparse -----------------------------------------------------------------------------------


def _add_parser() -> HerdArgumentParser:
    parser = HerdArgumentParser(prog="gnt-instance add")
    add_common_options(parser, "submit", "print_jobid", "dry_run", "priority", "debug",
                       "os_size", "os_type", "disk_template", "node_placement", "backend",
                       "hypervisor", "osparams", "disk", "net", "no_nics", "no_start",
                       "no_install", "no_ip_check", "no_name_check", "no_wait_for_sync",
                       "force", "shutdown_timeout")
    parser.add_argument("instance")
    return parser


def test_add_defaults_use_ganeti_dest_names() -> None:
    opts = _add_parser().parse_args(["inst1"])
    assert (opts.submit_only, opts.print_jobid, opts.dry_run, opts.priority, opts.debug) == (
        False, False, False, None, 0)
    assert (opts.start, opts.no_install, opts.ip_check, opts.name_check,
            opts.wait_for_sync, opts.force) == (True, False, True, True, True, False)
    assert (opts.beparams, opts.osparams, opts.hypervisor) == ({}, {}, (None, {}))
    assert (opts.disks, opts.nics, opts.sd_size, opts.os, opts.node) == ([], [], None, None, None)
    assert opts.shutdown_timeout == DEFAULT_SHUTDOWN_TIMEOUT


def test_defaults_are_not_shared_between_parses() -> None:
    parser = _add_parser()
    first = parser.parse_args(["inst1"])
    first.beparams["maxmem"] = "1G"
    first.hypervisor[1]["acpi"] = True
    second = parser.parse_args(["inst1"])
    assert (second.beparams, second.hypervisor) == ({}, (None, {}))


def test_add_parses_values() -> None:
    opts = _add_parser().parse_args([
        "-t", "drbd", "-n", "node1:node2", "-o", "debootstrap", "-s", "10G",
        "-B", "maxmem=1G,vcpus=2", "-H", "kvm:boot_order=cdrom", "-O", "suite=bookworm",
        "--disk", "0:size=1G", "--net", "0:link=br0", "--no-start", "--no-ip-check",
        "--no-name-check", "--no-wait-for-sync", "--submit", "--print-job-id", "--priority",
        "high", "-dd", "--shutdown-timeout", "30", "inst1",
    ])
    assert opts.disk_template == "drbd"
    assert opts.node == ("node1", "node2")
    assert opts.os == "debootstrap"
    assert opts.sd_size == 10240
    assert opts.beparams == {"maxmem": "1G", "vcpus": "2"}
    assert opts.hypervisor == ("kvm", {"boot_order": "cdrom"})
    assert opts.osparams == {"suite": "bookworm"}
    assert (opts.disks, opts.nics) == (["0:size=1G"], ["0:link=br0"])
    assert (opts.start, opts.ip_check, opts.name_check, opts.wait_for_sync) == (
        False, False, False, False)
    assert (opts.submit_only, opts.print_jobid, opts.priority, opts.debug) == (True, True, -10, 2)
    assert opts.shutdown_timeout == 30


def test_list_options() -> None:
    parser = HerdArgumentParser(prog="gnt-node list")
    add_common_options(parser, *LIST_OPTIONS)
    opts = parser.parse_args([])
    assert (opts.no_headers, opts.separator, opts.units, opts.output, opts.json) == (
        False, None, None, None, False)
    opts = parser.parse_args(["--no-headers", "--separator=|", "--units", "g", "-o", "+tags",
                              "--json"])
    assert (opts.no_headers, opts.separator, opts.units, opts.output, opts.json) == (
        True, "|", "g", "+tags", True)


def test_cluster_hvparams_list() -> None:
    parser = HerdArgumentParser(prog="gnt-cluster init")
    add_common_options(parser, "hvparams_list")
    opts = parser.parse_args(["-H", "kvm:boot_order=disk", "-H", "kvm:acpi", "-H", "fake"])
    assert opts.hvparams == {"kvm": {"boot_order": "disk", "acpi": True}, "fake": {}}
    assert parser.parse_args([]).hvparams == {}


def test_modify_hvparams_plain() -> None:
    parser = HerdArgumentParser(prog="gnt-instance modify")
    add_common_options(parser, "hvparams", "backend")
    opts = parser.parse_args(["-H", "boot_order=cdrom", "-B", "vcpus=4"])
    assert (opts.hvparams, opts.beparams) == ({"boot_order": "cdrom"}, {"vcpus": "4"})
    assert parser.parse_args(["-H-kernel_path"]).hvparams == {"kernel_path": None}


def test_values_starting_with_dash_as_in_ganeti(capsys: pytest.CaptureFixture[str]) -> None:
    parser = HerdArgumentParser(prog="gnt-instance")
    modify = parser.add_subparsers(dest="command", required=True).add_parser("modify")
    add_common_options(modify, "hvparams", "backend", "disk", "submit")
    modify.add_argument("instance")
    opts = parser.parse_args(["modify", "-H", "-kernel_path", "-B", "-maxmem,vcpus=2",
                              "--disk", "-1:remove", "--submit", "inst1"])
    assert opts.hvparams == {"kernel_path": None}
    assert opts.beparams == {"maxmem": None, "vcpus": "2"}
    assert (opts.disks, opts.submit_only, opts.instance) == (["-1:remove"], True, "inst1")
    # A known option is never swallowed as a value.
    with pytest.raises(SystemExit):
        parser.parse_args(["modify", "-H", "--submit", "inst1"])
    assert "-H/--hypervisor-parameters: expected one argument" in capsys.readouterr().err


def test_option_name_checks() -> None:
    parser = argparse.ArgumentParser()
    with pytest.raises(ProgrammerError, match="share a flag"):
        add_common_options(parser, "output", "os_type")
    with pytest.raises(ProgrammerError, match="unknown option names"):
        add_common_options(parser, "nope")


@pytest.mark.parametrize(("argv", "message"), [
    (["-s", "10X", "inst1"], "gnt-instance add: error: argument -s/--os-size: invalid size "
                             "'10X': expected a number with an optional unit M, G or T"),
    (["-B", "a=1,a=2", "inst1"], "argument -B/--backend-parameters: duplicate key 'a'"),
    (["-n", "a:b:c", "inst1"], "invalid node specification 'a:b:c'"),
    (["-t", "lvm", "inst1"], "argument -t/--disk-template: invalid choice: 'lvm'"),
    (["--priority", "urgent", "inst1"], "argument --priority: invalid choice: 'urgent'"),
    (["--shutdown-timeout", "soon", "inst1"], "invalid number 'soon'"),
    ([], "the following arguments are required: instance"),
    (["inst1", "extra"], "unrecognized arguments: extra"),
])
def test_errors_are_one_line_exit_1(capsys: pytest.CaptureFixture[str], argv: list[str],
                                    message: str) -> None:
    with pytest.raises(SystemExit) as exc:
        _add_parser().parse_args(argv)
    assert exc.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("gnt-instance add: error: ")
    assert message in lines[0]


def test_cluster_hv_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    parser = HerdArgumentParser(prog="gnt-cluster init")
    add_common_options(parser, "hvparams_list")
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["-H", "boot_order=cdrom"])
    assert exc.value.code == 1
    assert capsys.readouterr().err == (
        "gnt-cluster init: error: argument -H: invalid -H value 'boot_order=cdrom': "
        "expected HYPERVISOR:param=value,...\n"
    )


def test_subparsers_inherit_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    parser = HerdArgumentParser(prog="gnt-instance")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add")
    add_common_options(add, "os_size")
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["add", "-s", "1Q"])
    assert exc.value.code == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_help_still_prints_usage_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _add_parser().parse_args(["-h"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: gnt-instance add")
    assert "--os-size SIZE" in out


def test_exit_code_in_a_real_process() -> None:
    code = (
        "from herd.cli.options import HerdArgumentParser, add_common_options\n"
        "p = HerdArgumentParser(prog='gnt-instance add')\n"
        "add_common_options(p, 'os_size')\n"
        "p.parse_args(['-s', '10X'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=30)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == (
        "gnt-instance add: error: argument -s/--os-size: invalid size '10X': expected a number "
        "with an optional unit M, G or T\n"
    )
