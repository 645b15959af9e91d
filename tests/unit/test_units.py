"""Sizes as Ganeti parses and prints them (MiB, rounded up to a multiple of 4)."""

from __future__ import annotations

import pytest

from herd.errors import ParameterError
from herd.units import format_size, parse_size


@pytest.mark.parametrize(("text", "mib"), [
    ("512", 512),
    ("512M", 512),
    ("512m", 512),
    ("512MiB", 512),
    ("512 MB", 512),
    ("1G", 1024),
    ("1g", 1024),
    ("1GiB", 1024),
    ("10G", 10240),
    ("1.5G", 1536),
    ("1.5T", 1572864),
    ("1T", 1048576),
    ("0", 0),
    (" 64 ", 64),
    (".5G", 512),
    (512, 512),
    (1.5, 4),
])
def test_parse_size(text: str | int | float, mib: int) -> None:
    assert parse_size(text) == mib


@pytest.mark.parametrize(("text", "mib"), [
    # Ganeti's ParseUnit: round fractions up, then up to the next multiple of 4
    ("1", 4),
    ("3", 4),
    ("124", 124),
    ("125", 128),
    ("127", 128),
    ("129", 132),
    ("0.5", 4),
    ("1.1G", 1128),  # 1126.4 -> 1127 -> 1128
    ("1.001G", 1028),  # 1025.024 -> 1026 -> 1028
    ("100.1", 104),
])
def test_parse_size_rounds_like_ganeti(text: str, mib: int) -> None:
    assert parse_size(text) == mib
    assert parse_size(text) % 4 == 0


def test_parse_size_bad_unit_message_is_exact() -> None:
    with pytest.raises(ParameterError) as err:
        parse_size("10X")
    assert err.value.message == \
        "invalid size '10X': expected a number with an optional unit M, G or T"


def test_parse_size_message_names_what() -> None:
    with pytest.raises(ParameterError) as err:
        parse_size("big", "size of disk 0")
    assert err.value.message.startswith("invalid size of disk 0 'big'")


@pytest.mark.parametrize("bad", ["-1", "-1G", "", "G", "1.2.3", "1 G B", "1e3", "abc"])
def test_parse_size_rejects(bad: str) -> None:
    with pytest.raises(ParameterError) as err:
        parse_size(bad)
    assert f"'{bad}'" in err.value.message


@pytest.mark.parametrize("bad", [-1, -0.5])
def test_parse_size_rejects_negative_numbers(bad: float) -> None:
    with pytest.raises(ParameterError) as err:
        parse_size(bad)
    assert err.value.message == f"invalid size {bad!r}: must not be negative"


def test_parse_size_rejects_bool() -> None:
    with pytest.raises(ParameterError):
        parse_size(True)


@pytest.mark.parametrize(("mib", "units", "text"), [
    (512, "h", "512M"),
    (1023, "h", "1023M"),
    (1024, "h", "1.0G"),
    (1536, "h", "1.5G"),
    (10240, "h", "10.0G"),
    (1048576, "h", "1.0T"),
    (1572864, "h", "1.5T"),
    (2048, "m", "2048"),
    (2048, "g", "2.0"),
    (1572864, "t", "1.5"),
    (512, "G", "0.5"),
])
def test_format_size(mib: int, units: str, text: str) -> None:
    assert format_size(mib, units) == text


def test_format_size_bad_units() -> None:
    with pytest.raises(ParameterError, match="invalid units 'x'"):
        format_size(1024, "x")


@pytest.mark.parametrize("text", ["512M", "1.5G", "10.0G", "1.5T"])
def test_format_then_parse_is_stable(text: str) -> None:
    assert format_size(parse_size(text)) == text
