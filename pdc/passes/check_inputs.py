"""Pass — open the files the spec names, cheaply, before any compute: an LM's `weights`
(safetensors headers and index only: names, shapes, dtypes) against the shapes the target
resolved to. Runs only when asked (`run_passes(..., inputs=True)`: `pdc check` unless
`--no-inputs`, and `pdc train`); a dry-run needs only the config and skips it. Every problem
is a diagnostic at the spec line naming the file, saying what the file holds."""

from __future__ import annotations

import os
from pathlib import Path

from pdc.ir.graph import IR
from pdc.syntax.diagnostics import Diagnostic
from pdc.targets.base import TargetShape
from pdc.targets.checkpoint import inspect_lm

CONSUMES = ("target:llama.weights", "target:simple_mlp.weights")


def run(ir: IR) -> IR:
    if not ir.facts.get("inputs"):
        return ir
    target = ir.spec.block("target")
    shape: TargetShape | None = ir.facts.get("target")
    if target is None or shape is None or shape.family not in ("llama", "simple_mlp"):
        return ir
    weights = target.get("weights")
    if weights is None:
        return ir
    spec_dir = Path(ir.spec.path).resolve().parent if ir.spec.path != "<string>" else Path.cwd()
    shapes = {t.path.removeprefix("target."): t.shape for t in shape.tensors}
    shown = Path(os.path.relpath(spec_dir / weights))  # messages name files as the user would type them
    for problem in inspect_lm(shown, shapes, shape.family == "simple_mlp"):
        ir.error(Diagnostic(problem.code, problem.message, target.span_of("weights"), "named here",
                            help=(problem.help,) if problem.help else ()))
    return ir
