"""The CI networks and squashings (SPD_ALGORITHM.md §3) against independent NumPy float64
references, the lower squashing's custom backward, the chunk scan, and the agreement of
every parameter's shape with what the compiler's build_ci pass puts in the IR."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pdc.ci.chunkwise_transformer import ChunkwiseTransformerKeys
from pdc.ci.global_mlp import GlobalMlpKeys
from pdc.ci.global_transformer import GlobalTransformerKeys
from pdc.ci.mlp import ScalarMlpKeys
from pdc.ci.shared_mlp import SharedMlpKeys
from pdc.ci.vector_mlp import VectorMlpKeys
from pdc.decomp.ci import (Buffer, CiInputs, CiSite, abstract_ci, apply_ci, ci_layout, ci_param_shapes, init_ci,
                           transformer_chunk)
from pdc.decomp.squash import CiBundle, ci_bundle, lower_leaky_hard_sigmoid, upper_leaky_hard_sigmoid
from pdc.ir.nodes import SiteNode, TensorNode
from pdc.passes import run_passes
from pdc.syntax.load import check_text, load_spec

from conftest import REPO, SPECS, spec_text

erf = np.vectorize(math.erf, otypes=[np.float64])
ALPHA = 0.01
EPS32 = float(np.finfo(np.float32).eps)
RTOL = 1e-5


def rel_err(actual: object, expected: np.ndarray) -> float:
    a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(a - e) / max(np.linalg.norm(e), 1e-30))


# ---- squashings -------------------------------------------------------------------------

Z = np.array([-2.0, -0.3, 0.0, 0.4, 1.0, 1.7], np.float32)  # negative, tie 0, (0, 1], above 1


def np_lower_grad(z: float, g: float, alpha: float) -> float:
    """The rule of §3.1, written out branch by branch."""
    if z > 1:
        return 0.0
    if z > 0:
        return g
    return alpha * g if g < 0 else 0.0


def test_lower_forward_is_the_clamp() -> None:
    assert rel_err(lower_leaky_hard_sigmoid(jnp.asarray(Z), ALPHA), np.clip(Z.astype(np.float64), 0, 1)) == 0


@pytest.mark.parametrize("g", [0.7, -1.3])
def test_lower_custom_vjp_follows_the_sign_gated_rule(g: float) -> None:
    upstream = jnp.full(Z.shape, g, jnp.float32)
    _, vjp = jax.vjp(lambda z: lower_leaky_hard_sigmoid(z, ALPHA), jnp.asarray(Z))
    (grad,) = vjp(upstream)
    expected = np.array([np_lower_grad(float(z), g, ALPHA) for z in Z])
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-6, atol=0)
    # z = 0 belongs to the z ≤ 0 branch: leak for g < 0, nothing for g > 0
    assert float(grad[2]) == pytest.approx(ALPHA * g if g < 0 else 0.0)
    # z = 1 passes g through
    assert float(grad[4]) == pytest.approx(g)


def test_lower_backward_differs_from_autodiff_of_the_clamp() -> None:
    upstream = jnp.full(Z.shape, -1.3, jnp.float32)
    _, custom = jax.vjp(lambda z: lower_leaky_hard_sigmoid(z, ALPHA), jnp.asarray(Z))
    _, naive = jax.vjp(lambda z: jnp.clip(z, 0.0, 1.0), jnp.asarray(Z))
    (gc,), (gn,) = custom(upstream), naive(upstream)
    assert float(gn[0]) == 0.0 and float(gc[0]) == pytest.approx(-1.3 * ALPHA)
    assert not np.allclose(np.asarray(gc), np.asarray(gn))


def test_lower_grad_under_jit_and_mixed_signs() -> None:
    z = jnp.asarray(Z)
    g = jnp.asarray(np.array([-1.0, 2.0, -3.0, 4.0, -5.0, 6.0], np.float32))
    grad = jax.jit(jax.grad(lambda z: jnp.sum(lower_leaky_hard_sigmoid(z, ALPHA) * g)))(z)
    expected = [np_lower_grad(float(a), float(b), ALPHA) for a, b in zip(Z, np.asarray(g))]
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-6, atol=0)


def test_upper_forward_and_gradient() -> None:
    z = np.array([-2.0, -0.3, 0.0, 0.4, 1.0, 1.7, 5.0])
    expected = np.where(z > 1, 1 + ALPHA * (z - 1), np.clip(z, 0, 1))
    assert rel_err(upper_leaky_hard_sigmoid(jnp.asarray(z, jnp.float32), ALPHA), expected) < RTOL
    away = np.array([-2.0, -0.3, 0.4, 0.9, 1.7, 5.0], np.float32)  # off the kinks
    grad = jax.grad(lambda v: jnp.sum(upper_leaky_hard_sigmoid(v, ALPHA)))(jnp.asarray(away))
    np.testing.assert_allclose(np.asarray(grad), np.where(away > 1, ALPHA, np.where(away > 0, 1.0, 0.0)), rtol=1e-6)


def test_ci_bundle_is_a_named_tuple_of_per_kind_dicts() -> None:
    pre = {"a": jnp.asarray(Z).reshape(2, 3), "b": jnp.asarray(Z[::-1].copy()).reshape(1, 6).astype(jnp.bfloat16)}
    bundle = ci_bundle(pre, ALPHA)
    assert isinstance(bundle, CiBundle) and set(bundle.lower) == set(bundle.upper) == {"a", "b"}
    for kind in pre:
        assert bundle.preacts[kind].dtype == jnp.float32 and bundle.lower[kind].shape == pre[kind].shape
        z = np.asarray(pre[kind].astype(jnp.float32), np.float64)
        assert rel_err(bundle.lower[kind], np.clip(z, 0, 1)) == 0
        assert rel_err(bundle.upper[kind], np.where(z > 1, 1 + ALPHA * (z - 1), np.clip(z, 0, 1))) < RTOL
    assert len(jax.tree_util.tree_leaves(bundle)) == 6


# ---- NumPy float64 references -----------------------------------------------------------


def np_gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def np_rms(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + EPS32)


def np_params(state: nnx.State) -> dict[str, np.ndarray]:
    return {".".join(map(str, p)): np.asarray(v[...], np.float64) for p, v in nnx.to_flat_state(state)}


def np_mlp(h: np.ndarray, ws: list[np.ndarray], bs: list[np.ndarray]) -> np.ndarray:
    for j, (w, b) in enumerate(zip(ws, bs)):
        h = h @ w + b
        if j < len(ws) - 1:
            h = np_gelu(h)
    return h


def np_layers(p: dict[str, np.ndarray], prefix: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    n = sum(1 for k in p if k.startswith(prefix + "w"))
    return [p[f"{prefix}w{j}"] for j in range(n)], [p[f"{prefix}b{j}"] for j in range(n)]


def np_per_site(variant: str, p: dict[str, np.ndarray], layout: tuple[CiSite, ...],
                inputs: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Loops over stacked sites and components, one small MLP at a time."""
    out = {}
    for kind in dict.fromkeys(s.kind for s in layout):
        ws, bs = np_layers(p, f"{kind}.")
        x = inputs["acts" if variant == "mlp" else "sites"][kind]
        L, C = x.shape[0], layout[[s.kind for s in layout].index(kind)].C
        y = np.zeros(x.shape[:-1] + (C,))
        for layer in range(L):
            if variant == "shared_mlp":
                y[layer] = np_mlp(x[layer], [w[layer] for w in ws], [b[layer] for b in bs])
                continue
            for c in range(C):
                h = x[layer][..., c:c + 1] if variant == "mlp" else x[layer]
                y[layer][..., c] = np_mlp(h, [w[layer, c] for w in ws], [b[layer, c] for b in bs])[..., 0]
        out[kind] = y
    return out


