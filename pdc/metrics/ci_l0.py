"""`ci_l0`: components per site with ci_lower above `eval.alive_threshold`, averaged over
positions (§7.1), and their total."""

from __future__ import annotations

from typing import Any

from pdc.metrics.base import EvalMetric, RecordContext


def record(ctx: RecordContext) -> dict[str, Any]:
    l0 = {p: float(v) for p, v in ctx.by_site(ctx.mean["l0"]).items()}
    prefix = f"eval/l0/{ctx.options.alive_threshold:g}"
    return {**{f"{prefix}_{p}": v for p, v in l0.items()}, f"{prefix}_total": float(sum(l0.values()))}


METRIC = EvalMetric("ci_l0", __doc__ or "", record, order=0)
