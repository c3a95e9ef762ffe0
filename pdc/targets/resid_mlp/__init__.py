"""Target family `resid_mlp` — the residual MLP (SPD_ALGORITHM.md §8.2), all of it here: its
keys, its shape, and (imported when used) its JAX model, loader and pretraining recipe
(`model.py`) and its figures (`plot.py`).

Shapes: per layer `layers.i.mlp_in` (d_embed → d_mlp) and
`layers.i.mlp_out` (d_mlp → d_embed); fixed embedding W_E and unembedding W_U. §8.2."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Mapping, Optional

from pdc.registry.pretrain import TOY
from pdc.registry.types import FilePath, Keys, key
from pdc.targets.base import FrozenTensor, Matrix, TargetConfigError, TargetFamily, TargetShape

NAME = "resid_mlp"


class ResidMlpKeys(Keys):
    """Residual MLP: `r = x W_E; r += W_out act(W_in r); out = r W_U`."""

    features: int = key(doc="number of input features", ge=1)
    d_embed: int = key(doc="residual width", ge=1)
    d_mlp: int = key(doc="MLP width per layer", ge=1)
    layers: int = key(1, doc="number of MLP layers", ge=1)
    embedding: Literal["random", "identity"] = key("random", doc="fixed W_E: random unit rows, or I (needs features = d_embed)")
    activation: Literal["relu", "gelu"] = key("relu", doc="MLP non-linearity")
    bias: bool = key(False, doc="MLP biases (never decomposed)")
    weights: Optional[FilePath] = key(None, doc="safetensors file; else `pretrain`")


def shape(keys: ResidMlpKeys, spec_dir: Path | None = None, written: Mapping[str, str] | None = None) -> TargetShape:
    if keys.embedding == "identity" and keys.features != keys.d_embed:
        raise TargetConfigError(f"`embedding = identity` needs features = d_embed, found {keys.features} and "
                                f"{keys.d_embed}", "embedding")
    e, m, n = keys.d_embed, keys.d_mlp, keys.layers
    matrices = []
    for i in range(n):
        matrices.append(Matrix(f"layers.{i}.mlp_in", "mlp_in", i, e, m, f"the residual entering layer {i}",
                               "d_embed", "d_mlp"))
        matrices.append(Matrix(f"layers.{i}.mlp_out", "mlp_out", i, m, e, f"the hidden activation of layer {i}",
                               "d_mlp", "d_embed"))
    tensors = [FrozenTensor("target.W_E", (keys.features, e), ("features", "d_embed")),
               FrozenTensor("target.W_U", (e, keys.features), ("d_embed", "features")),
               FrozenTensor("target.layers.mlp_in", (n, e, m), ("layers", "d_embed", "d_mlp")),
               FrozenTensor("target.layers.mlp_out", (n, m, e), ("layers", "d_mlp", "d_embed"))]
    if keys.bias:
        tensors += [FrozenTensor("target.biases.mlp_in", (n, m), ("layers", "d_mlp")),
                    FrozenTensor("target.biases.mlp_out", (n, e), ("layers", "d_embed"))]
    return TargetShape(NAME, tuple(matrices), tuple(tensors), n, False, "features",
                       {"features": keys.features, "d_embed": e, "d_mlp": m},
                       forward={"activation": keys.activation, "embedding": keys.embedding})


FAMILY = TargetFamily(NAME, ResidMlpKeys, shape, order=2, runtime=f"{__name__}.model:RUNTIME", pretrain=TOY,
                      figures=f"{__name__}.plot:figures")

__all__ = ["FAMILY", "ResidMlpKeys", "shape"]
