"""TMS: learned subcomponents against the target's weight vectors (the paper's Table 1 in
pictures).

    tms_weights.png   hidden = 2 only: per site, each feature's target weight vector as an
                      arrow, and each alive component's subcomponent vector over it
    tms_cosines.png   per site, cos(subcomponent, target vector) as [features × alive
                      components]; a clean decomposition is a diagonal of ones

Feature j's target vector is row j of W where the site reads the features (`linear1`, W
`[F, H]`, the paper's column W_{:,j}) and column j where it writes them (`linear2`); the
subcomponent of component c for feature j is V[j, c]·U[c, :] (resp. U[c, j]·V[:, c]),
exactly the vectors MMCS / ML2R compare, computed by `metrics`' own cosine function.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import jax.numpy as jnp
import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes

from pdc.decomp.components import Factors
from pdc.decomp.metrics import _subcomponent_cosines  # the MMCS / ML2R cosine, not a copy of it
from pdc.plot.figures import component_order, figure, label_components, label_features, run_name, save
from pdc.plot.probe import alive_mask, alive_threshold

if TYPE_CHECKING:
    from pdc.run.load import Run

MIN_RATIO = 0.1  # subcomponents smaller than this fraction of the target vector are not drawn as a cosine
MAX_LEGEND = 16  # arrows beyond this (an early, undifferentiated checkpoint) get no legend


def feature_view(run: Run, site: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W', V', U') with the rows of W' the per-feature target vectors and W' ≈ V' @ U':
    the site as stored when it reads the features, transposed when it writes them
    (W ≈ V @ U ⇔ Wᵀ ≈ Uᵀ @ Vᵀ). Sites between hidden layers keep their rows."""
    W = run.weights(site)
    V, U = run.components(site)
    matrix = run.program.shape.matrix(site)
    if matrix is not None and matrix.writes_features:
        return W.T, U.T, V.T
    return W, V, U


def subcomponents(W: np.ndarray, V: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cos `[C, n]`, norm ratios `[C, n]`) of V[j, c]·U[c, :] against row j of W; the ratio
    ‖V[j, c]·U[c, :]‖ / ‖W[j, :]‖ is ML2R's, so 1 is a full-size copy of the target vector."""
    cos, norms, w_norms = _subcomponent_cosines(jnp.asarray(W), Factors(jnp.asarray(V), jnp.asarray(U)))
    return np.asarray(cos), np.asarray(norms) / np.maximum(np.asarray(w_norms), 1e-30)[None]


def plot_cosines(run: Run, ci: dict[str, np.ndarray], out: Path) -> Path:
    """[features × alive components] cosine matrices; components ordered by their best feature
    (the title's MMCS-like mean is over the alive components too). Cells where the subcomponent is under `MIN_RATIO` of the target vector's norm are grey:
    a near-zero vector has a cosine too, and showing it hides the pattern."""
    threshold = alive_threshold(run)
    sites = [s for s in run.sites if s in ci]
    fig, axes = figure(1, len(sites), _panel(run, ci, threshold))
    cmap = colormaps["RdBu_r"].with_extremes(bad="0.85")
    image = None
    for ax, site in zip(axes[0], sites):
        W, V, U = feature_view(run, site)
        cos, ratio = subcomponents(W, V, U)
        shown = np.where(ratio >= MIN_RATIO, cos, np.nan).T  # a direction without size says nothing
        alive = alive_mask(ci[site], threshold)
        order = component_order(np.nan_to_num(shown, nan=-1.0), alive)
        image = ax.imshow(shown[:, order], aspect="auto", cmap=cmap, vmin=-1.0, vmax=1.0, interpolation="nearest")
        best = cos[alive if alive.any() else slice(None)].max(axis=0).mean()
        ax.set_title(f"{site}: mean over features of max cos {best:.3f}", fontsize=9)
        ax.set_xlabel(f"alive component ({len(order)} shown, ci > {threshold:g} on a probe)", fontsize=8)
        ax.set_ylabel("feature j (target vector)")
        label_components(ax, order)
        label_features(ax, W.shape[0])
    assert image is not None
    fig.colorbar(image, ax=list(axes[0]), shrink=0.9, label="cos(subcomponent, target vector)")
    fig.suptitle(f"{run_name(run.path)}: learned subcomponents vs target weights, step {run.step}\n"
                 f"(grey: subcomponent under {MIN_RATIO:g}× the target vector's norm)", fontsize=10)
    return save(fig, out / "tms_cosines.png")


