"""TMS shapes: `linear1` (features → hidden), optional identity `hidden_layers.i`
(hidden → hidden), `linear2` (hidden → features). SPD_ALGORITHM.md §8.1."""

from __future__ import annotations

from pdc.registry.target import TmsKeys
from pdc.targets.base import FrozenTensor, Matrix, TargetShape


def shape(keys: TmsKeys) -> TargetShape:
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
    return TargetShape("tms", tuple(matrices), tuple(tensors), 1, False, "features",
                       {"features": f, "hidden": h}, forward={"tied": keys.tied})
