"""Memory sizes as users write them ("512MB", "4GiB", "1.5 GB") and as Hyper-V counts them.

PowerShell's KB/MB/GB/TB suffixes are binary (1MB = 2^20 bytes) and Hyper-V's wire unit is
the MB (reference §2.1), so both spellings ("GB" and "GiB") mean powers of 1024 here.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from harness.errors import SettingError

MB = 1 << 20
GB = 1 << 30
TB = 1 << 40

_FACTORS = {"": 1, "B": 1, "K": 1 << 10, "M": MB, "G": GB, "T": TB}
_SIZE = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(value: str | int, field: str = "size") -> int:
    """Return the size in bytes; refuse anything that is not a whole number of MB."""
    if isinstance(value, bool):
        raise SettingError(field, value, "a size is a number of bytes or a string like '512MB'")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise SettingError(
                field, repr(value), "a size is written like '512MB', '4GiB' or '1.5 GB'"
            )
        try:
            number = Decimal(match["num"])
        except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
            raise SettingError(field, repr(value), "not a number") from exc
        exact = number * _FACTORS[match["unit"].upper()]
        if exact != exact.to_integral_value():
            raise SettingError(field, repr(value), "a size must be a whole number of bytes")
        size = int(exact)
    if size < 0:
        raise SettingError(field, value, "a size cannot be negative")
    if size % MB:
        raise SettingError(field, value, "Hyper-V counts memory in whole MB (reference §2.1)")
    return size


def to_mb(size: int) -> int:
    """Bytes to whole MB (Hyper-V's unit); truncates like the Set-VMMemory cmdlet (§1.1)."""
    return size // MB


def format_size(size: int) -> str:
    """Print a byte count the way users write it: '512MB', '4GB', '1.5GB', '1TB'."""
    for unit, factor in (("TB", TB), ("GB", GB), ("MB", MB)):
        if size >= factor:
            whole, rest = divmod(size, factor)
            if rest == 0:
                return f"{whole}{unit}"
            if unit != "MB" and (size * 10) % factor == 0:
                return f"{size / factor:.1f}{unit}"
    if size % MB == 0:
        return f"{size // MB}MB"
    return f"{size}B"


def parse_seconds(text: str) -> float:
    """A duration as users write it ("0.25", "60"): a finite number of seconds > 0. The one
    check of every seconds option (`--dm-sample-interval`, `--dm-track-within`, `--grace`);
    ValueError names the rule, the caller names the option and the value."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a finite number of seconds > 0") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a finite number of seconds > 0")
    return value
