"""The feature-major (W, V·U) pairs of every site, shared by `mmcs` and `ml2r` (TMS)."""

from __future__ import annotations

from typing import Any

from pdc.metrics.base import BatchContext


def per_site(ctx: BatchContext, measure_name: str) -> dict[str, Any]:
    """`pdc.decomp.metrics.<measure_name>` of each site's (W, V·U), over its alive components."""
    import jax

    from pdc.decomp import metrics

    weights = ctx.program.target.weights(ctx.params)
    measure = getattr(metrics, measure_name)
    out = {}
    for kind, factors in ctx.state.components.items():
        oriented = metrics.feature_major(weights[kind], factors, ctx.columns[kind])
        out[kind] = jax.vmap(measure)(*oriented, ctx.density[kind] > 0)
    return out
