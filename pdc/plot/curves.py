"""Curves over training, read from the run's logs (`metrics.jsonl`, `eval.jsonl`) rather than
recomputed: they need no checkpoint and no JAX, so they work for every target, an 8B
Llama included, and while a run is still going.

    losses.png   loss terms (log y), learning rates, gradient norms, schedules, alive components
    ci_l0.png    CI-L0 per site over training (training batches and eval passes) and summed
    eval.png     the other scalar eval metrics (alive, MMCS, ML2R, identity CI error, PGD, CE/KL)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
from matplotlib.axes import Axes

from pdc.plot.figures import figure, grid, hide_unused, run_name, save
from pdc.run.rundir import RunDir, read_jsonl

Series = dict[str, tuple[np.ndarray, np.ndarray]]  # label → (steps, values)
Panel = tuple[Series, str, bool, tuple[str, ...]]  # curves, title, log y, labels drawn emphasised

# metrics.jsonl groups, in panel order: (key prefix, title, log y)
LOG_PANELS = (("loss", "loss terms (unweighted)", True),
              ("weighted", "weighted terms (their sum is loss/total)", True), ("lr", "learning rates", False),
              ("grad_norm", "gradient norms", True), ("schedule", "schedules", False),
              ("alive", "alive components (fired within eval.alive_window)", False))
L0_KEY = re.compile(r"^eval/l0/(?P<threshold>[^_]+)_(?P<site>.+)$")
LOG_EVAL = ("pgd_recon", "ce_kl: kl")
MAX_LEGEND = 16


read_records = read_jsonl  # the name the plot modules and tests use


def series(records: list[dict[str, Any]], label: Callable[[str], str | None]) -> Series:
    """label → (steps, values) for every finite scalar key that `label` names (None skips
    the key); lists such as activation densities are not curves and are skipped."""
    points: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        for key, value in record.items():
            name = label(key)
            if name is None or isinstance(value, (list, dict, bool)) or not isinstance(value, (int, float)):
                continue
            points.setdefault(name, []).append((int(record["step"]), float(value)))
    return {name: (np.array([s for s, _ in p]), np.array([v for _, v in p])) for name, p in points.items()}


def draw(ax: Axes, curves: Series, title: str, log: bool, mark: int | None, emphasise: tuple[str, ...] = ()) -> bool:
    """One panel; False (and nothing drawn) when no curve has a point to show. Log panels
    drop non-positive values and curves that are all zero (an unused frequency term)."""
    drawn = 0
    for name in sorted(curves, key=lambda n: (n in emphasise, n)):
        steps, values = curves[name]
        if log:
            values = np.where(values > 0, values, np.nan)
        if not np.isfinite(values).any():
            continue
        strong = name in emphasise
        ax.plot(steps, values, label=name, color="black" if strong else None, linewidth=2.0 if strong else 1.2,
                linestyle="--" if strong else "-", marker="o" if len(steps) < 12 else None, markersize=3)
        drawn += 1
    if not drawn:
        return False
    if log:
        ax.set_yscale("log")
    if mark is not None:
        ax.axvline(mark, color="grey", linestyle=":", linewidth=1)
    ax.set_title(title if drawn <= MAX_LEGEND else f"{title}: {drawn} curves", fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if drawn <= MAX_LEGEND:  # an 8B run's hundreds of sites: the spread says more than a legend
        ax.legend(fontsize=7, loc="best")
    return True


def panels(out: Path, name: str, suptitle: str, items: list[Panel], mark: int | None) -> Path | None:
    """A figure of one panel per (series, title, log, emphasised) item that has data."""
    items = [item for item in items if item[0]]
    if not items:
        return None
    rows, cols = grid(len(items), 2)
    fig, axes = figure(rows, cols, (6.0, 4.0))
    drawn = [draw(ax, curves, title, log, mark, strong) for ax, (curves, title, log, strong) in zip(axes.flat, items)]
    if not any(drawn):
        return None
    hide_unused(axes, len(items))
    for ax, ok in zip(axes.flat, drawn):
        ax.set_visible(ok)
    fig.suptitle(suptitle)
    return save(fig, out / name)


def prefixed(prefix: str) -> Callable[[str], str | None]:
    return lambda key: key[len(prefix) + 1:] if key.startswith(prefix + "/") else None


def plot_losses(run: RunDir, out: Path, mark: int | None) -> Path | None:
    records = read_records(run.metrics)
    items: list[Panel] = [(series(records, prefixed(prefix)), title, log, ("total",))
                          for prefix, title, log in LOG_PANELS]
    return panels(out, "losses.png", f"{run_name(run.path)}: training (metrics.jsonl)", items, mark)


def _l0_label(key: str) -> str | None:
    match = L0_KEY.match(key)
    return match["site"] if match else None


def summed(curves: Series) -> Series:
    """The sum over sites as one curve, when every site was logged at the same steps."""
    points = list(curves.values())
    if not points or any(not np.array_equal(steps, points[0][0]) for steps, _ in points):
        return {}
    return {"total": (points[0][0], np.sum([values for _, values in points], axis=0))}


def plot_ci_l0(run: RunDir, out: Path, mark: int | None) -> Path | None:
    """CI-L0 per site — for an LM the headline sparsity number — on the training batches
    (`ci_l0/<site>` in metrics.jsonl, every logged step) and on the eval passes
    (`eval/l0/<threshold>_<site>`); the sums over sites get their own panel so they do not
    flatten the per-site curves."""
    train = series(read_records(run.metrics), prefixed("ci_l0"))
    evals = read_records(run.evals)
    passes = series(evals, _l0_label)
    thresholds = ", ".join(sorted({m["threshold"] for r in evals for k in r if (m := L0_KEY.match(k))}))
    eval_sites = {name: points for name, points in passes.items() if name != "total"}
    totals = {f"{name}, training": points for name, points in summed(train).items()}
    totals.update({f"{name}, eval": points for name, points in passes.items() if name == "total"})
    items: list[Panel] = [(train, "per site, training batches (metrics.jsonl)", False, ()),
                          (eval_sites, f"per site, eval passes (eval.jsonl, ci_lower > {thresholds})", False, ()),
                          (totals, "sum over sites", False, ())]
    title = f"{run_name(run.path)}: CI-L0, the mean number of components with ci_lower above the alive threshold"
    return panels(out, "ci_l0.png", title, items, mark)


def eval_group(key: str) -> tuple[str, str] | None:
    """`eval/<metric>/<site or variant>` → (panel, curve label); CE/KL variants split into
    one panel per quantity (kl, ce_difference, ce_unrecovered). CI-L0 has its own figure."""
    parts = key.split("/")
    if parts[0] != "eval" or len(parts) < 2 or parts[1] == "l0":
        return None
    if len(parts) == 2:
        return parts[1], parts[1]
    rest = "/".join(parts[2:])
    if parts[1] == "ce_kl":
        for quantity in ("kl", "ce_difference", "ce_unrecovered"):
            if rest.startswith(quantity + "_"):
                return f"ce_kl: {quantity}", rest[len(quantity) + 1:]
    return parts[1], rest


def plot_eval(run: RunDir, out: Path, mark: int | None) -> Path | None:
    def joined(key: str) -> str | None:
        group = eval_group(key)
        return None if group is None else "\0".join(group)

    by_group: dict[str, Series] = {}
    for name, points in series(read_records(run.evals), joined).items():
        group, label = name.split("\0")
        by_group.setdefault(group, {})[label] = points
    items: list[Panel] = [(curves, group, group in LOG_EVAL, ()) for group, curves in by_group.items()]
    return panels(out, "eval.png", f"{run_name(run.path)}: eval passes (eval.jsonl)", items, mark)


def plot_curves(path: Path, out: Path, mark: int | None = None) -> list[Path]:
    """Every curve figure the run's logs support; `mark` draws a dotted line at a step
    (the checkpoint the other figures show)."""
    run = RunDir(path)
    written = [plot_losses(run, out, mark), plot_ci_l0(run, out, mark), plot_eval(run, out, mark)]
    return [p for p in written if p is not None]


__all__ = ["eval_group", "plot_curves", "read_records", "series"]
