"""`activation_density`: per site, the fraction of positions each component fires on (§7.2)."""

from __future__ import annotations

from typing import Any

from pdc.metrics.base import EvalMetric, RecordContext


def record(ctx: RecordContext) -> dict[str, Any]:
    return {f"eval/activation_density/{p}": [float(x) for x in d] for p, d in ctx.by_site(ctx.mean["density"]).items()}


METRIC = EvalMetric("activation_density", __doc__ or "", record, order=6)
