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

from pdc.plugins import extensions
from pdc.terms.base import LossTerm, Role, TermValue

TERMS: dict[str, LossTerm] = extensions(__name__, "TERM", LossTerm, "pdc.terms", lambda t: t.stream, "loss term")


def names_of(role: Role) -> tuple[str, ...]:
    """The registered terms of one role, in registry order."""
    return tuple(name for name, term in TERMS.items() if term.role == role)


__all__ = ["LossTerm", "Role", "TERMS", "TermValue", "names_of"]
