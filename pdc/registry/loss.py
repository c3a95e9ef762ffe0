"""`loss`: the terms of the objective (SPD_ALGORITHM.md §5), one block each, or several named
instances of one term (`stochastic_recon all { ... }` and `stochastic_recon subset { ... }`).

Each term — its keys, role and lowering — is one file in `pdc/terms/` (or a plugin's entry
point); this block lists them. The order of terms in a spec does not matter: each term's RNG
stream is derived from its name (a named instance's from its term's and its own name), and the
total sums the terms in registry order (a term's unnamed block first, then its named ones by
name), so `pdc fmt` may sort terms into the registry order. Exactly one importance-minimality
term (`importance_minimality` or `smooth_l0`) is required; importance, faithfulness and stateful
terms (`persistent_pgd`) take no name.
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
    "The loss terms, one block each; the total is Σ weight · term. A reconstruction term may also appear as "
    "several named instances, each with its own options, random stream and log keys: `stochastic_recon all "
    "{ ... }` and `stochastic_recon subset { routing = uniform_k_subset }` log `loss/stochastic_recon.all` "
    "and `loss/stochastic_recon.subset`.",
    children=TERMS,
    required=True,
    layout=Layout.EXPANDED,
    noun="loss term",
)

__all__ = ["IMPORTANCE_TERMS", "LOSS", "LOSS_TERMS", "RECON_TERMS", "SCOPE_ALIASES", "TERMS"]
