"""`pdc plot RUN --harvest DIR`: the language-model figures the JAX trainer draws at its slow
eval, from a harvest store instead of one eval batch (so they describe the whole harvested
corpus), one row per site:

    harvest.png   CI histogram over all positions and components (log counts, log-spaced bins),
                  firing density per component sorted (log y), mean CI per component sorted

Reads only the store (no checkpoint, no JAX): plotting an 8B run's harvest is a Parquet read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes

from pdc.analyze.store import Harvest, load_harvest
from pdc.plot.figures import figure, save

PANELS = ("CI histogram (all components)", "firing density, sorted", "mean CI, sorted")


def site_arrays(harvest: Harvest, site: str) -> dict[str, np.ndarray]:
    """One site's columns as arrays: summed histogram counts, densities, mean CIs (component order)."""
    rows = harvest.sql("select density, mean_ci from components where site = ? order by component",
                       [site]).fetchnumpy()
    counts = harvest.sql("select counts from histograms where site = ? order by component", [site]).fetchall()
    total = np.sum([np.asarray(c[0], dtype=np.int64) for c in counts], axis=0) if counts else np.zeros(0, np.int64)
    return {"density": np.asarray(rows["density"], float), "mean_ci": np.asarray(rows["mean_ci"], float),
            "histogram": total}


def _histogram(ax: Axes, edges: np.ndarray, counts: np.ndarray) -> None:
    """Bars over the store's bin edges; the first edge (0) is drawn at the next edge / 10 so the
    CI == 0 bin shows on a log x axis."""
    left = edges[:-1].copy()
    if len(left) > 1 and left[0] <= 0:
        left[0] = edges[1] / 10
    ax.bar(left, np.maximum(counts, 0), width=edges[1:] - left, align="edge", color="tab:blue", log=True)
    ax.set_xscale("log")
    ax.set_xlabel("lower CI (first bin: CI at or below its right edge)")
    ax.set_ylabel("positions × components")


def _sorted(ax: Axes, values: np.ndarray, log: bool, label: str) -> None:
    ordered = np.sort(values)[::-1]
    shown = np.where(ordered > 0, ordered, np.nan) if log else ordered
    ax.plot(np.arange(len(ordered)), shown, lw=1.2)
    if log and np.isfinite(shown).any():
        ax.set_yscale("log")
    ax.set_xlabel(f"component (sorted; {int((values > 0).sum()):,} of {len(values):,} > 0)")
    ax.set_ylabel(label)


def plot_harvest(directory: Path, out: Path, title: str = "") -> Path:
    """Write `out/harvest.png` from the store in `directory` and return its path."""
    harvest = load_harvest(directory)
    edges = np.asarray(harvest.manifest["histogram_edges"], float)
    sites = harvest.sites
    fig, axes = figure(len(sites), len(PANELS), panel=(4.6, 3.2))
    for row, site in zip(axes, sites):
        data = site_arrays(harvest, site)
        _histogram(row[0], edges, data["histogram"])
        _sorted(row[1], data["density"], True, "firing density")
        _sorted(row[2], data["mean_ci"], True, "mean CI")
        for ax, name in zip(row, PANELS):
            ax.set_title(f"{site}: {name}", fontsize=9)
    manifest = harvest.manifest
    fig.suptitle(f"{title} harvest at step {manifest.get('step')}: {manifest.get('tokens', 0):,} tokens, "
                 f"firing = CI > {manifest.get('threshold')}")
    return save(fig, out / "harvest.png")
