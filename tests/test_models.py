"""The JAX target models against independent NumPy float64 forwards, the HF loader, and
the masked-forward invariants of SPD_ALGORITHM.md §2 (non-live = frozen, route False =
frozen, all-ones masks with delta reproduce clean, scan = unrolled loop)."""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from pdc.decomp.components import Factors, SiteMask, site_out
from pdc.models import WeightsError, build_target, load_params
from pdc.targets.llama.hf import hf_config, hf_options, save_hf
from pdc.models.scan import segments
from pdc.targets.llama.model import block, inv_freq, rms_norm, rope_tables
from pdc.targets.llama import LlamaKeys
from pdc.targets.resid_mlp import ResidMlpKeys
from pdc.targets.simple_mlp import SimpleMlpKeys
from pdc.targets.tms import TmsKeys
from pdc.targets import llama as llama_shape
from pdc.targets import resid_mlp as resid_shape
from pdc.targets import tms as tms_shape

REPO = Path(__file__).resolve().parents[1]
C = 5
SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
           "original_max_position_embeddings": 64}
NpSite = Callable[[str, int, np.ndarray, np.ndarray], np.ndarray]


def rel(a: Any, b: Any) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def f64(tree: Any) -> Any:
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


# ---- cases --------------------------------------------------------------------------------

@dataclass
class Case:
    """One tiny target with its data; `clean` / `forward` are jitted once per case (the
    cases are cached), so tests sharing a case share compilations."""

    model: Any
    params: Any
    batch: Any
    lead: tuple[int, ...]

    def __post_init__(self) -> None:
        self.clean = jax.jit(self.model.clean)
        self.forward = jax.jit(self.model.forward)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def f32(a: np.ndarray) -> jax.Array:
    return jnp.asarray(a, jnp.float32)


def random_params(model: Any, seed: int) -> Any:
    """Random weights in the layout `init_params` gives (read off `eval_shape`, nothing
    compiled): norm weights 1 + N(0, 0.2²), embeddings N(0, 0.4²), biases N(0, 0.3²),
    matrices N(0, 1/d_in). Random hidden layers, not the identity, so layer order shows."""
    r = rng(seed)

    def leaf(path: tuple, spec: jax.ShapeDtypeStruct) -> jax.Array:
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        if "norm" in name:
            return f32(1.0 + 0.2 * r.normal(size=spec.shape))
        if name == "embed":
            return f32(0.4 * r.normal(size=spec.shape))
        if len(spec.shape) == 1 or name.startswith("biases"):
            return f32(0.3 * r.normal(size=spec.shape))
        return f32(r.normal(size=spec.shape) * spec.shape[-2] ** -0.5)

    return jax.tree_util.tree_map_with_path(leaf, jax.eval_shape(model.init_params, jax.random.key(0)))


@functools.cache
def tms_case() -> Case:
    shape = tms_shape.shape(TmsKeys(features=6, hidden=3, hidden_layers=2))
    model = build_target(shape, ["linear1", "hidden_layers.0", "hidden_layers.1", "linear2"])
    return Case(model, random_params(model, 0), f32(rng(2).uniform(size=(7, 6))), (7,))


@functools.cache
def resid_case() -> Case:
    shape = resid_shape.shape(ResidMlpKeys(features=6, d_embed=10, d_mlp=4, layers=2, bias=True, activation="gelu"))
    model = build_target(shape, ["layers.0.mlp_in", "layers.1.mlp_in", "layers.1.mlp_out"], activation="gelu")
    return Case(model, random_params(model, 3), f32(rng(4).uniform(-1.0, 1.0, size=(7, 6))), (7,))


LM_PATHS = {
    "llama": ("layers.0.self_attn.q_proj", "layers.0.self_attn.o_proj", "layers.1.self_attn.q_proj",
              "layers.1.mlp.down_proj", "layers.2.self_attn.k_proj", "layers.2.mlp.down_proj",
              "layers.2.mlp.gate_proj", "layers.2.self_attn.v_proj", "layers.0.mlp.up_proj"),
    "simple_mlp": ("h.0.attn.q_proj", "h.1.attn.v_proj", "h.1.mlp.c_fc", "h.2.mlp.down_proj", "h.2.attn.o_proj",
                   "h.0.attn.k_proj"),
}


