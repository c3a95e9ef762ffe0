"""Tied sites (`decompose { linear2 { tied_to = linear1 } }`): one set of weights seen by
two sites, the second through a transpose (V₂ = U₁ᵀ, U₂ = V₁ᵀ).

The state keeps both stacks, equal up to the transpose, so every consumer (forwards, CI,
metrics, checkpoints, export) reads a tied site like any other. What makes them one set
of weights is how an optimizer step lands, which follows the torch reference: there the
tied site's parameters are views of the source's, and AdamW steps each of the two with
its own moments, in place, on the shared storage. So the new shared weights are the old
ones plus *both* updates, each computed from that site's own gradient and moments."""

from __future__ import annotations

from typing import Mapping

import jax.numpy as jnp

from pdc.decomp.components import Factors

Ties = Mapping[str, str]  # tied kind → source kind


def transposed(factors: Factors) -> Factors:
    """The factors of the transposed matrix: (x @ V @ U)ᵀ = Uᵀ Vᵀ."""
    return Factors(jnp.swapaxes(factors.U, -1, -2), jnp.swapaxes(factors.V, -1, -2))


def tie(components: dict[str, Factors], ties: Ties) -> dict[str, Factors]:
    """Every tied stack overwritten with its source, transposed (at init: the source's
    initialisation wins, as in the reference)."""
    if not ties:
        return components
    return {**components, **{kind: transposed(components[source]) for kind, source in ties.items()}}


def merge_updates(old: dict[str, Factors], new: dict[str, Factors], ties: Ties) -> dict[str, Factors]:
    """After an optimizer step that moved both stacks independently: the source takes the
    tied stack's update too (transposed back), and the tied stack is re-derived from it."""
    if not ties:
        return new
    merged = dict(new)
    for kind, source in ties.items():
        step = transposed(Factors(new[kind].V - old[kind].V, new[kind].U - old[kind].U))
        merged[source] = Factors(merged[source].V + step.V, merged[source].U + step.U)
    return tie(merged, ties)
