"""`stochastic_recon`: reconstruction of the final output with stochastic masks at all sites
(SPD_ALGORITHM.md §5.3), optionally routed per position or run in chunks of sites (§5.5)."""

from __future__ import annotations

from typing import Any, Optional

from pdc.registry.types import Keys, Routing, key
from pdc.terms._shared import SAMPLING, WEIGHT, Sampling
from pdc.terms.base import LossTerm


class StochasticReconKeys(Keys):
    """Reconstruction of the final output with stochastic masks at all sites (§5.3),
    optionally routed per position (subset) or run in sequential chunks of sites (§5.5)."""

    weight: float = key(1.0, doc=WEIGHT, ge=0.0)
    routing: Routing = key("all", doc="which sites run their masked path per position")
    sampling: Sampling = key("continuous", doc=SAMPLING)
    samples: int = key(1, doc="mask draws per step (the loss is their mean)", ge=1)
    sites_per_chunk: Optional[int] = key(None, doc="chunk-subset: one forward per chunk of this many sites", ge=1)


def lower(plan: Any, ctx: Any) -> Any:
    from pdc.decomp import losses

    o = plan.options
    return losses.stochastic_recon(ctx.key(plan.name), *ctx.recon_args, routing=o.routing, sampling=o.sampling,
                                   samples=o.samples, sites_per_chunk=o.sites_per_chunk)


TERM = LossTerm("stochastic_recon", StochasticReconKeys, "reconstruction", lower)
