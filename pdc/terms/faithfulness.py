"""`faithfulness`: ‖W − VU‖² over all sites (SPD_ALGORITHM.md §5.2): the one file that
defines the term — its keys, role, lowering and math. The faithfulness warmup before step 0
(`optimize.faithfulness_warmup`) minimises the same `faithfulness` function."""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping

from pdc.registry.types import Keys, key
from pdc.terms._shared import WEIGHT
from pdc.terms.base import LossTerm

Form = Literal["absolute", "relative"]


class FaithfulnessKeys(Keys):
    """‖W − VU‖² over all sites: the global mean of squared delta entries (`absolute`)
    or the mean over sites of ‖W − VU‖² / ‖W‖² (`relative`)."""

    weight: float = key(1.0, doc=WEIGHT, ge=0.0)
    form: Form = key("absolute", doc="normalisation of the squared error")


def faithfulness(weights: Mapping[str, Any], factors: Mapping[str, Any], form: Form = "absolute") -> Any:
    """`absolute`: Σ_s ‖W_s − V_s U_s‖² / Σ_s numel(W_s) (the global mean of squared delta
    entries); `relative`: mean over sites of ‖W_s − V_s U_s‖² / ‖W_s‖². Sites are the
    stacked layers of every kind; fp32 deltas; the numel denominator is a Python float
    because full-model totals overflow int32."""
    import jax.numpy as jnp

    from pdc.decomp.components import weight_delta

    squared = {kind: jnp.sum(jnp.square(weight_delta(W, factors[kind])), axis=(-2, -1))
               for kind, W in weights.items()}
    if form == "absolute":
        numel = float(sum(math.prod(W.shape) for W in weights.values()))
        return sum(jnp.sum(s) for s in squared.values()) / numel
    ratios = [squared[kind] / jnp.sum(jnp.square(W.astype(jnp.float32)), axis=(-2, -1))
              for kind, W in weights.items()]
    return jnp.mean(jnp.concatenate([r.reshape(-1) for r in ratios]))


def lower(plan: Any, ctx: Any) -> Any:
    return faithfulness(ctx.weights, ctx.components, plan.options.form)


TERM = LossTerm("faithfulness", FaithfulnessKeys, "faithfulness", lower)