def np_site_list(layout: tuple[CiSite, ...], sites: dict[str, np.ndarray]) -> list[np.ndarray]:
    seen: dict[str, int] = {}
    xs = []
    for s in layout:
        xs.append(sites[s.kind][seen.get(s.kind, 0)])
        seen[s.kind] = seen.get(s.kind, 0) + 1
    return xs


def np_split_to_kinds(layout: tuple[CiSite, ...], per_site: list[np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, list[np.ndarray]] = {}
    for s, y in zip(layout, per_site):
        out.setdefault(s.kind, []).append(y)
    return {k: np.stack(v) for k, v in out.items()}


def np_split(y: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    return np.split(y, np.cumsum(sizes)[:-1], axis=-1)


def np_global_mlp(p: dict[str, np.ndarray], layout: tuple[CiSite, ...], sites: dict[str, np.ndarray]):
    ws, bs = np_layers(p, "")
    y = np_mlp(np.concatenate(np_site_list(layout, sites), axis=-1), ws, bs)
    return np_split_to_kinds(layout, np_split(y, [s.C for s in layout]))


def np_rope(x: np.ndarray, base: float) -> np.ndarray:
    """Rotate-half RoPE in its pairwise form: (x1, x2) → (x1 cos − x2 sin, x2 cos + x1 sin)."""
    T, hd = x.shape[-3], x.shape[-1]
    inv = 1.0 / base ** (np.arange(0, hd, 2) / hd)
    ang = np.arange(T)[:, None] * inv[None, :]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def np_transformer(p: dict[str, np.ndarray], x: np.ndarray, heads: int, base: float) -> np.ndarray:
    """One chunk, x [B, T, W] → [B, T, Σ C]; p holds unstacked parameters."""
    h = x @ p["in_proj"] + p["in_proj_b"]
    B, T, d = h.shape
    hd = d // heads
    for blk in range(p["blocks.q"].shape[0]):
        a = np_rms(h)
        q, k, v = (np.reshape(a @ p[f"blocks.{n}"][blk], (B, T, heads, hd)) for n in "qkv")
        q, k = np_rope(q, base), np_rope(k, base)
        attn = np.zeros((B, T, heads, hd))
        for b in range(B):
            for head in range(heads):
                s = q[b, :, head] @ k[b, :, head].T / math.sqrt(hd)
                s = np.exp(s - s.max(axis=-1, keepdims=True))
                attn[b, :, head] = (s / s.sum(axis=-1, keepdims=True)) @ v[b, :, head]
        h = h + attn.reshape(B, T, d) @ p["blocks.o"][blk]
        m = np_rms(h)
        h = h + np_gelu(m @ p["blocks.mlp_in"][blk] + p["blocks.mlp_in_b"][blk]) @ p["blocks.mlp_out"][blk] \
            + p["blocks.mlp_out_b"][blk]
    return h @ p["head"] + p["head_b"]


def np_chunks(layout: tuple[CiSite, ...], per: int | None) -> list[tuple[list[int], list[int]]]:
    layers = sorted({s.layer for s in layout})
    per = per or len(layers)
    groups = [layers[i:i + per] for i in range(0, len(layers), per)]
    return [([i for i, s in enumerate(layout) if s.layer in g], g) for g in groups]


def np_transformer_ci(p: dict[str, np.ndarray], layout: tuple[CiSite, ...], opts, inputs: dict) -> dict:
    per = getattr(opts, "blocks_per_chunk", None)
    sites = np_site_list(layout, inputs["sites"])
    per_site: list[np.ndarray | None] = [None] * len(layout)
    for c, (members, layers) in enumerate(np_chunks(layout, per)):
        if opts.input == "site_inputs":
            taps = [sites[i] for i in members]
        elif opts.input == "first_block_resid":
            taps = [inputs["blocks"][layers[0]]]
        else:
            taps = [inputs["blocks"][layer] for layer in layers]
        x = np.concatenate([np_rms(t) for t in taps], axis=-1)
        pc = {k: (v[c] if per is not None and k != "inv_freq" else v) for k, v in p.items()}
        y = np_transformer(pc, x, opts.heads, opts.rope_base)
        for i, piece in zip(members, np_split(y, [layout[i].C for i in members])):
            per_site[i] = piece
    return np_split_to_kinds(layout, per_site)


# ---- fixtures ---------------------------------------------------------------------------

TOY = (CiSite("linear1", "linear1", 0, 5, 7), CiSite("linear2", "linear2", 0, 3, 4))
LM = ci_layout([CiSite(f"layers.{l}.{k}", k, l, d, c) for l in (1, 2, 3, 4)
                for k, d, c in (("gate", 8, 6), ("down", 12, 5))])
HIDDEN = 10
LM_LAYERS = 5


def make_inputs(layout: tuple[CiSite, ...], lead: tuple[int, ...], seed: int = 0) -> tuple[CiInputs, dict]:
    rng = np.random.default_rng(seed)
    sites, acts = {}, {}
    for kind in dict.fromkeys(s.kind for s in layout):
        members = [s for s in layout if s.kind == kind]
        sites[kind] = rng.normal(size=(len(members), *lead, members[0].d_in)).astype(np.float32)
        acts[kind] = rng.normal(size=(len(members), *lead, members[0].C)).astype(np.float32) * 1.5
    blocks = rng.normal(size=(LM_LAYERS, *lead, HIDDEN)).astype(np.float32) * 3.0
    ci_inputs = CiInputs({k: jnp.asarray(v) for k, v in sites.items()}, {k: jnp.asarray(v) for k, v in acts.items()},
                         jnp.asarray(blocks))
    as64 = {"sites": {k: v.astype(np.float64) for k, v in sites.items()},
            "acts": {k: v.astype(np.float64) for k, v in acts.items()}, "blocks": blocks.astype(np.float64)}
    return ci_inputs, as64


def random_state(variant: str, opts, layout: tuple[CiSite, ...], seed: int, **kw) -> tuple[nnx.GraphDef, nnx.State]:
    """Graph plus host-random parameters (biases included: at their zero init they would
    hide bias bugs), `inv_freq` from its formula. No jitted initialiser to compile."""
    graphdef, abstract = abstract_ci(variant, opts, layout, **kw)
    rng = np.random.default_rng(seed)
    flat = []
    for path, var in nnx.to_flat_state(abstract):
        if path[-1] == "inv_freq":
            hd = 2 * var.shape[0]
            value = 1.0 / opts.rope_base ** (np.arange(0, hd, 2) / hd)
        else:
            scale = 1 / math.sqrt(var.shape[-2]) if len(var.shape) >= 2 and not path[-1].startswith("b") else 0.3
            value = rng.normal(size=var.shape) * scale
        flat.append((path, var.replace(value=jnp.asarray(value, jnp.float32))))
    return graphdef, nnx.from_flat_state(flat)


MLP_CASES = [("mlp", ScalarMlpKeys(hidden=[6, 5])), ("vector_mlp", VectorMlpKeys()),
             ("shared_mlp", SharedMlpKeys(hidden=[9, 4])), ("global_mlp", GlobalMlpKeys(hidden=[11]))]


@pytest.mark.parametrize("variant,opts", MLP_CASES, ids=[c[0] for c in MLP_CASES])
@pytest.mark.parametrize("layout,lead", [(TOY, (6,)), (LM, (2, 3))], ids=["toy", "lm"])
def test_mlp_networks_match_numpy(variant: str, opts, layout, lead) -> None:
    graphdef, state = random_state(variant, opts, layout, 2)
    inputs, ref_in = make_inputs(layout, lead)
    out = jax.jit(apply_ci, static_argnums=0)(graphdef, state, inputs)
    p = np_params(state)
    ref = np_global_mlp(p, layout, ref_in["sites"]) if variant == "global_mlp" else np_per_site(variant, p, layout,
                                                                                                  ref_in)
    assert set(out) == set(ref)
    for kind in ref:
        assert out[kind].shape == ref[kind].shape and out[kind].dtype == jnp.float32
        assert rel_err(out[kind], ref[kind]) < RTOL, kind


TRANSFORMER_CASES = [
    ("global_transformer", GlobalTransformerKeys(d_model=16, blocks=2, heads=2, mlp=24, rope_base=100.0)),
    ("global_transformer", GlobalTransformerKeys(d_model=8, blocks=1, heads=1, mlp=8, input="first_block_resid")),
    ("chunkwise_transformer", ChunkwiseTransformerKeys(blocks_per_chunk=1, d_model=16, blocks=2, heads=4, mlp=20)),
    ("chunkwise_transformer", ChunkwiseTransformerKeys(blocks_per_chunk=2, d_model=12, blocks=1, heads=3, mlp=16,
                                                       rope_base=50.0, input="all_block_resids")),
    ("chunkwise_transformer", ChunkwiseTransformerKeys(blocks_per_chunk=2, d_model=8, blocks=2, heads=2, mlp=8,
                                                       input="first_block_resid")),
]
SMALL = GlobalTransformerKeys(d_model=8, blocks=1, heads=2, mlp=8)
TRANSFORMER_IDS = ["global", "global-first", "chunk1", "chunk2-all", "chunk2-first"]


@pytest.mark.parametrize("variant,opts", TRANSFORMER_CASES, ids=TRANSFORMER_IDS)
def test_transformers_match_numpy(variant: str, opts) -> None:
    graphdef, state = random_state(variant, opts, LM, 4, resid_width=HIDDEN)
    inputs, ref_in = make_inputs(LM, (2, 7), seed=5)
    out = jax.jit(apply_ci, static_argnums=0)(graphdef, state, inputs)
    ref = np_transformer_ci(np_params(state), LM, opts, ref_in)
    for kind in ref:
        assert out[kind].shape == ref[kind].shape == (4, 2, 7, {"gate": 6, "down": 5}[kind])
        assert rel_err(out[kind], ref[kind]) < RTOL, kind


def test_chunk_scan_equals_a_python_loop_over_chunks() -> None:
    opts = ChunkwiseTransformerKeys(blocks_per_chunk=1, d_model=8, blocks=1, heads=2, mlp=8)
    graphdef, state = random_state("chunkwise_transformer", opts, LM, 6)
    inputs, _ = make_inputs(LM, (2, 5), seed=7)
    scanned = jax.jit(apply_ci, static_argnums=0)(graphdef, state, inputs)

    @jax.jit
    def loop(state: nnx.State, inputs: CiInputs) -> dict[str, jax.Array]:
        module = nnx.merge(graphdef, state)
        xs, params, inv_freq = module.chunk_inputs(inputs), module.chunk_params(), module.inv_freq[...]
        assert xs.shape[0] == 4
        chunk = jax.tree_util.tree_map
        outs = [transformer_chunk(chunk(lambda a: a[c], params), inv_freq, xs[c], opts.heads) for c in range(4)]
        return module.split_outputs(jnp.stack(outs))

    for kind, value in loop(state, inputs).items():
        np.testing.assert_allclose(np.asarray(scanned[kind]), np.asarray(value), rtol=1e-6, atol=1e-6)


def test_transformer_init_distributions_and_determinism() -> None:
    opts = ChunkwiseTransformerKeys(blocks_per_chunk=1, d_model=64, blocks=2, heads=4, mlp=256)
    layout = ci_layout([CiSite(f"l{l}.x", "x", l, 512, 64) for l in range(2)])
    p = np_params(init_ci(jax.random.key(10), "chunkwise_transformer", opts, layout)[1])
    for name, fan, gain in (("in_proj", 512, math.sqrt(2)), ("head", 64, 1.0), ("blocks.mlp_in", 64, math.sqrt(2)),
                            ("blocks.mlp_out", 256, 1.0)):
        assert p[name].std() == pytest.approx(gain / math.sqrt(fan), rel=0.05), name
    for name in "qkvo":
        w = p[f"blocks.{name}"]
        assert np.abs(w).max() <= 1 / 8 and w.std() == pytest.approx(1 / 8 / math.sqrt(3), rel=0.05)
    for name in ("in_proj_b", "head_b", "blocks.mlp_in_b", "blocks.mlp_out_b"):
        assert not p[name].any()
    np.testing.assert_allclose(p["inv_freq"], 1 / 10000 ** (np.arange(0, 16, 2) / 16), rtol=1e-6)
    # deterministic from the key; chunks and blocks drawn independently
    again = np_params(init_ci(jax.random.key(10), "chunkwise_transformer", opts, layout)[1])
    other = np_params(init_ci(jax.random.key(11), "chunkwise_transformer", opts, layout)[1])
    assert all(np.array_equal(p[k], again[k]) for k in p)
    assert not np.allclose(p["in_proj"], other["in_proj"])
    assert not np.allclose(p["in_proj"][0], p["in_proj"][1]) and not np.allclose(p["blocks.q"][0, 0],
                                                                                  p["blocks.q"][0, 1])


def test_mlp_init_is_kaiming_per_site_and_fp32() -> None:
    layout = ci_layout([CiSite(f"layers.{l}.s", "s", l, 400, 300) for l in range(2)])
    _, state = init_ci(jax.random.key(11), "vector_mlp", VectorMlpKeys(hidden=[50]), layout,
                       compute_dtype=jnp.bfloat16)
    assert all(v[...].dtype == jnp.float32 for _, v in nnx.to_flat_state(state))  # masters stay fp32
    p = np_params(state)
    assert p["s.w0"].shape == (2, 300, 400, 50) and p["s.w0"].std() == pytest.approx(math.sqrt(2 / 400), rel=0.03)
    assert p["s.w1"].std() == pytest.approx(math.sqrt(1 / 50), rel=0.03) and not p["s.b0"].any()
    assert not np.allclose(p["s.w0"][0], p["s.w0"][1])  # fold_in per site


def test_inv_freq_is_a_buffer_with_zero_gradient() -> None:
    graphdef, state = random_state("global_transformer", SMALL, LM, 12)
    inputs, _ = make_inputs(LM, (2, 4))
    grads = jax.jit(jax.grad(lambda s: sum(jnp.sum(v ** 2) for v in apply_ci(graphdef, s, inputs).values())))(state)
    flat = {".".join(map(str, p)): v for p, v in nnx.to_flat_state(grads)}
    assert isinstance(state["inv_freq"], Buffer)
    assert not np.asarray(flat["inv_freq"][...]).any()
    assert np.asarray(flat["in_proj"][...]).any() and np.asarray(flat["blocks.q"][...]).any()
    params, buffers = nnx.split_state(state, nnx.Param, Buffer)
    assert "inv_freq" not in params and "inv_freq" in buffers


def test_gradient_reaches_V_through_the_scalar_mlp() -> None:
    """d/dV of Σ tanh(CI) with CI_c = w1·gelu(w0·(x@V)_c + b0) + b1, against the analytic
    NumPy gradient (gelu' = Φ + x·φ); cutting x@V off the graph leaves V no gradient."""
    graphdef, state = random_state("mlp", ScalarMlpKeys(hidden=[16]), TOY, 13)
    inputs, _ = make_inputs(TOY, (8,))
    rng = np.random.default_rng(14)
    V = {s.kind: jnp.asarray(rng.normal(size=(1, s.d_in, s.C)).astype(np.float32)) for s in TOY}

    def ci_sum(V: dict, detach: bool = False) -> jax.Array:
        acts = {k: jnp.einsum("lbd,ldc->lbc", inputs.site_inputs[k], V[k]) for k in V}
        if detach:
            acts = jax.lax.stop_gradient(acts)
        out = apply_ci(graphdef, state, inputs._replace(component_acts=acts))
        return sum(jnp.sum(jnp.tanh(v)) for v in out.values())

    grad = jax.jit(jax.grad(ci_sum))(V)
    p = np_params(state)
    for kind, g in grad.items():
        x, v = np.asarray(inputs.site_inputs[kind], np.float64)[0], np.asarray(V[kind], np.float64)[0]
        a = x @ v  # [B, C]
        w0, b0 = p[f"{kind}.w0"][0, :, 0, :], p[f"{kind}.b0"][0]
        w1, b1 = p[f"{kind}.w1"][0, :, :, 0], p[f"{kind}.b1"][0]
        pre = a[..., None] * w0 + b0  # [B, C, H]
        ci = np.sum(np_gelu(pre) * w1, axis=-1) + b1[:, 0]
        gelu_prime = 0.5 * (1 + erf(pre / math.sqrt(2))) + pre * np.exp(-pre ** 2 / 2) / math.sqrt(2 * math.pi)
        d_a = (1 - np.tanh(ci) ** 2) * np.sum(gelu_prime * w0 * w1, axis=-1)
        expected = x.T @ d_a
        assert np.abs(expected).max() > 1e-3
        assert rel_err(np.asarray(g)[0], expected) < RTOL, kind
    detached = jax.jit(jax.grad(lambda V: ci_sum(V, detach=True)))(V)
    assert all(not np.asarray(g).any() for g in detached.values())


def test_compute_dtype_casts_the_forward_and_keeps_fp32_outputs() -> None:
    graph32, state = random_state("global_transformer", SMALL, LM, 15)
    graph_bf16, _ = abstract_ci("global_transformer", SMALL, LM, compute_dtype=jnp.bfloat16)
    inputs, _ = make_inputs(LM, (2, 4))
    apply = jax.jit(apply_ci, static_argnums=0)
    low, full = apply(graph_bf16, state, inputs), apply(graph32, state, inputs)
    for kind in full:
        assert low[kind].dtype == jnp.float32
        assert 0 < rel_err(low[kind], np.asarray(full[kind])) < 5e-2


def test_misuse_is_refused_with_clear_messages() -> None:
    ragged = ci_layout([CiSite("layers.1.a", "a", 1, 8, 6), CiSite("layers.1.b", "b", 1, 8, 6),
                        CiSite("layers.2.a", "a", 2, 8, 6)])
    chunked = ChunkwiseTransformerKeys(blocks_per_chunk=1, d_model=8, blocks=1, heads=2, mlp=8)
    with pytest.raises(ValueError, match="homogeneous"):
        init_ci(jax.random.key(0), "chunkwise_transformer", chunked, ragged)
    with pytest.raises(ValueError, match="blocks_per_chunk = 3"):
        init_ci(jax.random.key(0), "chunkwise_transformer", chunked.model_copy(update={"blocks_per_chunk": 3}), LM)
    with pytest.raises(TypeError, match="ScalarMlpKeys"):
        init_ci(jax.random.key(0), "mlp", VectorMlpKeys(), TOY)
    with pytest.raises(ValueError, match="resid_width"):
        init_ci(jax.random.key(0), "chunkwise_transformer", chunked.model_copy(update={"input": "first_block_resid"}),
                LM)
    graphdef, state = abstract_ci("mlp", ScalarMlpKeys(), TOY)
    inputs, _ = make_inputs(TOY, (3,))
    with pytest.raises(ValueError, match="component_acts"):
        apply_ci(graphdef, state, inputs._replace(component_acts=None))


# ---- agreement with the compiler's IR ---------------------------------------------------

TINY = (REPO / "specs" / "tiny_llama.pd").read_text()
TMS = spec_text("tms_5-2")
TINY_CI = TINY[TINY.index("  ci chunkwise_transformer {"):TINY.index("  loss {")]
TMS_CI = TMS[TMS.index("  ci mlp {"):TMS.index("  loss {")]
VARIANT_BLOCKS = {
    "tms-vector": (TMS, TMS_CI, "  ci vector_mlp { hidden = [8, 3] }\n"),
    "tms-shared": (TMS, TMS_CI, "  ci shared_mlp { hidden = [16] }\n"),
    "tms-global": (TMS, TMS_CI, "  ci global_mlp { hidden = [32, 16] }\n"),
    "tiny-mlp": (TINY, TINY_CI, "  ci mlp { hidden = [4] }\n"),
    "tiny-global-mlp": (TINY, TINY_CI, "  ci global_mlp { hidden = [32] }\n"),
    "tiny-global": (TINY, TINY_CI, "  ci global_transformer { d_model = 32 blocks = 2 heads = 2 mlp = 48 }\n"),
    "tiny-global-first": (TINY, TINY_CI, "  ci global_transformer { d_model = 32 blocks = 1 heads = 4 mlp = 16 "
                                         "input = first_block_resid }\n"),
    "tiny-chunk2": (TINY, TINY_CI, "  ci chunkwise_transformer { blocks_per_chunk = 2 d_model = 32 blocks = 1 "
                                   "heads = 2 mlp = 64 }\n"),
    "tiny-chunk-first": (TINY, TINY_CI, "  ci chunkwise_transformer { blocks_per_chunk = 1 d_model = 32 blocks = 1 "
                                        "heads = 2 mlp = 64 input = first_block_resid }\n"),
    "tiny-chunk2-all": (TINY, TINY_CI, "  ci chunkwise_transformer { blocks_per_chunk = 2 d_model = 32 blocks = 1 "
                                       "heads = 2 mlp = 64 input = all_block_resids }\n"),
}


def ir_for(text: str | Path):
    if isinstance(text, Path):
        ir = run_passes(load_spec(text))
    else:
        result = check_text(text, str(REPO / "specs" / "tiny_llama.pd"))
        assert result.ok and result.spec is not None, [d.summary for d in result.diagnostics]
        ir = run_passes(result.spec)
    assert not ir.diagnostics, [d.summary for d in ir.diagnostics]
    return ir


def shapes_vs_ir(ir) -> tuple[dict, dict]:
    sites = sorted((s for _, s in ir.nodes(SiteNode)), key=lambda s: s.order)
    ci = ir.spec.block("ci")
    ours = ci_param_shapes(ci.label, ci.keys, ci_layout(sites), resid_width=ir.facts["target"].dims.get("hidden"))
    theirs = {t.path: (t.shape, t.trainable) for _, t in ir.nodes(TensorNode) if t.group == "ci"}
    return ours, theirs


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_parameter_shapes_match_the_ir_for_every_example_spec(spec: Path) -> None:
    ours, theirs = shapes_vs_ir(ir_for(spec))
    assert ours == theirs


@pytest.mark.parametrize("case", sorted(VARIANT_BLOCKS))
def test_parameter_shapes_match_the_ir_for_every_variant(case: str) -> None:
    text, old, new = VARIANT_BLOCKS[case]
    ours, theirs = shapes_vs_ir(ir_for(text.replace(old, new)))
    assert ours == theirs


def test_global_transformer_all_block_resids_reads_every_decomposed_layer() -> None:
    """The one global chunk covers every decomposed layer, so `all_block_resids` gives
    it `hidden × n_decomposed_layers` inputs (here 64 × 2) — in the network and the IR."""
    text = TINY.replace(TINY_CI, "  ci global_transformer { d_model = 32 blocks = 1 heads = 2 mlp = 16 "
                                 "input = all_block_resids }\n")
    ours, theirs = shapes_vs_ir(ir_for(text))
    assert ours["ci.in_proj"][0] == (128, 32)
    assert ours == theirs
