"""JAX target models behind the `Target` interface (pdc/models/base.py).

`build_target` turns a JAX-free `TargetShape` (pdc/targets) and the decomposed site paths
into a model; `load_params` reads its frozen weights. Options (all optional):

    every family     compute_dtype: "f32" | "bf16" | "f16" | a jnp dtype  (default f32)
    tms              tied: bool (default True; only affects loading and init)
    resid_mlp        activation: "relu" | "gelu"; embedding: "random" | "identity" (init only)
    gpt2             layer_norm_epsilon, activation_function (required: `TargetShape.forward` holds them),
                     remat: as llama
    llama/simple_mlp rope_theta, rms_norm_eps (required: `TargetShape.forward` holds them),
                     rope_scaling: RopeScaling | HF `rope_scaling` dict | None,
                     remat: "off" | "whole" | "per_layer"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from pdc.models.base import CleanPass, Params, Site, Target
from pdc.models.gpt2 import Gpt2, Gpt2Config, load_gpt2
from pdc.models.llama import Llama, LlamaConfig, RopeScaling
from pdc.registry.runtime import RECON_FORWARDS
from pdc.models.loading import WeightsError, hf_config, hf_options, load_llama, save_hf
from pdc.models.resid_mlp import ResidMlp, load_resid_mlp
from pdc.models.sites import decomposed_of, sites_of
from pdc.models.tms import Tms, load_tms
from pdc.targets.base import TargetShape

DTYPES = {"f32": jnp.float32, "bf16": jnp.bfloat16, "f16": jnp.float16}
LM_FAMILIES = ("llama", "simple_mlp")


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
    if shape.family == "tms":
        model: Target = _tms(shape, sites, decomposed, dtype, options)
    elif shape.family == "resid_mlp":
        model = _resid_mlp(shape, sites, decomposed, dtype, options)
    elif shape.family in LM_FAMILIES:
        model = _llama(shape, sites, decomposed, dtype, options)
    elif shape.family == "gpt2":
        model = _gpt2(shape, sites, decomposed, dtype, options)
    else:
        raise ValueError(f"unknown target family `{shape.family}`")
    if options:
        raise TypeError(f"unknown option(s) for a {shape.family} target: {', '.join(sorted(options))}")
    return model


def _tms(shape: TargetShape, sites: tuple[Site, ...], decomposed: dict[str, tuple[int, ...]], dtype: Any,
         options: dict[str, Any]) -> Tms:
    hidden_layers = sum(1 for s in sites if s.kind == "hidden_layers")
    return Tms(sites, decomposed, shape.dims["features"], shape.dims["hidden"], hidden_layers,
               bool(options.pop("tied", True)), dtype)


def _resid_mlp(shape: TargetShape, sites: tuple[Site, ...], decomposed: dict[str, tuple[int, ...]], dtype: Any,
               options: dict[str, Any]) -> ResidMlp:
    bias = any(t.path == "target.biases.mlp_in" for t in shape.tensors)
    d = shape.dims
    return ResidMlp(sites, decomposed, d["features"], d["d_embed"], d["d_mlp"], shape.n_layers, bias,
                    options.pop("activation", "relu"), options.pop("embedding", "random"), dtype)


def _llama(shape: TargetShape, sites: tuple[Site, ...], decomposed: dict[str, tuple[int, ...]], dtype: Any,
           options: dict[str, Any]) -> Llama:
    scaling = options.pop("rope_scaling", None)
    if isinstance(scaling, Mapping):
        scaling = RopeScaling.from_hf(scaling)
    d = shape.dims
    config = LlamaConfig(d["vocab"], d["hidden"], d["intermediate"], d["layers"], d["heads"], d["kv_heads"],
                         d["head_dim"], tied=not any(t.path == "target.lm_head" for t in shape.tensors),
                         simple_mlp=shape.family == "simple_mlp",
                         rope_theta=float(options.pop("rope_theta")), rms_norm_eps=float(options.pop("rms_norm_eps")),
                         rope_scaling=scaling)
    remat = options.pop("remat", "off")
    if remat not in RECON_FORWARDS:
        raise ValueError(f"remat must be one of {', '.join(RECON_FORWARDS)}, found {remat!r}")
    return Llama(sites, decomposed, config, remat, dtype, shape.family)


def _gpt2(shape: TargetShape, sites: tuple[Site, ...], decomposed: dict[str, tuple[int, ...]], dtype: Any,
          options: dict[str, Any]) -> Gpt2:
    config = Gpt2Config.of(shape, options.pop("layer_norm_epsilon"), options.pop("activation_function"))
    remat = options.pop("remat", "off")
    if remat not in RECON_FORWARDS:
        raise ValueError(f"remat must be one of {', '.join(RECON_FORWARDS)}, found {remat!r}")
    return Gpt2(sites, decomposed, config, remat, dtype)


def load_params(target: Target, path: str | Path, dtype: Any = None) -> Params:
    """The target's frozen weights from `path` as JAX arrays (LMs: in `dtype` if given,
    else as stored). Raises `WeightsError` with a one-line message."""
    if isinstance(target, Tms):
        host = load_tms(path, target)
    elif isinstance(target, ResidMlp):
        host = load_resid_mlp(path, target)
    elif isinstance(target, Llama):
        host = load_llama(path, target.config, None if dtype is None else dtype_of(dtype))
    elif isinstance(target, Gpt2):
        host = load_gpt2(path, target.config, None if dtype is None else dtype_of(dtype))
    else:
        raise TypeError(f"no loader for {type(target).__name__}")
    return jax.tree.map(jnp.asarray, host)


__all__ = ["CleanPass", "Gpt2", "Gpt2Config", "Llama", "LlamaConfig", "ResidMlp", "RopeScaling", "Site", "Target", "Tms", "WeightsError",
           "build_target", "dtype_of", "hf_config", "hf_options", "load_params", "save_hf"]
