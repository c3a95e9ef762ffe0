"""The `pdc` command line: a thin shell over the Python API.

Exit codes (DESIGN.md §4): 0 ok, 1 internal error (a reproducer file is written),
2 spec error — or, for `pdc fmt --check`, a file that is not canonically formatted.
`pdc check` never imports JAX.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Sequence

from pdc import devices
from pdc.registry.runtime import RECON_FORWARDS
from pdc.syntax.diagnostics import Diagnostic, has_errors, render_all, render_json
from pdc.syntax.format import format_spec
from pdc import api
from pdc.syntax.load import CheckResult
from pdc.syntax.parse import parse_text, read_source

EXIT_OK, EXIT_INTERNAL, EXIT_SPEC = 0, 1, 2
EXIT_DIFFERENT = 1  # `pdc diff`: the specs differ (like `diff`)
EXIT_UNAVAILABLE = 1  # asked for something this install cannot do (a GPU target without the `cuda` extra)
EXIT_ENVIRONMENT = 3  # an installed plugin (entry point) that does not load
EXIT_INPUT = 1  # a file the spec names (weights, tokens) is missing or does not fit it: PD04xx
INPUT_CODES = "PD04"


def _exit_of(diagnostics: Sequence[Diagnostic]) -> int:
    """2 for a spec error, 1 when every error is about an input file (PD04xx), else 0."""
    errors = [d for d in diagnostics if d.severity.value == "error"]
    if not errors:
        return EXIT_OK
    return EXIT_INPUT if all(d.code.startswith(INPUT_CODES) for d in errors) else EXIT_SPEC


def spec_files(paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """Expand directories to their `*.pd` files (sorted); returns (files, missing paths)."""
    files: list[str] = []
    missing: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(str(p) for p in path.rglob("*.pd"))
        elif path.exists():
            files.append(raw)
        else:
            missing.append(raw)
    return files, missing


def _missing_diagnostics(missing: list[str]) -> list[Diagnostic]:
    from pdc.syntax.span import Span

    return [Diagnostic("PD0001", "no such file or directory", Span(m, 1, 1, 1, 2)) for m in missing]


def cmd_check(args: argparse.Namespace) -> int:
    files, missing = spec_files(args.paths)
    diagnostics = _missing_diagnostics(missing)
    sources: dict[str, str] = {}
    ok_files = []
    results = []
    for file in files:
        result = api.check(file, args.overrides, inputs=_opens_inputs(args))
        sources.update(result.sources)
        diagnostics += result.diagnostics
        if result.family is not None and result.family.sweeps and not has_errors(result.diagnostics):
            more = _check_sweep(file, args)
            diagnostics += more
            if has_errors(more):
                continue
        if not has_errors(result.diagnostics):
            ok_files.append(file)
            results.append(result)
    if args.plan or args.print_ir:
        return _show(results, diagnostics, sources, args)
    ok = not has_errors(diagnostics)
    _report(diagnostics, sources, args.format, ok_files, counts=not ok)
    if args.format == "text" and ok:
        inputs = " (inputs not opened: --no-inputs)" if not _opens_inputs(args) else ""
        print(f"ok{_warnings_tail(diagnostics)}: {len(files)} spec{'s' if len(files) != 1 else ''} checked{inputs}")
    return _exit_of(diagnostics)


def _warnings_tail(diagnostics: Sequence[Diagnostic]) -> str:
    """`, 2 warnings` for a summary line (empty without warnings): a check that passes with
    warnings (a token file not built yet) says so on the line that says `ok`, not only above."""
    warnings = sum(d.severity.value == "warning" for d in diagnostics)
    return f", {warnings} warning{'s' if warnings != 1 else ''}" if warnings else ""


def _check_sweep(file: str, args: argparse.Namespace) -> list[Diagnostic]:
    """Every point of the file's sweep checked as its own spec (a problem shared by several
    points is reported once); prints how many points checked."""
    from pdc.syntax.diagnostics import sorted_diagnostics
    from pdc.syntax.sweep import check_points, sweep_name

    from pdc.passes import check

    sweep, results, diagnostics = check_points(file, args.overrides, check, inputs=_opens_inputs(args))
    seen = {(d.code, d.span, d.summary) for d in diagnostics}
    for _, result in results:
        for d in result.diagnostics:  # type: ignore[attr-defined]
            if (d.code, d.span, d.summary) not in seen:
                seen.add((d.code, d.span, d.summary))
                diagnostics.append(d)
    if sweep is not None and not has_errors(diagnostics) and args.format == "text" and not (args.plan or
                                                                                             args.print_ir):
        print(f"sweep `{sweep_name(sweep)}` in {file}: {len(results)} points checked")
    return sorted_diagnostics(diagnostics)


def _provenance_lines(result: CheckResult) -> list[str]:
    """`--plan`'s provenance section: where each written value of a family comes from."""
    from pdc.syntax.family import provenance

    if result.family is None or result.family.source is None or (len(result.family.files) <= 1 and
                                                                   not result.overrides):
        return []
    where = provenance(result.family.source)
    width = max((len(k) for k in where), default=0)
    return ["", "provenance (where each written value comes from; the rest are defaults):",
            *(f"  {key:<{width}}  {origin}" for key, origin in where.items())]


def _opens_inputs(args: argparse.Namespace) -> bool:
    """`pdc check` opens the files a spec names, unless `--no-inputs`; `--plan` and
    `--print-ir` show the program, which the files do not change, and never open them."""
    return not (args.no_inputs or args.plan or args.print_ir)


def _show(results: list[CheckResult], diagnostics: list[Diagnostic], sources: dict[str, str],
          args: argparse.Namespace) -> int:
    """`--plan` / `--print-ir`: the resolved plan or the IR of each spec that checks."""
    from pdc.ir.plan import plan_data, render_plan
    from pdc.ir.printer import print_ir

    if has_errors(diagnostics):
        _report(diagnostics, sources, args.format, [])
        return EXIT_SPEC
    for result in results:
        if result.ir is None:  # a `base`: its plan is its importers'
            print(f"{result.path}: a `base` (a partial spec): see the plan of a spec that imports it",
                  file=sys.stderr)
        elif args.print_ir:
            print(print_ir(result.ir), end="")
        elif args.format == "json":
            from pdc.syntax.family import provenance

            data = plan_data(result.ir)
            if result.family is not None and result.family.source is not None:
                data["provenance"] = provenance(result.family.source)
            print(json.dumps(data, indent=2))
        else:
            print(render_plan(result.ir), end="")
            lines = _provenance_lines(result)
            if lines:
                print("\n".join(lines))
    return EXIT_OK


