"""`ce_kl`: next-token CE and KL to the target under masks (unmasked, CI-masked, rounded at
`eval.rounding_threshold`, stochastic, zero-ablated...) (§7.4); language models only."""

from __future__ import annotations

from typing import Any

from pdc.metrics.base import BatchContext, EvalMetric, RecordContext


def compute(ctx: BatchContext) -> Any:
    from pdc.decomp import metrics

    return metrics.ce_kl_losses(ctx.key, ctx.forward, ctx.clean.output, ctx.batch, ctx.lower,
                                ctx.options.rounding_threshold, kl=ctx.divergence, ce=ctx.ce)


def record(ctx: RecordContext) -> dict[str, Any]:
    return {f"eval/ce_kl/{k}": float(v) for k, v in ctx.mean["ce_kl"].items()}


METRIC = EvalMetric("ce_kl", __doc__ or "", record, compute, needs="logits", needs_text="a language-model target",
                    order=1, stream=1)
