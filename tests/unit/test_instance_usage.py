"""Guest usage counters: read from /proc, /sys and QEMU's blockstats, rendered for /metrics."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from herd.hypervisor.kvm.cmdline import drive_id
from herd.hypervisor.stats import CLK_TCK, PAGE_SIZE, block_usage, nic_usage, process_usage
from herd.rapi.metrics import render


def test_process_usage_reads_stat_after_the_command_name(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    # a command name with blanks and a parenthesis must not shift the fields
    fields = ["S", "1", "42", "42", "0", "-1", "4194560", "0", "0", "0", "0",
              str(3 * CLK_TCK), str(2 * CLK_TCK), "0", "0"]
    (tmp_path / "42" / "stat").write_text(f"42 (qemu x) (y) {' '.join(fields)} 20 0 1\n")
    (tmp_path / "42" / "statm").write_text("9000 2500 100 1 0 300 0\n")
    assert process_usage(42, tmp_path) == {"cpu_seconds": 5.0, "rss_bytes": 2500 * PAGE_SIZE}
    assert process_usage(43, tmp_path) is None
    own = process_usage(os.getpid())
    assert own is not None and own["rss_bytes"] > 1 << 20


def test_nic_usage_is_seen_from_the_guest(tmp_path: Path) -> None:
    stats = tmp_path / "htap1n0" / "statistics"
    stats.mkdir(parents=True)
    for name, value in (("rx_bytes", 100), ("tx_bytes", 900), ("rx_packets", 1),
                        ("tx_packets", 9)):
        (stats / name).write_text(f"{value}\n")
    assert nic_usage("htap1n0", tmp_path) == {"rx_bytes": 900, "tx_bytes": 100,
                                              "rx_packets": 9, "tx_packets": 1}
    assert nic_usage("gone", tmp_path) is None


def test_drive_ids_are_qemus_automatic_names() -> None:
    assert [drive_id("paravirtual", i) for i in (0, 3)] == ["virtio0", "virtio3"]
    assert [drive_id("ide", i) for i in range(4)] == ["ide0-hd0", "ide0-hd1", "ide1-hd0",
                                                      "ide1-hd1"]
    assert drive_id("scsi", 8) == "scsi1-hd1"
    answer = [{"device": "virtio0", "stats": {"rd_bytes": 5, "wr_bytes": 7,
                                              "rd_operations": 1, "wr_operations": 2}},
              {"device": "", "qdev": "", "stats": {}}, "junk"]
    assert block_usage(answer) == {"virtio0": {"rd_bytes": 5, "wr_bytes": 7,
                                               "rd_operations": 1, "wr_operations": 2}}


def test_usage_rows_become_counters_per_instance_disk_and_nic() -> None:
    usage = {"n1": [{"name": "a", "cpu_seconds": 12.5, "rss_bytes": 1 << 27,
                     "disks": [{"index": 0, "rd_bytes": 4096, "wr_bytes": 8192,
                                "rd_operations": 1, "wr_operations": 2}],
                     "nics": [{"index": 0, "rx_bytes": 10, "tx_bytes": 20, "rx_packets": 1,
                               "tx_packets": 2}]},
                    {"name": "fake1", "nics": []}]}  # the fake hypervisor tells nothing
    body = render("c1", [], [], [], {"jobs": {}, "etcd": None, "usage": usage})
    m: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for point in family.samples:
            m.setdefault(point.name, {})[tuple(sorted(point.labels.items()))] = point.value
    who = (("cluster", "c1"), ("instance", "a"), ("node", "n1"))
    assert m["herd_instance_cpu_seconds_total"] == {who: 12.5}
    assert m["herd_instance_memory_rss_bytes"] == {who: float(1 << 27)}
    assert m["herd_instance_disk_written_bytes_total"] == {
        (("cluster", "c1"), ("disk", "disk/0"), ("instance", "a"), ("node", "n1")): 8192.0}
    assert m["herd_instance_network_transmit_bytes_total"] == {
        (("cluster", "c1"), ("instance", "a"), ("nic", "nic/0"), ("node", "n1")): 20.0}
