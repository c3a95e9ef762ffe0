"""`smooth_l0`: the Geman–McClure penalty on CI (§5.10), with an optional frequency penalty."""

from __future__ import annotations

from typing import Any

from pdc.registry.types import Keys, Schedule, key
from pdc.terms._shared import FREQUENCY, WEIGHT, importance_value, reference_tokens
from pdc.terms.base import LossTerm


class SmoothL0Keys(Keys):
    """Geman–McClure penalty c² / (c² + γ²) on ci_upper (§5.10)."""

    weight: float = key(doc=WEIGHT, ge=0.0)
    gamma: Schedule = key(Schedule.constant_of(1.0), doc="scale γ, e.g. `linear(1.0, 0.1)`")
    normalize_at_one: bool = key(False, doc="multiply by (1 + γ²) so a fully active component costs 1")


def lower(plan: Any, ctx: Any) -> Any:
    from pdc.decomp import losses

    o = plan.options
    return importance_value(plan, losses.smooth_l0(ctx.ci.upper, ctx.schedule(o.gamma, "gamma"), o.normalize_at_one,
                                                   reference_tokens(plan)))


TERM = LossTerm("smooth_l0", SmoothL0Keys, "importance", lower, (FREQUENCY,), stream=10)