def _report(diagnostics: list[Diagnostic], sources: dict[str, str], fmt: str, ok_files: list[str],
            counts: bool = True) -> None:
    """The diagnostics (stderr; JSON on stdout), then `N errors, M warnings` unless `counts` is
    off (`pdc check` without errors counts the warnings on its `ok` line instead)."""
    if fmt == "json":
        print(render_json(diagnostics, ok_files))
    elif diagnostics:
        print(render_all(diagnostics, sources), file=sys.stderr)
        if counts:
            errors = sum(d.severity.value == "error" for d in diagnostics)
            print(f"\n{errors} error{'s' if errors != 1 else ''}{_warnings_tail(diagnostics)}", file=sys.stderr)


def cmd_graph(args: argparse.Namespace) -> int:
    from pdc.ir.render import write_graph

    result = api.check(args.path)
    if has_errors(result.diagnostics) or result.ir is None:
        _report(result.diagnostics, result.sources, "text", [])
        return EXIT_SPEC
    problem = write_graph(result.ir, Path(args.output))
    if problem:
        print(f"pdc graph: {problem}", file=sys.stderr)
        return EXIT_INTERNAL
    print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_compile(args: argparse.Namespace) -> int:
    """Lower and compile the step on abstract values; exit 2 when it does not fit."""
    result = api.check(args.path, args.overrides)
    if result.is_base and not has_errors(result.diagnostics):
        print(f"pdc compile: {args.path} holds a `base` (a partial spec): compile a spec that imports it",
              file=sys.stderr)
        return EXIT_SPEC
    if has_errors(result.diagnostics) or result.spec is None:
        _report(result.diagnostics, result.sources, args.format, [])
        return EXIT_SPEC
    if result.family is not None and result.family.sweeps:
        return _compile_sweep(args)
    problem = _devices_problem(result.ir, args.devices)
    if problem:
        print(f"pdc compile: {problem}", file=sys.stderr)
        return EXIT_SPEC
    if args.devices is not None:
        result = api.check(args.path, args.overrides, devices=args.devices)
        if has_errors(result.diagnostics):
            _report(result.diagnostics, result.sources, args.format, [])
            return EXIT_SPEC
    ir = result.ir
    if result.diagnostics and args.format == "text":  # warnings (PD0326: a split stack axis) before the compile
        print(render_all(result.diagnostics, result.sources), file=sys.stderr)
    from pdc.ir.nodes import MeshNode

    needed = next(p for _, p in ir.nodes(MeshNode)).devices
    if not _host_devices_ready(needed):
        return _compile_in_subprocess(args, needed)
    from pdc.inspect.dryrun import DryRunError
    from pdc.inspect.report import render, to_json

    try:
        report = api.dry_run(ir, target=args.target, lint=args.lint, remat=args.remat,
                             xla_dump=Path(args.dump) / "xla" if args.dump else None)
    except DryRunError as error:
        print(f"pdc compile: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if args.dump:
        _dump(report, Path(args.dump))
    print(json.dumps(to_json(report), indent=2) if args.format == "json" else render(report), end="" if
          args.format == "text" else "\n")
    return EXIT_SPEC if report.fits is False else EXIT_OK


def _compile_sweep(args: argparse.Namespace) -> int:
    """Dry-run every point of a sweep, one compile per distinct program (pdc.inspect.sweep);
    one table, exit 2 when a point does not check or does not fit."""
    from pdc.ir.nodes import MeshNode
    from pdc.passes import run_passes
    from pdc.syntax.sweep import check_points, sweep_name

    sweep, results, diagnostics = check_points(args.path, args.overrides)
    sources: dict[str, str] = {}
    irs = []
    for point, result in results:
        sources.update(result.sources)  # type: ignore[attr-defined]
        diagnostics += result.diagnostics  # type: ignore[attr-defined]
        if not has_errors(result.diagnostics) and result.spec is not None:  # type: ignore[attr-defined]
            irs.append((point, run_passes(result.spec, devices=args.devices)))  # type: ignore[attr-defined]
    diagnostics += [d for _, ir in irs for d in ir.diagnostics]
    if sweep is None or has_errors(diagnostics):
        _report(diagnostics, sources, args.format, [])
        return EXIT_SPEC
    needed = max(next(p for _, p in ir.nodes(MeshNode)).devices for _, ir in irs)
    if not _host_devices_ready(needed):
        return _compile_in_subprocess(args, needed)
    from pdc.inspect.dryrun import DryRunError, dry_run
    from pdc.inspect.sweep import compile_points, render_table

    try:
        rows = compile_points([(p.name, p.changes, ir) for p, ir in irs],
                              lambda ir: dry_run(ir, target=args.target, lint=args.lint, remat=args.remat))
    except DryRunError as error:
        print(f"pdc compile: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if args.format == "json":
        print(json.dumps({"schema": "pdc.sweep/1", "sweep": sweep_name(sweep), "points": [r.to_json() for r in rows],
                          "compiles": sum(r.shared_with is None for r in rows)}, indent=2))
    else:
        print(render_table(sweep_name(sweep), rows), end="")
    return EXIT_SPEC if any(r.report.fits is False for r in rows) else EXIT_OK


def _devices_problem(ir: object, devices: int | None) -> str:
    """`--devices N` resizes the mesh's first axis; N must be a multiple of the others."""
    from pdc.ir.nodes import MeshNode

    if devices is None:
        return ""
    axes = next(p for _, p in ir.nodes(MeshNode)).axes  # type: ignore[attr-defined]
    rest = 1
    for _, n in axes[1:]:
        rest *= n
    if devices < 1 or devices % rest:
        return f"--devices {devices} is not a positive multiple of the mesh's other axes ({rest})"
    return ""


def _host_devices_ready(needed: int) -> bool:
    """Make `needed` fake CPU devices available: set XLA_FLAGS before JAX starts, or
    report that this process (JAX already initialised) has too few."""
    import os

    if "jax" not in sys.modules:
        from pdc.run.host_devices import request_host_devices

        request_host_devices(needed)
        os.environ.setdefault("JAX_PLATFORMS", "cpu")  # GPU models compile deviceless, from the CPU backend
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # the CUDA plugin's "no driver" info lines; warnings stay
        return True
    import jax

    return len(jax.devices()) >= needed


def _compile_in_subprocess(args: argparse.Namespace, needed: int) -> int:
    import os
    import subprocess

    from pdc.run.host_devices import request_host_devices

    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
    request_host_devices(needed, env)
    argv = [sys.executable, "-m", "pdc.cli", *sys.argv[1:]] if sys.argv[1:2] == ["compile"] else \
        [sys.executable, "-m", "pdc.cli", "compile", args.path, "--format", args.format,
         *(a for o in args.overrides for a in ("--set", o))]
    return subprocess.run(argv, env=env).returncode


def _dump(report: object, directory: Path) -> None:
    from pdc.inspect.report import to_json

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dryrun.json").write_text(json.dumps(to_json(report), indent=2))  # type: ignore[arg-type]
    (directory / "step.hlo.txt").write_text(report.hlo_text)  # type: ignore[attr-defined]


def cmd_fit(args: argparse.Namespace) -> int:
    """Search mesh split, remat and divergence chunk for the candidates that fit (docs/run.md)."""
    result = api.check(args.path, args.overrides)
    if has_errors(result.diagnostics) or result.spec is None:
        _report(result.diagnostics, result.sources, "text", [])
        return EXIT_SPEC
    from pdc.inspect import fit

    space = fit.space_of(result.ir, args.devices)
    if not _host_devices_ready(max(space.devices)):
        print("pdc fit: this process has fewer host devices than the largest --devices", file=sys.stderr)
        return EXIT_SPEC
    from pdc.inspect.dryrun import target_device

    device = target_device(result.ir, args.target)
    compile_one, key = fit.real_compiler(args.path, args.overrides, args.target)
    cache = fit.Cache(None if args.no_cache else Path(args.cache) if args.cache else fit.default_cache())
    start = time.perf_counter()
    search = fit.Search(space, compile_one, key, cache, args.budget_s)
    with _fit_progress(args.format == "text") as report:
        search.report = report
        results = search.run()
    seconds = time.perf_counter() - start
    rows = fit.fitting(results)
    if args.format == "json":
        print(json.dumps(fit.to_json(results, space, fit.compiler_line(results, device), seconds, search.stopped),
                         indent=2))
    else:
        print(fit.compiler_line(results, device))
        for note in space.notes:
            print(f"note: {note}")
        print(f"{len(rows)} of {len(results)} candidates fit ({sum(r.status == 'does_not_fit' for r in results)} do "
              f"not, {sum(r.status.startswith('pruned') for r in results)} pruned, "
              f"{sum(r.status == 'error' for r in results)} failed to build) in {seconds:.0f} s; cheapest first "
              "(matmul TFLOP per device, then recompute):")
        print(fit.table(results, space.batch), end="")
        if search.stopped:
            print(f"stopped: {search.stopped}")
    if args.write is not None and rows:
        if not 1 <= args.write <= len(rows):
            print(f"pdc fit: --write {args.write}: the table has {len(rows)} rows", file=sys.stderr)
            return EXIT_SPEC
        chosen = rows[args.write - 1].candidate
        fit.write_choice(args.path, chosen)
        print(f"pdc fit: wrote candidate {args.write} ({chosen.set_line()}) into {args.path}", file=sys.stderr)
    return EXIT_OK if rows else EXIT_SPEC


def _fit_progress(enabled: bool):  # type: ignore[no-untyped-def]
    """A rich progress bar on stderr and one line per compiled candidate."""
    import contextlib

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    @contextlib.contextmanager
    def progress():  # type: ignore[no-untyped-def]
        if not enabled:
            yield lambda result, index, total: None
            return
        console = Console(stderr=True, soft_wrap=True)
        with Progress(TextColumn("fit"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), TextColumn("{task.description}"), console=console) as bar:
            task = bar.add_task("", total=None)

            def report(result, index, total):  # type: ignore[no-untyped-def]
                bar.update(task, completed=index, total=total, description=result.candidate.label())
                if not result.status.startswith("pruned"):
                    gib = f"{result.total / 2 ** 30:.2f} GiB" if result.total else ""
                    took = "cached" if result.cached else f"{result.seconds:.0f} s"
                    console.print(f"  {result.candidate.label()}: {result.status} {gib} ({took})"
                                  f"{' — ' + result.why if result.status == 'error' else ''}", highlight=False)

            yield report

    return progress()


def cmd_pretrain(args: argparse.Namespace) -> int:
    """Train the target of a spec's `pretrain` block (cached by the target's hash)."""
    result = api.check(args.path, args.overrides)
    if has_errors(result.diagnostics) or result.ir is None:
        _report(result.diagnostics, result.sources, "text", [])
        return EXIT_SPEC
    if result.ir.options("target.pretrain") is None:
        print(f"pdc pretrain: {args.path} has no `pretrain` block in its target", file=sys.stderr)
        return EXIT_SPEC
    from pdc.run.pretrain import pretrained

    path = pretrained(result.ir, force=args.force)
    print(f"pdc pretrain: weights at {path}", file=sys.stderr)
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    """Train, checkpoint and resume a run (the program `pdc compile` checks); the inputs are
    checked as `pdc check` does before anything compiles."""
    point, problem = _sweep_point(args)
    if problem is not None:
        return problem
    if point is None:
        result = api.check(args.path, args.overrides, inputs="required")
    else:
        from pdc.passes import check

        result = check(args.path, args.overrides, inputs="required", point=point.assigns)  # type: ignore[attr-defined]
    if has_errors(result.diagnostics) or result.ir is None:
        _report(result.diagnostics, result.sources, "text", [])
        return _exit_of(result.diagnostics) if not result.is_base else EXIT_SPEC
    from pdc.ir.nodes import MeshNode

    devices = next(p for _, p in result.ir.nodes(MeshNode)).devices
    if not _start_processes(args, devices, "train"):
        return EXIT_SPEC
    from pdc.run.train import TrainError, train
    from pdc.inputs.checkpoint import WeightsError

    name = result.ir.spec.name + (f"-{point.name}" if point is not None else "")
    out = Path(args.out) if args.out else Path("runs") / name
    try:
        state = train(result.ir, out, args.max_steps, overrides=result.overrides)
    except TrainError as error:
        print(f"pdc train: {error}", file=sys.stderr)
        return EXIT_SPEC
    except WeightsError as error:  # the data past the headers `pdc check` read: truncated, unreadable
        print(f"pdc train: error[PD0401]: {error}", file=sys.stderr)
        return EXIT_INPUT
    print(f"pdc train: step {int(state.step)} in {out}", file=sys.stderr)
    return EXIT_OK


def _sweep_point(args: argparse.Namespace) -> tuple[object | None, int | None]:
    """For a sweep file: the `--point` to train, or (with `--slurm`) print the array script;
    (point or None, an exit code when the command is done)."""
    from pdc.syntax.load import check_file as check
    from pdc.syntax.sweep import sweep_name, sweep_points

    result = check(args.path, overrides=args.overrides)
    sweeps = result.family.sweeps if result.family is not None else ()
    if not sweeps:
        if args.point or args.slurm:
            print(f"pdc train: {args.path} holds no `sweep`", file=sys.stderr)
            return None, EXIT_SPEC
        return None, None
    diagnostics: list[Diagnostic] = []
    sweep, points = sweep_points(sweeps, diagnostics)
    if has_errors(diagnostics) or has_errors(result.diagnostics) or sweep is None:
        _report(result.diagnostics + diagnostics, result.sources, "text", [])
        return None, EXIT_SPEC
    names = [p.name for p in points]
    if args.slurm:
        from pdc.run.slurm import array_script

        spec = result.spec.name if result.spec is not None else sweep_name(sweep)
        print(array_script(args.path, spec, sweep_name(sweep), names, args.overrides, args.out), end="")
        return None, EXIT_OK
    chosen = next((p for p in points if p.name == args.point), None)
    if chosen is None:
        what = f"no point `{args.point}`" if args.point else "a sweep: choose a point with --point NAME (or --slurm)"
        print(f"pdc train: {args.path} holds {what}; points: {', '.join(names)}", file=sys.stderr)
        return None, EXIT_SPEC
    return chosen, None


def cmd_migrate(args: argparse.Namespace) -> int:
    """Move a run's latest checkpoint to a new spec version, verified leaf by leaf (docs/run.md)."""
    result = api.check(args.spec, args.overrides)
    if has_errors(result.diagnostics) or result.ir is None:
        _report(result.diagnostics, result.sources, "text", [])
        return EXIT_SPEC
    from pdc.ir.nodes import MeshNode

    if not _host_devices_ready(next(p for _, p in result.ir.nodes(MeshNode)).devices):
        print("pdc migrate: this process has fewer devices than the new spec's mesh needs", file=sys.stderr)
        return EXIT_SPEC
    from pdc.run import migrate

    max_ram = _size(args.max_ram) if args.max_ram else None
    sources = dict(result.sources)
    try:
        plan = migrate.plan_migration(Path(args.old_run), result.ir)
        if args.dry:
            print(plan.table(), end="")
            return EXIT_OK
        if args.verbose:
            print(plan.table(), end="", file=sys.stderr)
        report = migrate.migrate(plan, Path(args.out), args.spec, max_ram, result.overrides)
    except migrate.MigrateError as error:
        if not args.dry:
            migrate.remove_partial(Path(args.out))
        print(render_all(error.diagnostics, sources), file=sys.stderr)
        return EXIT_SPEC
    print(migrate.render_report(report), end="")
    print(f"pdc migrate: step {plan.step} of {args.old_run} → {args.out}; resume with "
          f"`pdc train {args.spec} --out {args.out}`", file=sys.stderr)
    return EXIT_OK


def _size(text: str) -> int:
    """`64MiB`, `2 GiB`, `1000000`: bytes."""
    units = {"kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "kb": 10 ** 3, "mb": 10 ** 6, "gb": 10 ** 9, "b": 1}
    raw = text.strip().lower().replace(" ", "")
    for unit, scale in units.items():
        if raw.endswith(unit):
            return int(float(raw[: -len(unit)]) * scale)
    return int(float(raw))


def _open_run(args: argparse.Namespace, command: str) -> object | None:
    """A run directory at `--step` (default the latest checkpoint), with enough host devices
    for its mesh; None after printing why it cannot be opened."""
    from pdc.run.rundir import RunError

    ir = _run_ir(args, command)
    if ir is None:
        return None
    from pdc.run.load import load_ir_run

    try:
        return load_ir_run(Path(args.run_dir), ir, args.step)
    except RunError as error:
        print(f"pdc {command}: {error}", file=sys.stderr)
        return None


def _run_ir(args: argparse.Namespace, command: str) -> object | None:
    """The IR of a run directory's spec, once this process has the devices its mesh needs;
    None after printing why not."""
    from pdc.run.rundir import RunError, run_ir

    try:
        ir = run_ir(Path(args.run_dir))
    except RunError as error:
        print(f"pdc {command}: {error}", file=sys.stderr)
        return None
    from pdc.ir.nodes import MeshNode

    if not _host_devices_ready(next(p for _, p in ir.nodes(MeshNode)).devices):
        print(f"pdc {command}: this process has fewer devices than the mesh needs", file=sys.stderr)
        return None
    return ir


def cmd_eval(args: argparse.Namespace) -> int:
    """Recompute the spec's eval metrics from checkpoints (what training logged at those
    steps), on the same fixed eval data for each: one table, a row per checkpoint."""
    from pdc.run.load import evaluate_checkpoints
    from pdc.run.rundir import RunError

    ir = _run_ir(args, "eval")
    if ir is None:
        return EXIT_SPEC
    try:
        records = evaluate_checkpoints(Path(args.run_dir), ir, args.step, args.all)  # type: ignore[arg-type]
    except RunError as error:
        print(f"pdc eval: {error}", file=sys.stderr)
        return EXIT_SPEC
    several = args.all or len(args.step or []) > 1
    if args.format == "json":
        print(json.dumps(records if several else records[0], indent=2))
        return EXIT_OK
    print(eval_table(records) if several else eval_column(records[0]))
    print(f"pdc eval: {_eval_data_line(records[0].get('eval_data'))}", file=sys.stderr)
    return EXIT_OK


def _eval_value(value: object) -> str:
    if isinstance(value, list):
        return " ".join(f"{v:.3g}" for v in value)
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def eval_column(record: dict[str, object]) -> str:
    """One checkpoint's record as two aligned columns, `key  value` (lists on one line)."""
    items = [(k, _eval_value(v)) for k, v in record.items() if k != "eval_data"]
    width = max(len(k) for k, _ in items)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in items)


def eval_table(records: list[dict[str, object]]) -> str:
    """Several checkpoints' records as one table: a row per checkpoint, a column per scalar
    metric (`eval/` left off the headers); per-component lists are left to `--format json`."""
    keys = [k for k, v in records[0].items() if k != "eval_data" and not isinstance(v, (list, dict))]
    header = [k.removeprefix("eval/") for k in keys]
    rows = [[_eval_value(r.get(k, "")) for k in keys] for r in records]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), *(line(row) for row in rows)])