def lm_shape(family: str, layers: int = 3) -> Any:
    dims = dict(vocab=48, hidden=32, intermediate=64, layers=layers, heads=4, kv_heads=2)
    if family == "simple_mlp":
        return llama_shape.shape(SimpleMlpKeys(**dims), Path("."), "simple_mlp")
    return llama_shape.shape(LlamaKeys(**dims), Path("."), "llama")


@functools.cache
def lm_case(family: str) -> Case:
    shape = lm_shape(family)
    extra = {"rope_theta": 10_000.0, "rope_scaling": SCALING} if family == "llama" else {}
    model = build_target(shape, LM_PATHS[family], **extra)
    tokens = jnp.asarray(rng(6).integers(0, 48, size=(2, 8)), jnp.int32)
    return Case(model, random_params(model, 5), tokens, (2, 8))


CASES: dict[str, Callable[[], Case]] = {"tms": tms_case, "resid_mlp": resid_case,
                                        "llama": lambda: lm_case("llama"), "simple_mlp": lambda: lm_case("simple_mlp")}


def components_of(model: Any, seed: int = 10) -> dict[str, Factors]:
    dims = {s.kind: (s.d_in, s.d_out) for s in model.sites}
    r, out = rng(seed), {}
    for kind, layers in model.decomposed.items():
        d_in, d_out = dims[kind]
        out[kind] = Factors(f32(r.normal(size=(len(layers), d_in, C)) * d_in ** -0.5),
                            f32(r.normal(size=(len(layers), C, d_out)) * C ** -0.5))
    return out


def random_masks(model: Any, lead: tuple[int, ...], seed: int = 20, route: bool = True) -> dict[str, SiteMask]:
    r, out = rng(seed), {}
    for kind, layers in model.decomposed.items():
        L = len(layers)
        out[kind] = SiteMask(f32(r.uniform(size=(L, *lead, C))), f32(r.uniform(size=(L, *lead))),
                             jnp.asarray(r.uniform(size=(L, *lead)) < 0.7) if route else None)
    return out


# ---- NumPy float64 references ------------------------------------------------------------------

def np_masked_site(model: Any, components: dict[str, Factors], masks: dict[str, SiteMask]) -> NpSite:
    comps, ms = f64(components), {k: (None if m.mask is None else np.asarray(m.mask, np.float64),
                                      None if m.delta is None else np.asarray(m.delta, np.float64),
                                      None if m.route is None else np.asarray(m.route)) for k, m in masks.items()}

    def site(kind: str, layer: int, x: np.ndarray, W: np.ndarray) -> np.ndarray:
        frozen = x @ W
        if kind not in ms or layer not in model.decomposed[kind]:
            return frozen
        j = model.decomposed[kind].index(layer)
        V, U = comps[kind][0][j], comps[kind][1][j]
        mask, delta, route = (None if f is None else f[j] for f in ms[kind])
        h = x @ V
        y = (h if mask is None else h * mask) @ U
        if delta is not None:
            y = y + delta[..., None] * (frozen - h @ U)
        return y if route is None else np.where(route[..., None], y, frozen)

    return site


def np_recording_site(taps: dict[tuple[str, int], np.ndarray]) -> NpSite:
    def site(kind: str, layer: int, x: np.ndarray, W: np.ndarray) -> np.ndarray:
        taps[(kind, layer)] = x
        return x @ W

    return site


def np_tms(params: Any, x: np.ndarray, site: NpSite) -> np.ndarray:
    p = f64(params)
    h = site("linear1", 0, np.asarray(x, np.float64), p["linear1"])
    for i in range(p["hidden_layers"].shape[0] if "hidden_layers" in p else 0):
        h = site("hidden_layers", i, h, p["hidden_layers"][i])
    return np.maximum(site("linear2", 0, h, p["linear2"]) + p["b2"], 0.0)


