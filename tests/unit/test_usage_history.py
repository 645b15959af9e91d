"""The last hour of use (herd.node.usage_history) and its graphs (herd.web.graphs): rates
from counters, gaps, rings that forget guests gone, queries that store nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from herd.node import usage_history as uh
from herd.web import graphs


def sample(t: float, cpu: float, rss: float = 2**20, rd: float = 0, wr: float = 0,
           rx: float = 0, tx: float = 0) -> uh.Sample:
    return {"t": t, "cpu_seconds": cpu, "rss_bytes": rss, "disk_rd": rd, "disk_wr": wr,
            "net_rx": rx, "net_tx": tx}


def test_rates_from_counters_and_a_gap_where_a_counter_went_back() -> None:
    samples = [sample(0, 0.0, wr=0), sample(10, 5.0, wr=10 * 1024 * 100),
               sample(20, 1.0), sample(30, 3.0, rss=3 * 2**20)]
    out = uh.rates(samples)
    assert out["cpu"] == [[10, 50.0], [30, 20.0]]  # 20 s: restarted, no negative spike
    assert out["disk_write"] == [[10, 100.0], [30, 0.0]]
    assert out["memory"] == [[0, 1.0], [10, 1.0], [20, 1.0], [30, 3.0]]
    assert uh.rates([sample(0, 1.0)])["cpu"] == []  # one sample: no rate yet
    # a reading 0.1 s after the last sample says nothing yet: measured from the one before
    close = uh.rates([sample(0, 0.0), sample(0.1, 0.0), sample(2, 1.0)])
    assert close["cpu"] == [[2, 50.0]]


def test_guest_and_node_samples_from_their_counters(tmp_path: Path) -> None:
    usage = {"cpu_seconds": 2.5, "rss_bytes": 4096,
             "disks": [{"index": 0, "rd_bytes": 10, "wr_bytes": 20},
                       {"index": 1, "rd_bytes": 1, "wr_bytes": 2}],
             "nics": [{"index": 0, "rx_bytes": 7, "tx_bytes": 8}]}
    guest = uh.guest_sample(5.0, usage)
    assert guest == {"t": 5.0, "cpu_seconds": 2.5, "rss_bytes": 4096.0, "disk_rd": 11.0,
                     "disk_wr": 22.0, "net_rx": 7.0, "net_tx": 8.0}
    (tmp_path / "stat").write_text("cpu  100 0 50 1000 30 0 0 0 0 0\ncpu0 1 2 3 4\n")
    (tmp_path / "meminfo").write_text("MemTotal: 1000 kB\nMemFree: 100 kB\n"
                                      "MemAvailable: 400 kB\n")
    node = uh.node_sample(5.0, [guest, guest], tmp_path)
    from herd.hypervisor.stats import CLK_TCK
    assert node["cpu_seconds"] == (100 + 50) / CLK_TCK  # idle and iowait are not busy
    assert node["rss_bytes"] == 600 * 1024
    assert node["disk_wr"] == 44.0 and node["net_tx"] == 16.0


def test_rings_keep_an_hour_drop_gone_guests_and_queries_store_nothing(tmp_path: Path) -> None:
    running = {"a": 0.0}

    async def guests() -> list[dict[str, Any]]:
        running["a"] += 1.0
        return [{"name": n, "cpu_seconds": c} for n, c in running.items()]

    ticks = iter(range(0, 10_000, 10))  # a sample every 10 s
    history = uh.UsageHistory(guests, proc=tmp_path, keep=3, clock=lambda: float(next(ticks)))

    async def go() -> None:
        for _ in range(5):
            history.store(await history.read())
        assert len(history.rings["a"]) == 3 and uh.NODE in history.rings
        answer = await history.series("a")
        assert answer["running"] and len(answer["series"]["cpu"]) == 3  # 3 stored + 1 fresh
        assert len(history.rings["a"]) == 3  # the fresh reading was not stored
        running.pop("a")
        history.store(await history.read())
        assert "a" not in history.rings
        gone = await history.series("a")
        assert not gone["running"] and gone["series"]["cpu"] == []

    asyncio.run(go())


def test_graphs_scale_to_a_round_top_and_split_at_gaps() -> None:
    now = 10_000.0
    points = [[now - 3600, 10.0], [now - 3590, 30.0], [now - 3000, 40.0], [now - 4000, 99.0]]
    g = graphs.graph("cpu", "CPU", "%", points, now, interval=10.0)
    assert g.top == 100.0  # CPU: at least one core
    assert g.lines == ["0.0,54.0 0.8,42.0", "50.0,36.0"]  # gap > 3.5 intervals; old dropped
    assert g.last == 40.0
    disk = graphs.graph("disk_write", "Disk write", "KiB/s", [[now, 1500.0]], now, 10.0)
    assert disk.top == 2000.0 and disk.lines == ["300.0,15.0"]
    empty = graphs.graph("net_rx", "Network in", "KiB/s", [], now, 10.0)
    assert empty.lines == [] and empty.last is None and empty.top == 1.0
