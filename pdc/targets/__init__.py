"""Target families, one package each (`TargetFamily`, pdc/targets/base.py): a family's keys,
its JAX-free shape, the checks of its checkpoint, and — imported only when a run needs them —
its JAX model, loader, pretraining recipe and figures. Every dispatch on the family (the
registry's `target` variants, `pdc check`'s shapes and input checks, the lowering's model,
loading, pretraining, `pdc plot`) iterates `FAMILIES`, so deleting a family's package removes
it everywhere and a new one touches nothing else.

In-tree families are the packages here that define `FAMILY`, in their fixed `order`;
out-of-tree ones come from the `pdc.targets` entry point group (a distribution declares
`[project.entry-points."pdc.targets"] my_family = "my_pkg.my_family:FAMILY"`) and follow in
name order. No spec ever names code to run. The modules defining `FAMILY` are JAX-free:
`pdc check` imports them, never JAX.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from pdc.plugins import extensions
from pdc.registry.types import Keys
from pdc.targets.base import (FamilyRuntime, FrozenTensor, Matrix, TargetConfigError, TargetFamily, TargetShape)

FAMILIES: dict[str, TargetFamily] = extensions(__name__, "FAMILY", TargetFamily, "pdc.targets", lambda f: f.order,
                                               "target family")


def family(name: str) -> TargetFamily:
    """The registered family `name` (the validator has already rejected unknown labels)."""
    if name not in FAMILIES:
        raise KeyError(f"unknown target family `{name}` (registered: {', '.join(FAMILIES)})")
    return FAMILIES[name]


def target_shape(name: str, keys: Keys, spec_dir: Path, written: Mapping[str, str] | None = None) -> TargetShape:
    """The shape of a `target <name>` block. `written`: the keys the spec writes (or `--set`
    sets) → where, so a written value wins over a config.json's and says so."""
    return family(name).shape(keys, spec_dir, written or {})


__all__ = ["FAMILIES", "FamilyRuntime", "FrozenTensor", "Matrix", "TargetConfigError", "TargetFamily", "TargetShape",
           "family", "target_shape"]