def np_gelu_erf(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def np_resid(params: Any, x: np.ndarray, site: NpSite, act: Callable = np_gelu_erf) -> np.ndarray:
    p = f64(params)
    r = np.asarray(x, np.float64) @ p["W_E"]
    for i in range(p["layers"]["mlp_in"].shape[0]):
        h = site("mlp_in", i, r, p["layers"]["mlp_in"][i])
        h = h + p["biases"]["mlp_in"][i] if "biases" in p else h
        out = site("mlp_out", i, act(h), p["layers"]["mlp_out"][i])
        r = r + (out + p["biases"]["mlp_out"][i] if "biases" in p else out)
    return r @ p["W_U"]


def np_inv_freq(theta: float, head_dim: int, scaling: dict | None) -> np.ndarray:
    """The HF Llama-3 rule written out per frequency."""
    freqs = [theta ** (-(2 * i) / head_dim) for i in range(head_dim // 2)]
    if scaling is None:
        return np.array(freqs)
    factor, lo, hi = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < old / hi:
            out.append(f)
        elif wavelen > old / lo:
            out.append(f / factor)
        else:
            s = (old / wavelen - lo) / (hi - lo)
            out.append((1 - s) * f / factor + s * f)
    return np.array(out)


def np_llama(cfg: Any, params: Any, tokens: np.ndarray, site: NpSite,
             scaling: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """Logits and the residual entering every block, float64, heads expanded by repetition."""
    p = f64(params)
    B, T = tokens.shape
    nh, nkv, hd = cfg.heads, cfg.kv_heads, cfg.head_dim

    def norm(x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x ** 2, -1, keepdims=True) + cfg.rms_norm_eps) * w

    ang = np.arange(T)[:, None] * np_inv_freq(cfg.rope_theta, hd, scaling)[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))

    def rope(x: np.ndarray) -> np.ndarray:
        rot = np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], -1)
        return x * cos[None, :, None, :] + rot * sin[None, :, None, :]

    x = p["embed"][tokens]
    blocks = []
    for i in range(cfg.layers):
        blocks.append(x)
        W = {k: v[i] for k, v in p["layers"].items()}
        h = norm(x, p["norms"]["attn"][i])
        q = rope(site("q_proj", i, h, W["q_proj"]).reshape(B, T, nh, hd))
        k = np.repeat(rope(site("k_proj", i, h, W["k_proj"]).reshape(B, T, nkv, hd)), nh // nkv, axis=2)
        v = np.repeat(site("v_proj", i, h, W["v_proj"]).reshape(B, T, nkv, hd), nh // nkv, axis=2)
        s = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(hd)
        s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
        prob = np.exp(s - s.max(-1, keepdims=True))
        prob /= prob.sum(-1, keepdims=True)
        o = np.einsum("bhqk,bkhd->bqhd", prob, v).reshape(B, T, nh * hd)
        x = x + site("o_proj", i, o, W["o_proj"])
        h = norm(x, p["norms"]["mlp"][i])
        if cfg.simple_mlp:
            a = site("c_fc", i, h, W["c_fc"])
            a = 0.5 * a * (1 + np.tanh(math.sqrt(2 / math.pi) * (a + 0.044715 * a ** 3)))
        else:
            g = site("gate_proj", i, h, W["gate_proj"])
            a = g / (1 + np.exp(-g)) * site("up_proj", i, h, W["up_proj"])
        x = x + site("down_proj", i, a, W["down_proj"])
    head = p["embed"].T if cfg.tied else p["lm_head"]
    return norm(x, p["final_norm"]) @ head, np.stack(blocks)


def reference(case: Case, site: NpSite) -> np.ndarray:
    m = case.model
    if m.family == "tms":
        return np_tms(case.params, case.batch, site)
    if m.family == "resid_mlp":
        return np_resid(case.params, case.batch, site)
    return np_llama(m.config, case.params, np.asarray(case.batch), site,
                    SCALING if m.config.rope_scaling is not None else None)[0]


# ---- agreement with the NumPy references ------------------------------------------------------

@pytest.mark.parametrize("family", list(CASES))
def test_clean_and_masked_match_numpy(family: str) -> None:
    case = CASES[family]()
    tol = 1e-4 if family in ("llama", "simple_mlp") else 1e-5
    taps: dict[tuple[str, int], np.ndarray] = {}
    clean = case.clean(case.params, case.batch)
    assert clean.output.dtype == jnp.float32
    assert rel(clean.output, reference(case, np_recording_site(taps))) < tol
    for kind, layers in case.model.decomposed.items():
        assert rel(clean.site_inputs[kind], np.stack([taps[(kind, layer)] for layer in layers])) < tol
    comps, masks = components_of(case.model), random_masks(case.model, case.lead)
    masked = case.forward(case.params, case.batch, comps, masks)
    expected = reference(case, np_masked_site(case.model, comps, masks))
    assert rel(masked, expected) < tol
    assert rel(masked, clean.output) > 1e-3  # the masks did change the output


@pytest.mark.parametrize("family", ["llama", "simple_mlp"])
def test_block_inputs_match_numpy(family: str) -> None:
    case = lm_case(family)
    clean = case.clean(case.params, case.batch)
    scaling = SCALING if family == "llama" else None
    _, blocks = np_llama(case.model.config, case.params, np.asarray(case.batch), np_recording_site({}), scaling)
    assert clean.block_inputs.shape == (3, 2, 8, 32)
    assert rel(clean.block_inputs, blocks) < 1e-5


def test_llama3_rope_frequencies() -> None:
    cfg = lm_case("llama").model.config
    ours, theirs = inv_freq(cfg), np_inv_freq(10_000.0, 8, SCALING)
    plain = np_inv_freq(10_000.0, 8, None)
    assert np.allclose(ours, theirs, rtol=1e-12)
    ratio = theirs / plain  # kept, interpolated, divided by the factor: all three bands present
    assert ratio[0] == 1.0 and 1 / 8 < ratio[1] < 1.0 and np.allclose(ratio[2:], 1 / 8)


# ---- invariants --------------------------------------------------------------------------------

@pytest.mark.parametrize("family", list(CASES))
def test_masked_forward_invariants(family: str) -> None:
    case = CASES[family]()
    m, p, x, forward = case.model, case.params, case.batch, case.forward
    clean = case.clean(p, x).output
    comps = components_of(m)
    ones = {k: SiteMask(jnp.ones((len(ls), *case.lead, C)), jnp.ones((len(ls), *case.lead)),
                        jnp.ones((len(ls), *case.lead), bool)) for k, ls in m.decomposed.items()}
    # (a) all-ones masks with the delta path reproduce the target (V/U random: x@W − x@V@U carries it)
    assert rel(forward(p, x, comps, ones), clean) < 1e-5
    # (b) no live kind: exactly the frozen forward
    assert np.array_equal(forward(p, x, comps, {}), clean)
    # (c) route all False: exactly frozen, with every kind live or with one live and the rest absent
    off = {k: SiteMask(mk.mask, mk.delta, jnp.zeros(mk.delta.shape, bool))
           for k, mk in random_masks(m, case.lead).items()}
    assert np.array_equal(forward(p, x, comps, off), clean)
    first = next(iter(off))
    assert np.array_equal(forward(p, x, comps, {first: off[first]}), clean)


@pytest.mark.parametrize("family", ["tms", "resid_mlp", "simple_mlp"])  # llama: test_remat_changes_nothing
def test_non_live_kind_gets_no_gradient(family: str) -> None:
    """(e) a kind absent from masks: its V/U do not enter the graph, gradient exactly 0."""
    case = CASES[family]()
    m = case.model
    comps, masks = components_of(m), random_masks(m, case.lead)
    live, dead = list(m.decomposed)[0], list(m.decomposed)[-1]
    assert live != dead

    def loss(c: dict[str, Factors]) -> jax.Array:
        return jnp.sum(m.forward(case.params, case.batch, c, {live: masks[live]}) ** 2)

    grads = jax.jit(jax.grad(loss))(comps)
    assert not np.any(np.asarray(grads[dead].V)) and not np.any(np.asarray(grads[dead].U))
    assert np.any(np.asarray(grads[live].V)) and np.any(np.asarray(grads[live].U))


def unrolled_forward(model: Any, params: Any, tokens: jax.Array, comps: dict[str, Factors],
                     masks: dict[str, SiteMask]) -> jax.Array:
    """(d) the masked forward as a plain Python loop over layers, from the same params."""
    cfg = model.config
    cos, sin = rope_tables(cfg, tokens.shape[1])
    x = params["embed"][tokens]
    for i in range(cfg.layers):
        def site(kind: str, h: jax.Array, W: jax.Array, i: int = i) -> jax.Array:
            if kind not in masks or i not in model.decomposed[kind]:
                return h @ W
            j = model.decomposed[kind].index(i)
            mk = masks[kind]
            return site_out(h, W, Factors(comps[kind].V[j], comps[kind].U[j]),
                            SiteMask(mk.mask[j], mk.delta[j], mk.route[j]))

        x = block(cfg, x, {k: w[i] for k, w in params["layers"].items()},
                  {k: n[i] for k, n in params["norms"].items()}, site, cos, sin)
    head = params["embed"].T if cfg.tied else params["lm_head"]
    return rms_norm(x, params["final_norm"], cfg.rms_norm_eps) @ head


@pytest.mark.parametrize("family", ["llama", "simple_mlp"])
def test_scan_equals_unrolled(family: str) -> None:
    """(d) segments, slices and scan give what a per-layer Python loop gives."""
    case = lm_case(family)
    m, p, x = case.model, case.params, case.batch
    comps, masks = components_of(m), random_masks(m, case.lead)
    live = {k: v for k, v in masks.items() if k != "q_proj"}  # a decomposed kind left frozen too
    expected = jax.jit(unrolled_forward, static_argnums=0)(m, p, x, comps, live)
    assert rel(case.forward(p, x, comps, live), expected) < 1e-6


def test_remat_changes_nothing() -> None:
    """Values and V/U gradients are the same with either checkpointing, and (e) the
    non-live kind gets exactly zero gradient under each (one segment keeps the three
    compilations cheap)."""
    paths = ["layers.0.self_attn.q_proj", "layers.1.self_attn.q_proj", "layers.0.mlp.down_proj",
             "layers.1.mlp.down_proj"]
    model = build_target(lm_shape("llama", 2), paths)
    p, x = random_params(model, 1), lm_case("llama").batch
    comps = components_of(model)
    masks = {"down_proj": random_masks(model, (2, 8))["down_proj"]}

    def value_and_grads(remat: str) -> tuple[jax.Array, dict[str, Factors]]:
        m = replace(model, remat=remat)
        return jax.jit(jax.value_and_grad(lambda c: jnp.sum(m.forward(p, x, c, masks) ** 2)))(comps)

    value, grads = value_and_grads("off")
    for remat in ("off", "whole", "per_layer", "matmuls"):
        other, other_grads = value_and_grads(remat) if remat != "off" else (value, grads)
        assert rel(other, value) < 1e-6
        assert rel(other_grads["down_proj"].V, grads["down_proj"].V) < 1e-5
        assert rel(other_grads["down_proj"].U, grads["down_proj"].U) < 1e-5
        assert not np.any(np.asarray(other_grads["q_proj"].V)) and not np.any(np.asarray(other_grads["q_proj"].U))


def test_segments_and_flat_graph_in_depth() -> None:
    assert segments(5, {"a": (1, 2), "b": (2, 3)}) == [(0, 1, ()), (1, 2, ("a",)), (2, 3, ("a", "b")),
                                                        (3, 4, ("b",)), (4, 5, ())]
    sizes = []
    for layers in (3, 12):  # the same three segments: [0], [1], [2, layers)
        m = build_target(lm_shape("llama", layers), ["layers.1.mlp.down_proj"])
        p = jax.eval_shape(m.init_params, jax.random.key(0))
        tokens = jax.ShapeDtypeStruct((1, 4), jnp.int32)
        m = replace(m, remat="per_layer")  # `off`/`matmuls` unroll the scans (no residual stacks)
        jaxpr = jax.make_jaxpr(m.forward)(p, tokens, components_of(m), random_masks(m, (1, 4)))
        assert sum(e.primitive.name == "scan" for e in jaxpr.jaxpr.eqns) == 3
        sizes.append(len(str(jaxpr)))
    assert sizes[1] < sizes[0] * 1.05  # the graph does not grow with depth


def test_bf16_compute_returns_fp32_logits() -> None:
    case = lm_case("llama")
    lo = replace(case.model, compute_dtype=jnp.bfloat16)
    comps, masks = components_of(lo), random_masks(lo, case.lead)
    out = jax.jit(lo.forward)(case.params, case.batch, comps, masks)
    ref = case.forward(case.params, case.batch, comps, masks)
    assert out.dtype == jnp.float32 and rel(out, ref) < 0.1


def test_decomposed_order_and_weights() -> None:
    shape = lm_shape("llama")
    m = build_target(shape, ["layers.2.mlp.down_proj", "layers.0.mlp.down_proj", "layers.1.self_attn.q_proj"])
    assert dict(m.decomposed) == {"q_proj": (1,), "down_proj": (0, 2)}
    p = random_params(m, 0)
    w = m.weights(p)
    assert w["down_proj"].shape == (2, 64, 32) and np.array_equal(w["down_proj"][1], p["layers"]["down_proj"][2])
    with pytest.raises(ValueError, match="layers.9.mlp.down_proj"):
        build_target(shape, ["layers.9.mlp.down_proj"])
    with pytest.raises(TypeError, match="bogus"):
        build_target(shape, [], bogus=1)


def test_init_params() -> None:
    tms = tms_case().model
    p = jax.jit(tms.init_params)(jax.random.key(0))
    assert np.array_equal(p["linear2"], p["linear1"].T) and np.array_equal(p["hidden_layers"][1], np.eye(3))
    lm = lm_case("simple_mlp").model
    p = jax.jit(lm.init_params)(jax.random.key(0))
    assert "lm_head" not in p and p["layers"]["c_fc"].shape == (3, 32, 64) and np.all(p["norms"]["mlp"] == 1.0)
    assert jax.tree.structure(p) == jax.tree.structure(lm_case("simple_mlp").params)


# ---- loading ------------------------------------------------------------------------------------

def saved_llama(tmp_path: Path, shards: int = 3) -> tuple[Case, Path]:
    case = lm_case("llama")
    directory = tmp_path / "tiny"
    save_hf(case.params, directory, shards=shards, config=hf_config(case.model.config))
    return case, directory


def test_llama_sharded_hf_roundtrip(tmp_path: Path) -> None:
    case, directory = saved_llama(tmp_path)
    index = json.loads((directory / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) == 3
    assert index["weight_map"]["model.layers.1.self_attn.k_proj.weight"].startswith("model-0000")
    config = json.loads((directory / "config.json").read_text())
    assert hf_options(config)["rope_scaling"] == case.model.config.rope_scaling
    loaded = load_params(case.model, directory)
    assert jax.tree.structure(loaded) == jax.tree.structure(case.params)
    logits = case.clean(loaded, case.batch).output
    expected, _ = np_llama(case.model.config, case.params, np.asarray(case.batch), np_recording_site({}), SCALING)
    assert rel(logits, expected) < 1e-4
    # HF layout on disk: (out, in)
    shard = directory / index["weight_map"]["model.layers.0.mlp.gate_proj.weight"]
    assert load_file(shard)["model.layers.0.mlp.gate_proj.weight"].shape == (64, 32)


def test_simple_mlp_single_file_roundtrip(tmp_path: Path) -> None:
    case = lm_case("simple_mlp")
    save_hf(case.params, tmp_path, shards=1)
    names = set(load_file(tmp_path / "model.safetensors"))
    assert {"wte.weight", "h.0.rms_1.weight", "h.2.mlp.c_fc.weight", "ln_f.weight"} <= names
    assert "lm_head.weight" not in names  # tied
    loaded = load_params(case.model, tmp_path / "model.safetensors", dtype="bf16")
    assert loaded["layers"]["c_fc"].dtype == jnp.bfloat16


def one_line_error(target: Any, path: Path) -> str:
    with pytest.raises(WeightsError) as info:
        load_params(target, path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_weight_errors_name_file_and_tensor(tmp_path: Path) -> None:
    case, directory = saved_llama(tmp_path)
    index_path = directory / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    victim = "model.layers.1.mlp.up_proj.weight"
    shard = directory / index["weight_map"][victim]
    tensors = load_file(shard)

    # a tensor absent from the shard the index names
    save_file({k: v for k, v in tensors.items() if k != victim}, str(shard))
    assert victim in one_line_error(case.model, directory)
    # absent from the index too
    index_path.write_text(json.dumps({"weight_map": {k: v for k, v in index["weight_map"].items() if k != victim}}))
    assert f"missing tensor `{victim}`" in one_line_error(case.model, directory)
    # mis-shaped
    save_file(tensors | {victim: np.zeros((3, 3), np.float32)}, str(shard))
    index_path.write_text(json.dumps(index))
    message = one_line_error(case.model, directory)
    assert victim in message and "(3, 3)" in message and "(64, 32)" in message
    # unexpected
    save_file(tensors | {"model.layers.1.mlp.extra.weight": np.zeros(2, np.float32)}, str(shard))
    assert "model.layers.1.mlp.extra.weight" in one_line_error(case.model, directory)
    # corrupt header
    save_file(tensors, str(shard))
    raw = shard.read_bytes()
    shard.write_bytes(raw[:8] + b"{garbage" + raw[16:])
    message = one_line_error(case.model, directory)
    assert shard.name in message and "cannot read" in message
    # truncated shard
    shard.write_bytes(raw[: len(raw) // 2])
    assert shard.name in one_line_error(case.model, directory)
    # a shard the index names is gone
    shard.unlink()
    assert shard.name in one_line_error(case.model, directory)


# ---- the reference toy files ---------------------------------------------------------------------

def test_reference_tms_file_loads_and_runs() -> None:
    shape = tms_shape.shape(TmsKeys(features=5, hidden=2))
    model = build_target(shape, ["linear1", "linear2"])
    params = load_params(model, REPO / "targets" / "tms_5-2_pentagon.safetensors")
    assert np.array_equal(params["linear2"], params["linear1"].T)  # tied
    x = jnp.eye(5) * 0.8
    out = jax.jit(model.clean)(params, x).output
    assert rel(out, np_tms(params, np.asarray(x), np_recording_site({}))) < 1e-5
    # the pentagon represents every feature: each one is read back on its own
    assert np.all(np.argmax(np.asarray(out), axis=1) == np.arange(5))


def test_reference_resid_mlp_file_loads_and_runs() -> None:
    shape = resid_shape.shape(ResidMlpKeys(features=100, d_embed=1000, d_mlp=50))
    model = build_target(shape, ["layers.0.mlp_in", "layers.0.mlp_out"])
    params = load_params(model, REPO / "targets" / "resid_mlp1.safetensors")
    r = rng(0)
    x = f32(r.uniform(-1.0, 1.0, size=(64, 100)) * (r.uniform(size=(64, 100)) < 0.01))
    clean = jax.jit(model.clean)(params, x)
    relu = lambda a: np.maximum(a, 0.0)  # noqa: E731
    assert rel(clean.output, np_resid(params, np.asarray(x), np_recording_site({}), relu)) < 1e-5
    assert clean.site_inputs["mlp_in"].shape == (1, 64, 1000) and clean.site_inputs["mlp_out"].shape == (1, 64, 50)
    # a trained target: out ≈ x + relu(x), better than the residual stream alone
    labels = np.asarray(x) + relu(np.asarray(x))
    assert np.mean((np.asarray(clean.output) - labels) ** 2) < 0.5 * np.mean((np.asarray(x) - labels) ** 2)
