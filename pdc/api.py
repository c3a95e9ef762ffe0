"""The typed Python API (DESIGN.md §9): what the CLI does, as functions for notebooks and
scripts. The CLI is a thin shell over these.

    spec = pdc.load_spec("specs/tms_5-2.pd")            # parse + validate: a checked Spec
    result = pdc.check("specs/tms_5-2.pd")              # + the IR passes: diagnostics and the IR
    print(pdc.plan(result))                             # sites, CI chunks, terms, sharding table
    program = pdc.compile("specs/tms_5-2.pd")           # the lowered static plan (JAX)
    report = pdc.dry_run("specs/tms_5-2.pd")            # lower + compile on abstract values: memory
    run = pdc.train("specs/tms_5-2.pd", "runs/tms", overrides=["train.steps=100"])
    run = pdc.load_run("runs/tms")                      # spec, IR, state, V/U per site
    store = pdc.harvest("runs/lm", tokens="corpus.npy")  # what every component does (LMs)
    h = pdc.load_harvest(store)                         # the store: DuckDB views, common questions

A spec that does not check raises `SpecError` (its `diagnostics` are the `Diagnostic`s,
`str(error)` the rendered report), except in `check`, which returns them. Only `dry_run`,
`train`, `load_run` and `harvest` start JAX (`load_harvest` reads Parquet with DuckDB only).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

from pdc.ir.graph import IR
from pdc.passes import check as _check
from pdc.syntax.checked import Spec
from pdc.syntax.diagnostics import SpecError, has_errors
from pdc.syntax.load import CheckResult
from pdc.syntax.load import load_spec as _load_spec
from pdc.plugins import PluginError, check_plugins

if TYPE_CHECKING:  # JAX-importing modules, loaded only when their function is called
    from pdc.inspect.dryrun import DryRun
    from pdc.lower.program import Program
    from pdc.analyze.store import Harvest
    from pdc.run.load import Run



def load_spec(path_or_text: str | Path) -> Spec:
    """The checked spec of a file path or of spec text (front end only: parse, validate)."""
    return _load_spec(path_or_text)


def check(path: str | Path, overrides: Sequence[str] = (), inputs: bool | Literal["required"] = False,
          devices: int | None = None) -> CheckResult:
    """Check a spec file through the IR passes (raises `PluginError` when an installed
    plugin did not load); `overrides` are `--set` strings
    (`"train.steps=100"`), `inputs` opens the weights and token files the spec names (as
    `pdc check` does; `"required"` also refuses files not downloaded yet), `devices` resizes
    the mesh's first axis. Never raises on a bad spec: read `result.ok` and
    `result.diagnostics`."""
    check_plugins()
    return _check(path, overrides, inputs, devices)


def plan(spec: str | Path | CheckResult | IR, fmt: Literal["text", "json"] = "text") -> str | dict[str, Any]:
    """The resolved plan `pdc check --plan` prints: sites, CI chunks, terms, schedules and
    the per-tensor sharding table (text, or the JSON-ready dict)."""
    from pdc.ir.plan import plan_data, render_plan

    ir = _ir(spec)
    return render_plan(ir) if fmt == "text" else plan_data(ir)


def compile(spec: str | Path | CheckResult | IR, devices: int | None = None,
            overrides: Sequence[str] = ()) -> "Program":
    """The lowered static plan of the step (`pdc.lower.program.Program`): the target model,
    the site layout, the CI network's graph, each term's options, the optimizers."""
    from pdc.lower.program import lower_program

    return lower_program(_ir(spec, overrides, devices))


def dry_run(spec: str | Path | CheckResult | IR, target: str | None = None, devices: int | None = None,
            overrides: Sequence[str] = (), remat: str | None = None, lint: bool = False,
            xla_dump: str | Path | None = None) -> "DryRun":
    """Lower and compile the step on abstract values for `target` (a device name such as
    `h100_sxm`; default the budget's device, with XLA:GPU when the `cuda` extra is
    installed): per-device memory, what is alive at the peak by spec line, the verdict.
    The process needs as many (fake) devices as the mesh; the CLI re-executes itself with
    enough host devices, a notebook sets `XLA_FLAGS` before importing JAX."""
    from pdc.inspect.dryrun import dry_run as _dry_run

    ir = _ir(spec, overrides, devices)
    return _dry_run(ir, target=target, lint=lint, remat=remat, xla_dump=Path(xla_dump) if xla_dump else None)


def train(spec: str | Path, out: str | Path | None = None, overrides: Sequence[str] = (),
          max_steps: int | None = None) -> "Run":
    """Train (or resume) `spec` into the run directory `out` (default `runs/<spec name>`),
    checking the weights and token files first; returns the run at its last checkpoint.
    `max_steps` stops early (the run resumes from there)."""
    from pdc.run.load import load_ir_run
    from pdc.run.train import train as _train

    result = check(spec, overrides, inputs="required")
    ir = _ir(result)
    directory = Path(out) if out is not None else Path("runs") / ir.spec.name
    _train(ir, directory, max_steps, overrides=result.overrides)
    return load_ir_run(directory, ir)


def load_run(path: str | Path, step: int | None = None) -> "Run":
    """The run in `path` at checkpoint `step` (default the latest): spec, IR, program,
    state, frozen params and per-site V/U helpers (`pdc.run.load.Run`)."""
    from pdc.run.load import load_run as _load_run

    return _load_run(path, step)


def harvest(run: str | Path, tokens: str | Path | None = None, out: str | Path | None = None,
            overrides: Sequence[str] = (), **options: Any) -> Path:
    """Harvest a run (`pdc harvest`, docs/harvest.md) into a store; returns its directory.
    `options` are `pdc.analyze.harvest.HarvestOptions` fields (`batches`, `step`,
    `threshold`, `top_k`, ...). Raises `HarvestError` (PD08xx) on bad input."""
    from pdc.analyze.harvest import HarvestOptions
    from pdc.analyze.harvest import harvest as _harvest

    chosen = HarvestOptions(tokens=Path(tokens) if tokens is not None else None,
                            out=Path(out) if out is not None else None, overrides=tuple(overrides), **options)
    return _harvest(Path(run), chosen)


def load_harvest(path: str | Path) -> "Harvest":
    """The harvest store in `path` (`pdc.analyze.store.Harvest`): `.components(site)`,
    `.examples(site, c)`, `.decode(ids)`, `.pmi(...)`, `.neighbors(...)`, `.sql(query)`."""
    from pdc.analyze.store import load_harvest as _load_harvest

    return _load_harvest(path)


def _ir(spec: str | Path | CheckResult | IR, overrides: Sequence[str] = (), devices: int | None = None) -> IR:
    """The IR of a path (checked here), of a check result, or the IR itself; raises
    `SpecError` with every diagnostic when the spec does not check."""
    if isinstance(spec, IR):
        return spec
    result = spec if isinstance(spec, CheckResult) else check(spec, overrides, devices=devices)
    if has_errors(result.diagnostics) or result.ir is None:
        raise SpecError(result.diagnostics, result.sources)
    return result.ir


__all__ = ["CheckResult", "IR", "PluginError", "Spec", "SpecError", "check", "compile", "dry_run", "harvest",
           "load_harvest", "load_run", "load_spec", "plan", "train"]
