"""The JAX half of target family `tms`: the model, its loader, its pretraining recipe.
Toy Model of Superposition (SPD_ALGORITHM.md §8.1):

    out = ReLU(x @ W1 [@ H_0 @ ... @ H_{n-1}] @ W2 + b2)

Sites `linear1` (F → H), `hidden_layers.{i}` (H → H, identity in the +ID variants;
stacked as kind `hidden_layers`) and `linear2` (H → F). The bias is never decomposed.
The target may be tied (W2 = W1ᵀ); the decomposition is tied only when the spec says
`linear2 { tied_to = linear1 }` (`pdc.lower.ties`).

Params: linear1 [F, H], linear2 [H, F], b2 [F], hidden_layers [n, H, H] (n > 0 only).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

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
from pdc.targets.tms import NAME

Array = jax.Array


@dataclass(frozen=True, eq=False)
class Tms:
    sites: tuple[Site, ...]
    decomposed: Mapping[str, tuple[int, ...]]
    features: int
    hidden: int
    hidden_layers: int = 0
    tied: bool = True
    compute_dtype: Any = jnp.float32
    family: str = NAME

    def init_params(self, key: Array) -> Params:
        """The JAX recipe's init: W1 ~ U(±1/√F); b2 ~ U(±1/√H) (torch's bias init, so
        tests see a non-zero bias); hidden layers are the identity they are fixed to."""
        k1, k2, kb = jax.random.split(key, 3)
        F, H = self.features, self.hidden
        W1 = jax.random.uniform(k1, (F, H), minval=-1.0, maxval=1.0) * F ** -0.5
        W2 = W1.T if self.tied else jax.random.uniform(k2, (H, F), minval=-1.0, maxval=1.0) * H ** -0.5
        params = {"linear1": W1, "linear2": W2, "b2": jax.random.uniform(kb, (F,), minval=-1.0, maxval=1.0) * H ** -0.5}
        if self.hidden_layers:
            params["hidden_layers"] = jnp.tile(jnp.eye(H)[None], (self.hidden_layers, 1, 1))
        return params

    def weights(self, params: Params) -> dict[str, Array]:
        out = {}
        for kind, layers in self.decomposed.items():
            stack = params[kind] if kind == "hidden_layers" else params[kind][None]
            out[kind] = stack[np.asarray(layers)]
        return out

    def clean(self, params: Params, batch: Array) -> CleanPass:
        taps: dict[tuple[str, int], Array] = {}
        out = self._run(params, batch, toy_recording_site(self.decomposed, taps, self.compute_dtype))
        return CleanPass(out, stack_taps(self.decomposed, taps))

    def forward(self, params: Params, batch: Array, components: Mapping[str, Factors],
                masks: Mapping[str, SiteMask]) -> Array:
        return self._run(params, batch, toy_masked_site(self.decomposed, components, masks, self.compute_dtype))

    def _run(self, params: Params, x: Array, site: ToySiteFn) -> Array:
        h = site("linear1", 0, x.astype(self.compute_dtype), params["linear1"])
        for i in range(self.hidden_layers):
            h = site("hidden_layers", i, h, params["hidden_layers"][i])
        out = site("linear2", 0, h, params["linear2"]) + params["b2"].astype(self.compute_dtype)
        return jax.nn.relu(out).astype(jnp.float32)


def build(shape: TargetShape, sites: tuple[Site, ...], decomposed: dict[str, tuple[int, ...]], dtype: Any,
          options: dict[str, Any]) -> Tms:
    hidden_layers = sum(1 for s in sites if s.kind == "hidden_layers")
    return Tms(sites, decomposed, shape.dims["features"], shape.dims["hidden"], hidden_layers,
               bool(options.pop("tied", True)), dtype)


def load(model: Tms, path: str | Path, dtype: Any = None) -> dict[str, np.ndarray]:
    return load_tms(path, model)


def load_tms(path: str | Path, model: Tms) -> dict[str, np.ndarray]:
    """torch layout: `linear1.weight (H, F)`, `linear2.weight (F, H)`, `linear2.bias (F,)`,
    `hidden_layers.{i}.weight (H, H)`. A tied file may omit `linear2.weight` (W2 = W1ᵀ)."""
    checkpoint = Checkpoint.open(path)
    F, H = model.features, model.hidden
    params = {"linear1": read_torch_linear(checkpoint, "linear1.weight", F, H),
              "b2": checkpoint.get("linear2.bias", (F,))}
    if model.tied and not checkpoint.has("linear2.weight"):
        params["linear2"] = np.ascontiguousarray(params["linear1"].T)
    else:
        params["linear2"] = read_torch_linear(checkpoint, "linear2.weight", H, F)
    used = {"linear1.weight", "linear2.weight", "linear2.bias"}
    if model.hidden_layers:
        names = [f"hidden_layers.{i}.weight" for i in range(model.hidden_layers)]
        params["hidden_layers"] = np.stack([read_torch_linear(checkpoint, n, H, H) for n in names])
        used |= set(names)
    checkpoint.check_unexpected(used)
    return params


# ---- pretraining (pdc/run/pretrain.py) ------------------------------------------------------------


def recipe(target: Tms, init: Any, keys: Any, data: Any) -> Any:
    """Minimise mean((|x| − ReLU(W2 W1 x + b2))²) on sparse features (tied: W2 = W1ᵀ;
    identity hidden layers stay fixed)."""
    batch = pretrain_batches(keys, data, target.features)
    fixed = {k: v for k, v in init.items() if k == "hidden_layers"}
    trainable = {"linear1": init["linear1"], "b2": jnp.zeros_like(init["b2"]) if keys.init_bias_to_zero else init["b2"]}
    if not target.tied:
        trainable["linear2"] = init["linear2"]

    def assemble(train: Any, fix: Any) -> Any:  # tied: W2 = W1ᵀ is not a parameter of its own
        return {**fix, **train, "linear2": train.get("linear2", train["linear1"].T)}

    def loss(train: Any, fix: Any, key: Array) -> Array:
        x = batch(key)
        return jnp.mean(jnp.square(jnp.abs(x) - target.clean(assemble(train, fix), x).output))

    return loss, fixed, trainable, assemble


def save(target: Tms, params: Any, path: Path) -> None:
    """torch `nn.Linear` layout, as `load_tms` reads it (and as targets/ ships them)."""
    host = jax.tree.map(lambda a: np.asarray(a, np.float32), params)
    tensors = {"linear1.weight": host["linear1"].T, "linear2.weight": host["linear2"].T, "linear2.bias": host["b2"]}
    for i in range(target.hidden_layers):
        tensors[f"hidden_layers.{i}.weight"] = host["hidden_layers"][i].T
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))


def sanity(target: Tms, params: Any) -> dict[str, Any]:
    """Every feature should be represented (column norm near 1); a dropped feature (the
    'square' 5-2 target) can only decompose into fewer components (§8.1)."""
    norms = np.linalg.norm(np.asarray(params["linear1"]), axis=1)
    weak = [int(i) for i in np.nonzero(norms < 0.5)[0]]
    if weak:
        print(f"pdc pretrain: warning: features {weak} are barely represented (column norms "
              f"{np.round(norms[weak], 3).tolist()}); try another pretrain seed", file=sys.stderr)
    return {"feature_norms": np.round(norms, 4).tolist(), "weak_features": weak}


RUNTIME = FamilyRuntime(build, load, save, recipe, sanity)
