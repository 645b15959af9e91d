"""The usage graphs as server-drawn SVG: no chart library, no script, nothing the strict CSP
has to allow.

A graph is a polyline over the last hour (herd.node.usage_history gives the series); the page
refreshes the fragment every :data:`REFRESH` seconds with htmx. :func:`graph` is pure: series
in, what the template draws out (points in the SVG's own coordinates, the scale's top, the last
value), so its scaling and gaps are unit-tested.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from herd.node.usage_history import SERIES

#: The drawing area (SVG user units; the browser scales it to the page's width).
WIDTH, HEIGHT = 300.0, 60.0
WINDOW = 3600.0  # seconds shown
REFRESH = 10  # seconds between two refreshes of the fragment
#: A step longer than this many sampling intervals is a gap (noded restarted, guest moved).
GAP = 3.5


@dataclasses.dataclass(frozen=True)
class Graph:
    key: str
    title: str
    unit: str
    lines: list[str]  # one SVG "points" attribute per unbroken run of samples
    top: float  # the value at the top of the graph
    last: float | None


def _nice_top(peak: float, unit: str) -> float:
    """The smallest of 1, 2, 5 x 10^k at or above the peak (CPU: at least 100 %, one core)."""
    if unit == "%":
        peak = max(peak, 100.0)
    scale = 1.0
    while True:
        for step in (1.0, 2.0, 5.0):
            if step * scale >= peak:
                return step * scale
        scale *= 10.0


def graph(key: str, title: str, unit: str, points: list[list[float]], now: float,
          interval: float) -> Graph:
    """One graph: the points within the last :data:`WINDOW` seconds before ``now``, scaled
    into the drawing area, split where samples are missing."""
    shown = [(t, v) for t, v in points if now - WINDOW <= t <= now]
    top = _nice_top(max((v for _, v in shown), default=0.0), unit)
    lines: list[str] = []
    run: list[str] = []
    previous: float | None = None
    for t, v in shown:
        if previous is not None and t - previous > GAP * interval and run:
            lines.append(" ".join(run))
            run = []
        x = WIDTH * (1 - (now - t) / WINDOW)
        y = HEIGHT * (1 - min(v, top) / top)
        run.append(f"{x:.1f},{y:.1f}")
        previous = t
    if run:
        lines.append(" ".join(run))
    return Graph(key, title, unit, lines, top, shown[-1][1] if shown else None)


def graphs(answer: dict[str, Any], now: float) -> list[Graph]:
    """Every series of a ``query_usage`` answer as a :class:`Graph`."""
    series = answer.get("series") or {}
    interval = float(answer.get("interval") or 10.0)
    return [graph(key, title, unit, series.get(key) or [], now, interval)
            for key, title, unit in SERIES]
