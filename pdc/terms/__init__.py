"""Loss terms, one file each: a term's keys (its spec block), its role in the objective and
its lowering live together, so a new term is one file (DESIGN.md §9).

In-tree terms are listed in `BUILTIN` — in their RNG order: a term's random stream is derived
from its index here (`pdc.decomp.rng`), so the list only grows at the end. Out-of-tree terms
come from the `pdc.terms` entry point group (a distribution declares
`[project.entry-points."pdc.terms"] my_term = "my_pkg.my_term:TERM"`) and follow the
in-tree ones in name order. No spec ever names code to run.

This package is JAX-free: a term's `lower` imports what it computes with when it is called,
so `pdc check` never loads JAX.
"""

from __future__ import annotations

import importlib

from pdc.terms.base import LossTerm, Role, TermValue
from pdc.terms.plugins import PROBLEMS, entry_point_objects

BUILTIN = (
    "faithfulness", "stochastic_recon", "stochastic_recon_layerwise", "ci_masked_recon", "ci_masked_recon_layerwise",
    "unmasked_recon", "pgd_recon", "pgd_recon_layerwise", "persistent_pgd", "importance_minimality", "smooth_l0",
)


def _load() -> dict[str, LossTerm]:
    terms = {name: importlib.import_module(f"pdc.terms.{name}").TERM for name in BUILTIN}
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


__all__ = ["BUILTIN", "LossTerm", "Role", "TERMS", "TermValue", "names_of"]
