"""The JAX half of target family `gpt2`: GPT-2 (HF `GPT2LMHeadModel`) as a `Target`, its
safetensors loader and writer, and its `FamilyRuntime` (pretraining: the shared next-token
recipe; pretrained weights are written as `save_pretrained` writes them).

    x = wte[tokens] + wpe[positions]
    per block:  h = LN_1(x);  q|k|v = h @ c_attn + b;  x += attn(q, k, v) @ attn.c_proj + b
                h = LN_2(x);  x += gelu(h @ c_fc + b) @ mlp.c_proj + b
    logits = LN_f(x) @ wteᵀ                                          (the head is tied)

LayerNorms have biases and are computed in fp32; attention is causal, scaled by 1/√head_dim
(`scale_attn_weights`); GELU is the tanh approximation (`gelu_new`, `gelu_pytorch_tanh`) or
the exact one (`gelu`). Every site is one matrix of the module tree `pdc.targets.gpt2` names;
a decomposed site runs `site_out` and its bias is added after it, frozen. The fused c_attn is
held as its three column blocks (kinds c_attn_q/k/v), split when loaded.

Layers run under `lax.scan` in segments of equal decomposed kinds, as the Llama target does
(pdc/targets/llama/model.py: the same remat settings, the same `Residual` start at the first
decomposed layer, frozen weights read per layer by dynamic index).

Params (right-multiplication `[in, out]` as Conv1D stores it, layers stacked):
    wte [vocab, n_embd]; wpe [n_positions, n_embd]; layers.<kind> [L, d_in, d_out];
    biases.<kind> [L, d_out]; norms.ln_{1,2}.{weight,bias} [L, n_embd]; ln_f.{weight,bias} [n_embd]
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from safetensors.numpy import save_file

from pdc.decomp.attention import attend
from pdc.decomp.components import Factors, SiteMask
from pdc.decomp.head import Head
from pdc.decomp.pins import pin_batch
from pdc.inputs.checkpoint import SINGLE, Checkpoint
from pdc.models.base import CleanPass, Params, Residual, Site
from pdc.models.scan import (SiteFn, first_decomposed, masked_forward, masked_site, recording_site, scan_clean,
                             scan_masked)
from pdc.models.sites import MaskFields
from pdc.registry.runtime import RECON_FORWARDS, ReconForwards
from pdc.targets.base import FamilyRuntime, TargetShape
from pdc.targets.gpt2 import (ACTIVATIONS, ATTN_PARTS, NAME, hf_entries, param_shapes, prefix_of, stored_shape,
                              tolerated)

Array = jax.Array


@dataclass(frozen=True)
class Gpt2Config:
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    positions: int
    layer_norm_epsilon: float = 1e-5
    activation_function: str = "gelu_new"

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @classmethod
    def of(cls, shape: TargetShape, layer_norm_epsilon: float, activation_function: str) -> Gpt2Config:
        d = shape.dims
        if activation_function not in ACTIVATIONS:
            raise ValueError(f"activation_function must be one of {', '.join(ACTIVATIONS)}, "
                             f"found {activation_function!r}")
        return cls(d["vocab"], d["hidden"], d["intermediate"], d["layers"], d["heads"], d["positions"],
                   float(layer_norm_epsilon), activation_function)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The params by dotted path (the IR's frozen tensors without `target.`)."""
        return param_shapes(self.vocab, self.hidden, self.intermediate, self.layers, self.positions)


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """`{"a.b": x}` → `{"a": {"b": x}}`."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, last = path.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return out


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


# ---- the block ----------------------------------------------------------------------------

def layer_norm(x: Array, weight: Array, bias: Array, eps: float) -> Array:
    """Normalised in fp32, cast back before the affine (HF's LayerNorm in f32 is the same)."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    centred = x32 - mean
    var = jnp.mean(centred * centred, axis=-1, keepdims=True)
    return (centred * jax.lax.rsqrt(var + eps)).astype(x.dtype) * weight.astype(x.dtype) + bias.astype(x.dtype)


def block(cfg: Gpt2Config, x: Array, layer: Mapping[str, Any], site: SiteFn) -> Array:
    """One pre-LN block; each matrix goes through `site`, its bias added after, frozen."""
    w, b, norms = layer["layers"], layer["biases"], layer["norms"]
    linear = lambda kind, h: site(kind, h, w[kind]) + b[kind]  # noqa: E731
    x = pin_batch(x)
    h = layer_norm(x, norms["ln_1"]["weight"], norms["ln_1"]["bias"], cfg.layer_norm_epsilon)
    B, T, _ = h.shape
    q, k, v = (linear(kind, h).reshape(B, T, cfg.heads, cfg.head_dim) for kind in ATTN_PARTS)
    x = x + linear("attn_c_proj", attend(q, k, v, causal=True).reshape(B, T, cfg.hidden))
    h = layer_norm(x, norms["ln_2"]["weight"], norms["ln_2"]["bias"], cfg.layer_norm_epsilon)
    act = jax.nn.gelu(linear("c_fc", h), approximate=ACTIVATIONS[cfg.activation_function])
    return pin_batch(x + linear("mlp_c_proj", act))


# ---- the target -----------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Gpt2:
    """A GPT-2 `Target`. `remat` as for Llama ("off", "matmuls", "per_layer", "whole");
    `compute_dtype`: weights, V/U and activations are cast to it; logits come back in fp32."""

    sites: tuple[Site, ...]
    decomposed: Mapping[str, tuple[int, ...]]
    config: Gpt2Config
    remat: ReconForwards = "off"
    compute_dtype: Any = jnp.float32
    family: str = NAME

    def init_params(self, key: Array) -> Params:
        """GPT-2's initialisation: matrices and embeddings N(0, 0.02²), the residual
        projections (c_proj) further scaled by 1/√(2·layers), biases 0, norms 1."""
        shapes = self.config.param_shapes()
        keys = iter(jax.random.split(key, len(shapes)))
        residual = 0.02 / math.sqrt(2 * self.config.layers)
        flat = {}
        for path, shape in shapes.items():
            k = next(keys)
            if path.startswith(("layers.", "wte", "wpe")):
                std = residual if path.endswith("c_proj") else 0.02
                flat[path] = jax.random.normal(k, shape) * std
            else:
                flat[path] = jnp.ones(shape) if path.endswith("weight") else jnp.zeros(shape)
        return nest(flat)

    def weights(self, params: Params) -> dict[str, Array]:
        return {kind: jnp.take(params["layers"][kind], np.asarray(layers), axis=0)
                for kind, layers in self.decomposed.items()}

    @property
    def first_decomposed(self) -> int:
        """The first layer holding a decomposed site: masked forwards start there."""
        return first_decomposed(self.decomposed)

    def head(self, params: Params) -> Head:
        """The tied head: the embedding `[vocab, n_embd]` as stored."""
        return Head(params["wte"].astype(self.compute_dtype), vocab_major=True)

    def clean(self, params: Params, batch: Array, hidden: bool = False) -> CleanPass:
        """All-frozen forward, segmented by the decomposed kinds, recording each decomposed
        site's input. `hidden`: the output is LN_f's, not the logits (`head` maps it)."""
        x = self._embed(params, batch)
        x, blocks, site_inputs, prefix = scan_clean(x, self.config.layers, self.decomposed,
                                                    lambda kinds: self._clean_body(params, kinds))
        return CleanPass(self._output(params, x, hidden), site_inputs, blocks, prefix)

    def forward(self, params: Params, batch: Array | Residual, components: Mapping[str, Factors],
                masks: Mapping[str, SiteMask], hidden: bool = False) -> Array:
        """The masked forward's logits, or with `hidden` LN_f's output."""
        return masked_forward(self._masked, self.remat, self.decomposed, params, batch, components, masks, hidden)

    # -- internals --

    def _embed(self, params: Params, tokens: Array) -> Array:
        if tokens.shape[-1] > self.config.positions:  # jnp.take would clamp to the last row silently
            raise ValueError(f"{tokens.shape[-1]} tokens exceed the {self.config.positions} learned positions")
        positions = jnp.arange(tokens.shape[-1])
        x = jnp.take(params["wte"], tokens, axis=0) + jnp.take(params["wpe"], positions, axis=0)
        return x.astype(self.compute_dtype)

    def _output(self, params: Params, x: Array, hidden: bool) -> Array:
        h = layer_norm(x, params["ln_f"]["weight"], params["ln_f"]["bias"], self.config.layer_norm_epsilon)
        return h if hidden else self.head(params).logits(h)

    def _layer(self, params: Params, layer: Array) -> dict[str, Any]:
        """One layer's frozen matrices, biases and norms, in compute dtype."""
        take = lambda a: jax.lax.dynamic_index_in_dim(a, layer, keepdims=False).astype(self.compute_dtype)  # noqa: E731
        return {part: jax.tree.map(take, params[part]) for part in ("layers", "biases", "norms")}

    def _masked(self, params: Params, batch: Array | Residual, factors: Mapping[str, Factors],
                fields: Mapping[str, MaskFields], hidden: bool = False) -> Array:
        if isinstance(batch, Residual):
            x, begin = batch.x, self.first_decomposed
        else:
            x, begin = self._embed(params, batch), 0
        x = scan_masked(x, begin, self.config.layers, self.decomposed, factors, fields, self._masked_body(params),
                        self.remat)
        return self._output(params, x, hidden)

    def _masked_body(self, params: Params) -> Callable:
        cfg, dtype = self.config, self.compute_dtype

        def body(x: Array, xs: tuple[Array, dict[str, Factors], dict[str, MaskFields]]) -> tuple[Array, None]:
            layer, factors, fields = xs
            return block(cfg, x, self._layer(params, layer), masked_site(factors, fields, dtype)), None

        return body

    def _clean_body(self, params: Params, record: tuple[str, ...]) -> Callable:
        cfg = self.config

        def body(x: Array, layer: Array) -> tuple[Array, tuple[Array, dict[str, Array]]]:
            taps: dict[str, Array] = {}
            return block(cfg, x, self._layer(params, layer), recording_site(record, taps)), (x, taps)

        return body


# ---- reading and writing HF checkpoints -------------------------------------------------------

def load_gpt2(path: str | Path, cfg: Gpt2Config, dtype: Any = None) -> dict[str, Any]:
    """An HF `GPT2LMHeadModel` safetensors checkpoint (with or without the `transformer.`
    prefix, tied head omitted or present) → the params tree (NumPy, in `dtype` if given, else
    as stored). c_attn is split into its q | k | v column blocks. Raises `WeightsError`."""
    checkpoint = Checkpoint.open(path)
    prefix, shapes = prefix_of(checkpoint), cfg.param_shapes()
    parts: dict[str, list[np.ndarray]] = {}
    used = set()
    for entry in hf_entries(cfg.layers):
        used.add(prefix + entry.hf)
        value = checkpoint.get(prefix + entry.hf, stored_shape(entry, shapes))
        if dtype is not None:
            value = value.astype(np.dtype(dtype))
        if entry.path.endswith(".c_attn"):
            group = entry.path.split(".")[0]
            for kind, block_ in zip(ATTN_PARTS, np.split(value, 3, axis=-1)):
                parts.setdefault(f"{group}.{kind}", []).append(np.ascontiguousarray(block_))
        else:
            parts.setdefault(entry.path, []).append(value)
    if checkpoint.has("lm_head.weight"):
        checkpoint.get("lm_head.weight", shapes["wte"])  # a tied head must still fit
    checkpoint.check_unexpected(used, tolerated(prefix))
    flat = {p: np.stack(v) if p.split(".")[0] in ("layers", "biases", "norms") else np.ascontiguousarray(v[0])
            for p, v in parts.items()}
    return nest(flat)


def hf_tensors(params: Mapping[str, Any], prefix: str = "transformer.") -> dict[str, np.ndarray]:
    """The params tree as HF-named `GPT2LMHeadModel` tensors (c_attn fused again)."""
    flat = {k: np.asarray(v) for k, v in flatten(params).items()}
    out = {}
    for entry in hf_entries(flat["layers.c_fc"].shape[0]):
        if entry.path.endswith(".c_attn"):
            group = entry.path.split(".")[0]
            value = np.concatenate([flat[f"{group}.{kind}"][entry.layer] for kind in ATTN_PARTS], axis=-1)
        else:
            value = flat[entry.path] if entry.layer is None else flat[entry.path][entry.layer]
        out[prefix + entry.hf] = np.ascontiguousarray(value)
    return out


def hf_config(cfg: Gpt2Config) -> dict[str, Any]:
    """A `GPT2Config`-style config.json for `cfg`."""
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": cfg.vocab,
            "n_embd": cfg.hidden, "n_layer": cfg.layers, "n_head": cfg.heads, "n_inner": cfg.intermediate,
            "n_positions": cfg.positions, "n_ctx": cfg.positions, "layer_norm_epsilon": cfg.layer_norm_epsilon,
            "activation_function": cfg.activation_function, "tie_word_embeddings": True}


