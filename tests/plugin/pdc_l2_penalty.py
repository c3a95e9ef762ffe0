"""An out-of-tree loss term, as a third party would ship it: `l2_penalty`, the mean squared
entry of every component matrix (a weight-decay-like penalty written as a loss term).
Registered by its distribution's `pdc.terms` entry point (see tests/test_plugins.py)."""

from __future__ import annotations

from typing import Any

from pdc.registry.types import Keys, key
from pdc.terms import LossTerm


class L2PenaltyKeys(Keys):
    """Mean of V² and U² over every component matrix, scaled by `scale`."""

    weight: float = key(1.0, doc="coefficient of the term in the total loss", ge=0.0)
    scale: float = key(1.0, doc="l2_penalty_scale_doc: multiplies the mean square", gt=0.0)


def lower(plan: Any, ctx: Any) -> Any:
    import jax.numpy as jnp

    squares = [jnp.mean(jnp.square(m)) for f in ctx.components.values() for m in (f.V, f.U)]
    return plan.options.scale * sum(squares) / len(squares)


TERM = LossTerm("l2_penalty", L2PenaltyKeys, "penalty", lower)
