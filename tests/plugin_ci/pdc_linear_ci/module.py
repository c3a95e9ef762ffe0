"""`linear_ci`'s nnx module: per site kind `w [L, d_in, C]` and `b [L, C]`."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


class Kind(nnx.Module):
    def __init__(self, w: jax.Array, b: jax.Array) -> None:
        self.w = nnx.Param(w)
        self.b = nnx.Param(b)


class LinearCi(nnx.Module):
    def __init__(self, key: jax.Array, scale: float, layout: tuple[Any, ...], dtype: Any,
                 compute_dtype: Any | None) -> None:
        self._kinds = tuple(dict.fromkeys(s.kind for s in layout))
        self._compute_dtype = compute_dtype or jnp.float32
        for i, kind in enumerate(self._kinds):
            members = [s for s in layout if s.kind == kind]
            L, d_in, C = len(members), members[0].d_in, members[0].C
            w = jax.random.normal(jax.random.fold_in(key, i), (L, d_in, C), jnp.float32) * (scale / math.sqrt(d_in))
            setattr(self, kind, Kind(w.astype(dtype), jnp.zeros((L, C), dtype)))

    def __call__(self, inputs: Any) -> dict[str, jax.Array]:
        out = {}
        for kind in self._kinds:
            x = inputs.site_inputs[kind]  # [L, *lead, d_in]
            params = getattr(self, kind)
            w, b = params.w[...].astype(self._compute_dtype), params.b[...].astype(self._compute_dtype)
            y = jnp.einsum("l...i,lic->l...c", x.astype(self._compute_dtype), w)
            out[kind] = (y + b.reshape(b.shape[:1] + (1,) * (y.ndim - 2) + b.shape[1:])).astype(jnp.float32)
        return out