def save_gpt2(params: Mapping[str, Any], directory: str | Path, config: Mapping[str, Any] | None = None,
              prefix: str = "transformer.") -> Path:
    """Write `model.safetensors` as `save_pretrained` does (`transformer.` names, tied head
    omitted; `prefix=""` gives the hub `gpt2` files' names) and `config.json` when given."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (directory / "config.json").write_text(json.dumps(dict(config), indent=2) + "\n")
    save_file(hf_tensors(params, prefix), str(directory / SINGLE), metadata={"format": "pt"})
    return directory / SINGLE


# ---- the family's runtime -----------------------------------------------------------------------

def build(shape: TargetShape, sites: tuple[Site, ...], decomposed: dict[str, tuple[int, ...]], dtype: Any,
          options: dict[str, Any]) -> Gpt2:
    config = Gpt2Config.of(shape, options.pop("layer_norm_epsilon"), options.pop("activation_function"))
    remat = options.pop("remat", "off")
    if remat not in RECON_FORWARDS:
        raise ValueError(f"remat must be one of {', '.join(RECON_FORWARDS)}, found {remat!r}")
    return Gpt2(sites, decomposed, config, remat, dtype)


def load(target: Gpt2, path: str | Path, dtype: Any = None) -> dict[str, Any]:
    return load_gpt2(path, target.config, dtype)


def save(target: Gpt2, params: Any, path: Path) -> None:
    host = jax.tree.map(lambda a: np.asarray(a, np.float32), params)
    save_gpt2(host, path, hf_config(target.config))


RUNTIME = FamilyRuntime(build, load, save)
