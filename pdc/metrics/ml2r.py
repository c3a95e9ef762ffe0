"""`ml2r`: mean L2 ratio of the matched component's norm to the feature column's (§7.7); TMS
only."""

from __future__ import annotations

from typing import Any

from pdc.metrics._toy_geometry import per_site
from pdc.metrics.base import BatchContext, EvalMetric, RecordContext


def compute(ctx: BatchContext) -> Any:
    return per_site(ctx, "ml2r")


def record(ctx: RecordContext) -> dict[str, Any]:
    return {f"eval/ml2r/{p}": float(v) for p, v in ctx.by_site(ctx.mean["ml2r"]).items()}


METRIC = EvalMetric("ml2r", __doc__ or "", record, compute, needs="feature_sites", needs_text="a TMS target", order=4)
