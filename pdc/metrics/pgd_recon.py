"""`pgd_recon`: fresh sign-PGD against the CI masks (§7.5): how much an adversary can raise
the reconstruction divergence; `eval.pgd_steps` ascents of `eval.pgd_step_size`."""

from __future__ import annotations

from typing import Any

from pdc.metrics.base import BatchContext, EvalMetric, RecordContext


def compute(ctx: BatchContext) -> Any:
    from pdc.decomp import metrics

    return metrics.pgd_recon_probe(ctx.key, ctx.forward, ctx.clean.output, ctx.lower, ctx.divergence,
                                   ctx.options.pgd_steps, ctx.options.pgd_step_size)


def record(ctx: RecordContext) -> dict[str, Any]:
    return {"eval/pgd_recon": float(ctx.mean["pgd_recon"])}


METRIC = EvalMetric("pgd_recon", __doc__ or "", record, compute, order=2, stream=0)
