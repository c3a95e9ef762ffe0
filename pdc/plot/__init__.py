"""`pdc plot RUN`: the pictures of a run people would rather look at than read, as PNGs
in `RUN/plots/` (docs/run.md).

    losses.png, ci_l0.png, eval.png     every run, from its logs (`curves`)
    ci_one_hot.png                      toys: CI per site on one-hot probes (`probe`)
    the family's own figures            its `TargetFamily.figures` hook (TMS: subcomponents
                                        vs target weights; ResidMLP: neuron contributions)
    harvest.png                         `--harvest DIR`: per-site CI histogram and densities (`harvest`)

Curves need only the logs; a family's figures need a checkpoint (`pdc.load_run`). A family
without a figures hook (the LMs) gets the curves only, so plotting an 8B run neither loads it nor needs its devices. The
checkpoint modules import JAX and are imported only when a checkpoint is plotted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pdc.ir.graph import IR
from pdc.plot.curves import plot_curves
from pdc.targets import family as target_family
from pdc.targets.base import resolve

if TYPE_CHECKING:
    from pdc.run.load import Run

def figures_of(ir: IR) -> str:
    """The run's target family's figures hook ("module:function"), "" when it has none."""
    return target_family(ir.facts["target"].family).figures


def needs_checkpoint(ir: IR) -> bool:
    """Whether `plot_run` draws figures from a checkpoint (a family with figures: the toys) or
    from the logs only."""
    return bool(figures_of(ir))


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
    written += resolve(figures_of(ir))(run, ci, out)
    return written


__all__ = ["needs_checkpoint", "plot_run"]
