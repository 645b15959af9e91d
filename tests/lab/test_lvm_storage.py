"""The cluster's volume group on a real two-node lab (issue 11, items 3 and 4 without plain).

Each lab node has its own PV (a loop file) with a VG called herdvg, its LVM restricted to that
device, as the nodes of a real cluster each have theirs. One test, to keep the suite short:
``init --vg-name``, a VG a node lacks refused by modify, node figures from the VG, ``gnt-node
list-storage`` and ``volumes`` and RAPI's storage job (Ganeti's own client) with Ganeti's
fields, and verify failing on an LV no disk owns (made with lvcreate inside node2's device
restriction), quiet about it once it is a reserved LV, and clean again once it is removed.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from herd.lab.cluster import lab_cluster
from herd.lab.single import build_test_guest
from tests.rapi.conftest import RapiLab, wait_rapi

pytestmark = pytest.mark.slow

VG = "herdvg"
PV_MIB = 256


def on_node_lvm(lab: RapiLab, node: str, call: str) -> None:
    """Run ``call`` on the node's LvmNode of the cluster VG (its devices file, its LVM dir)."""
    script = ("from herd import paths\nfrom herd.storage import node_vg\n"
              f"lvm = node_vg.lvm_node_for(paths.current(), {VG!r})\n{call}\n")
    lab.lab.run(node, "python3", "-c", script)


def pv_of(lab: RapiLab, node: str) -> str:
    """The loop device that is the node's PV."""
    return subprocess.run(["losetup", "-n", "-O", "NAME", "-j",
                           str(lab.lab.node(node).root / "lvm-pv.img")],
                          capture_output=True, text=True, check=True).stdout.strip()


def _has_device_mapper() -> bool:
    from herd.storage.lvm import probe_activation

    return probe_activation().mode != "loop"


def verify(lab: RapiLab) -> tuple[int, list[str]]:
    """verify's exit code and its findings, without the time stamps."""
    proc = lab.gnt("gnt-cluster", "verify", check=False)
    print(proc.stdout, proc.stderr)  # shown by pytest when an assertion fails
    return proc.returncode, [ln.split(" - ", 1)[1].strip() for ln in proc.stdout.splitlines()
                             if " - ERROR: " in ln or " - WARNING: " in ln]


def test_volume_group_views_and_an_orphan_lv() -> None:
    from herd.rapi.auth import ha1
    from tests.rapi.conftest import USERS

    kernel, initrd = build_test_guest()
    with lab_cluster(2, vg=VG, vg_size_mib=PV_MIB) as lab_:
        lab = RapiLab(lab_, kernel, initrd)
        lab.init("--vg-name", VG, "--enabled-disk-templates", "file,plain,diskless")
        info = lab_.node("node2")
        added = lab.gnt("gnt-node", "add", "-s", info.secondary_ip, "--join-token",
                        lab.token("node2"), info.fqdn)
        assert "volume group" not in added.stdout + added.stderr  # node2 has it
        for node in ("node1", "node2"):  # as distributed: verify compares the copies
            lab.write_users(USERS % ha1("jessica", "jesspw"), node=node)
        assert "lvm volume group: herdvg" in lab.gnt("gnt-cluster", "info").stdout

        refused = lab.gnt("gnt-cluster", "modify", "--vg-name", "othervg", check=False)
        assert refused.returncode != 0
        assert refused.stderr.strip() == (
            "gnt-cluster: error: volume group othervg is not usable on node node1.example.com: "
            f"cannot read volume group othervg on {pv_of(lab, 'node1')}: no physical volume "
            "there belongs to it")

        nodes = json.loads(lab.gnt("gnt-node", "list", "--json", "-o",
                                   "name,dtotal,dfree").stdout)
        vg_mib = PV_MIB - 4  # the PV's label and metadata take one 4 MiB extent
        assert [(n["dtotal"], n["dfree"]) for n in nodes] == [(vg_mib, vg_mib)] * 2, nodes

        rows = json.loads(lab.gnt("gnt-node", "list-storage", "--json").stdout)
        assert rows == [{"node": f"node{i}.example.com", "type": "lvm-vg", "name": VG,
                         "size": vg_mib, "used": 0, "free": vg_mib, "allocatable": True}
                        for i in (1, 2)], rows
        files = json.loads(lab.gnt("gnt-node", "list-storage", "-t", "file", "--json",
                                   "-o", "node,type,name", "node2.example.com").stdout)
        assert files == [{"node": "node2.example.com", "type": "file",
                          "name": str(lab_.node("node2").paths.file_storage_dir)}]

        on_node_lvm(lab, "node2", "lvm.lvm('lvcreate', ['--activate', 'n', '--zero', 'n', "
                                  f"'-L', '8m', '-n', 'stray', {VG!r}], 'stray LV')")
        try:
            volumes = json.loads(lab.gnt("gnt-node", "volumes", "--json").stdout)
            assert volumes == [{"node": "node2.example.com", "phys": pv_of(lab, "node2"),
                                "vg": VG, "name": "stray", "size": 8, "instance": "-"}], volumes

            wait_rapi(lab)
            job = lab.run_job("GetNodeStorageUnits", "node2.example.com", "lvm-vg",
                              "node,type,name,size,used,free,allocatable")
            assert job["status"] == "success", job
            status = lab.ok("GetJobStatus", job["id"])
            assert status["opresult"] == [[["node2.example.com", "lvm-vg", VG, vg_mib, 8,
                                            vg_mib - 8, True]]], status

            code, lines = verify(lab)
            assert code == 1 and "ERROR: node node2.example.com: volume herdvg/stray is " \
                "unknown (an LV of 8 MiB no instance owns)" in lines, lines
            lab.gnt("gnt-cluster", "modify", "--reserved-lvs", f"{VG}/str.*")  # the admin's
            assert not [ln for ln in verify(lab)[1] if "stray" in ln]
            lab.gnt("gnt-cluster", "modify", "--reserved-lvs", "")
        finally:
            on_node_lvm(lab, "node2", "lvm.remove('stray')")
        code, lines = verify(lab)
        assert code == 0 and not [ln for ln in lines if ln.startswith("ERROR")], lines
        assert ("WARNING: nodes node1.example.com, node2.example.com: LVs of herdvg are "
                "activated as loop devices over their PV (" in "\n".join(lines)
                or _has_device_mapper()), lines
