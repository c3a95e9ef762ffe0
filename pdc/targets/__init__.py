"""Target families. Shape modules here are JAX-free: `pdc check` resolves an 8B
target's module tree from its config without importing JAX or reading weights."""

from __future__ import annotations

from pathlib import Path

from pdc.registry.types import Keys
from pdc.targets import llama, resid_mlp, tms
from pdc.targets.base import FrozenTensor, Matrix, TargetConfigError, TargetShape


def target_shape(family: str, keys: Keys, spec_dir: Path) -> TargetShape:
    """Dispatch on the `target` block's label."""
    if family == "tms":
        return tms.shape(keys)  # type: ignore[arg-type]
    if family == "resid_mlp":
        return resid_mlp.shape(keys)  # type: ignore[arg-type]
    return llama.shape(keys, spec_dir, family)  # type: ignore[arg-type]


__all__ = ["FrozenTensor", "Matrix", "TargetConfigError", "TargetShape", "target_shape"]
