"""CI on one-hot probes (`ci_one_hot.png`): for a toy target, feature i alone at the §7.6
probe value, the `ci_lower` of every component at every site — the paper's CI figures.

The CI is eval's own probe CI (`evaluate.probe_ci`: the train step's `_ci` on the target's
clean pass of the §7.6 probe, x_i = 0.75, which ResidMLP feeds through W_E as its training
inputs are), so the picture shows the CI that training masks with and agrees with
`identity_ci_error`. (At x_i = 1 a TMS `linear2`
component is legitimately on for a neighbouring feature too: the neighbour's interference then
clears the output ReLU's bias.)
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import numpy as np

from pdc.decomp import metrics
from pdc.lower.eval_options import eval_options
from pdc.plot.figures import component_order, figure, label_components, label_features, run_name, save
from pdc.run import evaluate
from pdc.run.evaluate import site_paths

if TYPE_CHECKING:
    from pdc.run.load import Run

# §7.3: read CI at a positive threshold; a spec whose eval block says 0 is read at the toy value
DEFAULT_THRESHOLD = 0.1


def alive_threshold(run: Run) -> float:
    """The spec's `eval.alive_threshold` (what `eval/alive` counts with), 0.1 when it is 0."""
    threshold = eval_options(run.ir).alive_threshold
    return threshold if threshold > 0 else DEFAULT_THRESHOLD


def probe_ci(run: Run) -> dict[str, np.ndarray]:
    """site path → ci_lower `[features, C]` on eval's one-hot probe (`evaluate.probe_ci`)."""
    lower = jax.jit(functools.partial(evaluate.probe_ci, run.program))
    per_site = metrics.by_site(jax.device_get(lower(run.state, run.params)), site_paths(run.ir))
    return {site: np.asarray(ci, dtype=np.float32) for site, ci in per_site.items()}


def alive_mask(ci: np.ndarray, threshold: float) -> np.ndarray:
    """`[C]`: components with ci_lower above `threshold` on at least one probe."""
    return np.asarray((ci > threshold).any(axis=0))


def ci_order(ci: np.ndarray, threshold: float) -> np.ndarray:
    """Alive components (ci > threshold on some probe) with one-per-feature ones as a
    diagonal and the dense ones after them: active on more than half the features, and on
    more than 4 (with five features, a component on three is a messy specific one)."""
    dense = np.asarray((ci > threshold).sum(axis=0) > max(ci.shape[0] / 2, 4))
    return component_order(ci, alive_mask(ci, threshold), dense)


def plot_ci(run: Run, ci: dict[str, np.ndarray], out: Path) -> Path:
    """One heatmap panel per site, `[features × alive components]`, on one colour scale."""
    threshold = alive_threshold(run)
    sites = list(ci)
    features = next(iter(ci.values())).shape[0]
    widths = [len(ci_order(ci[s], threshold)) for s in sites]
    width = float(np.clip(0.1 * max(widths) + 2.0, 3.5, 6.5))
    height = float(np.clip(0.06 * features + 2.0, 2.8, 6.5))
    fig, axes = figure(1, len(sites), (width, height))
    image = None
    for ax, site in zip(axes[0], sites):
        order = ci_order(ci[site], threshold)
        alive = int(alive_mask(ci[site], threshold).sum())
        image = ax.imshow(ci[site][:, order], aspect="auto", cmap="Blues", vmin=0.0, vmax=1.0,
                          interpolation="nearest")
        ax.set_title(site)
        shown = "alive" if alive else "none alive yet; all shown"
        ax.set_xlabel(f"component ({alive} of {ci[site].shape[1]} {shown}, > {threshold:g})", fontsize=8)
        ax.set_ylabel("probed feature")
        label_components(ax, order)
        label_features(ax, features)
    assert image is not None
    fig.colorbar(image, ax=list(axes[0]), label="ci_lower", shrink=0.9)
    fig.suptitle(f"{run_name(run.path)}: CI on one-hot probes (x_i = {metrics.PROBE_VALUE:g}), step {run.step}")
    return save(fig, out / "ci_one_hot.png")
