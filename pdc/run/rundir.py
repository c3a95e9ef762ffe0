"""The run directory: everything needed to understand, resume and reproduce a run.

    RUN/spec.pd          the spec as run (canonical formatting)
    RUN/run.json         both determinism hashes, package versions, the spec's origin
    RUN/metrics.jsonl    one JSON object per logged step
    RUN/ckpts/<step>/    orbax checkpoints of the whole train state
    RUN/export/          safetensors of V/U and the CI network
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pdc.ir.graph import IR
from pdc.syntax.format import format_spec

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

    def read_record(self) -> dict[str, Any] | None:
        return json.loads(self.record.read_text()) if self.record.exists() else None


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_record(run: RunDir, ir: IR, spec_path: str) -> None:
    """Write spec.pd and run.json (called once, when a run starts from scratch)."""
    run.path.mkdir(parents=True, exist_ok=True)
    (run.path / "spec.pd").write_text(format_spec(ir.spec.source))
    record = {"schema": "pdc.run/1", "spec": ir.spec.name, "spec_path": spec_path,
              "decomposition_hash": ir.facts["decomposition_hash"], "runtime_hash": ir.facts["runtime_hash"],
              "versions": versions()}
    run.record.write_text(json.dumps(record, indent=2) + "\n")
