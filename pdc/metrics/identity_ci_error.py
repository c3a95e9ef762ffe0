"""`identity_ci_error`: on the one-hot probe, how far each site's CI is from the pattern its
`eval.ci_pattern` entry expects (`identity` or `dense(k)`, §7.6), and the components
co-active per probe row."""

from __future__ import annotations

from typing import Any

from pdc.metrics.base import BatchContext, EvalMetric, RecordContext


def compute(ctx: BatchContext) -> Any:
    from pdc.run.evaluate import probe_ci

    return probe_ci(ctx.program, ctx.state, ctx.params)


def record(ctx: RecordContext) -> dict[str, Any]:
    from pdc.run.evaluate import probe_records

    return probe_records(ctx.program, ctx.options, ctx.mean["identity_ci_error"])


METRIC = EvalMetric("identity_ci_error", __doc__ or "", record, compute, needs_ci_pattern=True, order=5)
