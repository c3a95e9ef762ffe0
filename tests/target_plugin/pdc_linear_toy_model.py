"""The JAX half of the example `linear_toy` family: the model and its loader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from pdc.models.base import CleanPass, Site
from pdc.models.loading import Checkpoint, read_torch_linear
from pdc.models.sites import stack_taps, toy_masked_site, toy_recording_site
from pdc.targets import FamilyRuntime


@dataclass(frozen=True, eq=False)
class LinearToy:
    sites: tuple[Site, ...]
    decomposed: Mapping[str, tuple[int, ...]]
    features: int
    compute_dtype: Any = jnp.float32
    family: str = "linear_toy"

    def init_params(self, key: jax.Array) -> Any:
        F = self.features
        return {"proj": jax.random.normal(key, (F, F)) * F ** -0.5, "bias": jnp.zeros((F,))}

    def weights(self, params: Any) -> dict[str, jax.Array]:
        return {"proj": params["proj"][None]}

    def clean(self, params: Any, batch: jax.Array) -> CleanPass:
        taps: dict[tuple[str, int], jax.Array] = {}
        out = self._run(params, batch, toy_recording_site(self.decomposed, taps, self.compute_dtype))
        return CleanPass(out, stack_taps(self.decomposed, taps))

    def forward(self, params: Any, batch: jax.Array, components: Any, masks: Any) -> jax.Array:
        return self._run(params, batch, toy_masked_site(self.decomposed, components, masks, self.compute_dtype))

    def _run(self, params: Any, x: jax.Array, site: Any) -> jax.Array:
        out = site("proj", 0, x.astype(self.compute_dtype), params["proj"]) + params["bias"].astype(self.compute_dtype)
        return jax.nn.relu(out).astype(jnp.float32)


def build(shape: Any, sites: tuple[Site, ...], decomposed: dict[str, tuple[int, ...]], dtype: Any,
          options: dict[str, Any]) -> LinearToy:
    return LinearToy(sites, decomposed, shape.dims["features"], dtype)


def load(model: LinearToy, path: str | Path, dtype: Any = None) -> dict[str, np.ndarray]:
    checkpoint = Checkpoint.open(path)
    F = model.features
    params = {"proj": read_torch_linear(checkpoint, "proj.weight", F, F), "bias": checkpoint.get("proj.bias", (F,))}
    checkpoint.check_unexpected({"proj.weight", "proj.bias"})
    return params


RUNTIME = FamilyRuntime(build, load)
