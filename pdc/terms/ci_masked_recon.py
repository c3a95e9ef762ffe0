"""`ci_masked_recon`: reconstruction with mask = CI, no delta path (§5.5)."""

from __future__ import annotations

from typing import Any

from pdc.registry.types import Keys, Routing, key
from pdc.terms._shared import WEIGHT
from pdc.terms.base import LossTerm


class CiMaskedReconKeys(Keys):
    """Reconstruction with mask = CI, no delta path (§5.5)."""

    weight: float = key(1.0, doc=WEIGHT, ge=0.0)
    routing: Routing = key("all", doc="which sites run their masked path per position")


def lower(plan: Any, ctx: Any) -> Any:
    from pdc.decomp import losses

    return losses.ci_masked_recon(ctx.key(plan.name), *ctx.recon_args, routing=plan.options.routing)


TERM = LossTerm("ci_masked_recon", CiMaskedReconKeys, "reconstruction", lower)
