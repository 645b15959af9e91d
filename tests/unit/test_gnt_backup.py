"""gnt-backup's option parsing: Ganeti's options become Ganeti's opcodes."""

from __future__ import annotations

import pytest

from herd import errors
from herd.cli import gnt_backup


def parse(*argv: str):
    return gnt_backup.build_parser().parse_args(list(argv))


def test_export_options() -> None:
    op = gnt_backup.export_opcode(parse("export", "-n", "node2", "--noshutdown", "i1"))
    assert op == {"OP_ID": "OP_BACKUP_EXPORT", "instance_name": "i1", "target_node": "node2",
                  "shutdown": False, "shutdown_timeout": 120, "remove_instance": False,
                  "ignore_remove_failures": False, "mode": "local", "compress": "none"}
    op = gnt_backup.export_opcode(parse("export", "-n", "n", "--remove-instance",
                                        "--shutdown-timeout", "5", "i1"))
    assert op["shutdown"] and op["remove_instance"] and op["shutdown_timeout"] == 5


def test_export_needs_a_node() -> None:
    with pytest.raises(errors.ParameterError, match=r"-n NODE"):
        gnt_backup.export_opcode(parse("export", "i1"))


def test_import_leaves_open_what_the_export_says() -> None:
    op = gnt_backup.import_opcode(parse(
        "import", "-t", "drbd", "-n", "node1:node2", "--src-node", "node3",
        "--src-dir", "/srv/herd/export/w1", "--no-name-check", "--no-ip-check", "w2"))
    assert op["mode"] == "import" and op["src_node"] == "node3"
    assert op["src_path"] == "/srv/herd/export/w1"
    assert (op["pnode"], op["snode"]) == ("node1", "node2")
    assert op["disks"] == [] and op["nics"] == [] and op["os_type"] is None
    assert not op["name_check"] and not op["ip_check"] and op["start"]


def test_import_overrides() -> None:
    op = gnt_backup.import_opcode(parse(
        "import", "-t", "file", "--src-dir", "w1", "-s", "1G", "--net", "0:link=br1",
        "-B", "vcpus=2", "-o", "busybox", "--no-start", "w1"))
    assert op["disks"] == [{"size": 1024}] and op["nics"] == [{"link": "br1"}]
    assert op["beparams"] == {"vcpus": "2"} and op["os_type"] == "busybox"
    assert not op["start"]


@pytest.mark.parametrize(("argv", "message"), [
    (("import", "--src-dir", "w1", "w1"), "disk template is required"),
    (("import", "-t", "file", "w1"), "--src-dir"),
    (("import", "-t", "file", "--src-dir", "w1", "-s", "1G", "--disk", "0:size=1G", "w1"),
     "mutually exclusive"),
])
def test_import_refusals(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(errors.ParameterError, match=message):
        gnt_backup.import_opcode(parse(*argv))


def test_list_rows_and_unreachable_nodes() -> None:
    rows, failed = gnt_backup.list_rows({"n2": ["b", "a"], "n1": False, "n3": []})
    assert rows == [{"node": "n2", "export": "a"}, {"node": "n2", "export": "b"}]
    assert failed == ["n1"]
