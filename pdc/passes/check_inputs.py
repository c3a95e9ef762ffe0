"""Pass — open the files the spec names, cheaply, before any compute: an LM's `weights`
(safetensors headers and index only: names, shapes, dtypes) against the shapes the target
resolved to, and its token files (format, length, ids against the vocabulary in one
chunked pass, the sidecar and tokenizer hash). Runs only when asked (`run_passes(..., inputs=True)`: `pdc check` unless
`--no-inputs`, and `pdc train`); a dry-run needs only the config and skips it. Every problem
is a diagnostic at the spec line naming the file, saying what the file holds. It also checks
what the run will import beyond pdc's own dependencies: a `log { wandb }` block needs wandb."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from pdc.ir.graph import IR
from pdc.syntax.diagnostics import Diagnostic, Severity
from pdc.targets import family
from pdc.targets.base import TargetShape
from pdc.inputs.checkpoint import inspect_file
from pdc.inputs.token_file import inspect_token_file


def run(ir: IR) -> IR:
    shape: TargetShape | None = ir.facts.get("target")
    if not ir.facts.get("inputs") or shape is None:
        return ir
    spec_dir = ir.spec_dir
    _weights(ir, shape, spec_dir)
    _tokens(ir, shape, spec_dir)
    _wandb(ir)
    return ir


def _wandb(ir: IR) -> None:
    """A `log { wandb }` block needs the optional `wandb` package (PD0440, before any compute):
    a warning for `pdc check` (the spec may be meant for another machine), an error for
    `pdc train`. `mode = disabled` imports nothing, so it needs nothing."""
    node = ir.options_node("log.wandb")
    if node is None or node.keys.mode == "disabled" or importlib.util.find_spec("wandb") is not None:
        return
    _report(ir, "PD0440", "`log { wandb }` needs the `wandb` package, which is not installed", node.span,
            "install it with `pip install 'pdc[wandb]'` (or `pip install wandb`), or remove the block "
            "(`mode = disabled` keeps it without logging)", True)


def _report(ir: IR, code: str, message: str, span, help_: str, absent: bool) -> None:
    """An input problem at `span`. A file that does not exist yet (weights or tokens not
    downloaded, the shipped Llama-8B specs) is a warning for `pdc check` and an error only
    where the run needs it (`pdc train`: `inputs = "required"`)."""
    missing = absent and ir.facts.get("inputs") != "required"
    ir.error(Diagnostic(code, message, span, "named here", help=(help_,) if help_ else (),
                        severity=Severity.WARNING if missing else Severity.ERROR))


def _not_downloaded(path: Path) -> bool:
    """Weights not there yet: no such path, or a model directory holding its config but no
    weight files."""
    return not path.exists() or (path.is_dir() and not any(path.glob("*.safetensors*")))


def _shown(path: Path) -> Path:
    """A file as the user would type it: relative to the working directory."""
    return Path(os.path.relpath(path))


def _weights(ir: IR, shape: TargetShape, spec_dir: Path) -> None:
    target = ir.spec.block("target")
    if target is None or target.get("weights") is None:
        return
    path = _shown(spec_dir / target.get("weights"))
    inspect = family(shape.family).inspect
    # the family's checks of its layout; without any (the toys' torch state dicts), that the file
    # opens — its loader checks the rest
    problems = inspect(path, shape) if inspect is not None else inspect_file(path)
    for problem in problems:
        _report(ir, problem.code, problem.message, target.span_of("weights"), problem.help, _not_downloaded(path))


def _tokens(ir: IR, shape: TargetShape, spec_dir: Path) -> None:  # LMs only: toys draw their batches
    """The training (and held-out) token files against the target's vocabulary and, when the
    target's directory holds a `tokenizer.json`, against the tokenizer they were made with."""
    data = ir.spec.block("data")
    if data is None or data.label != "tokens":
        return
    tokenizer = _tokenizer_dir(ir, spec_dir)
    for key in ("path", "eval_path"):
        if data.get(key) is None:
            continue
        path = _shown(spec_dir / data.get(key))
        problems = inspect_token_file(path, data.get("format"), int(data.get("seq_len")), int(data.get("batch")),
                                      shape.dims["vocab"], tokenizer)
        for problem in problems:
            _report(ir, problem.code, problem.message, data.span_of(key), problem.help, not path.exists())


def _tokenizer_dir(ir: IR, spec_dir: Path) -> Path | None:
    """The directory of the target's `tokenizer.json`: its weights directory, else its config's."""
    target = ir.spec.block("target")
    if target is None:
        return None
    for key in ("weights", "config"):
        value = target.get(key) if key in target.schema.key_names() else None
        if value is not None:
            path = spec_dir / value
            directory = path if path.is_dir() else path.parent
            if (directory / "tokenizer.json").is_file():
                return _shown(directory)
    return None
