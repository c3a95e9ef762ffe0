"""pdc: a declarative compiler for parameter-decomposition runs.

`pdc.load_run(run_dir, step=None)` opens a trained run for analysis (pdc/run/load.py). It
is resolved lazily, so importing `pdc` (as `pdc check` does) never starts JAX.
"""

from __future__ import annotations

from typing import Any


def load_run(path: Any, step: int | None = None) -> Any:
    """The run in `path` at checkpoint `step` (default the latest): spec, IR, program,
    state, frozen params and per-site V/U helpers (`pdc.run.load.Run`)."""
    from pdc.run.load import load_run as _load_run

    return _load_run(path, step)


__all__ = ["load_run"]