def _eval_data_line(data: object) -> str:
    if not isinstance(data, dict):
        return "eval data not recorded"
    if "rows" in data:
        rows = data["rows"]
        return (f"every checkpoint on the same eval data: {data['file']}, {len(rows)} batch(es) of {len(rows[0])} "
                f"rows of {data['seq_len']} tokens (row order seed {data['seed']})")
    return f"every checkpoint on the same eval data: the seeded stream of seed {data['seed']}, {data['batches']} batch(es)"


def cmd_export(args: argparse.Namespace) -> int:
    """Write V/U per site and the CI network of a checkpoint as safetensors (docs/run.md)."""
    run = _open_run(args, "export")
    if run is None:
        return EXIT_SPEC
    path = run.export()  # type: ignore[attr-defined]
    print(f"pdc export: step {run.step} to {path}", file=sys.stderr)  # type: ignore[attr-defined]
    return EXIT_OK


def cmd_plot(args: argparse.Namespace) -> int:
    """Write a run's pictures as PNGs: CI on one-hot probes, weights, loss curves (docs/run.md)."""
    from pdc.run.rundir import RunError, run_ir

    try:
        ir = run_ir(Path(args.run_dir))
    except RunError as error:
        print(f"pdc plot: {error}", file=sys.stderr)
        return EXIT_SPEC
    from pdc.plot import needs_checkpoint, plot_run

    run = _open_run(args, "plot") if needs_checkpoint(ir) else None
    if needs_checkpoint(ir) and run is None:
        return EXIT_SPEC
    out = Path(args.out) if args.out else None
    written = plot_run(Path(args.run_dir), ir, run, out, args.step)  # type: ignore[arg-type]
    if args.harvest:
        from pdc.analyze.store import StoreError
        from pdc.plot.figures import run_name
        from pdc.plot.harvest import plot_harvest

        try:
            written.append(plot_harvest(Path(args.harvest), out or Path(args.run_dir) / "plots",
                                        run_name(Path(args.run_dir))))
        except StoreError as error:
            print(f"pdc plot: {error}", file=sys.stderr)
            return EXIT_SPEC
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK


