"""MAC normalization and allocation."""

from __future__ import annotations

import random

import pytest

from herd.errors import ParameterError
from herd.network.mac import check_prefix, generate_mac, normalize_mac


def test_normalize() -> None:
    assert normalize_mac(" AA:00:00:12:34:5F ") == "aa:00:00:12:34:5f"
    for bad in ("aa:00:00:12:34", "aa-00-00-12-34-56", "zz:00:00:12:34:56", ""):
        with pytest.raises(ParameterError, match="expected six hex octets like aa:00:00:12:34:56"):
            normalize_mac(bad)


def test_prefix() -> None:
    assert check_prefix("AA:00:00") == "aa:00:00"
    with pytest.raises(ParameterError):
        check_prefix("aa:00")
    with pytest.raises(ParameterError, match="unicast"):
        check_prefix("01:00:00")


def test_generate_avoids_used() -> None:
    rng = random.Random(1)
    first = generate_mac("aa:00:00", set(), rng=random.Random(1))
    mac = generate_mac("aa:00:00", {first.upper()}, rng=rng)
    assert mac != first and mac.startswith("aa:00:00:")
    assert normalize_mac(mac) == mac
