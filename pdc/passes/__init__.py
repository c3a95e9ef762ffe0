"""The pass pipeline: one readable list, each pass one module with `run(ir) -> ir`.

A pass that finds errors records diagnostics; later passes that need its result are
skipped (they would only report consequences of the same mistake)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from pdc.ir.graph import IR, verify
from pdc.passes import (
    build_ci, check_inputs, check_losses, check_stacked_shards, collect_budget, expand_sites, hashes, infer_shapes,
    resolve_options, resolve_sharding, resolve_target, tie_sites,
)
from pdc.syntax.checked import Spec
from pdc.syntax.diagnostics import sorted_diagnostics
from pdc.syntax.load import CheckResult, check_file

Pass = Callable[[IR], IR]

PIPELINE: tuple[tuple[str, Pass], ...] = (
    ("resolve_options", resolve_options.run),
    ("resolve_target", resolve_target.run),
    ("expand_sites", expand_sites.run),
    ("tie_sites", tie_sites.run),
    ("infer_shapes", infer_shapes.run),
    ("check_inputs", check_inputs.run),
    ("build_ci", build_ci.run),
    ("check_losses", check_losses.run),
    ("resolve_sharding", resolve_sharding.run),
    ("check_stacked_shards", check_stacked_shards.run),
    ("collect_budget", collect_budget.run),
    ("hashes", hashes.run),
)


class VerifierError(AssertionError):
    """The IR broke an invariant between passes: a compiler bug, never a spec error."""


def run_passes(spec: Spec, check_invariants: bool = False, devices: int | None = None, inputs: bool | str = False) -> IR:
    """Run the pipeline; `devices` resizes the mesh's first axis to use that many devices;
    `inputs` opens the files the spec names (weights headers, token files) and checks them;
    `"required"` (`pdc train`) also makes a file that does not exist an error, not a warning."""
    ir = IR(spec)
    ir.facts["inputs"] = inputs
    if devices is not None:
        ir.facts["devices"] = devices
    for name, run in PIPELINE:
        ir = run(ir)
        if check_invariants and (problems := verify(ir)):
            raise VerifierError(f"after {name}: " + "; ".join(problems))
        if ir.failed:
            break
    return ir


def check(path: str | Path, overrides: Sequence[str] = (), inputs: bool | str = False,
          devices: int | None = None, point: Sequence[Any] = ()) -> CheckResult:
    """Check one spec file through the IR passes (site expansion, shapes, sharding), so the
    result proves the spec is buildable; `inputs` as in `run_passes`, `overrides` (`--set`)
    as in `pdc.syntax.load.check_text`. Every problem is a diagnostic; nothing raises."""
    result = check_file(path, overrides, point)  # `point`: a sweep point's keys (pdc.syntax.sweep)
    if not result.ok or result.spec is None:
        return result
    ir = run_passes(result.spec, inputs=inputs, devices=devices)
    return replace(result, diagnostics=sorted_diagnostics(result.diagnostics + ir.diagnostics), ir=ir)
