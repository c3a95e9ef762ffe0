"""Llama-family targets (SPD_ALGORITHM.md §8.3): Llama (SwiGLU MLP, optional Llama-3 RoPE
scaling) and LlamaSimpleMLP (GPT-2 module tree `h.{i}`, `c_fc → GELU(tanh) → down_proj`,
plain RoPE, tied embeddings).

Layers run under `lax.scan` so compile time stays flat in depth (masked forwards that save
per-layer residuals, remat `off`/`matmuls`, unroll theirs: see `pdc.models.scan.remat_body`). The layers are split
into maximal contiguous segments with the same set of decomposed kinds; each segment is
one scan whose `xs` carry the component and mask slices of its live kinds (decomposed
kinds with masks in this forward). Segments without a live kind scan the plain frozen
block. The segmentation does not depend on which kinds are live, so every forward has
the clean pass's loop structure and (jitted) a frozen forward reproduces it bit for bit.

Frozen weights stay whole and each scan step reads its layer by dynamic index: slicing
them per segment would copy them (a slice feeding a while loop is materialised),
doubling frozen-weight memory on an 8B target.

Params (right-multiplication, layers stacked):
    embed [vocab, hidden]; layers.<kind> [n_layers, d_in, d_out];
    norms.attn / norms.mlp [n_layers, hidden]; final_norm [hidden]; lm_head [hidden, vocab] (untied only)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from pdc.decomp.components import Factors, SiteMask
from pdc.decomp.head import Head
from pdc.decomp.pins import pin_batch
from pdc.decomp.attention import attend
from pdc.models.base import CleanPass, Params, Residual, Site
from pdc.models.scan import (FirstLayer, MaskedXs, SiteFn, first_decomposed, layer_xs, masked_forward, masked_site,
                             recording_site, scan_clean, scan_layers, scan_masked)
from pdc.registry.runtime import ReconForwards
from pdc.models.sites import MaskFields

Array = jax.Array
Remat = ReconForwards

LLAMA_KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SIMPLE_MLP_KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "c_fc", "down_proj")


@dataclass(frozen=True)
class RopeScaling:
    """RoPE frequency rescaling: Llama-3's (`rope_type = "llama3"`) or linear position
    interpolation (`"linear"`: every frequency divided by `factor`)."""

    factor: float
    low_freq_factor: float = 1.0
    high_freq_factor: float = 1.0
    original_max_positions: int = 0
    kind: str = "llama3"

    @classmethod
    def from_hf(cls, config: Mapping[str, Any] | None) -> RopeScaling | None:
        """Parse an HF `rope_scaling` / `rope_parameters` dict; `None` or type "default" means
        plain RoPE. Other types (dynamic, yarn, ...) are refused rather than silently ignored
        (`pdc.targets.llama.forward_options` reports them as diagnostics first)."""
        if config is None:
            return None
        kind = config.get("rope_type", config.get("type", "default"))
        if kind == "default":
            return None
        if kind == "linear":
            return cls(float(config["factor"]), kind="linear")
        if kind != "llama3":
            raise ValueError(f"rope_scaling type `{kind}` is not supported (default, linear, llama3)")
        return cls(float(config["factor"]), float(config["low_freq_factor"]), float(config["high_freq_factor"]),
                   int(config["original_max_position_embeddings"]))


@dataclass(frozen=True)
class LlamaConfig:
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool
    simple_mlp: bool
    rope_theta: float
    rms_norm_eps: float
    rope_scaling: RopeScaling | None = None

    @property
    def kinds(self) -> tuple[str, ...]:
        """The block's matrices in computation (canonical) order."""
        return SIMPLE_MLP_KINDS if self.simple_mlp else LLAMA_KINDS

    def kind_shape(self, kind: str) -> tuple[int, int]:
        """(d_in, d_out) of one layer's matrix of `kind`."""
        q, kv, h, i = self.heads * self.head_dim, self.kv_heads * self.head_dim, self.hidden, self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h), "gate_proj": (h, i),
                "up_proj": (h, i), "c_fc": (h, i), "down_proj": (i, h)}[kind]


