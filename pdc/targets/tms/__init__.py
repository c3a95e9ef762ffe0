"""Target family `tms` — the Toy Model of Superposition (SPD_ALGORITHM.md §8.1), all of it
here: its keys, its shape, and (imported when used) its JAX model, loader and pretraining
recipe (`model.py`) and its figures (`plot.py`).

Shapes: `linear1` (features → hidden), optional identity `hidden_layers.i` (hidden → hidden),
`linear2` (hidden → features)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

from pdc.registry.pretrain import TOY
from pdc.registry.types import FilePath, Keys, key
from pdc.targets.base import FrozenTensor, Matrix, TargetFamily, TargetShape

NAME = "tms"


class TmsKeys(Keys):
    """Toy Model of Superposition: `out = ReLU(W2 (W1 x) + b2)`, optionally tied."""

    features: int = key(doc="number of input features (n_features)", ge=1)
    hidden: int = key(doc="bottleneck width (n_hidden)", ge=1)
    hidden_layers: int = key(0, doc="identity hidden layers between linear1 and linear2 (the +ID variants)", ge=0)
    tied: bool = key(True, doc="W2 = W1ᵀ in the target (tie the decomposition with `linear2 { tied_to = linear1 }`)")
    weights: Optional[FilePath] = key(None, doc="safetensors file in torch nn.Linear layout; else `pretrain`")


def shape(keys: TmsKeys, spec_dir: Path | None = None, written: Mapping[str, str] | None = None) -> TargetShape:
    f, h = keys.features, keys.hidden
    matrices = [Matrix("linear1", "linear1", None, f, h, "the input features x", "features", "hidden")]
    matrices += [Matrix(f"hidden_layers.{i}", "hidden_layers", i, h, h, f"the output of layer {i} before it",
                        "hidden", "hidden") for i in range(keys.hidden_layers)]
    matrices.append(Matrix("linear2", "linear2", None, h, f, "the frozen hidden activation", "hidden", "features"))
    tensors = [FrozenTensor("target.linear1", (f, h), ("features", "hidden")),
               FrozenTensor("target.linear2", (h, f), ("hidden", "features")),
               FrozenTensor("target.b2", (f,), ("features",))]
    if keys.hidden_layers:
        tensors.append(FrozenTensor("target.hidden_layers", (keys.hidden_layers, h, h),
                                    ("hidden_layers", "hidden", "hidden")))
    return TargetShape(NAME, tuple(matrices), tuple(tensors), 1, False, "features",
                       {"features": f, "hidden": h}, forward={"tied": keys.tied})


FAMILY = TargetFamily(NAME, TmsKeys, shape, order=1, runtime=f"{__name__}.model:RUNTIME", pretrain=TOY,
                      figures=f"{__name__}.plot:figures", traits=frozenset({"feature_sites"}))

__all__ = ["FAMILY", "TmsKeys", "shape"]