def cmd_harvest(args: argparse.Namespace) -> int:
    """Harvest what every component does over a token file into a queryable store (docs/harvest.md)."""
    from pdc.analyze.harvest import HarvestError, HarvestOptions

    options = HarvestOptions(Path(args.tokens) if args.tokens else None, args.batches, args.tokens_count, args.step,
                             Path(args.out) if args.out else None, tuple(args.overrides), args.threshold, args.top_k,
                             args.top_k, args.context, args.pmi_k, args.neighbor_k, args.save_every)
    try:
        return _harvest_dry_run(args, options) if args.dry_run else _harvest(args, options)
    except HarvestError as error:
        print(f"pdc harvest: {error}", file=sys.stderr)
        if error.help:
            print(f"  = help: {error.help}", file=sys.stderr)
        return EXIT_INPUT if error.code.startswith(INPUT_CODES) else EXIT_SPEC


def _start_processes(args: argparse.Namespace, devices: int, command: str) -> bool:
    """Join the `--coordinator` process group (one process per host), or check this process
    has the mesh's devices; False (said on stderr) when it cannot start."""
    from pdc.run import distributed

    try:
        processes = distributed.from_environment(args.coordinator, args.num_processes, args.process_id)
        if processes is not None:
            distributed.initialize(processes, devices)
    except ValueError as error:
        print(f"pdc {command}: {error}", file=sys.stderr)
        return False
    if processes is None and not _host_devices_ready(devices):
        print(f"pdc {command}: this process has fewer devices than the mesh needs", file=sys.stderr)
        return False
    return True


