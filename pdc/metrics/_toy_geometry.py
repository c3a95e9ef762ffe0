"""The feature-major (W, V·U) pairs of every site, shared by `mmcs` and `ml2r` (TMS)."""

from __future__ import annotations

from typing import Any

from pdc.metrics.base import BatchContext


def per_site(ctx: BatchContext, measure_name: str) -> dict[str, Any]:
    """`pdc.decomp.metrics.<measure_name>` of each site's (W, V·U), over its alive components."""
    import jax

    from pdc.decomp import metrics

    if "feature_major" not in ctx.shared:  # once per batch, for whichever of mmcs / ml2r comes first
        weights = ctx.program.target.weights(ctx.params)
        ctx.shared["feature_major"] = {kind: metrics.feature_major(weights[kind], factors, ctx.columns[kind])
                                       for kind, factors in ctx.state.components.items()}
    measure = getattr(metrics, measure_name)
    return {kind: jax.vmap(measure)(*pair, ctx.density[kind] > 0) for kind, pair in ctx.shared["feature_major"].items()}
