"""`ci_masked_recon_layerwise`: mask = CI at one site at a time (§5.5)."""

from __future__ import annotations

from typing import Any

from pdc.terms._shared import WeightOnlyKeys
from pdc.terms.base import LossTerm


def lower(plan: Any, ctx: Any) -> Any:
    from pdc.decomp import losses

    return losses.ci_masked_recon_layerwise(*ctx.recon_args)


TERM = LossTerm("ci_masked_recon_layerwise", WeightOnlyKeys, "reconstruction", lower)
