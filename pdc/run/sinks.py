"""Where a run's records go besides the JSONL files: TensorBoard (`log.tensorboard`) and
Weights & Biases (`log { wandb { ... } }`).

The JSONL files stay the record of truth; the sinks mirror their numbers. wandb is an
optional extra (`pip install 'pdc[wandb]'`): the import happens only when the spec has a
`wandb` block whose mode is not `disabled`, and `pdc check` / `pdc train` report PD0440
before any compute when it is missing. The wandb run's config carries what identifies the
run — both determinism hashes, the resolved spec text (RUN/spec.pd) and the `--set`
overrides — so a dashboard row can be traced back to its run directory. `offline` mode
writes under RUN/wandb/ (`wandb sync` uploads it later); nothing is sent from a test.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from pdc.ir.graph import IR
from pdc.run.rundir import RunDir
from pdc.run.tblog import Board


def wandb_installed() -> bool:
    return importlib.util.find_spec("wandb") is not None


class WandbSink:
    """One wandb run per `pdc train` process (a resume starts a new wandb run with the same
    name and config; wandb's step axis is pdc's step)."""

    def __init__(self, run: RunDir, ir: IR, keys: Any) -> None:
        import wandb

        directory = run.path / "wandb"
        directory.mkdir(parents=True, exist_ok=True)
        self.wandb = wandb
        self.run = wandb.init(project=keys.project, entity=keys.entity, name=keys.name or run.path.name,
                              group=keys.group, tags=list(keys.tags), mode=keys.mode, dir=str(run.path),
                              config=run_config(run, ir))  # finished in close(): no run left open to reinit

    def write(self, record: dict[str, Any]) -> None:
        data: dict[str, Any] = {}
        for name, value in record.items():
            if name in ("step", "time") or isinstance(value, (str, dict)):
                continue
            data[name] = self.wandb.Histogram(value) if isinstance(value, list) else float(value)
        self.run.log(data, step=int(record["step"]))

    def close(self) -> None:
        self.run.finish()


def run_config(run: RunDir, ir: IR) -> dict[str, Any]:
    """The wandb config: hashes, the resolved spec and the overrides, as run.json records them."""
    record = run.read_record() or {}
    spec = run.path / "spec.pd"
    return {"pdc": {"spec": ir.spec.name, "decomposition_hash": ir.facts.get("decomposition_hash"),
                    "runtime_hash": ir.facts.get("runtime_hash"), "program_hash": ir.facts.get("program_hash"),
                    "overrides": record.get("overrides", []), "spec_path": record.get("spec_path"),
                    "run_dir": str(run.path.resolve()),
                    "resolved_spec": spec.read_text() if spec.exists() else None}}


class Sinks:
    """Every sink the spec turns on; `enabled=False` (every process but the first in a
    multi-host run) opens none."""

    def __init__(self, run: RunDir, ir: IR, enabled: bool = True) -> None:
        self.sinks: list[Any] = [Board(run, ir, enabled)]
        keys = ir.options("log.wandb")
        if enabled and keys is not None and keys.mode != "disabled":
            self.sinks.append(WandbSink(run, ir, keys))

    def write(self, record: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.write(record)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()

    def __enter__(self) -> "Sinks":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Sinks", "WandbSink", "run_config", "wandb_installed"]
