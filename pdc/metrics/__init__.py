"""Eval metrics, one file each: a metric's name (what `eval.metrics` lists), what target it
needs, what it computes on device per eval batch and how it becomes record entries on the
host (SPD_ALGORITHM.md §7). `pdc.run.evaluate` iterates them; the registry's `Metric` names
and the docs are read from here.

In-tree metrics are the modules of this package, each with a fixed `order` (its place in the
registry and the docs) and, when it draws random numbers, a fixed `stream`
(`fold_in(metric_key, stream)`), so eval passes replay. Out-of-tree
metrics come from the `pdc.metrics` entry point group and follow in name order. This package
is JAX-free: a metric imports what it computes with when it is called.
"""

from __future__ import annotations

from pdc.metrics.base import BatchContext, EvalMetric, RecordContext
from pdc.plugins import extensions

METRICS: dict[str, EvalMetric] = extensions(__name__, "METRIC", EvalMetric, "pdc.metrics", lambda m: m.order,
                                            "eval metric")

__all__ = ["BatchContext", "EvalMetric", "METRICS", "RecordContext"]
