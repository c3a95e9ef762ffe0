"""An out-of-tree target family, `target linear_toy`: `out = ReLU(x @ W + b)` on sparse
features, one decomposable square matrix `proj`. This module is what `pdc check` imports
(JAX-free); the JAX half is `pdc_linear_toy_model` (tests/test_target_families.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

from pdc.registry.types import FilePath, Keys, key
from pdc.targets import FrozenTensor, Matrix, TargetFamily, TargetShape


class LinearToyKeys(Keys):
    """A single ReLU layer over sparse features (an example plugin): linear_toy_family_doc."""

    features: int = key(doc="number of input features", ge=1)
    weights: Optional[FilePath] = key(None, doc="safetensors file holding `proj.weight` (torch layout) and `proj.bias`")


def shape(keys: LinearToyKeys, spec_dir: Path, written: Mapping[str, str]) -> TargetShape:
    f = keys.features
    return TargetShape("linear_toy", (Matrix("proj", "proj", None, f, f, "the input features x", "features",
                                             "features"),),
                       (FrozenTensor("target.proj", (f, f), ("features", "features")),
                        FrozenTensor("target.bias", (f,), ("features",))),
                       1, False, "features", {"features": f})


FAMILY = TargetFamily("linear_toy", LinearToyKeys, shape, order=100, runtime="pdc_linear_toy_model:RUNTIME")
