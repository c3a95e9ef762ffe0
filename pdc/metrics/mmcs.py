"""`mmcs`: mean max cosine similarity between each feature's weight column and the closest
alive component (§7.7); TMS only."""

from __future__ import annotations

from typing import Any

from pdc.metrics._toy_geometry import per_site
from pdc.metrics.base import BatchContext, EvalMetric, RecordContext


def compute(ctx: BatchContext) -> Any:
    return per_site(ctx, "mmcs")


def record(ctx: RecordContext) -> dict[str, Any]:
    return {f"eval/mmcs/{p}": float(v) for p, v in ctx.by_site(ctx.mean["mmcs"]).items()}


METRIC = EvalMetric("mmcs", __doc__ or "", record, compute, needs="feature_sites", needs_text="a TMS target", order=3)
