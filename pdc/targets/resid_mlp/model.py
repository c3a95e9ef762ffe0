"""The JAX half of target family `resid_mlp`: the model, its loader, its pretraining recipe.
Residual MLP (SPD_ALGORITHM.md §8.2):

    r = x @ W_E;  r += act(r @ W_in_i + b_in_i) @ W_out_i + b_out_i  (each layer i);  out = r @ W_U

Sites `layers.{i}.mlp_in` (d_embed → d_mlp) and `layers.{i}.mlp_out` (d_mlp → d_embed),
stacked as kinds `mlp_in` / `mlp_out`. W_E and W_U are fixed, biases never decomposed.

Params: W_E [F, E], W_U [E, F], layers.mlp_in [n, E, M], layers.mlp_out [n, M, E],
biases.mlp_in [n, M] and biases.mlp_out [n, E] (with biases only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from safetensors.numpy import save_file

from pdc.decomp.components import Factors, SiteMask
from pdc.decomp.features import pretrain_batches
from pdc.models.base import CleanPass, Params, Site
from pdc.models.loading import Checkpoint, read_torch_linear
from pdc.models.sites import ToySiteFn, stack_taps, toy_masked_site, toy_recording_site
from pdc.targets.base import FamilyRuntime, TargetShape
from pdc.targets.resid_mlp import NAME

Array = jax.Array
Activation = Literal["relu", "gelu"]
# torch's F.gelu default is the exact (erf) GELU, which the reference models use
ACTIVATIONS: dict[str, Callable[[Array], Array]] = {"relu": jax.nn.relu,
                                                     "gelu": lambda x: jax.nn.gelu(x, approximate=False)}
# tensors a reference file may carry that are not part of the model (the data's label coefficients)
DATA_TENSORS = frozenset({"label_coeffs"})


@dataclass(frozen=True, eq=False)
class ResidMlp:
    sites: tuple[Site, ...]
    decomposed: Mapping[str, tuple[int, ...]]
    features: int
    d_embed: int
    d_mlp: int
    layers: int
    bias: bool = False
    activation: Activation = "relu"
    embedding: Literal["random", "identity"] = "random"
    compute_dtype: Any = jnp.float32
    family: str = NAME

    def init_params(self, key: Array) -> Params:
        """W_E random unit rows (or I), W_U = W_Eᵀ; MLP matrices N(0, 1/d_in); biases
        N(0, 0.1²) so tests exercise them (pretraining may zero them)."""
        ke, kin, kout, kb1, kb2 = jax.random.split(key, 5)
        F, E, M, n = self.features, self.d_embed, self.d_mlp, self.layers
        if self.embedding == "identity":
            W_E = jnp.eye(F, E)
        else:
            W_E = jax.random.normal(ke, (F, E))
            W_E = W_E / jnp.linalg.norm(W_E, axis=1, keepdims=True)
        params: dict[str, Any] = {
            "W_E": W_E, "W_U": W_E.T,
            "layers": {"mlp_in": jax.random.normal(kin, (n, E, M)) * E ** -0.5,
                       "mlp_out": jax.random.normal(kout, (n, M, E)) * M ** -0.5},
        }
        if self.bias:
            params["biases"] = {"mlp_in": jax.random.normal(kb1, (n, M)) * 0.1,
                                "mlp_out": jax.random.normal(kb2, (n, E)) * 0.1}
        return params

    def weights(self, params: Params) -> dict[str, Array]:
        return {kind: params["layers"][kind][np.asarray(layers)] for kind, layers in self.decomposed.items()}

    def clean(self, params: Params, batch: Array) -> CleanPass:
        taps: dict[tuple[str, int], Array] = {}
        out = self._run(params, batch, toy_recording_site(self.decomposed, taps, self.compute_dtype))
        return CleanPass(out, stack_taps(self.decomposed, taps))

    def forward(self, params: Params, batch: Array, components: Mapping[str, Factors],
                masks: Mapping[str, SiteMask]) -> Array:
        return self._run(params, batch, toy_masked_site(self.decomposed, components, masks, self.compute_dtype))

    def _run(self, params: Params, x: Array, site: ToySiteFn) -> Array:
        dtype, act = self.compute_dtype, ACTIVATIONS[self.activation]
        r = x.astype(dtype) @ params["W_E"].astype(dtype)
        for i in range(self.layers):
            h = site("mlp_in", i, r, params["layers"]["mlp_in"][i])
            if self.bias:
                h = h + params["biases"]["mlp_in"][i].astype(dtype)
            out = site("mlp_out", i, act(h), params["layers"]["mlp_out"][i])
            if self.bias:
                out = out + params["biases"]["mlp_out"][i].astype(dtype)
            r = r + out
        return (r @ params["W_U"].astype(dtype)).astype(jnp.float32)


def build(shape: TargetShape, sites: tuple[Site, ...], decomposed: dict[str, tuple[int, ...]], dtype: Any,
          options: dict[str, Any]) -> ResidMlp:
    bias = any(t.path == "target.biases.mlp_in" for t in shape.tensors)
    d = shape.dims
    return ResidMlp(sites, decomposed, d["features"], d["d_embed"], d["d_mlp"], shape.n_layers, bias,
                    options.pop("activation", "relu"), options.pop("embedding", "random"), dtype)


def load(model: ResidMlp, path: str | Path, dtype: Any = None) -> dict[str, Any]:
    return load_resid_mlp(path, model)


def load_resid_mlp(path: str | Path, model: ResidMlp) -> dict[str, Any]:
    """`W_E (F, E)` and `W_U (E, F)` as stored (already right-multiplication), per layer
    `layers.{i}.mlp_in.weight (M, E)`, `layers.{i}.mlp_out.weight (E, M)` in torch layout
    and, with biases, `layers.{i}.mlp_in.bias (M,)`, `layers.{i}.mlp_out.bias (E,)`."""
    checkpoint = Checkpoint.open(path)
    F, E, M, n = model.features, model.d_embed, model.d_mlp, model.layers
    params: dict[str, Any] = {"W_E": checkpoint.get("W_E", (F, E)), "W_U": checkpoint.get("W_U", (E, F))}
    names = {"mlp_in": [f"layers.{i}.mlp_in" for i in range(n)], "mlp_out": [f"layers.{i}.mlp_out" for i in range(n)]}
    dims = {"mlp_in": (E, M), "mlp_out": (M, E)}
    params["layers"] = {k: np.stack([read_torch_linear(checkpoint, f"{m}.weight", *dims[k]) for m in names[k]])
                        for k in names}
    used = {"W_E", "W_U"} | {f"{m}.weight" for ms in names.values() for m in ms}
    if model.bias:
        params["biases"] = {k: np.stack([checkpoint.get(f"{m}.bias", (dims[k][1],)) for m in names[k]])
                            for k in names}
        used |= {f"{m}.bias" for ms in names.values() for m in ms}
    checkpoint.check_unexpected(used, lambda name: name in DATA_TENSORS)
    return params


# ---- pretraining (pdc/run/pretrain.py) ------------------------------------------------------------


def _merge(train: Any, fix: Any) -> Any:
    return {**fix, **train}


def recipe(target: ResidMlp, init: Any, keys: Any, data: Any) -> Any:
    """Minimise mean((out − (x + ReLU(x)))²) with W_E, W_U fixed."""
    batch = pretrain_batches(keys, data, target.features)
    fixed = {"W_E": init["W_E"], "W_U": init["W_U"]}
    trainable = {k: v for k, v in init.items() if k not in fixed}
    if keys.init_bias_to_zero and "biases" in trainable:
        trainable["biases"] = jax.tree.map(jnp.zeros_like, trainable["biases"])

    def loss(train: Any, fix: Any, key: Array) -> Array:
        x = batch(key)
        return jnp.mean(jnp.square(target.clean(_merge(train, fix), x).output - (x + jax.nn.relu(x))))

    return loss, fixed, trainable, _merge


def save(target: ResidMlp, params: Any, path: Path) -> None:
    """The layout `load_resid_mlp` reads."""
    host = jax.tree.map(lambda a: np.asarray(a, np.float32), params)
    tensors = {"W_E": host["W_E"], "W_U": host["W_U"]}
    for i in range(target.layers):
        tensors[f"layers.{i}.mlp_in.weight"] = host["layers"]["mlp_in"][i].T
        tensors[f"layers.{i}.mlp_out.weight"] = host["layers"]["mlp_out"][i].T
        if target.bias:
            tensors[f"layers.{i}.mlp_in.bias"] = host["biases"]["mlp_in"][i]
            tensors[f"layers.{i}.mlp_out.bias"] = host["biases"]["mlp_out"][i]
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))


RUNTIME = FamilyRuntime(build, load, save, recipe)
