"""Sizes as users write them and as Hyper-V counts them (harness.units, reference §2.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import SettingError
from harness.units import GB, MB, TB, format_size, parse_size, to_mb


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512MB", 512 * MB),
        ("512 MB", 512 * MB),
        ("512mb", 512 * MB),
        ("512M", 512 * MB),
        ("512MiB", 512 * MB),
        ("4GiB", 4 * GB),
        ("4GB", 4 * GB),
        ("4g", 4 * GB),
        ("1.5 GB", 1536 * MB),
        ("  2TB ", 2 * TB),
        ("1048576KB", GB),
        ("1048576", MB),
        ("1048576B", MB),
        ("0", 0),
    ],
)
def test_parse_size_accepts_powershell_style_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_parse_size_passes_whole_mb_integers_through() -> None:
    assert parse_size(3 * GB) == 3 * GB


@pytest.mark.parametrize(
    ("value", "rule_part"),
    [
        ("lots", "written like"),
        ("12 XB", "written like"),
        ("-1GB", "written like"),
        ("1.5", "whole number of bytes"),
        ("1.0000001MB", "whole number of bytes"),
        ("1000KB", "whole MB"),
        (MB + 1, "whole MB"),
        (-MB, "cannot be negative"),
        (True, "number of bytes"),
    ],
)
def test_parse_size_refuses_with_field_value_and_rule(value: str | int, rule_part: str) -> None:
    with pytest.raises(SettingError) as info:
        parse_size(value, "startup")
    assert info.value.field == "startup"
    assert rule_part in info.value.rule
    assert "startup" in str(info.value)


def test_to_mb_truncates_like_the_cmdlet() -> None:
    assert to_mb(MB - 1) == 0
    assert to_mb(3 * MB + MB // 2) == 3


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (512 * MB, "512MB"),
        (4 * GB, "4GB"),
        (1536 * MB, "1.5GB"),
        (1280 * MB, "1280MB"),
        (TB, "1TB"),
        (12 * TB, "12TB"),
        (TB + 512 * GB, "1.5TB"),
        (1000, "1000B"),
        (0, "0MB"),
    ],
)
def test_format_size_prints_the_way_users_write(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.integers(min_value=0, max_value=64 * 1024 * 1024))
def test_format_then_parse_round_trips_every_whole_mb(mb: int) -> None:
    assert parse_size(format_size(mb * MB)) == mb * MB
