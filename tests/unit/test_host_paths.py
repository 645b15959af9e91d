"""Host paths in hypervisor parameters (herd.logic.host_paths): non-admins may name image
files inside the admin's directories and no other host path."""

from __future__ import annotations

from pathlib import Path

from herd.logic import host_paths

DIRS = ["/srv/images", "/srv/iso/"]


def modify(**hv: object) -> dict[str, object]:
    return {"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "a", "hvparams": hv}


def test_the_host_paths_come_from_the_hypervisors_table() -> None:
    names = host_paths.host_path_params()
    assert {"kvm_path", "kernel_path", "initrd_path", "cdrom_image_path", "cdrom2_image_path",
            "floppy_image_path", "mem_path", "vnc_x509_path"} <= names
    assert "boot_order" not in names and "root_path" not in names  # not files on the node
    assert names >= host_paths.IMAGE_PARAMS


def test_images_inside_the_admins_directories_only() -> None:
    assert host_paths.refusal([modify(cdrom_image_path="/srv/iso/debian.iso")], DIRS) is None
    assert host_paths.refusal([modify(kernel_path="/srv/images/k/vmlinuz")], DIRS) is None
    assert host_paths.refusal([modify(cdrom_image_path="")], []) is None  # unsetting is fine
    assert host_paths.refusal([modify(cdrom_image_path="/etc/shadow")], DIRS) == (
        "hypervisor parameter cdrom_image_path='/etc/shadow': only an admin may name a file "
        "outside the image directories (/srv/images, /srv/iso/)")
    assert "only an admin may name a file" in host_paths.refusal(
        [modify(cdrom_image_path="/srv/iso/../../etc/shadow")], DIRS)
    assert host_paths.refusal([modify(floppy_image_path="/srv/isolated/x")], DIRS)  # prefix
    assert host_paths.refusal([modify(cdrom_image_path="/srv/iso")], DIRS)  # the dir itself
    assert "nowhere yet" in host_paths.refusal([modify(initrd_path="/srv/iso/i")], [])


def test_other_host_paths_are_for_admins_whatever_the_directory() -> None:
    assert host_paths.refusal([modify(kvm_path="/srv/images/qemu")], DIRS) == (
        "hypervisor parameter kvm_path='/srv/images/qemu': only an admin may set this host "
        "path")
    # cluster and group parameters come keyed by hypervisor; a startup's -H too is looked at
    cluster = {"OP_ID": "OP_CLUSTER_SET_PARAMS",
               "hvparams": {"kvm": {"cdrom_image_path": "/root/x.iso"}}}
    assert "cdrom_image_path='/root/x.iso'" in host_paths.refusal([cluster], DIRS)
    start = {"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "a",
             "hvparams": {"initrd_path": "/boot/initrd.img"}}
    assert host_paths.refusal([{"OP_ID": "OP_TEST_DELAY"}, start], DIRS)


def test_image_directories_are_cluster_config(tmp_path: Path) -> None:
    from tests.harness import InProcessCluster, scratch_root

    with scratch_root(tmp_path) as root, InProcessCluster(root, nodes=1) as cluster:
        done = cluster.run({"OP_ID": "OP_CLUSTER_SET_PARAMS",
                            "user_image_dirs": ["/srv/iso/", "/srv/images"]})
        assert done.status == "success", done.log
        assert cluster.saved_config().cluster.user_image_dirs == ["/srv/iso", "/srv/images"]
        for bad in ("srv/iso", "/", "/srv/../etc"):
            refused = cluster.run({"OP_ID": "OP_CLUSTER_SET_PARAMS", "user_image_dirs": [bad]})
            assert refused.status == "error"
            assert f"invalid image directory {bad!r}" in str(refused.results)
