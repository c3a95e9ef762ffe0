"""Units of numeric literals: sizes, percentages and count suffixes.

A unit is written against the number (`20k`, `10%`, `80GiB`) or, for sizes, after a
space (`80 GiB`). Which units a key accepts is decided by its type in the registry.
"""

from __future__ import annotations

SIZE_UNITS: dict[str, int] = {
    "B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
}
COUNT_UNITS: dict[str, int] = {"k": 10**3, "M": 10**6, "G": 10**9}
PERCENT = "%"
ALL_UNITS: tuple[str, ...] = tuple(COUNT_UNITS) + (PERCENT,) + tuple(SIZE_UNITS)
