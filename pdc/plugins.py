"""Out-of-tree extensions through Python entry points (`pdc.terms`, `pdc.metrics`): installed
distributions declare them; a spec never names a file to execute.

A plugin that cannot load (an import error, an object of the wrong kind, a name that clashes)
is left out of the registry and its problem recorded in `PROBLEMS`: the CLI prints them and
stops before doing anything, and the API raises `PluginError` — a broken plugin is never
skipped silently, and it never turns `import pdc` into a traceback.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import Any, Callable, TypeVar

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


def extensions(package: str, attr: str, kind: type[T], group: str, rank: Callable[[T], int | None],
               noun: str) -> dict[str, T]:
    """name → extension: the in-tree ones first — every public module of `package` that
    defines `attr`, in `rank` order (ranks fixed and distinct: runs replay) — then those of
    the entry point group `group` in name order; one whose name is taken is left out and
    recorded in `PROBLEMS`."""
    modules = [m.name for m in pkgutil.iter_modules(importlib.import_module(package).__path__)
               if not m.name.startswith("_")]
    found = [obj for obj in (getattr(importlib.import_module(f"{package}.{m}"), attr, None) for m in modules) if obj]
    ranks = [rank(obj) for obj in found]
    assert None not in ranks and len(set(ranks)) == len(ranks), f"in-tree {noun}s need distinct ranks: {ranks}"
    out = {obj.name: obj for obj in sorted(found, key=rank)}  # type: ignore[attr-defined]
    for obj in entry_point_objects(group, kind):
        name = obj.name  # type: ignore[attr-defined]
        if name in out:
            PROBLEMS.append(f"{noun} `{name}` from a `{group}` entry point clashes with one already registered; left out")
            continue
        out[name] = obj
    return out
