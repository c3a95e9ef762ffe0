"""ResidMLP: per-feature neuron contributions, target vs decomposition (the paper's
neuron-contribution figure), `resid_mlp_neurons.png`.

Neuron n's contribution to feature i in layer l is the product of how strongly feature i
drives it and how strongly it writes feature i back:

    target[i, n]     = (W_E[i] @ W_in)[n] · (W_out @ W_U)[n, i]
    decomposed[i, n] = (W_E[i] @ V_in[:, c_i]) · U_in[c_i, n] · (V_out @ U_out @ W_U)[n, i]

with c_i the `mlp_in` component most causally important on feature i's one-hot probe (the
component the paper says computes y_i = x_i + ReLU(x_i); ties at CI 1 go to the largest) and `mlp_out` as a whole (it is
one dense rank-50 component), as the reference's plotting code does. Biases are left out.
A faithful decomposition puts every (feature, neuron) point on the diagonal.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes

from pdc.plot.figures import figure, label_features, run_name, save

if TYPE_CHECKING:
    from pdc.run.load import Run


def layer_contributions(run: Run, layer: int, ci_in: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(target `[F, M]`, decomposed `[F, M]`, chosen component per feature `[F]`) of one layer."""
    W_E, W_U = np.asarray(run.params["W_E"], np.float32), np.asarray(run.params["W_U"], np.float32)
    in_site, out_site = f"layers.{layer}.mlp_in", f"layers.{layer}.mlp_out"
    W_out = (run.weights(out_site) if out_site in run.sites
             else np.asarray(run.params["layers"]["mlp_out"][layer], np.float32))
    target = (W_E @ run.weights(in_site)) * (W_out @ W_U).T
    V_in, U_in = run.components(in_site)
    out_decomposed = W_out
    if out_site in run.sites:
        V_out, U_out = run.components(out_site)
        out_decomposed = V_out @ U_out
    chosen = most_important(ci_in, np.abs(W_E @ V_in) * np.linalg.norm(U_in, axis=1))
    drive = np.take_along_axis(W_E @ V_in, chosen[:, None], axis=1)  # [F, 1]
    decomposed = drive * U_in[chosen] * (out_decomposed @ W_U).T
    return target, decomposed, chosen


def most_important(ci: np.ndarray, size: np.ndarray, tie: float = 1e-3) -> np.ndarray:
    """Per feature, the component of largest CI; among components whose CI ties at the top
    (CI saturates at 1), the one whose subcomponent for that feature is largest."""
    top = ci >= ci.max(axis=1, keepdims=True) - tie
    return np.argmax(np.where(top, size, -np.inf), axis=1)


def decomposed_layers(run: Run) -> list[int]:
    return sorted({int(s.split(".")[1]) for s in run.sites if s.endswith(".mlp_in")})


def plot_neurons(run: Run, ci: dict[str, np.ndarray], out: Path) -> Path | None:
    """Per decomposed layer: a target-vs-decomposed scatter over all (feature, neuron)
    pairs, and the two `[features × neurons]` maps on one colour scale."""
    layers = decomposed_layers(run)
    if not layers:
        return None
    fig, axes = figure(len(layers), 3, (5.0, 4.5))
    for row, layer in zip(axes, layers):
        target, decomposed, chosen = layer_contributions(run, layer, ci[f"layers.{layer}.mlp_in"])
        scatter(row[0], target, decomposed, layer)
        scale = float(max(np.abs(target).max(), np.abs(decomposed).max(), 1e-6))
        for ax, values, title in ((row[1], target, "target"), (row[2], decomposed, "most important mlp_in component")):
            image = ax.imshow(values, aspect="auto", cmap="RdBu_r", vmin=-scale, vmax=scale, interpolation="nearest")
            ax.set_title(f"layer {layer}: {title}", fontsize=9)
            ax.set_xlabel("neuron")
            ax.set_ylabel("feature")
            label_features(ax, values.shape[0])
        fig.colorbar(image, ax=list(row[1:]), label="neuron contribution", shrink=0.9)
        unique = len(set(chosen.tolist()))
        row[2].set_xlabel(f"neuron ({unique} distinct components chosen for {len(chosen)} features)", fontsize=8)
    fig.suptitle(f"{run_name(run.path)}: per-feature neuron contributions, step {run.step}")
    return save(fig, out / "resid_mlp_neurons.png")


def scatter(ax: Axes, target: np.ndarray, decomposed: np.ndarray, layer: int) -> None:
    """Every (feature, neuron) pair; the diagonal is a faithful decomposition."""
    x, y = target.ravel(), decomposed.ravel()
    ax.scatter(x, y, s=4, alpha=0.4, linewidths=0)
    low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    ax.plot([low, high], [low, high], color="black", linestyle="--", linewidth=1)
    r = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else float("nan")
    ax.set_title(f"layer {layer}: per (feature, neuron), r = {r:.3f}", fontsize=9)
    ax.set_xlabel("target contribution")
    ax.set_ylabel("decomposed contribution")


def figures(run: Run, ci: dict[str, np.ndarray], out: Path) -> list[Path]:
    """The family hook (TargetFamily.figures)."""
    neurons = plot_neurons(run, ci, out)
    return [neurons] if neurons is not None else []
