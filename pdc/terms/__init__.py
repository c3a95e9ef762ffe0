"""Loss terms, one file each: a term's keys (its spec block), its role in the objective and
its lowering live together, so a new term is one file (DESIGN.md §9).

In-tree terms are the modules of this package, each declaring its `stream`: the index of its
random stream (`pdc.decomp.rng`) and its place in the registry's order, fixed forever so runs
replay; a new term takes the next free number. Out-of-tree terms come from the `pdc.terms` entry point group (a distribution declares
`[project.entry-points."pdc.terms"] my_term = "my_pkg.my_term:TERM"`) and follow the
in-tree ones in name order. No spec ever names code to run.

This package is JAX-free: a term's `lower` imports what it computes with when it is called,
so `pdc check` never loads JAX.
"""

from __future__ import annotations

import importlib
import pkgutil

from pdc.terms.base import LossTerm, Role, TermValue
from pdc.plugins import PROBLEMS, entry_point_objects

_NOT_TERMS = ("base",)


def _builtin() -> list[LossTerm]:
    """Every module of this package that defines a term (`TERM`), in stream order."""
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_") and m.name not in _NOT_TERMS]
    terms = sorted((importlib.import_module(f"{__name__}.{name}").TERM for name in names), key=lambda t: t.stream)
    streams = [t.stream for t in terms]
    assert None not in streams and len(set(streams)) == len(streams), f"in-tree terms need distinct streams: {streams}"
    return terms


def _load() -> dict[str, LossTerm]:
    terms = {term.name: term for term in _builtin()}
    for term in entry_point_objects("pdc.terms", LossTerm):
        if term.name in terms:
            PROBLEMS.append(f"loss term `{term.name}` from a `pdc.terms` entry point clashes with one already "
                            "registered; left out")
            continue
        terms[term.name] = term
    return terms


TERMS: dict[str, LossTerm] = _load()


def names_of(role: Role) -> tuple[str, ...]:
    """The registered terms of one role, in registry order."""
    return tuple(name for name, term in TERMS.items() if term.role == role)


__all__ = ["LossTerm", "Role", "TERMS", "TermValue", "names_of"]
