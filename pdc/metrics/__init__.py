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

import importlib
import pkgutil

from pdc.metrics.base import BatchContext, EvalMetric, RecordContext
from pdc.plugins import PROBLEMS, entry_point_objects

_NOT_METRICS = ("base",)


def _builtin() -> list[EvalMetric]:
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_") and m.name not in _NOT_METRICS]
    found = sorted((importlib.import_module(f"{__name__}.{name}").METRIC for name in names), key=lambda m: m.order)
    orders = [m.order for m in found]
    assert None not in orders and len(set(orders)) == len(orders), f"in-tree metrics need distinct orders: {orders}"
    return found


def _load() -> dict[str, EvalMetric]:
    found = {metric.name: metric for metric in _builtin()}
    for metric in entry_point_objects("pdc.metrics", EvalMetric):
        if metric.name in found:
            PROBLEMS.append(f"eval metric `{metric.name}` from a `pdc.metrics` entry point clashes with one already "
                            "registered; left out")
            continue
        found[metric.name] = metric
    return found


METRICS: dict[str, EvalMetric] = _load()

__all__ = ["BatchContext", "EvalMetric", "METRICS", "RecordContext"]
