"""`stochastic_recon_layerwise`: one forward per site with only that site masked (§5.4)."""

from __future__ import annotations

from typing import Any

from pdc.registry.types import Keys, key
from pdc.terms._shared import SAMPLING, WEIGHT, Sampling
from pdc.terms.base import LossTerm


class LayerwiseReconKeys(Keys):
    """One forward per site with only that site masked, the rest frozen (§5.4)."""

    weight: float = key(1.0, doc=WEIGHT, ge=0.0)
    sampling: Sampling = key("continuous", doc=SAMPLING)
    samples: int = key(1, doc="mask draws per step", ge=1)


def lower(plan: Any, ctx: Any) -> Any:
    from pdc.decomp import losses

    return losses.layerwise_recon(ctx.key(plan.name), *ctx.recon_args, sampling=plan.options.sampling,
                                  samples=plan.options.samples)


TERM = LossTerm("stochastic_recon_layerwise", LayerwiseReconKeys, "reconstruction", lower)
