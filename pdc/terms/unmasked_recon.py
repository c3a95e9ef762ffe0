"""`unmasked_recon`: every component on (mask = 1, no delta): V·U alone reproduces the output."""

from __future__ import annotations

from typing import Any

from pdc.terms._shared import WeightOnlyKeys
from pdc.terms.base import LossTerm


def lower(plan: Any, ctx: Any) -> Any:
    from pdc.decomp import losses

    return losses.unmasked_recon(ctx.forward, ctx.clean, ctx.ci.lower, ctx.divergence)


TERM = LossTerm("unmasked_recon", WeightOnlyKeys, "reconstruction", lower)
