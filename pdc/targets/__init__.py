"""Target families. Shape modules here are JAX-free: `pdc check` resolves an 8B
target's module tree from its config without importing JAX or reading weights."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from pdc.registry.types import Keys
from pdc.targets import gpt2, llama, resid_mlp, tms
from pdc.targets.base import FrozenTensor, Matrix, TargetConfigError, TargetShape


def target_shape(family: str, keys: Keys, spec_dir: Path, written: Mapping[str, str] | None = None) -> TargetShape:
    """Dispatch on the `target` block's label. `written`: the keys the spec writes (or `--set`
    sets) → where, so a written value wins over a config.json's and says so."""
    if family == "tms":
        return tms.shape(keys)  # type: ignore[arg-type]
    if family == "resid_mlp":
        return resid_mlp.shape(keys)  # type: ignore[arg-type]
    if family == "gpt2":
        return gpt2.shape(keys, spec_dir, written)  # type: ignore[arg-type]
    return llama.shape(keys, spec_dir, family, written)  # type: ignore[arg-type]


__all__ = ["FrozenTensor", "Matrix", "TargetConfigError", "TargetShape", "target_shape"]
