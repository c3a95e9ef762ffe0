"""What an eval metric is: the target it needs, its device-side computation on one eval
batch, and its host-side record entries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class BatchContext:
    """What every metric of one eval batch may read (built by `pdc.run.evaluate`)."""

    program: Any  # pdc.lower.program.Program
    options: Any  # the eval block's `EvalKeys`
    state: Any  # TrainState
    params: Any  # the frozen target's weights
    batch: Any  # the eval batch (token ids, or the drawn toy inputs)
    clean: Any  # the target's clean pass on it
    lower: Mapping[str, Any]  # ci_lower per site kind
    density: Mapping[str, Any]  # per kind [L, C]: how often each component fires (`alive_threshold`)
    forward: Callable[..., Any]  # masked forward with the live components
    divergence: Callable[..., Any]  # the recon divergence (KL over logits / MSE)
    ce: Callable[..., Any]  # next-token CE of an output against tokens
    key: Any  # this metric's random key: fold_in(metric key, stream)
    columns: Mapping[str, bool]  # per kind: does it write the toy's features
    shared: dict[str, Any] = field(default_factory=dict)  # what several metrics of the batch derive once


@dataclass(frozen=True)
class RecordContext:
    """What a metric's record entries may read (host side, batch means)."""

    program: Any
    options: Any
    mean: Mapping[str, Any]  # "l0", "density" and each requested metric's own arrays, averaged over batches
    paths: Mapping[str, list[str]]  # kind → site paths

    def by_site(self, per_kind: Mapping[str, Any]) -> dict[str, Any]:
        from pdc.decomp import metrics

        return metrics.by_site(per_kind, self.paths)


@dataclass(frozen=True)
class EvalMetric:
    name: str
    doc: str
    record: Callable[[RecordContext], dict[str, Any]]
    compute: Callable[[BatchContext], Any] | None = None  # None: reads the l0/density every pass computes
    needs: str | None = None  # the target output ("logits") or a family trait ("feature_sites") it needs
    needs_text: str = ""  # "a language-model target"
    needs_ci_pattern: bool = False  # reads the eval block's `ci_pattern` entries
    order: int | None = None  # in-tree: its place in the registry (the names `eval.metrics` lists)
    stream: int = 0  # the random stream of its key: fold_in(metric key, stream); fixed, so passes replay
