"""The creation wizard's form check (herd.web.wizard): one message per bad field, an opcode
only for a valid form, and only the choices the user was offered."""

from __future__ import annotations

from herd.objects import params
from herd.web import wizard

CHOICES = wizard.Choices(
    user="alice", owners=wizard.owner_choices("alice", frozenset({"devs"}), operator=False),
    os_names=("busybox+default", "debian+bookworm"), templates=("file", "drbd", "diskless"),
    nodes=("node1", "node2"), allocator=True,
    bounds=wizard.Bounds.from_ipolicy(params.default_ipolicy(["file", "drbd"])))
GOOD = {"name": "web1.example.com", "owner": "alice", "os": "busybox+default",
        "template": "file", "pnode": "node1", "snode": "", "memory": "512M", "vcpus": "2",
        "disks": "1G, 2G", "nics": "1", "link": "br0", "start": "on"}


def test_a_valid_form_becomes_the_creation_opcode() -> None:
    op, problems = wizard.check_form(GOOD, CHOICES)
    assert problems == {}
    assert op == {
        "OP_ID": "OP_INSTANCE_CREATE", "instance_name": "web1.example.com", "mode": "create",
        "os_type": "busybox+default", "disk_template": "file",
        "disks": [{"size": 1024}, {"size": 2048}], "nics": [{"link": "br0"}],
        "beparams": {"maxmem": 512, "minmem": 512, "vcpus": 2}, "start": True,
        "name_check": False, "ip_check": False, "tags": ["herd:owner:alice"], "pnode": "node1"}


def test_every_bad_field_gets_its_own_message_and_no_opcode() -> None:
    bad = {**GOOD, "name": "bad name!", "owner": "bob", "os": "windows", "template": "plain",
           "pnode": "node9", "memory": "lots", "vcpus": "99", "disks": "1G, 5T",
           "nics": "12", "link": "a bridge"}
    op, problems = wizard.check_form(bad, CHOICES)
    assert op is None
    assert set(problems) == {"name", "owner", "os", "template", "pnode", "memory", "vcpus",
                             "disks", "nics", "link"}
    assert "invalid instance name" in problems["name"]
    assert problems["owner"] == ("owner 'bob' is not one you may choose: alice, @devs")
    assert problems["os"].startswith("OS 'windows' is not available: choose one of busybox")
    assert problems["template"] == ("disk template 'plain' is not enabled: allowed are file, "
                                    "drbd, diskless")
    assert problems["pnode"] == "node 'node9' is not one you may use: node1, node2"
    assert "invalid memory 'lots'" in problems["memory"]
    assert problems["vcpus"] == "vCPU count 99 is outside the policy's 1 to 8"
    assert problems["disks"] == "disk size 5.0T is outside the policy's 1.0G to 1.0T"
    assert problems["nics"] == "invalid NIC count '12': expected 0 to 8"
    assert problems["link"].startswith("invalid link 'a bridge'")


def test_placement_rules_for_mirrors_and_the_allocator() -> None:
    op, problems = wizard.check_form({**GOOD, "template": "drbd", "pnode": "node1",
                                      "snode": "node1"}, CHOICES)
    assert problems == {"snode": "the secondary node must differ from the primary"}
    op, problems = wizard.check_form({**GOOD, "template": "drbd", "pnode": "",
                                      "snode": "node2"}, CHOICES)
    assert "snode" in problems
    op, _ = wizard.check_form({**GOOD, "template": "drbd", "pnode": "node1",
                               "snode": "node2"}, CHOICES)
    assert op is not None and (op["pnode"], op["snode"]) == ("node1", "node2")
    op, _ = wizard.check_form({**GOOD, "pnode": ""}, CHOICES)
    assert op is not None and "pnode" not in op  # the allocator places it
    # a user granted on a node group only must choose a node
    grouped = wizard.Choices(**{**CHOICES.__dict__, "allocator": False})
    _, problems = wizard.check_form({**GOOD, "pnode": ""}, grouped)
    assert problems == {"pnode": "choose a node (you may not leave the placement to the "
                                 "allocator)"}


def test_diskless_and_owner_choices() -> None:
    _, problems = wizard.check_form({**GOOD, "template": "diskless"}, CHOICES)
    assert problems == {"disks": "a diskless instance has no disks: leave this empty"}
    op, _ = wizard.check_form({**GOOD, "template": "diskless", "disks": ""}, CHOICES)
    assert op is not None and op["disks"] == []
    _, problems = wizard.check_form({**GOOD, "disks": ""}, CHOICES)
    assert problems == {"disks": "give at least one disk size, e.g. 10G or 10G, 20G"}
    assert wizard.owner_choices("op", frozenset(), operator=True) == ("op", "")
    op, _ = wizard.check_form({**GOOD, "owner": "@devs"}, CHOICES)
    assert op is not None and op["tags"] == ["herd:owner:@devs"]
