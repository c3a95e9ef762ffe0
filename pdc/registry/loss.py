"""`loss`: the terms of the objective (SPD_ALGORITHM.md §5), one block each.

Each term — its keys, role and lowering — is one file in `pdc/terms/` (or a plugin's entry
point); this block lists them. The order of terms in a spec does not matter: each term's RNG
stream is derived from its name, and the total sums the terms in registry order, so `pdc fmt`
may sort terms into the registry order. Exactly one importance-minimality term
(`importance_minimality` or `smooth_l0`) is required.
"""

from __future__ import annotations

from pdc.registry.schema import BlockSchema, Layout
from pdc.terms import TERMS as LOSS_TERMS
from pdc.terms import names_of
from pdc.terms._shared import SCOPE_ALIASES

TERMS: tuple[BlockSchema, ...] = tuple(term.schema for term in LOSS_TERMS.values())
IMPORTANCE_TERMS = names_of("importance")
RECON_TERMS = names_of("reconstruction")

LOSS = BlockSchema(
    "loss",
    "The loss terms, one block each; the total is Σ weight · term.",
    children=TERMS,
    required=True,
    layout=Layout.EXPANDED,
    noun="loss term",
)

__all__ = ["IMPORTANCE_TERMS", "LOSS", "LOSS_TERMS", "RECON_TERMS", "SCOPE_ALIASES", "TERMS"]
