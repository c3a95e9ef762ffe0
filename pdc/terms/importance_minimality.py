"""`importance_minimality`: the Lp sparsity penalty on CI, p optionally annealed (§5.8),
with an optional frequency penalty (§5.9)."""

from __future__ import annotations

from typing import Any

from pdc.registry.types import Keys, Schedule, key
from pdc.terms._shared import FREQUENCY, WEIGHT, importance_value, reference_tokens
from pdc.terms.base import LossTerm


class ImportanceMinimalityKeys(Keys):
    """Σ_sites Σ_c mean_pos (ci_upper + eps)^p, with p optionally annealed (§5.8)."""

    weight: float = key(doc=WEIGHT, ge=0.0)
    p: Schedule = key(Schedule.constant_of(1.0), doc="the norm's exponent, e.g. `linear(2.0, 0.4)`")
    eps: float = key(1e-12, doc="added inside the power", ge=0.0)


def lower(plan: Any, ctx: Any) -> Any:
    from pdc.decomp import losses

    o = plan.options
    return importance_value(plan, losses.importance_minimality(ctx.ci.upper, ctx.schedule(o.p), o.eps,
                                                               reference_tokens(plan)))


TERM = LossTerm("importance_minimality", ImportanceMinimalityKeys, "importance", lower, (FREQUENCY,))
