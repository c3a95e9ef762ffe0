"""`persistent_pgd`: adversarial sources (and their Adam moments) live in the train state;
warmup ascents each step, then one more from the main backward's gradient (§5.7). The step
(`pdc.lower.step`) runs the ascents on the state this term declares; this file is its loss."""

from __future__ import annotations

from typing import Any, Literal

from pdc.registry.types import Fraction, Keys, Routing, Schedule, key
from pdc.terms._shared import SCOPE, WEIGHT, AdversaryScope
from pdc.terms.base import LossTerm


class PersistentPgdKeys(Keys):
    """Persistent PGD: adversarial sources (and their Adam moments) live in the train
    state; `warmup_ascents` detached ascents per step, then one more from the main
    backward's source gradient (§5.7)."""

    weight: float = key(1.0, doc=WEIGHT, ge=0.0)
    scope: AdversaryScope = key("sc", doc=SCOPE)
    lr: Schedule = key(Schedule(fn="constant", start=0.01, warmup=0.025), doc="source ascent step size")
    warmup_ascents: int = key(0, doc="extra detached ascents per training step", ge=0)
    step: Literal["adam", "sign"] = key("adam", doc="source update rule")
    beta1: float = key(0.9, doc="source Adam β1", ge=0.0, lt=1.0)
    beta2: float = key(0.999, doc="source Adam β2", ge=0.0, lt=1.0)
    eps: float = key(1e-8, doc="source Adam ε (added after the square root)", gt=0.0)
    start_frac: Fraction = key(0.0, doc="fraction of the run before the term switches on", ge=0.0, lt=1.0)
    source_dtype: Literal["f32", "bf16"] = key("f32", doc="storage dtype of sources and their moments")
    routing: Routing = key("all", doc="routing of the term's loss forward (ascents route everywhere)")


def lower(plan: Any, ctx: Any) -> Any:
    from pdc.decomp import losses

    active = losses.ppgd_active(ctx.step, ctx.program.total_steps, plan.options.start_frac)
    return losses.ppgd_recon(ctx.key(plan.name), ctx.forward, ctx.clean, ctx.ci.lower, ctx.sources[plan.name],
                             ctx.divergence, ctx.program.layout, routing=plan.options.routing, active=active)


TERM = LossTerm("persistent_pgd", PersistentPgdKeys, "reconstruction", lower, state="sources")
