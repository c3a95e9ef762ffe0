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
    """The penalty at this step's p, and as metric `<name>.final_p` its value at the schedule's
    final p (gradient-free): with p annealed, the value itself rises as p falls even while CI
    gets sparser; at the final p a falling curve means a sparser CI."""
    import dataclasses

    import jax

    from pdc.decomp import losses

    o = plan.options
    out = importance_value(plan, losses.importance_minimality(ctx.ci.upper, ctx.schedule(o.p, "p"), o.eps,
                                                              reference_tokens(plan)))
    if o.p.fn == "constant" and not o.p.warmup:
        final = out.value  # the same p at every step: nothing to recompute
    else:
        upper = jax.lax.stop_gradient(ctx.ci.upper)
        final = losses.importance_minimality(upper, o.p.end_value(), o.eps).value
    return dataclasses.replace(out, metrics={**out.metrics, f"{plan.name}.final_p": jax.lax.stop_gradient(final)})


TERM = LossTerm("importance_minimality", ImportanceMinimalityKeys, "importance", lower, (FREQUENCY,), stream=9)