def _harvest(args: argparse.Namespace, options: object) -> int:
    from pdc.analyze.harvest import harvest, harvest_ir

    if not _start_processes(args, _mesh_devices(harvest_ir(Path(args.run_dir), args.overrides)), "harvest"):
        return EXIT_SPEC
    out = harvest(Path(args.run_dir), options)  # type: ignore[arg-type]
    print(f"pdc harvest: store in {out}", file=sys.stderr)
    return EXIT_OK


def _harvest_dry_run(args: argparse.Namespace, options: object) -> int:
    from pdc.analyze.dryrun import harvest_dry_run, render_harvest
    from pdc.inspect.dryrun import DryRunError

    try:
        report = harvest_dry_run(Path(args.run_dir), options, target=args.target)  # type: ignore[arg-type]
    except (DryRunError, ValueError) as error:
        print(f"pdc harvest: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if args.format == "json":
        print(json.dumps({k: v for k, v in report.items() if k != "text"}, indent=2))
    else:
        print(render_harvest(report), end="")
    return EXIT_SPEC if report.get("fits") is False else EXIT_OK


def _mesh_devices(ir: object) -> int:
    from pdc.ir.nodes import MeshNode

    return next(p for _, p in ir.nodes(MeshNode)).devices  # type: ignore[attr-defined]


def cmd_diff(args: argparse.Namespace) -> int:
    """A semantic diff of two specs (files, run directories, git revisions): exit 0 when
    equal, 1 when different, 2 when either does not check."""
    from pdc.inspect.diff import diff, load_side, render, to_json

    a, b = load_side(args.a), load_side(args.b)
    errors = [d for side in (a, b) for d in side.result.diagnostics if d.severity.value == "error"]
    if errors or a.result.spec is None or b.result.spec is None:
        sources = {**a.result.sources, **b.result.sources}
        _report(errors, sources, args.format, [])
        if not errors:
            print("pdc diff: a `base` is not a whole spec; diff the specs that import it", file=sys.stderr)
        return EXIT_SPEC
    result = diff(a, b)
    if args.compile and not result.equal:
        problem = _diff_compile(result, args)
        if problem is not None:
            return problem
    print(json.dumps(to_json(result), indent=2) if args.format == "json" else render(result), end="" if
          args.format == "text" else "\n")
    return EXIT_OK if result.equal else EXIT_DIFFERENT


def _diff_compile(result: object, args: argparse.Namespace) -> int | None:
    """Dry-run both sides (`pdc diff --compile`) and attach the memory delta."""
    from pdc.inspect.diff import memory_delta
    from pdc.ir.nodes import MeshNode

    irs = [result.a.result.ir, result.b.result.ir]  # type: ignore[attr-defined]
    needed = max(next(p for _, p in ir.nodes(MeshNode)).devices for ir in irs)
    if not _host_devices_ready(needed):
        print("pdc diff: this process has fewer devices than the meshes need", file=sys.stderr)
        return EXIT_SPEC
    from pdc.inspect.dryrun import DryRunError, dry_run

    try:
        reports = [dry_run(ir, target=args.target) for ir in irs]
    except DryRunError as error:
        print(f"pdc diff: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    result.memory = memory_delta(*reports)  # type: ignore[attr-defined]
    return None


def cmd_fmt(args: argparse.Namespace) -> int:
    if args.paths == ["-"]:
        return _fmt_stdin()
    files, missing = spec_files(args.paths)
    diagnostics = _missing_diagnostics(missing)
    sources: dict[str, str] = {}
    changed: list[str] = []
    for file in files:
        text, problems = read_source(file)
        source, more = parse_text(text, file) if text is not None else (None, [])
        sources[file] = text or ""
        if source is None or more:
            diagnostics += problems + more
            continue
        formatted = format_spec(source)
        if formatted != text:
            changed.append(file)
            _apply(file, text or "", formatted, args)
    _report(diagnostics, sources, "text", [])
    if (args.check or args.diff) and changed:
        print("\n".join(f"would reformat {f}" for f in changed), file=sys.stderr)
        return EXIT_SPEC
    return EXIT_SPEC if diagnostics else EXIT_OK


def _apply(file: str, text: str, formatted: str, args: argparse.Namespace) -> None:
    if args.diff:
        sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), formatted.splitlines(True), file, file))
    elif not args.check:
        Path(file).write_text(formatted)
        print(f"reformatted {file}", file=sys.stderr)


