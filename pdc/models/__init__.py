"""JAX target models behind the `Target` interface (pdc/models/base.py).

`build_target` turns a JAX-free `TargetShape` (pdc/targets) and the decomposed site paths
into a model; `load_params` reads its frozen weights. Both dispatch to the shape's target
family (`pdc.targets.FAMILIES`, its `FamilyRuntime`). Options (all optional):

    every family     compute_dtype: "f32" | "bf16" | "f16" | a jnp dtype  (default f32)
    the others       the family's own (its `build` pops them: the shape's `forward`
                     settings, and e.g. an LM's remat: "off" | "whole" | "per_layer")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from pdc.models.base import CleanPass, Params, Site, Target
from pdc.models.loading import WeightsError
from pdc.models.sites import decomposed_of, sites_of
from pdc.targets import family
from pdc.targets.base import TargetShape

DTYPES = {"f32": jnp.float32, "bf16": jnp.bfloat16, "f16": jnp.float16}


def dtype_of(value: Any) -> Any:
    """A spec dtype name ("bf16") or a dtype → the jnp dtype."""
    return DTYPES[value] if isinstance(value, str) else value


def build_target(shape: TargetShape, decomposed_paths: Sequence[str], **options: Any) -> Target:
    """The JAX model of `shape` with `decomposed_paths` decomposed (kind → layers in
    canonical order). The shape's resolved forward settings (`shape.forward`) are the
    defaults of `options`. Unknown options are an error, not ignored."""
    options = {**shape.forward, **options}
    sites, decomposed = sites_of(shape), decomposed_of(shape, decomposed_paths)
    dtype = dtype_of(options.pop("compute_dtype", jnp.float32))
    model: Target = family(shape.family).jax().build(shape, sites, decomposed, dtype, options)
    if options:
        raise TypeError(f"unknown option(s) for a {shape.family} target: {', '.join(sorted(options))}")
    return model


def load_params(target: Target, path: str | Path, dtype: Any = None) -> Params:
    """The target's frozen weights from `path` as JAX arrays (LMs: in `dtype` if given,
    else as stored). Raises `WeightsError` with a one-line message."""
    host = family(target.family).jax().load(target, path, None if dtype is None else dtype_of(dtype))
    return jax.tree.map(jnp.asarray, host)


__all__ = ["CleanPass", "Site", "Target", "WeightsError", "build_target", "dtype_of", "load_params"]
