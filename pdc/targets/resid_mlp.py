"""Residual-MLP shapes: per layer `layers.i.mlp_in` (d_embed → d_mlp) and
`layers.i.mlp_out` (d_mlp → d_embed); fixed embedding W_E and unembedding W_U. §8.2."""

from __future__ import annotations

from pdc.registry.target import ResidMlpKeys
from pdc.targets.base import FrozenTensor, Matrix, TargetConfigError, TargetShape


def shape(keys: ResidMlpKeys) -> TargetShape:
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
    return TargetShape("resid_mlp", tuple(matrices), tuple(tensors), n, False, "features",
                       {"features": keys.features, "d_embed": e, "d_mlp": m},
                       forward={"activation": keys.activation, "embedding": keys.embedding})
