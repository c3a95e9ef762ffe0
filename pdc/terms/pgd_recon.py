"""`pgd_recon`: fresh PGD — sources re-initialised each step, sign ascents with detached
parameters, then the recon loss at the adversarial sources (§5.6)."""

from __future__ import annotations

from typing import Any, Literal

from pdc.registry.types import Keys, Routing, key
from pdc.terms._shared import SCOPE, WEIGHT, AdversaryScope
from pdc.terms.base import LossTerm


class PgdReconKeys(Keys):
    """Fresh PGD: sources re-initialised each step, `steps` sign ascents with detached
    parameters, then the recon loss at the adversarial sources (§5.6)."""

    weight: float = key(1.0, doc=WEIGHT, ge=0.0)
    init: Literal["random", "ones", "zeroes"] = key("random", doc="initial sources")
    step_size: float = key(0.1, doc="sign-ascent step", gt=0.0)
    steps: int = key(1, doc="ascent steps per training step", ge=1)
    scope: AdversaryScope = key("c", doc=SCOPE)
    routing: Routing = key("all", doc="drawn once per step, shared by ascents and the loss")


def lower(plan: Any, ctx: Any) -> Any:
    from pdc.decomp import losses

    o = plan.options
    return losses.pgd_recon(ctx.key(plan.name), *ctx.recon_args, init=o.init, step_size=o.step_size, steps=o.steps,
                            scope=o.scope, ascent_forward=ctx.ascent_forward, routing=o.routing)


TERM = LossTerm("pgd_recon", PgdReconKeys, "reconstruction", lower)
