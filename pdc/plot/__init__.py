"""`pdc plot RUN`: the pictures of a run people would rather look at than read, as PNGs
in `RUN/plots/` (docs/run.md).

    losses.png, ci_l0.png, eval.png     every run, from its logs (`curves`)
    ci_one_hot.png                      toys: CI per site on one-hot probes (`probe`)
    tms_weights.png, tms_cosines.png    TMS: subcomponents vs target weights (`tms`)
    resid_mlp_neurons.png               ResidMLP: per-feature neuron contributions (`resid_mlp`)
    harvest.png                         `--harvest DIR`: per-site CI histogram and densities (`harvest`)

Curves need only the logs; the toy figures need a checkpoint (`pdc.load_run`). LM runs get
the curves only, so plotting an 8B run neither loads it nor needs its devices. The
checkpoint modules import JAX and are imported only when a checkpoint is plotted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pdc.ir.graph import IR
from pdc.plot.curves import plot_curves

if TYPE_CHECKING:
    from pdc.run.load import Run

TOY_FAMILIES = ("tms", "resid_mlp")


def family(ir: IR) -> str:
    return ir.facts["target"].family


def needs_checkpoint(ir: IR) -> bool:
    """Whether `plot_run` draws figures from a checkpoint (toy targets) or from the logs only."""
    return family(ir) in TOY_FAMILIES


def plot_run(path: Path, ir: IR, run: Run | None = None, out: Path | None = None,
             mark: int | None = None) -> list[Path]:
    """Write every figure the run supports into `out` (default RUN/plots) and return their
    paths. `run` is the checkpoint to draw (required for toys); `mark` draws a dotted line
    on the curves at that step."""
    out = path / "plots" if out is None else out
    written = plot_curves(path, out, mark)
    if run is None or not needs_checkpoint(ir):
        return written
    from pdc.plot import probe

    ci = probe.probe_ci(run)
    written.append(probe.plot_ci(run, ci, out))
    if family(ir) == "tms":
        from pdc.plot.tms import plot_tms

        written += plot_tms(run, ci, out)
    else:
        from pdc.plot.resid_mlp import plot_neurons

        neurons = plot_neurons(run, ci, out)
        written += [neurons] if neurons is not None else []
    return written


__all__ = ["needs_checkpoint", "plot_run"]
