"""The run directory: everything needed to understand, resume and reproduce a run.

    RUN/spec.pd          the spec as run (canonical formatting, `--set` overrides applied)
    RUN/run.json         both determinism hashes, package versions, the spec's origin, the overrides,
                         where each written value came from (file:line, `--set N`: `provenance`)
    RUN/metrics.jsonl    one JSON object per logged step (with `time`, UTC, and `elapsed_s`)
    RUN/eval.jsonl       one JSON object per eval pass (the same, and `eval_data`: what it read)
    RUN/tb/              TensorBoard event files (`log.tensorboard`)
    RUN/wandb/           the wandb run's local files (`log { wandb }`)
    RUN/ckpts/<step>/    orbax checkpoints of the whole train state
    RUN/export/          safetensors of V/U and the CI network (`pdc export`)

This module stays JAX-free, so the CLI can read a run's spec and size the device mesh
before JAX starts.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from pdc.ir.graph import IR
from pdc.syntax.format import format_spec
from pdc.syntax.overrides import Override

PACKAGES = ("pdc", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def ckpts(self) -> Path:
        return self.path / "ckpts"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def record(self) -> Path:
        return self.path / "run.json"

    @property
    def evals(self) -> Path:
        return self.path / "eval.jsonl"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tb"

    @property
    def export(self) -> Path:
        return self.path / "export"

    def read_record(self) -> dict[str, Any] | None:
        return json.loads(self.record.read_text()) if self.record.exists() else None

    def forget_after(self, step: int) -> None:
        """Drop metric and eval records past `step`: a run killed after logging but before
        its next checkpoint replays those steps on resume, and each step should appear once."""
        for log in (self.metrics, self.evals):
            if not log.exists():
                continue
            lines = log.read_text().splitlines()
            kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
            if len(kept) != len(lines):
                log.write_text("".join(line + "\n" for line in kept))


class RunError(Exception):
    """A run directory that cannot be read; the message is one line for people."""


def run_ir(path: Path) -> IR:
    """The IR of the spec a run was trained with (RUN/spec.pd), its relative paths resolved
    against the directory of the spec file it was launched from, as training resolved them."""
    run = RunDir(path)
    record = run.read_record()
    if record is None or not (run.path / "spec.pd").exists():
        raise RunError(f"{path} is not a pdc run directory (no run.json / spec.pd)")
    from pdc.passes import run_passes
    from pdc.syntax.load import check_text

    result = check_text((run.path / "spec.pd").read_text(), record["spec_path"])
    if not result.ok or result.spec is None:
        raise RunError(f"{path}/spec.pd no longer checks: {result.diagnostics[0].summary}")
    ir = run_passes(result.spec)
    if ir.failed:
        raise RunError(f"{path}/spec.pd no longer builds: {ir.diagnostics[0].summary}")
    return ir


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _provenance(ir: IR) -> dict[str, Any]:
    """Where each written value came from (file:line or `--set N`) and the files of the
    spec's family (it and what it imports): spec.pd alone is the resolved spec."""
    from pdc.syntax.family import provenance

    where = provenance(ir.spec.source)
    files = sorted({origin.rpartition(":")[0] for origin in where.values() if not origin.startswith("--set")})
    return {"provenance": where, "spec_files": files}


def _target_record(ir: IR) -> dict[str, Any]:
    """LMs: the weights' dtype as stored and as the run holds them, and every forward setting
    with where it came from (a spec line, `--set N`, a config.json key, a default)."""
    out: dict[str, Any] = {}
    if "dtype" in ir.facts:
        out["target_dtype"] = dict(ir.facts["dtype"])
    shape = ir.facts.get("target")
    if shape is not None and shape.settings:
        out["target_config"] = shape.config or None
        out["target_settings"] = {k: {"value": v, "source": src} for k, (v, src) in shape.settings.items()}
    return out


def write_record(run: RunDir, ir: IR, spec_path: str, overrides: Sequence[Override] = ()) -> None:
    """Write spec.pd and run.json (when a run starts from scratch, or when a resume finds
    run.json gone). spec.pd is the spec after the `--set` overrides (the one the hashes
    cover); run.json lists them with the values they replaced, so the file at `spec_path`
    plus the list reproduces spec.pd."""
    run.path.mkdir(parents=True, exist_ok=True)
    (run.path / "spec.pd").write_text(format_spec(ir.spec.source))
    record = {"schema": "pdc.run/1", "spec": ir.spec.name, "spec_path": str(Path(spec_path).resolve()),
              "decomposition_hash": ir.facts["decomposition_hash"], "runtime_hash": ir.facts["runtime_hash"],
              "overrides": [o.to_json() for o in overrides], "versions": versions(), **_provenance(ir),
              **_target_record(ir)}
    run.record.write_text(json.dumps(record, indent=2) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a run's JSONL log (metrics.jsonl, eval.jsonl); a torn last line (a run
    killed mid-write, or still writing) is skipped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records