def _panel(run: Run, ci: dict[str, np.ndarray], threshold: float) -> tuple[float, float]:
    features = run.program.shape.dims["features"]
    alive = max(int(alive_mask(c, threshold).sum()) or c.shape[1] for c in ci.values())
    return float(np.clip(0.12 * alive + 2.5, 4.0, 9.0)), float(np.clip(0.11 * features + 2.0, 3.0, 8.0))


def draw_arrows(ax: Axes, W: np.ndarray, V: np.ndarray, U: np.ndarray, alive: np.ndarray) -> None:
    """Target vectors as wide grey arrows; over them, each alive component's subcomponents
    on the features where they matter, coloured by feature (the legend gives cosine and
    norm ratio, the terms of MMCS and ML2R). A component that serves two features shows
    two arrows, which is the failure to see."""
    colors = [f"C{j % 10}" for j in range(W.shape[0])]
    cos, ratio = subcomponents(W, V, U)
    for j, w in enumerate(W):
        ax.annotate("", xy=w, xytext=(0, 0), arrowprops=dict(arrowstyle="-|>", color="0.75", lw=5, alpha=0.9))
        ax.annotate(str(j), xy=w * 1.12, ha="center", va="center", fontsize=9, color=colors[j])
    components = np.flatnonzero(alive) if alive.any() else np.argsort(-ratio.max(axis=1))[:W.shape[0]]
    parts = [(int(c), j) for c in components for j in drawn_features(ratio[c])]
    vectors = [V[j, c] * U[c] for c, j in parts]
    for (c, j), vector in zip(parts, vectors):
        ax.annotate("", xy=vector, xytext=(0, 0), arrowprops=dict(arrowstyle="-|>", color=colors[j], lw=1.5))
        ax.plot([], [], color=colors[j], label=f"c{c} · feature {j}: cos {cos[c, j]:.2f}, norm ×{ratio[c, j]:.2f}")
    reach = 1.25 * max([float(np.abs(W).max()), 1e-6] + [float(np.abs(v).max()) for v in vectors])
    ax.set_xlim(-reach, reach)
    ax.set_ylim(-reach, reach)
    ax.set_aspect("equal")
    ax.axhline(0, color="0.9", lw=0.8, zorder=0)
    ax.axvline(0, color="0.9", lw=0.8, zorder=0)
    if len(parts) <= MAX_LEGEND:
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        ax.set_xlabel(f"{len(parts)} subcomponent arrows (legend left out above {MAX_LEGEND})", fontsize=8)


def drawn_features(ratio: np.ndarray) -> list[int]:
    """The features whose subcomponent is at least `MIN_RATIO` of the target vector (the
    largest one if none is)."""
    features = np.flatnonzero(ratio >= MIN_RATIO)
    return [int(j) for j in features] if len(features) else [int(np.argmax(ratio))]


def plot_arrows(run: Run, ci: dict[str, np.ndarray], out: Path) -> Path | None:
    """Hidden = 2 only: the picture of the paper's TMS 5-2 figure, one panel per site."""
    if run.program.shape.dims.get("hidden") != 2:
        return None
    threshold = alive_threshold(run)
    sites = [s for s in run.sites if s in ci]
    fig, axes = figure(1, len(sites), (6.0, 4.0))
    for ax, site in zip(axes[0], sites):
        W, V, U = feature_view(run, site)
        draw_arrows(ax, W, V, U, alive_mask(ci[site], threshold))
        ax.set_title(f"{site}: target (grey) vs alive subcomponents", fontsize=9)
    fig.suptitle(f"{run_name(run.path)}: weight vectors in the 2-d hidden space, step {run.step}")
    return save(fig, out / "tms_weights.png")


def plot_tms(run: Run, ci: dict[str, np.ndarray], out: Path) -> list[Path]:
    written = [plot_arrows(run, ci, out), plot_cosines(run, ci, out)]
    return [p for p in written if p is not None]


figures = plot_tms  # the family hook (TargetFamily.figures)
