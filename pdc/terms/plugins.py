"""Out-of-tree extensions through Python entry points (`pdc.terms`, `pdc.metrics`, ...):
installed distributions declare them; a spec never names a file to execute."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, TypeVar

T = TypeVar("T")


def entry_point_objects(group: str, kind: type[T]) -> list[T]:
    """The objects the installed distributions register under `group`, in name order; one
    that is not a `kind` is an error naming its entry point (a broken plugin is never skipped
    silently)."""
    found: list[T] = []
    for point in sorted(entry_points(group=group), key=lambda p: p.name):
        obj: Any = point.load()
        if not isinstance(obj, kind):
            raise TypeError(f"entry point `{point.name} = {point.value}` in group `{group}` is a "
                            f"{type(obj).__name__}, not a {kind.__name__}")
        found.append(obj)
    return found
