"""Out-of-tree extensions through Python entry points (`pdc.terms`, ...): installed
distributions declare them; a spec never names a file to execute.

A plugin that cannot load (an import error, an object of the wrong kind, a name that clashes)
is left out of the registry and its problem recorded in `PROBLEMS`: the CLI prints them and
stops before doing anything, and the API raises `PluginError` — a broken plugin is never
skipped silently, and it never turns `import pdc` into a traceback.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, TypeVar

T = TypeVar("T")
PROBLEMS: list[str] = []


class PluginError(Exception):
    """An installed pdc plugin could not be loaded; the message names its entry point."""


def entry_point_objects(group: str, kind: type[T]) -> list[T]:
    """The objects the installed distributions register under `group`, in name order; a
    problem with one is recorded in `PROBLEMS` and the entry point left out."""
    found: list[T] = []
    for point in sorted(entry_points(group=group), key=lambda p: p.name):
        where = f"entry point `{point.name} = {point.value}` in group `{group}`"
        try:
            obj: Any = point.load()
        except Exception as error:  # noqa: BLE001 — any failure of third-party code is reported, not raised
            PROBLEMS.append(f"{where} does not load: {type(error).__name__}: {error}")
            continue
        if not isinstance(obj, kind):
            PROBLEMS.append(f"{where} is a {type(obj).__name__}, not a {kind.__name__}")
            continue
        found.append(obj)
    return found


def check_plugins() -> None:
    """Raise `PluginError` listing every plugin that did not load."""
    if PROBLEMS:
        raise PluginError("; ".join(PROBLEMS))