def _fmt_stdin() -> int:
    text = sys.stdin.read()
    source, diagnostics = parse_text(text, "<stdin>")
    if source is None or diagnostics:
        _report(diagnostics, {"<stdin>": text}, "text", [])
        return EXIT_SPEC
    sys.stdout.write(format_spec(source))
    return EXIT_OK


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pdc")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def cmd_tokens(args: argparse.Namespace) -> int:
    """Tokenize local text/JSONL/Parquet into a token file a `data tokens` block reads
    (resumable; docs/run.md, *Token files*)."""
    from pdc.run.tokens import TokensError, build_tokens, eos_line, skipped_line, spec_block, summary_line

    eos = int(args.eos) if args.eos is not None and args.eos.isdigit() else args.eos
    try:
        info = build_tokens(args.sources, args.tokenizer, args.out, field=args.field, eos=eos,
                            progress=not args.quiet, strict=args.strict, include=args.include, exclude=args.exclude)
    except TokensError as error:
        print(f"pdc: error: {error.file}: {error.problem}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as error:  # an unwritable --out, a full disk: the user's to fix, not a crash
        print(f"pdc: error: {error.filename or args.out}: {error.strerror or error}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("pdc tokens: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    skipped = skipped_line(info)
    if skipped:
        print(skipped, file=sys.stderr)
    print(eos_line(info))
    print(summary_line(info))
    print(spec_block(info))
    return EXIT_OK


def cmd_view(args: argparse.Namespace) -> int:
    """Serve the read-only component browser over a run (and its harvest) until Ctrl-C (docs/view.md)."""
    from pdc.analyze.store import StoreError
    from pdc.analyze.view import serve
    from pdc.run.rundir import RunError

    try:
        serve(args.run_dir, args.harvest, host=args.host, port=args.port)
    except RunError as error:
        print(f"pdc view: {error}", file=sys.stderr)
        return EXIT_SPEC
    except StoreError as error:
        print(f"pdc view: {error}", file=sys.stderr)
        return EXIT_INPUT
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pdc", description="Declarative compiler for parameter-decomposition runs.")
    parser.add_argument("--version", action="version", version=f"pdc {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="parse and validate specs (no JAX)")
    check.add_argument("paths", nargs="+", help="spec files or directories of *.pd files")
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.add_argument("--plan", action="store_true", help="print the resolved plan: sites, CI chunks, terms, sharding")
    check.add_argument("--print-ir", action="store_true", help="print the IR graph (a golden-file format)")
    check.add_argument("--no-inputs", action="store_true",
                       help="do not open the files the spec names (weights, tokens): review a spec without its data")
    _add_set(check)
    check.set_defaults(run=cmd_check)
    comp = commands.add_parser("compile", help="lower and compile the step on abstract values: the memory plan")
    comp.add_argument("path", help="a spec file")
    comp.add_argument("--dry-run", action="store_true", help="compile only (the default; nothing is allocated)")
    comp.add_argument("--lint", action="store_true", help="trace only: shapes and shardings, no compile")
    comp.add_argument("--devices", type=int, help="resize the mesh's first axis to this many devices")
    comp.add_argument("--target", choices=devices.names(),
                      help="device model to compile for (default: the budget's device; GPU models need the `cuda` "
                           f"extra: {devices.CUDA_EXTRA})")
    comp.add_argument("--remat", choices=RECON_FORWARDS, help="override remat.recon_forwards")
    comp.add_argument("--format", choices=("text", "json"), default="text")
    comp.add_argument("--dump", help="directory to write the JSON report, the compiled HLO and XLA's dumps (xla/: "
                                        "buffer assignment, live ranges) into")
    _add_set(comp)
    comp.set_defaults(run=cmd_compile)
    fitp = commands.add_parser("fit", help="search mesh split, remat and divergence chunk for what fits the budget")
    fitp.add_argument("path", help="a spec file")
    fitp.add_argument("--devices", type=int, nargs="+", help="device counts to try (default: the spec's mesh)")
    fitp.add_argument("--target", choices=devices.names(), help="device model to compile for (default: the budget's)")
    fitp.add_argument("--budget-s", type=float, default=540.0,
                      help="stop starting compiles after this many seconds (default 540)")
    fitp.add_argument("--write", type=int, nargs="?", const=1, metavar="N",
                      help="apply row N of the table (default 1, the cheapest) to the spec file")
    fitp.add_argument("--cache", help="directory of cached compile results (default $XDG_CACHE_HOME/pdc/fit)")
    fitp.add_argument("--no-cache", action="store_true", help="neither read nor write cached results")
    fitp.add_argument("--format", choices=("text", "json"), default="text")
    _add_set(fitp)
    fitp.set_defaults(run=cmd_fit)
    pre = commands.add_parser("pretrain", help="train the target a `pretrain` block describes (cached)")
    pre.add_argument("path", help="a spec file")
    pre.add_argument("--force", action="store_true", help="retrain even when the cache holds this target")
    _add_set(pre)
    pre.set_defaults(run=cmd_pretrain)
    trn = commands.add_parser("train", help="train a spec: checkpoints, resume, metrics")
    trn.add_argument("path", help="a spec file")
    trn.add_argument("--out", help="run directory (default runs/<spec name>); an existing one is resumed")
    trn.add_argument("--max-steps", type=int, help="stop after this step (the schedules still span train.steps)")
    trn.add_argument("--point", help="a sweep file: the point to train (into runs/<spec>-<point> by default)")
    trn.add_argument("--slurm", action="store_true",
                     help="a sweep file: print a SLURM array script that trains every point (one task each)")
    trn.add_argument("--coordinator", help="multi-host: host:port of process 0 (or let SLURM tell)")
    trn.add_argument("--num-processes", type=int, help="multi-host: number of processes")
    trn.add_argument("--process-id", type=int, help="multi-host: this process's index")
    _add_set(trn)
    trn.set_defaults(run=cmd_train)
    mig = commands.add_parser("migrate", help="move a run's checkpoint to a new spec version, verified leaf by leaf")
    mig.add_argument("old_run", metavar="OLD_RUN", help="the run directory to migrate (its latest checkpoint)")
    mig.add_argument("spec", metavar="NEW_SPEC", help="the new spec")
    mig.add_argument("--out", required=True, metavar="NEW_RUN",
                     help="the new run directory (must not exist, or be empty)")
    mig.add_argument("--dry", action="store_true", help="print the mapping table; read and write no data")
    mig.add_argument("--max-ram", help="host RAM the copy may hold at once (e.g. 64MiB); a larger leaf is refused")
    mig.add_argument("--verbose", action="store_true", help="print the mapping table before copying")
    _add_set(mig)
    mig.set_defaults(run=cmd_migrate)
    ev = commands.add_parser("eval", help="recompute a run's eval metrics from checkpoints, on the same eval data")
    ev.add_argument("run_dir", metavar="RUN", help="a run directory (pdc train --out)")
    ev.add_argument("--step", type=int, action="append",
                    help="checkpoint step, repeatable: one table row each (default: the latest)")
    ev.add_argument("--all", action="store_true", help="every checkpoint the run keeps, one table row each")
    ev.add_argument("--format", choices=("text", "json"), default="text")
    ev.set_defaults(run=cmd_eval)
    exp = commands.add_parser("export", help="V/U per site and the CI network as safetensors (RUN/export/)")
    exp.add_argument("run_dir", metavar="RUN", help="a run directory (pdc train --out)")
    exp.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    exp.set_defaults(run=cmd_export)
    plot = commands.add_parser("plot", help="a run's pictures as PNGs: CI on one-hot probes, weights, losses")
    plot.add_argument("run_dir", metavar="RUN", help="a run directory (pdc train --out)")
    plot.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    plot.add_argument("--out", help="directory for the PNGs (default RUN/plots)")
    plot.add_argument("--harvest", metavar="DIR", help="also draw the LM figures of this harvest store (harvest.png)")
    plot.set_defaults(run=cmd_plot)
    hv = commands.add_parser("harvest", help="what every component does over a corpus, into a DuckDB-queryable store")
    hv.add_argument("run_dir", metavar="RUN", help="a run directory (pdc train --out)")
    hv.add_argument("--tokens", metavar="FILE", help="a token file (.npy, or raw uint16/uint32 with its sidecar; "
                                                     "default: the run's own data)")
    bound = hv.add_mutually_exclusive_group()
    bound.add_argument("--batches", type=int, metavar="N", help="harvest the first N batches of data.batch windows")
    bound.add_argument("--tokens-count", type=int, metavar="N", help="harvest (whole batches of) the first N tokens")
    hv.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    hv.add_argument("--out", help="the store's directory (default RUN/harvest-<step>)")
    hv.add_argument("--threshold", type=float, help="a component fires where lower CI > this "
                                                    "(default: eval.rounding_threshold, else 0)")
    hv.add_argument("--top-k", type=int, default=32, help="top examples by CI and reservoir examples per component")
    hv.add_argument("--context", type=int, default=16, help="tokens either side of an example (clipped at its window)")
    hv.add_argument("--pmi-k", type=int, default=16, help="top and bottom PMI tokens per component and direction")
    hv.add_argument("--neighbor-k", type=int, default=16, help="co-active neighbours per component")
    hv.add_argument("--save-every", type=int, default=100, help="checkpoint the accumulators every N batches")
    hv.add_argument("--dry-run", action="store_true", help="compile only: memory, FLOPs per token, store size")
    hv.add_argument("--target", choices=devices.names(), help="device model for --dry-run (default: the budget's)")
    hv.add_argument("--format", choices=("text", "json"), default="text", help="--dry-run's report format")
    hv.add_argument("--coordinator", help="multi-host: host:port of process 0 (or let SLURM tell)")
    hv.add_argument("--num-processes", type=int, help="multi-host: number of processes")
    hv.add_argument("--process-id", type=int, help="multi-host: this process's index")
    _add_set(hv)
    hv.set_defaults(run=cmd_harvest)
    graph = commands.add_parser("graph", help="render the IR graph (.dot, or .svg/.png with Graphviz)")
    graph.add_argument("path", help="a spec file")
    graph.add_argument("-o", "--output", required=True, help="out.dot, out.svg or out.png")
    graph.set_defaults(run=cmd_graph)
    dif = commands.add_parser("diff", help="semantic diff of two specs, grouped by what each change touches")
    dif.add_argument("a", metavar="A", help="a spec file, a run directory, or a git revision: HEAD:specs/x.pd")
    dif.add_argument("b", metavar="B", help="the same kinds as A")
    dif.add_argument("--compile", action="store_true", help="also dry-run both: per-device memory and peak groups")
    dif.add_argument("--target", choices=devices.names(), help="device model for --compile (default: each budget's)")
    dif.add_argument("--format", choices=("text", "json"), default="text")
    dif.set_defaults(run=cmd_diff)
    fmt = commands.add_parser("fmt", help="format specs canonically (in place)")
    fmt.add_argument("paths", nargs="+", help="spec files, directories, or - for stdin → stdout")
    fmt.add_argument("--check", action="store_true", help="exit 2 if a file is not formatted; change nothing")
    fmt.add_argument("--diff", action="store_true", help="print the changes as a unified diff; change nothing")
    fmt.set_defaults(run=cmd_fmt)
    tok = commands.add_parser("tokens", help="tokenize text, JSONL or Parquet into a token file for `data tokens`")
    tok.add_argument("sources", nargs="+", metavar="SOURCE",
                     help="text files (one document each), .jsonl (one per line), .parquet (one per row), .gz of text "
                          "or JSONL, directories")
    tok.add_argument("--tokenizer", required=True, metavar="DIR", help="a directory holding the HF tokenizer.json")
    tok.add_argument("--out", required=True, metavar="FILE",
                     help="the token file (raw uint16/uint32; FILE.json: its sidecar)")
    tok.add_argument("--field", default="text", help="the JSONL key / Parquet column holding the text (default: text)")
    tok.add_argument("--eos", metavar="TOKEN",
                     help="the token that ends each document: its text (`<|endoftext|>`) or, all digits, its id "
                          "(default: tokenizer_config.json's eos_token, else config.json's eos_token_id)")
    tok.add_argument("--include", action="append", default=[], metavar="GLOB",
                     help="in a directory, tokenize only files whose name or relative path matches (repeatable)")
    tok.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                     help="in a directory, leave out files whose name or relative path matches (repeatable)")
    tok.add_argument("--strict", action="store_true",
                     help="stop (exit 1) at a source that is not text instead of skipping it")
    tok.add_argument("--quiet", action="store_true", help="no progress bar")
    tok.set_defaults(run=cmd_tokens)
    view = commands.add_parser("view", help="a read-only component browser over a run and its harvest (local web app)")
    view.add_argument("run_dir", metavar="RUN", help="a run directory (pdc train --out)")
    view.add_argument("--harvest", metavar="DIR", help="a harvest store (pdc harvest --out); without one, only the "
                                                       "run, probe and ablate pages work")
    view.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    view.add_argument("--host", default="127.0.0.1",
                      help="address to bind (default 127.0.0.1: this machine only; any other prints a warning)")
    view.set_defaults(run=cmd_view)
    return parser


def _add_set(command: argparse.ArgumentParser) -> None:
    command.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                         help="override a spec key before validation, value in spec syntax: "
                              "--set train.steps=500 --set data.batch=1024 (repeatable)")


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # a real command line, not a caller in this process (tests pass argv)
        from pdc.run.allocator import reexec_with_tuned_malloc

        reexec_with_tuned_malloc(sys.argv[1:])
    args = build_parser().parse_args(argv)
    from pdc.plugins import PROBLEMS

    if PROBLEMS:  # an installed plugin that did not load: say which, before doing anything
        for problem in PROBLEMS:
            print(f"pdc: error: {problem}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `pdc eval RUN | head`: the reader left; that is not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception:  # noqa: BLE001 — the one place a crash becomes exit 1 with a reproducer
        return _internal_error(argv)


def _internal_error(argv: Sequence[str] | None) -> int:
    report = Path(tempfile.gettempdir()) / f"pdc-crash-{int(time.time())}.txt"
    argv_text = " ".join(argv if argv is not None else sys.argv[1:])
    report.write_text(f"pdc {argv_text}\n\n{traceback.format_exc()}")
    print(f"pdc: internal error — please report it with {report}", file=sys.stderr)
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
