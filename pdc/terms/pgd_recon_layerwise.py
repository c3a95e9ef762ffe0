"""`pgd_recon_layerwise`: fresh PGD run independently per site (only that site routed)."""

from __future__ import annotations

from typing import Any, Literal

from pdc.registry.types import Keys, key
from pdc.terms._shared import SCOPE, WEIGHT, AdversaryScope
from pdc.terms.base import LossTerm


class PgdLayerwiseKeys(Keys):
    """Fresh PGD run independently per site (only that site routed)."""

    weight: float = key(1.0, doc=WEIGHT, ge=0.0)
    init: Literal["random", "ones", "zeroes"] = key("random", doc="initial sources")
    step_size: float = key(0.1, doc="sign-ascent step", gt=0.0)
    steps: int = key(1, doc="ascent steps per training step", ge=1)
    scope: AdversaryScope = key("c", doc=SCOPE)


def lower(plan: Any, ctx: Any) -> Any:
    from pdc.decomp import losses

    o = plan.options
    return losses.pgd_recon_layerwise(ctx.key(plan.name), *ctx.recon_args, init=o.init, step_size=o.step_size,
                                      steps=o.steps, scope=o.scope, ascent_forward=ctx.ascent_forward)


TERM = LossTerm("pgd_recon_layerwise", PgdLayerwiseKeys, "reconstruction", lower)