def param_shapes(cfg: LlamaConfig) -> dict[str, Any]:
    """The params pytree's shapes (the layout loaders and `init_params` produce)."""
    n = cfg.layers
    shapes: dict[str, Any] = {
        "embed": (cfg.vocab, cfg.hidden),
        "layers": {k: (n, *cfg.kind_shape(k)) for k in cfg.kinds},
        "norms": {"attn": (n, cfg.hidden), "mlp": (n, cfg.hidden)},
        "final_norm": (cfg.hidden,),
    }
    if not cfg.tied:
        shapes["lm_head"] = (cfg.hidden, cfg.vocab)
    return shapes


# ---- RoPE -------------------------------------------------------------------------------

def inv_freq(cfg: LlamaConfig) -> np.ndarray:
    """RoPE inverse frequencies in float64; linear scaling divides them by `factor`, Llama-3's:
    wavelengths above `original / low_freq_factor` are divided by `factor`, those below
    `original / high_freq_factor` kept, and the band between interpolated smoothly."""
    d = cfg.head_dim
    base = 1.0 / cfg.rope_theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    s = cfg.rope_scaling
    if s is None:
        return base
    if s.kind == "linear":
        return base / s.factor
    wavelen = 2 * math.pi / base
    low_wavelen = s.original_max_positions / s.low_freq_factor
    high_wavelen = s.original_max_positions / s.high_freq_factor
    scaled = np.where(wavelen > low_wavelen, base / s.factor, base)
    smooth = (s.original_max_positions / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
    smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(medium, smoothed, scaled)


@functools.lru_cache(maxsize=32)
def rope_tables(cfg: LlamaConfig, length: int) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin [T, head_dim] (halves repeated, rotate-half layout), computed in float64
    on the host: they are constants of the graph (the `inv_freq` buffer gets no gradient)."""
    angles = np.arange(length, dtype=np.float64)[:, None] * inv_freq(cfg)[None, :]
    angles = np.concatenate([angles, angles], axis=-1)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def apply_rope(x: Array, cos: Array, sin: Array) -> Array:
    """x [B, T, heads, head_dim] rotated per position: x cos + rotate_half(x) sin."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[:, None, :].astype(x.dtype) + rotated * sin[:, None, :].astype(x.dtype)


# ---- the block ----------------------------------------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def rms_norm(x: Array, weight: Array, eps: float) -> Array:
    """Normalised in fp32 (as HF does), then cast back before the weight multiplies. Its
    backward keeps the input, the weight and 1/rms (as a fused norm kernel does), not the
    fp32 copies autodiff would: in a masked forward without remat that is two fp32
    [tokens, hidden] stacks per layer less (llama8b_l18_reference, strict `off`, 8
    sequences per device with SwiGLU's below: 92.6 → 70.5 GiB per H100)."""
    return _rms_norm_fwd(x, weight, eps)[0]


def _rms_norm_fwd(x: Array, weight: Array, eps: float) -> tuple[Array, tuple[Array, Array, Array]]:
    x32 = x.astype(jnp.float32)
    rstd = jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return (x32 * rstd).astype(x.dtype) * weight.astype(x.dtype), (x, weight, rstd)


def _rms_norm_bwd(eps: float, saved: tuple[Array, Array, Array], dy: Array) -> tuple[Array, Array]:
    x, weight, rstd = saved
    normed = x.astype(jnp.float32) * rstd
    dn = dy.astype(jnp.float32) * weight.astype(jnp.float32)
    dx = rstd * (dn - normed * jnp.mean(dn * normed, axis=-1, keepdims=True))
    dw = jnp.sum((dy.astype(jnp.float32) * normed).reshape(-1, normed.shape[-1]), axis=0)
    return dx.astype(x.dtype), dw.astype(weight.dtype)


rms_norm.defvjp(_rms_norm_fwd, _rms_norm_bwd)


@jax.custom_vjp
def swiglu(gate: Array, up: Array) -> Array:
    """silu(gate) · up, whose backward keeps only `gate` and `up` and recomputes the sigmoid
    (in fp32), as a fused SwiGLU kernel does; autodiff would keep the sigmoid, silu and
    their product too: three more [tokens, intermediate] tensors per layer."""
    return jax.nn.silu(gate) * up


def _swiglu_fwd(gate: Array, up: Array) -> tuple[Array, tuple[Array, Array]]:
    return swiglu(gate, up), (gate, up)


def _swiglu_bwd(saved: tuple[Array, Array], dy: Array) -> tuple[Array, Array]:
    gate, up = saved
    g = gate.astype(jnp.float32)
    sig = jax.nn.sigmoid(g)
    dy32 = dy.astype(jnp.float32)
    return ((dy32 * up.astype(jnp.float32) * sig * (1 + g * (1 - sig))).astype(gate.dtype),
            (dy32 * g * sig).astype(up.dtype))


swiglu.defvjp(_swiglu_fwd, _swiglu_bwd)


def attention(cfg: LlamaConfig, q: Array, k: Array, v: Array, cos: Array, sin: Array) -> Array:
    """Causal GQA attention on projected q/k/v [B, T, heads·head_dim]; query head h reads
    key/value head h // (heads / kv_heads). Scores and softmax in fp32; cuDNN's fused
    attention when compiled for a GPU (`pdc.decomp.attention`)."""
    B, T, _ = q.shape
    q = apply_rope(q.reshape(B, T, cfg.heads, cfg.head_dim), cos, sin)
    k = apply_rope(k.reshape(B, T, cfg.kv_heads, cfg.head_dim), cos, sin)
    v = v.reshape(B, T, cfg.kv_heads, cfg.head_dim)
    return attend(q, k, v, causal=True).reshape(B, T, cfg.heads * cfg.head_dim)


MLP_KINDS = frozenset({"gate_proj", "up_proj", "down_proj", "c_fc"})


def block(cfg: LlamaConfig, x: Array, weights: Mapping[str, Array], norms: Mapping[str, Array], site: SiteFn,
          cos: Array, sin: Array) -> Array:
    """One pre-norm block. Every matrix goes through `site`, so q/k/v are decomposed
    before RoPE, o_proj on the concatenated heads, down_proj on its MLP activation.
    The residual is pinned batch-sharded at the block boundary (no-op without a mesh)."""
    x = attention_half(cfg, x, weights, norms, site, cos, sin)
    return mlp_half(cfg, x, rms_norm(x, norms["mlp"], cfg.rms_norm_eps), weights, site)


def attention_half(cfg: LlamaConfig, x: Array, weights: Mapping[str, Array], norms: Mapping[str, Array],
                   site: SiteFn, cos: Array, sin: Array) -> Array:
    """The block up to its MLP: the residual after attention."""
    x = pin_batch(x)
    h = rms_norm(x, norms["attn"], cfg.rms_norm_eps)
    q, k, v = (site(kind, h, weights[kind]) for kind in ("q_proj", "k_proj", "v_proj"))
    return x + site("o_proj", attention(cfg, q, k, v, cos, sin), weights["o_proj"])


def mlp_half(cfg: LlamaConfig, x: Array, h: Array, weights: Mapping[str, Array], site: SiteFn) -> Array:
    """The block's MLP on `h` (the normed residual `x` after attention), added to `x`."""
    if cfg.simple_mlp:
        act = jax.nn.gelu(site("c_fc", h, weights["c_fc"]), approximate=True)
    else:
        act = swiglu(site("gate_proj", h, weights["gate_proj"]), site("up_proj", h, weights["up_proj"]))
    return pin_batch(x + site("down_proj", act, weights["down_proj"]))


# ---- the target -----------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Llama:
    """A Llama-family `Target`. `remat`: "per_layer" checkpoints the scan body, "matmuls"
    checkpoints it saving matmul outputs, "whole" the full masked forward. `compute_dtype`: weights, V/U and activations are cast to it
    for the forward; logits come back in fp32."""

    sites: tuple[Site, ...]
    decomposed: Mapping[str, tuple[int, ...]]
    config: LlamaConfig
    remat: Remat = "off"
    compute_dtype: Any = jnp.float32
    family: str = "llama"

    def init_params(self, key: Array) -> Params:
        """Random weights: embeddings N(0, 0.02²); matrices N(0, 1/d_in), o_proj and
        down_proj further scaled by 1/√(2·layers) (residual-branch scaling); norms 1."""
        cfg, shapes = self.config, param_shapes(self.config)
        keys = jax.random.split(key, len(cfg.kinds) + 2)
        residual = {"o_proj", "down_proj"}

        def matrix(k: Array, kind: str) -> Array:
            shape = shapes["layers"][kind]
            std = shape[1] ** -0.5 / (math.sqrt(2 * cfg.layers) if kind in residual else 1.0)
            return jax.random.normal(k, shape) * std

        params: dict[str, Any] = {
            "embed": jax.random.normal(keys[0], shapes["embed"]) * 0.02,
            "layers": {kind: matrix(k, kind) for k, kind in zip(keys[2:], cfg.kinds)},
            "norms": {n: jnp.ones(s) for n, s in shapes["norms"].items()},
            "final_norm": jnp.ones(shapes["final_norm"]),
        }
        if not cfg.tied:
            params["lm_head"] = jax.random.normal(keys[1], shapes["lm_head"]) * cfg.hidden ** -0.5
        return params

    def weights(self, params: Params) -> dict[str, Array]:
        return {kind: jnp.take(params["layers"][kind], np.asarray(layers), axis=0)
                for kind, layers in self.decomposed.items()}

    def clean(self, params: Params, batch: Array, hidden: bool = False) -> CleanPass:
        """All-frozen forward, segmented by the decomposed kinds so each segment emits the
        inputs of exactly the sites it holds (no [n_layers, B, T, intermediate] stack).
        `hidden`: the output is the final normed residual, not the logits (`head` maps it)."""
        x = self._embed(params, batch)
        cos, sin = rope_tables(self.config, batch.shape[-1])
        first_layer = self._clean_first_layer(params, cos, sin) if self.starts_at_mlp else None
        x, blocks, site_inputs, prefix = scan_clean(x, self.config.layers, self.decomposed,
                                                    lambda kinds: self._clean_body(params, kinds, cos, sin),
                                                    first_layer)
        return CleanPass(self._output(params, x, hidden), site_inputs, blocks, prefix)

    @property
    def first_decomposed(self) -> int:
        """The first layer holding a decomposed site: masked forwards start there."""
        return first_decomposed(self.decomposed)

    @property
    def starts_at_mlp(self) -> bool:
        """Masked forwards start at the first decomposed layer's MLP: that layer decomposes
        no attention matrix, so its attention half is the clean pass's in every forward."""
        first = self.first_decomposed
        return all(kind in MLP_KINDS for kind, layers in self.decomposed.items() if first in layers)

    def forward(self, params: Params, batch: Array, components: Mapping[str, Factors],
                masks: Mapping[str, SiteMask], hidden: bool = False) -> Array:
        """The masked forward's logits, or with `hidden` its final normed residual."""
        return masked_forward(self._masked, self.remat, self.decomposed, params, batch, components, masks, hidden)

    def head(self, params: Params) -> Head:
        """The unembedding in compute dtype, as stored: `lm_head` [hidden, vocab], or for a
        tied model the embedding [vocab, hidden] itself (no transposed copy; `Head.logits`
        contracts its hidden axis in place): logits = `head.logits(hidden output)`."""
        if self.config.tied:
            return Head(params["embed"].astype(self.compute_dtype), vocab_major=True)
        return Head(params["lm_head"].astype(self.compute_dtype), vocab_major=False)

    # -- internals --

    def _embed(self, params: Params, tokens: Array) -> Array:
        return jnp.take(params["embed"], tokens, axis=0).astype(self.compute_dtype)

    def _output(self, params: Params, x: Array, hidden: bool) -> Array:
        h = rms_norm(x, params["final_norm"], self.config.rms_norm_eps)
        return h if hidden else self.head(params).logits(h)

    def _layer(self, params: Params, layer: Array) -> tuple[dict[str, Array], dict[str, Array]]:
        """One layer's frozen matrices (in compute dtype) and norm weights."""
        take = lambda a: jax.lax.dynamic_index_in_dim(a, layer, keepdims=False)  # noqa: E731
        weights = {k: take(w).astype(self.compute_dtype) for k, w in params["layers"].items()}
        return weights, {k: take(n) for k, n in params["norms"].items()}

    def _masked(self, params: Params, batch: Array | Residual, factors: Mapping[str, Factors],
                fields: Mapping[str, MaskFields], hidden: bool = False) -> Array:
        """From the tokens, or from the clean pass's `Residual` at the first decomposed layer
        (the frozen prefix is then not run again)."""
        if isinstance(batch, Residual):
            x, begin = batch.x, self.first_decomposed
            if batch.mlp_input is not None:  # resumed at the first decomposed layer's MLP
                x = self._masked_mlp_half(params, batch, factors, fields)
                begin += 1
        else:
            x, begin = self._embed(params, batch), 0
        cos, sin = rope_tables(self.config, x.shape[1])
        x = scan_masked(x, begin, self.config.layers, self.decomposed, factors, fields,
                        self._masked_body(params, cos, sin), self.remat)
        return self._output(params, x, hidden)

    def _masked_mlp_half(self, params: Params, start: Residual, factors: Mapping[str, Factors],
                         fields: Mapping[str, MaskFields]) -> Array:
        """The first decomposed layer's MLP from the clean pass's mid-layer `Residual`: a
        one-layer scan under the spec's remat, like any masked layer (its frozen weights are
        then read and gathered as the layer scan reads them, not held from the forward
        through the backward: llama8b_l18_reference 4/off, 53.55 → 49.30 GiB per H100)."""
        first = self.first_decomposed
        cfg, dtype = self.config, self.compute_dtype
        kinds = tuple(k for k in factors if first in self.decomposed[k])

        def body(carry: tuple[Array, Array], xs: MaskedXs) -> tuple[tuple[Array, Array], None]:
            (x, h), (layer, layer_factors, layer_fields) = carry, xs
            weights, _ = self._layer(params, layer)
            return (mlp_half(cfg, x, h, weights, masked_site(layer_factors, layer_fields, dtype)), h), None

        xs = layer_xs(first, first + 1, kinds, self.decomposed, factors, fields)
        (x, _), _ = scan_layers(body, (start.x, start.mlp_input), xs, self.remat)
        return x

    def _clean_first_layer(self, params: Params, cos: np.ndarray, sin: np.ndarray) -> FirstLayer:
        """The first decomposed layer of the clean pass, run whole, with the `Residual` after
        its attention (and its MLP's normed input) that masked forwards resume from."""
        cfg, first = self.config, self.first_decomposed

        def layer(x: Array, record: tuple[str, ...]) -> tuple[Array, dict[str, Array], Residual]:
            weights, norms = self._layer(params, jnp.asarray(first))
            taps: dict[str, Array] = {}
            site = recording_site(record, taps)
            x = attention_half(cfg, x, weights, norms, site, cos, sin)
            h = rms_norm(x, norms["mlp"], cfg.rms_norm_eps)
            return mlp_half(cfg, x, h, weights, site), taps, Residual(x, h)

        return layer

    def _masked_body(self, params: Params, cos: np.ndarray, sin: np.ndarray) -> Callable:
        cfg, dtype = self.config, self.compute_dtype

        def body(x: Array, xs: tuple[Array, dict[str, Factors], dict[str, MaskFields]]) -> tuple[Array, None]:
            layer, factors, fields = xs
            weights, norms = self._layer(params, layer)
            return block(cfg, x, weights, norms, masked_site(factors, fields, dtype), cos, sin), None

        return body

    def _clean_body(self, params: Params, record: tuple[str, ...], cos: np.ndarray, sin: np.ndarray) -> Callable:
        cfg = self.config

        def body(x: Array, layer: Array) -> tuple[Array, tuple[Array, dict[str, Array]]]:
            weights, norms = self._layer(params, layer)
            taps: dict[str, Array] = {}
            return block(cfg, x, weights, norms, recording_site(record, taps), cos, sin), (x, taps)

        return body
