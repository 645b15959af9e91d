"""Markers by kind, from where a test lives: ``unit`` (in-process, milliseconds: tests/unit,
the harness), ``integration`` (real daemons or QEMU on this machine, one node:
tests/integration), ``lab`` (multi-node labs in network namespaces: tests/lab, tests/rapi's
lab modules, tests/web's ``*_lab`` modules). ``-m unit`` is the seconds-long loop while
editing; ``-m "not lab"`` skips the labs. ``slow`` stays as the modules declare it (CI runs
everything)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def kind_of(path: Path) -> str:
    """unit, integration or lab for a test file (pure: tests/unit/test_packaging checks it)."""
    parts = path.resolve().relative_to(HERE).parts
    if parts[0] == "lab" or (parts[0] == "rapi" and path.stem.endswith(("_lab", "_fuzz",
                                                                         "_load"))):
        return "lab"
    if parts[0] == "web" and path.stem.endswith("_lab"):
        return "lab"
    if parts[0] == "integration":
        return "integration"
    return "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kind = kind_of(Path(item.path))
        if kind == "unit" and item.get_closest_marker("slow"):
            kind = "integration"  # real LVM or QEMU under tests/unit: not milliseconds
        item.add_marker(kind)
