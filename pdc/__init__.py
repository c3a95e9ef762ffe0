"""pdc: a declarative compiler for parameter-decomposition runs.

The typed API (`pdc/api.py`, `docs/api.md`): `load_spec`, `check`, `plan`, `compile`,
`dry_run`, `train`, `load_run`, `harvest`, `load_harvest`. Importing `pdc` never starts JAX: the functions that need it import it
when called.
"""

from __future__ import annotations

from pdc.api import (CheckResult, IR, Spec, SpecError, check, compile, dry_run, harvest, load_harvest, load_run,
                     load_spec, plan, train)

__all__ = ["CheckResult", "IR", "Spec", "SpecError", "check", "compile", "dry_run", "harvest", "load_harvest",
           "load_run", "load_spec", "plan", "train"]
