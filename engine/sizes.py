"""Byte counts as the host configuration writes them: an integer, or digits with a K/M/G/T suffix (base 1024)."""

from __future__ import annotations

import re

_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)\s*$")


def parse_size(value: int | str) -> int:
    """``"8G"`` -> 8589934592. Raises ValueError naming the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512M or 8G, got a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size {value} is negative")
        return value
    m = _RE.match(str(value).upper())
    if not m:
        raise ValueError(f"{value!r} is not a size (digits with an optional K, M, G or T suffix, e.g. 512M)")
    return int(m.group(1)) * _SUFFIX[m.group(2)]


def human(n: float) -> str:
    """1536 -> '1.5 KiB' (for messages and progress)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
