"""Every loss term and eval metric of `pdc.decomp.losses` / `pdc.decomp.metrics` against an
independent float64 NumPy reference.

The target is a tiny residual toy written twice (JAX below as the `forward` closure, NumPy
in `np_forward` with its hand-written backward for the PGD/PPGD source gradients): two
blocks, each `r += relu(r @ W_up) @ W_down`, both kinds decomposed and stacked over the two
layers, leading dims (B, T) so every adversary scope is exercised. Canonical site order is
up0, down0, up1, down1. Random bits (mask draws, routes, random source inits) are taken
from the library's samplers under the documented key structure; everything computed from
them is recomputed here.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pdc.decomp import losses as L
from pdc.decomp import metrics as M
from pdc.decomp.components import Factors, SiteMask, site_out
from pdc.decomp.masks import (adversarial_masks, draw_routing, init_sources, live_routes, site_chunks, site_order,
                              stochastic_masks, uniform_k_subset, with_routes)
from pdc.registry.types import Dense, Schedule, StaticProbability
from pdc.terms.faithfulness import faithfulness

B, T, D, H = 3, 4, 6, 5
LEAD = (B, T)
C = {"up": 4, "down": 3}
LAYOUT = {"up": (0, 2), "down": (1, 3)}
N_SITES = 4
RTOL = 1e-5


def key_of(seed: int) -> jax.Array:
    """Typed RBG keys: the library is agnostic to the PRNG implementation, and threefry's
    XLA:CPU compile (~2 s per sampler shape) would dominate this module's runtime.
    `test_raw_threefry_keys` covers the default raw uint32 keys."""
    return jax.random.key(seed, impl="rbg")


def _f32(a: np.ndarray) -> np.ndarray:
    """Round to float32 and back, so both implementations see identical inputs."""
    return np.asarray(a, np.float32).astype(np.float64)


def _make_toy() -> dict:
    rng = np.random.default_rng(0)
    toy = {
        "x": _f32(rng.normal(size=(B, T, D))),
        "W": {"up": _f32(rng.normal(size=(2, D, H)) * 1.2 / math.sqrt(D)),
              "down": _f32(rng.normal(size=(2, H, D)) * 1.2 / math.sqrt(H))},
        "V": {"up": _f32(rng.normal(size=(2, D, C["up"])) / math.sqrt(D)),
              "down": _f32(rng.normal(size=(2, H, C["down"])) / math.sqrt(H))},
        "U": {"up": _f32(rng.normal(size=(2, C["up"], H)) / math.sqrt(C["up"])),
              "down": _f32(rng.normal(size=(2, C["down"], D)) / math.sqrt(C["down"]))},
    }
    ci = {}
    for kind in ("up", "down"):
        values = rng.uniform(size=(2, B, T, C[kind]))
        values[0, 0, 0, 0], values[1, 1, 2, 1], values[0, 2, 3, 2] = 0.0, 1.0, 1.0
        ci[kind] = _f32(values)
    toy["ci"] = ci
    return toy


TOY = _make_toy()
CI_J = {k: jnp.asarray(v, jnp.float32) for k, v in TOY["ci"].items()}
SHAPES = {k: v.shape for k, v in TOY["ci"].items()}


# ---- the toy in JAX ------------------------------------------------------------------------


def _layer_mask(masks, kind: str, layer: int) -> SiteMask | None:
    m = masks.get(kind)
    if m is None:
        return None
    pick = (lambda a: None if a is None else a[layer])
    return SiteMask(pick(m.mask), pick(m.delta), pick(m.route))


PARAMS_J = {k: (jnp.asarray(TOY["W"][k], jnp.float32),
                Factors(jnp.asarray(TOY["V"][k], jnp.float32), jnp.asarray(TOY["U"][k], jnp.float32)))
            for k in ("up", "down")}
X_J = jnp.asarray(TOY["x"], jnp.float32)


def _jax_forward(masks) -> jax.Array:
    r = X_J
    for layer in range(2):
        site = {k: (W[layer], Factors(F.V[layer], F.U[layer])) for k, (W, F) in PARAMS_J.items()}
        a = jax.nn.relu(site_out(r, *site["up"], _layer_mask(masks, "up", layer)))
        r = r + site_out(a, *site["down"], _layer_mask(masks, "down", layer))
    return r


CLEAN_J = _jax_forward({})


# ---- the toy in NumPy, with its backward -------------------------------------------------------


def np_site(x, W, V, U, m, d, r):
    h, frozen = x @ V, x @ W
    hu = h @ U
    mm = np.ones_like(h) if m is None else m
    y = (h * mm) @ U
    if d is not None:
        y = y + d[..., None] * (frozen - hu)
    if r is not None:
        y = np.where(r[..., None], y, frozen)
    return y, (h, frozen, hu, mm, d, r)


def np_site_back(gy, cache, W, V, U):
    h, frozen, hu, mm, d, r = cache
    g_dec = gy if r is None else gy * r[..., None]
    gx = 0.0 if r is None else (gy * (1.0 - r[..., None])) @ W.T
    g_masked = g_dec @ U.T
    gx = gx + (g_masked * mm) @ V.T
    g_delta = None
    if d is not None:
        g_delta = np.sum(g_dec * (frozen - hu), axis=-1)
        gd = g_dec * d[..., None]
        gx = gx + gd @ W.T - (gd @ U.T) @ V.T
    return gx, g_masked * h, g_delta


def _np_layer(masks, kind, layer):
    m = masks.get(kind)
    if m is None:
        return None
    return tuple(None if m.get(f) is None else m[f][layer] for f in ("mask", "delta", "route"))


def np_forward(masks):
    r, caches = TOY["x"], []
    for layer in range(2):
        args = {k: (TOY["W"][k][layer], TOY["V"][k][layer], TOY["U"][k][layer]) for k in ("up", "down")}
        lm = {k: _np_layer(masks, k, layer) for k in ("up", "down")}
        y_up, c_up = np_site(r, *args["up"], *lm["up"]) if lm["up"] else (r @ args["up"][0], None)
        a = np.maximum(y_up, 0.0)
        y_dn, c_dn = np_site(a, *args["down"], *lm["down"]) if lm["down"] else (a @ args["down"][0], None)
        caches.append((c_up, y_up, c_dn))
        r = r + y_dn
    return r, caches


def np_backward(masks, caches, g_out):
    """Gradients of the output cotangent w.r.t. every live kind's mask and delta."""
    g_mask = {k: np.zeros(SHAPES[k]) for k in masks}
    g_delta = {k: np.zeros(SHAPES[k][:-1]) for k in masks}
    g_r = g_out
    for layer in (1, 0):
        c_up, y_up, c_dn = caches[layer]
        args = {k: (TOY["W"][k][layer], TOY["V"][k][layer], TOY["U"][k][layer]) for k in ("up", "down")}
        if c_dn is None:
            g_a = g_r @ args["down"][0].T
        else:
            g_a, gm, gd = np_site_back(g_r, c_dn, *args["down"])
            g_mask["down"][layer] += gm
            g_delta["down"][layer] += 0.0 if gd is None else gd
        g_y = g_a * (y_up > 0)
        if c_up is None:
            g_x = g_y @ args["up"][0].T
        else:
            g_x, gm, gd = np_site_back(g_y, c_up, *args["up"])
            g_mask["up"][layer] += gm
            g_delta["up"][layer] += 0.0 if gd is None else gd
        g_r = g_r + g_x
    return g_mask, g_delta


CLEAN_NP = np_forward({})[0]


def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_kl(clean, masked):
    lp, lq = np_log_softmax(clean), np_log_softmax(masked)
    return np.mean(np.sum(np.exp(lp) * (lp - lq), -1))


def np_kl_grad(clean, masked):
    n_pos = math.prod(clean.shape[:-1])
    return (np.exp(np_log_softmax(masked)) - np.exp(np_log_softmax(clean))) / n_pos


def np_mse(clean, masked):
    return np.mean((masked - clean) ** 2)


def np_mse_grad(clean, masked):
    return 2.0 * (masked - clean) / masked.size


NP_DIV = {"kl": (np_kl, np_kl_grad), "mse": (np_mse, np_mse_grad)}


def np_loss(masks, div="kl"):
    return NP_DIV[div][0](CLEAN_NP, np_forward(masks)[0])


def np_place(masks, live, routes):
    """The live set and routes of a forward, written independently of `live_routes`."""
    if routes is None and len(live) == N_SITES:
        return masks
    out = {}
    for kind, indices in LAYOUT.items():
        if not any(s in live for s in indices):
            continue
        r = np.zeros((len(indices),) + LEAD, bool)
        for i, s in enumerate(indices):
            if s in live:
                r[i] = True if routes is None else routes[live.index(s)]
        out[kind] = dict(masks[kind], route=r)
    return out


def to_np(masks) -> dict:
    conv = (lambda a: None if a is None else np.asarray(a, np.float64) if a.dtype != bool else np.asarray(a))
    return {k: {"mask": conv(m.mask), "delta": conv(m.delta), "route": conv(m.route)} for k, m in masks.items()}


def np_adv_masks(src):
    out = {}
    for kind, ci in TOY["ci"].items():
        s = np.broadcast_to(src[kind], ci.shape[:-1] + (ci.shape[-1] + 1,))
        out[kind] = {"mask": ci + (1.0 - ci) * s[..., :-1], "delta": s[..., -1]}
    return out


def np_source_grad(src, live=tuple(range(N_SITES)), routes=None, div="kl"):
    """d D(clean, f(adv masks(src))) / d src, reduced to each source's scope shape."""
    masks = np_place(np_adv_masks(src), live, routes)
    out, caches = np_forward(masks)
    g_mask, g_delta = np_backward(masks, caches, NP_DIV[div][1](CLEAN_NP, out))
    grads = {}
    for kind, s in src.items():
        if kind not in masks:
            grads[kind] = np.zeros_like(s)
            continue
        full = np.concatenate([g_mask[kind] * (1.0 - TOY["ci"][kind]), g_delta[kind][..., None]], axis=-1)
        axes = tuple(i for i in range(full.ndim) if s.shape[i] == 1 and full.shape[i] > 1)
        grads[kind] = full.sum(axis=axes, keepdims=True)
    return grads


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


# ---- divergences and faithfulness -------------------------------------------------------------


def test_backward_reference_matches_autodiff():
    """The NumPy backward used by the PGD references agrees with jax.grad (sanity of the test)."""
    src = {k: np.random.default_rng(1).uniform(size=(2, 1, T, C[k] + 1)) for k in C}
    g_np = np_source_grad(src)
    g_j = jax.grad(lambda s: L.kl_divergence(CLEAN_J, _jax_forward(adversarial_masks(CI_J, s))))(
        {k: jnp.asarray(v, jnp.float32) for k, v in src.items()})
    for k in C:
        assert rel(g_j[k], g_np[k]) < 1e-4


def test_kl_divergence_and_mse():
    rng = np.random.default_rng(2)
    a, b = _f32(rng.normal(size=(B, T, 7)) * 2), _f32(rng.normal(size=(B, T, 7)) * 2)
    assert rel(L.kl_divergence(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)), np_kl(a, b)) < RTOL
    assert rel(L.mse(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)), np_mse(a, b)) < RTOL
    assert float(L.kl_divergence(jnp.asarray(a), jnp.asarray(a))) == pytest.approx(0.0, abs=1e-6)
    assert float(L.kl_divergence(jnp.asarray(a, jnp.bfloat16), jnp.asarray(b, jnp.bfloat16))) > 0


@pytest.mark.parametrize("form", ["absolute", "relative"])
def test_faithfulness(form):
    W = {k: jnp.asarray(v, jnp.float32) for k, v in TOY["W"].items()}
    F = {k: Factors(jnp.asarray(TOY["V"][k], jnp.float32), jnp.asarray(TOY["U"][k], jnp.float32)) for k in W}
    deltas = {k: TOY["W"][k] - TOY["V"][k] @ TOY["U"][k] for k in W}
    if form == "absolute":
        ref = sum(np.sum(d ** 2) for d in deltas.values()) / sum(w.size for w in TOY["W"].values())
    else:
        ref = np.mean([np.sum(deltas[k][i] ** 2) / np.sum(TOY["W"][k][i] ** 2) for k in W for i in range(2)])
    assert rel(faithfulness(W, F, form), ref) < RTOL


# ---- stochastic, layerwise, CI-masked, unmasked ------------------------------------------------


STEP_KEY = jax.random.fold_in(key_of(7), 3)


def np_stochastic(mask_key, sampling="continuous"):
    """One stochastic draw re-derived from the documented keys: kind i of the sorted kinds
    splits fold_in(mask_key, i) into (component source key, delta key)."""
    out = {}
    for index, kind in enumerate(sorted(C)):
        source_key, delta_key = jax.random.split(jax.random.fold_in(mask_key, index))
        shape = SHAPES[kind]
        u = (jax.random.bernoulli(source_key, 0.5, shape) if sampling == "binomial"
             else jax.random.uniform(source_key, shape))
        ci = TOY["ci"][kind]
        out[kind] = {"mask": ci + (1.0 - ci) * np.asarray(u, np.float64),
                     "delta": np.asarray(jax.random.uniform(delta_key, shape[:-1]), np.float64)}
    return out


@pytest.mark.parametrize("routing,sampling,samples,chunk,div", [
    ("all", "continuous", 1, None, "kl"),
    ("uniform_k_subset", "continuous", 2, None, "kl"),
    (StaticProbability(fn="static_probability", p=0.5), "binomial", 1, None, "mse"),
    ("uniform_k_subset", "continuous", 2, 3, "kl"),
    ("all", "continuous", 1, 2, "mse"),
])
def test_stochastic_recon(routing, sampling, samples, chunk, div):
    key = L.term_key(STEP_KEY, "stochastic_recon")
    got = L.stochastic_recon(key, _jax_forward, CLEAN_J, CI_J, L.DIVERGENCES[div], LAYOUT, routing=routing,
                             sampling=sampling, samples=samples, sites_per_chunk=chunk)
    groups = [tuple(range(N_SITES))] if chunk is None else \
        [tuple(range(s, min(s + chunk, N_SITES))) for s in range(0, N_SITES, chunk)]
    ref = []
    for j, live in enumerate(groups):
        for k in range(samples):
            mask_key, routing_key = L.draw_keys(key, j, k)
            masks = np_stochastic(mask_key, sampling)
            routes = draw_routing(routing_key, routing, LEAD, len(live))
            routes = None if routes is None else np.asarray(routes)
            ref.append(np_loss(np_place(masks, live, routes), div))
    assert rel(got, np.mean(ref)) < RTOL


def test_layerwise_recon():
    key = L.term_key(STEP_KEY, "stochastic_recon_layerwise")
    got = L.layerwise_recon(key, _jax_forward, CLEAN_J, CI_J, L.mse, LAYOUT, samples=2)
    ref = [np_loss(np_place(np_stochastic(L.draw_keys(key, s, k)[0]), (s,), None), "mse")
           for s in range(N_SITES) for k in range(2)]
    assert rel(got, np.mean(ref)) < RTOL


def test_ci_masked_and_unmasked_recon():
    ci_masks = {k: {"mask": v, "delta": None} for k, v in TOY["ci"].items()}
    got = L.ci_masked_recon(None, _jax_forward, CLEAN_J, CI_J, L.kl_divergence, LAYOUT)
    assert rel(got, np_loss(ci_masks)) < RTOL
    key = L.term_key(STEP_KEY, "ci_masked_recon")
    got = L.ci_masked_recon(key, _jax_forward, CLEAN_J, CI_J, L.kl_divergence, LAYOUT, routing="uniform_k_subset")
    routes = np.asarray(uniform_k_subset(L.draw_keys(key, 0, 0)[1], LEAD, N_SITES))
    assert rel(got, np_loss(np_place(ci_masks, tuple(range(N_SITES)), routes))) < RTOL
    got = L.ci_masked_recon_layerwise(_jax_forward, CLEAN_J, CI_J, L.kl_divergence, LAYOUT)
    assert rel(got, np.mean([np_loss(np_place(ci_masks, (s,), None)) for s in range(N_SITES)])) < RTOL
    ones = {k: {"mask": None, "delta": None} for k in C}
    assert rel(L.unmasked_recon(_jax_forward, CLEAN_J, CI_J, L.kl_divergence), np_loss(ones)) < RTOL


# ---- fresh PGD -------------------------------------------------------------------------------


def np_scope_shape(kind, scope):
    dims = {"c": (1, 1), "bc": (B, 1), "sc": (1, T), "bsc": (B, T)}[L.canonical_scope(scope)]
    return (2,) + dims + (C[kind] + 1,)


def np_pgd(src, live, routes, steps, step_size, div):
    src = {k: v.copy() for k, v in src.items()}
    for _ in range(steps):
        grads = np_source_grad(src, live, routes, div)
        src = {k: np.clip(s + step_size * np.sign(grads[k]), 0, 1) for k, s in src.items()}
    return np_loss(np_place(np_adv_masks(src), live, routes), div)


@pytest.mark.parametrize("scope,init,routing,div", [
    ("c", "random", "all", "kl"), ("bc", "zeroes", "all", "mse"), ("sc", "zeroes", "uniform_k_subset", "kl"),
    ("per_batch_per_position", "random", "uniform_k_subset", "mse"),
])
def test_pgd_recon(scope, init, routing, div):
    key = L.term_key(STEP_KEY, "pgd_recon")
    fn = jax.jit(lambda k: L.pgd_recon(k, _jax_forward, CLEAN_J, CI_J, L.DIVERGENCES[div], LAYOUT, init=init,
                                       step_size=0.1, steps=3, scope=scope, routing=routing))
    entry_key, routing_key = L.entry_keys(key, 0)
    src = {k: np.asarray(v, np.float64) for k, v in init_sources(entry_key, SHAPES, L.canonical_scope(scope),
                                                                  init).items()}
    for kind in C:
        assert src[kind].shape == np_scope_shape(kind, scope)
        if init != "random":
            assert np.all(src[kind] == (1.0 if init == "ones" else 0.0))
    routes = draw_routing(routing_key, routing, LEAD, N_SITES)
    routes = None if routes is None else np.asarray(routes)
    assert rel(fn(key), np_pgd(src, tuple(range(N_SITES)), routes, 3, 0.1, div)) < RTOL


def test_pgd_recon_ones_init_starts_at_the_clean_model():
    """`init = ones` sets every mask and delta to 1, i.e. exactly the target: D = 0 and the
    source gradient is round-off, so the first sign step is noise in any implementation and
    no reference comparison is meaningful. Check the init and that starting point."""
    key = L.term_key(STEP_KEY, "pgd_recon")
    src = init_sources(L.entry_keys(key, 0)[0], SHAPES, "bc", "ones")
    assert all(np.all(np.asarray(s) == 1.0) and s.shape == np_scope_shape(k, "bc") for k, s in src.items())
    assert np_loss(np_adv_masks({k: np.asarray(v, np.float64) for k, v in src.items()}), "mse") < 1e-20
    got = L.pgd_recon(key, _jax_forward, CLEAN_J, CI_J, L.mse, LAYOUT, init="ones", scope="bc", steps=1)
    assert np.isfinite(float(got)) and float(got) >= 0.0


def test_pgd_recon_gradient_reaches_params_not_sources():
    """The final loss differentiates w.r.t. CI (live) and is flat in the ascent (stop_gradient)."""
    key = L.term_key(STEP_KEY, "pgd_recon")
    g = jax.jit(jax.grad(lambda ci: L.pgd_recon(key, _jax_forward, CLEAN_J, ci, L.kl_divergence, LAYOUT,
                                                steps=2)))(CI_J)
    assert all(float(jnp.max(jnp.abs(v))) > 0 for v in g.values())


def test_pgd_recon_layerwise():
    key = L.term_key(STEP_KEY, "pgd_recon_layerwise")
    got = jax.jit(lambda k: L.pgd_recon_layerwise(k, _jax_forward, CLEAN_J, CI_J, L.kl_divergence, LAYOUT,
                                                  scope="bc", steps=2, step_size=0.2))(key)
    ref = []
    for site in range(N_SITES):
        src = {k: np.asarray(v, np.float64) for k, v in init_sources(L.entry_keys(key, site)[0], SHAPES, "bc").items()}
        ref.append(np_pgd(src, (site,), None, 2, 0.2, "kl"))
    assert rel(got, np.mean(ref)) < RTOL


# ---- persistent PGD ----------------------------------------------------------------------------


OPT = L.SourceOptimizer("adam", 0.5, 0.99, 1e-8)


def np_adam(src, m, v, t, g, lr, opt=OPT):
    t = t + 1
    m = {k: opt.beta1 * m[k] + (1 - opt.beta1) * g[k] for k in src}
    v = {k: opt.beta2 * v[k] + (1 - opt.beta2) * g[k] ** 2 for k in src}
    new = {k: np.clip(src[k] + lr * (m[k] / (1 - opt.beta1 ** t)) / (np.sqrt(v[k] / (1 - opt.beta2 ** t)) + opt.eps),
                      0, 1) for k in src}
    return new, m, v, t


def _np_state(state):
    f = (lambda d: {k: np.asarray(a, np.float64) for k, a in d.items()})
    return f(state.sources), f(state.m), f(state.v), int(state.count)


def test_ppgd_init_scope_and_range():
    key = jax.random.fold_in(key_of(1), L.TERM_NAMES.index("persistent_pgd"))
    for scope in ("sc", "bsc", "broadcast_across_batch"):
        state = L.ppgd_init(key, SHAPES, scope)
        for kind in C:
            assert state.sources[kind].shape == np_scope_shape(kind, scope)
            assert float(state.sources[kind].min()) >= 0 and float(state.sources[kind].max()) < 1
            assert not np.any(np.asarray(state.m[kind])) and not np.any(np.asarray(state.v[kind]))
        assert int(state.count) == 0
    with pytest.raises(ValueError):
        init_sources(key, {"k": (1, 8, 3)}, "sc")  # positionless leads have no sc scope


def test_ppgd_warmup_main_loss_and_final_ascent():
    state = L.ppgd_init(key_of(5), SHAPES, "sc")
    lr = 0.05
    warm = jax.jit(lambda s: L.ppgd_warmup(s, _jax_forward, CLEAN_J, CI_J, L.kl_divergence, lr, 3, OPT))(state)
    src, m, v, t = _np_state(state)
    for _ in range(3):
        src, m, v, t = np_adam(src, m, v, t, np_source_grad(src), lr)
    got = _np_state(warm)
    assert got[3] == t == 3
    for k in C:
        assert rel(got[0][k], src[k]) < RTOL and rel(got[1][k], m[k]) < 1e-4 and rel(got[2][k], v[k]) < 1e-4

    key = L.term_key(STEP_KEY, "persistent_pgd")
    loss = lambda s: L.ppgd_recon(key, _jax_forward, CLEAN_J, CI_J, s, L.kl_divergence, LAYOUT,  # noqa: E731
                                  routing="uniform_k_subset")
    value, grads = jax.value_and_grad(loss)(warm.sources)
    routes = np.asarray(uniform_k_subset(L.draw_keys(key, 0, 0)[1], LEAD, N_SITES))
    live = tuple(range(N_SITES))
    src_w = got[0]
    assert rel(value, np_loss(np_place(np_adv_masks(src_w), live, routes))) < RTOL
    g_np = np_source_grad(src_w, live, routes)
    for k in C:
        assert rel(grads[k], g_np[k]) < 1e-4

    coeff = 0.01  # the main backward saw coeff · L; the ascent must undo it
    final = L.ppgd_final_ascent(warm, {k: coeff * g for k, g in grads.items()}, coeff, lr, OPT)
    ref = np_adam(*got, {k: np.asarray(g, np.float64) for k, g in grads.items()}, lr)
    undivided = np_adam(*got, {k: coeff * np.asarray(g, np.float64) for k, g in grads.items()}, lr)
    out = _np_state(final)
    assert out[3] == 4
    for k in C:
        assert rel(out[0][k], ref[0][k]) < RTOL and rel(out[1][k], ref[1][k]) < 1e-4
        assert rel(undivided[0][k], ref[0][k]) > 1e-3  # the scaling is observable


def test_ppgd_sources_stay_in_unit_interval():
    """Many Adam and sign ascents with large, biased gradients: every source stays in [0, 1]
    and some reach the bounds (the clamp, not the gradient, keeps them there)."""
    state = L.ppgd_init(key_of(2), SHAPES, "bsc")

    def body(s, i):
        grads = {k: 100.0 * jax.random.normal(jax.random.fold_in(key_of(0), i), v.shape)
                 + 50.0 * (k == "up") for k, v in s.sources.items()}
        s = jax.lax.cond(i % 2 == 1, lambda: L.ppgd_final_ascent(s, grads, 0.5, 0.3, OPT),
                         lambda: L.source_ascent(s, grads, 0.3, L.SourceOptimizer("sign")))
        leaves = list(s.sources.values())
        return s, (jnp.min(jnp.stack([x.min() for x in leaves])), jnp.max(jnp.stack([x.max() for x in leaves])))

    final, (lows, highs) = jax.jit(lambda s: jax.lax.scan(body, s, jnp.arange(150)))(state)
    assert float(lows.min()) >= 0.0 and float(highs.max()) <= 1.0
    assert float(highs[-1]) == 1.0 and float(lows[-1]) == 0.0
    assert int(final.count) == 150


def test_ppgd_bf16_storage():
    """`source_dtype = bf16` stores sources and moments in bf16; the update runs in fp32."""
    state = L.ppgd_init(key_of(4), SHAPES, "c", jnp.bfloat16)
    new = L.ppgd_final_ascent(state, {k: jnp.ones(s.shape, jnp.float32) for k, s in state.sources.items()},
                              0.5, 0.01, OPT)
    assert all(x.dtype == jnp.bfloat16 for d in (new.sources, new.m, new.v) for x in d.values())
    assert all(float(x.min()) >= 0 and float(x.max()) <= 1 for x in new.sources.values())


def test_ppgd_start_frac_gating():
    assert [bool(L.ppgd_active(s, 100, 0.1)) for s in (0, 9, 10, 99)] == [False, False, True, True]
    assert bool(L.ppgd_active(0, 100, 0.0))
    assert [bool(L.ppgd_active(s, 30, 0.1)) for s in (2, 3)] == [False, True]
    active = jax.jit(lambda s: L.ppgd_active(s, 100, 0.25))
    assert [bool(active(s)) for s in (24, 25)] == [False, True]

    state = L.ppgd_init(key_of(3), SHAPES, "sc")
    state = L.source_ascent(state, {k: jnp.ones_like(s) for k, s in state.sources.items()}, 0.1, OPT)
    grads = {k: jnp.full_like(s, 3.0) for k, s in state.sources.items()}
    off = jnp.asarray(False)
    for new in (L.ppgd_final_ascent(state, grads, 0.5, 0.1, OPT, active=off),
                L.ppgd_warmup(state, _jax_forward, CLEAN_J, CI_J, L.kl_divergence, 0.1, 2, OPT, active=off)):
        for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(state)):
            assert np.array_equal(np.asarray(a), np.asarray(b))
    on = L.ppgd_final_ascent(state, grads, 0.5, 0.1, OPT, active=jnp.asarray(True))
    assert int(on.count) == int(state.count) + 1
    assert float(L.ppgd_recon(None, _jax_forward, CLEAN_J, CI_J, state.sources, L.kl_divergence, LAYOUT,
                              active=off)) == 0.0


# ---- importance minimality -------------------------------------------------------------------


def _ci_upper():
    rng = np.random.default_rng(4)
    out = {k: _f32(rng.uniform(0, 1.3, size=SHAPES[k])) for k in C}
    out["up"][0, 0, 0, :] = 0.0
    return out


def np_rates(per_value):
    n_pos = B * T
    return [v.sum(axis=(1, 2)) / n_pos for v in per_value.values()], n_pos


def np_penalty(per_value, frequency):
    rates, n_pos = np_rates(per_value)
    value = sum(r.sum() for r in rates)
    if frequency is None:
        return value, 0.0
    a = n_pos if frequency == "auto" else frequency
    return value, sum(np.sum(r * np.log2(1 + a * r)) for r in rates)


@pytest.mark.parametrize("frequency", [None, 1_048_576, "auto"])
def test_importance_minimality(frequency):
    ci = _ci_upper()
    p, eps = 0.9, 1e-6
    got = jax.jit(lambda c, p: L.importance_minimality(c, p, eps, frequency))(
        {k: jnp.asarray(v, jnp.float32) for k, v in ci.items()}, jnp.float32(p))
    value, freq = np_penalty({k: (v + eps) ** p for k, v in ci.items()}, frequency)
    assert rel(got.value, value) < RTOL
    assert (float(got.frequency) == 0.0) if frequency is None else rel(got.frequency, freq) < RTOL


@pytest.mark.parametrize("normalize,frequency", [(False, None), (True, "auto"), (True, 4096)])
def test_smooth_l0(normalize, frequency):
    ci, gamma = _ci_upper(), 0.3
    got = L.smooth_l0({k: jnp.asarray(v, jnp.float32) for k, v in ci.items()}, gamma, normalize, frequency)
    phi = {k: v ** 2 / (v ** 2 + gamma ** 2) * ((1 + gamma ** 2) if normalize else 1.0) for k, v in ci.items()}
    value, freq = np_penalty(phi, frequency)
    assert rel(got.value, value) < RTOL
    assert (float(got.frequency) == 0.0) if frequency is None else rel(got.frequency, freq) < RTOL
    one = L.smooth_l0({"k": jnp.ones((1, 2, 1))}, 0.01, normalize_at_one=True)
    assert float(one.value) == pytest.approx(1.0, rel=1e-6)


# ---- schedules and clipping --------------------------------------------------------------------


def _sched(fn, start, **kw):
    return Schedule(fn=fn, start=start, **kw)


@pytest.mark.parametrize("schedule,total,expected", [
    (_sched("cosine", 1e-3, final=0.1), 101, {0: 1e-3, 50: 5.5e-4, 100: 1e-4}),
    (_sched("cosine", 2.0), 11, {0: 2.0, 5: 1.0, 10: 0.0}),
    (_sched("linear", 2.0, end=0.4), 11, {0: 2.0, 5: 1.2, 10: 0.4}),
    (_sched("constant", 0.01, warmup=0.025), 200, {0: 0.0, 2: 0.004, 5: 0.01, 100: 0.01, 199: 0.01}),
    (_sched("constant", 0.5, warmup=10), 100, {0: 0.0, 5: 0.25, 10: 0.5, 99: 0.5}),
    (_sched("cosine", 1.0, final=0.1, warmup=10), 111, {0: 0.0, 5: 0.5, 10: 1.0, 60: 0.55, 110: 0.1}),
    (_sched("linear", 2.0, end=0.4, start_frac=0.2, end_frac=0.6), 100,
     {0: 2.0, 20: 2.0, 39: 2.0 - 1.6 * 19 / 39, 59: 0.4, 99: 0.4}),
])
def test_schedule_value(schedule, total, expected):
    traced = jax.jit(lambda s: L.schedule_value(schedule, s, total))
    for step, value in expected.items():
        for got in (L.schedule_value(schedule, step, total), traced(step)):
            assert float(got) == pytest.approx(value, rel=RTOL, abs=1e-12)
    last = max(expected)
    assert float(L.schedule_value(schedule, last, total)) == np.float32(schedule.end_value())


@pytest.mark.parametrize("schedule,total,expected", [
    # p 2.0 → 0.4 over step / total (§5.8), as the hand-written trainer and torch: p(s) = 2 − 1.6·s/total
    (_sched("linear", 2.0, end=0.4), 10, {0: 2.0, 1: 1.84, 5: 1.2, 9: 0.56, 10: 0.4}),
    (_sched("linear", 2.0, end=0.4), 100_000, {0: 2.0, 50_000: 1.2, 99_999: 0.400016}),
    # ramp over fractions 0.2 → 0.6 of 100 steps: (s/100 − 0.2) / 0.4
    (_sched("linear", 2.0, end=0.4, start_frac=0.2, end_frac=0.6), 100,
     {0: 2.0, 20: 2.0, 30: 1.6, 40: 1.2, 59: 0.44, 60: 0.4, 99: 0.4}),
    # cosine γ 1.0 → 0.1 over 4 steps: 0.1 + 0.9·½(1 + cos(π s/4))
    (_sched("cosine", 1.0, end=0.1), 4, {0: 1.0, 1: 0.1 + 0.45 * (1 + 0.5 ** 0.5), 2: 0.55, 4: 0.1}),
    (_sched("constant", 0.7), 10, {0: 0.7, 9: 0.7}),
])
def test_schedule_value_anneal(schedule, total, expected):
    """p and γ anneal over `step / total`, not `step / (total − 1)` (issue 32)."""
    traced = jax.jit(lambda s: L.schedule_value(schedule, s, total, "anneal"))
    for step, value in expected.items():
        for got in (L.schedule_value(schedule, step, total, "anneal"), traced(step)):
            assert float(got) == pytest.approx(value, rel=RTOL, abs=1e-12)


@pytest.mark.parametrize("schedule,total,expected", [
    # zero warm-up: 0 at step 0, the full rate from step 1 (the hand-written trainer's max(warmup, 1))
    (_sched("constant", 0.01), 100, {0: 0.0, 1: 0.01, 2: 0.01, 99: 0.01}),
    # a warm-up of ≥ 1 step is as for any learning rate: 2.5% of 200 = 5 steps, 0.01·s/5
    (_sched("constant", 0.01, warmup=0.025), 200, {0: 0.0, 1: 0.002, 2: 0.004, 5: 0.01, 199: 0.01}),
    # 2.5% of 20 steps floors to 0 steps: again 0 only at step 0
    (_sched("constant", 0.01, warmup=0.025), 20, {0: 0.0, 1: 0.01, 19: 0.01}),
])
def test_schedule_value_source_lr(schedule, total, expected):
    """The adversary's source step at step 0 is 0 even with no warm-up (issue 32)."""
    for step, value in expected.items():
        got = L.schedule_value(schedule, step, total, "source_lr")
        assert float(got) == pytest.approx(value, rel=RTOL, abs=1e-12)
    lr_at_0 = float(L.schedule_value(schedule, 0, total, "lr"))  # a learning rate keeps the warm-up it is given
    assert lr_at_0 == (0.0 if L.warmup_steps(schedule, total) else np.float32(0.01))


def test_clip_by_global_norm_eps():
    rng = np.random.default_rng(5)
    grads = {"a": rng.normal(size=(3, 4)).astype(np.float32), "b": rng.normal(size=(5,)).astype(np.float32)}
    norm = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads.values()))
    for max_norm in (0.01, 100.0):
        tx = L.clip_by_global_norm_eps(max_norm)
        out, _ = tx.update({k: jnp.asarray(v) for k, v in grads.items()}, tx.init(grads))
        scale = min(1.0, max_norm / (norm + 1e-6))
        for k in grads:
            assert rel(out[k], grads[k].astype(np.float64) * scale) < RTOL
    chained = optax.chain(L.clip_by_global_norm_eps(0.01), optax.adamw(1e-3, weight_decay=0.0))
    chained.update(grads, chained.init(grads), grads)


# ---- routing ------------------------------------------------------------------------------------


def test_routing_off_equals_frozen():
    masks = stochastic_masks(key_of(0), CI_J)
    off = with_routes(masks, {k: jnp.zeros(SHAPES[k][:-1], bool) for k in C})
    assert np.array_equal(np.asarray(_jax_forward(off)), np.asarray(CLEAN_J))
    assert live_routes(LAYOUT, LEAD, ()) == {}
    none_routed = jnp.zeros((N_SITES,) + LEAD, bool)
    placed = live_routes(LAYOUT, LEAD, tuple(range(N_SITES)), none_routed)
    assert np.array_equal(np.asarray(_jax_forward(with_routes(masks, placed))), np.asarray(CLEAN_J))


def test_uniform_k_subset_counts():
    for n in (1, 3, 4):
        routes = np.asarray(uniform_k_subset(key_of(n), (500, 4), n))
        counts = routes.sum(axis=0)
        assert routes.shape == (n, 500, 4) and counts.min() >= 1 and counts.max() <= n
        assert set(np.unique(counts)) == set(range(1, n + 1))
        assert np.all(routes.mean(axis=(1, 2)) > 0.3)


def test_raw_threefry_keys():
    """The default raw uint32 (threefry) keys work the same way as typed keys."""
    key = L.term_key(jax.random.PRNGKey(0), "stochastic_recon")
    got = L.stochastic_recon(key, _jax_forward, CLEAN_J, CI_J, L.kl_divergence, LAYOUT, routing="uniform_k_subset")
    mask_key, routing_key = L.draw_keys(key, 0, 0)
    routes = np.asarray(uniform_k_subset(routing_key, LEAD, N_SITES))
    assert rel(got, np_loss(np_place(np_stochastic(mask_key), tuple(range(N_SITES)), routes))) < RTOL


def test_layout_helpers():
    assert site_order(LAYOUT) == [("up", 0), ("down", 0), ("up", 1), ("down", 1)]
    assert site_chunks(4, 3) == [(0, 1, 2), (3,)]
    assert draw_routing(key_of(0), "all", LEAD, 4) is None
    routes = live_routes(LAYOUT, LEAD, (1, 2))
    assert np.array_equal(np.asarray(routes["up"][:, 0, 0]), [False, True])
    assert np.array_equal(np.asarray(routes["down"][:, 0, 0]), [True, False])
    assert L.term_key(STEP_KEY, "pgd_recon").shape == STEP_KEY.shape


# ---- metrics ------------------------------------------------------------------------------------


def test_ci_l0_and_activation_density():
    ci = {k: v.copy() for k, v in TOY["ci"].items()}
    ci["up"][0, 0, 1, :] = 0.1  # exactly at the threshold: not counted (strict)
    ci_j = {k: jnp.asarray(v, jnp.float32) for k, v in ci.items()}
    for threshold in (0.0, 0.1):
        l0 = M.ci_l0(ci_j, threshold)
        dens = M.activation_density(ci_j, threshold)
        for k, v in ci.items():
            thr = np.float32(threshold)
            assert rel(l0[k], (v.astype(np.float32) > thr).sum(-1).mean(axis=(1, 2))) < RTOL
            assert rel(dens[k], (v.astype(np.float32) > thr).mean(axis=(1, 2))) < RTOL
    per_site = M.by_site(M.ci_l0(ci_j), {"up": ("h.0.up", "h.1.up"), "down": ("h.0.down", "h.1.down")})
    groups = M.l0_groups({k: float(v) for k, v in per_site.items()}, {"layer_0": ["h.0.*"], "total": ["*"]})
    assert groups["total"] == pytest.approx(sum(float(v) for v in per_site.values()))
    assert groups["layer_0"] == pytest.approx(float(per_site["h.0.up"]) + float(per_site["h.0.down"]))


def test_alive_tracker_counts_batches_since_a_component_fired():
    """The reference's AliveComponentsTracker on three hand-written batches: [L=2, B=2, C=3]."""
    fired = [np.array([[[0.5, 0.0, 0.0], [0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.2]]]),
             np.array([[[0.0, 0.1, 0.0], [0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]),
             np.array([[[0.0, 0.0, 0.0], [0.3, 0.0, 0.0]], [[0.0, 0.9, 0.0], [0.0, 0.0, 0.0]]])]
    since = {"up": jnp.zeros((2, 3), jnp.int32)}
    for ci in fired:
        since = M.batches_since_fired(since, {"up": jnp.asarray(ci, jnp.float32)}, threshold=0.1)
    # layer 0: c0 fired on batch 3 (0), c1 only at the threshold on batch 2 (strict: not counted), c2 never
    # layer 1: c0 never, c1 fired on batch 3, c2 fired on batch 1 (then 2 batches without)
    assert np.asarray(since["up"]).tolist() == [[0, 3, 3], [3, 0, 2]]
    assert np.asarray(M.n_alive(since, 1)["up"]).tolist() == [1, 1]
    assert np.asarray(M.n_alive(since, 3)["up"]).tolist() == [1, 2]
    assert np.asarray(M.n_alive(since, 4)["up"]).tolist() == [3, 3]


def np_ce(logits, tokens):
    lq = np_log_softmax(logits[:, :-1])
    return -np.mean(np.take_along_axis(lq, tokens[:, 1:, None], axis=-1))


def test_ce_kl_losses():
    tokens = np.random.default_rng(6).integers(0, D, size=LEAD)
    key = key_of(11)
    got = M.ce_kl_losses(key, _jax_forward, CLEAN_J, jnp.asarray(tokens), CI_J, rounding_threshold=0.3)
    drawn = M.ce_kl_masks(key, CI_J, 0.3)
    ci = TOY["ci"]
    variants = {
        "ci_masked": {k: {"mask": v} for k, v in ci.items()},
        "unmasked": {k: {} for k in ci},
        "stoch_masked": to_np(drawn["stoch_masked"]),
        "random_masked": {k: {"mask": np.asarray(m.mask, np.float64)} for k, m in drawn["random_masked"].items()},
        "rounded_masked": {k: {"mask": (v.astype(np.float32) > np.float32(0.3)).astype(float)} for k, v in ci.items()},
        "zero_masked": {k: {"mask": np.zeros_like(v)} for k, v in ci.items()},
    }
    assert drawn["stoch_masked"]["up"].delta is not None
    assert all(m.delta is None for v, ms in drawn.items() if v != "stoch_masked" for m in ms.values())
    ce_t = np_ce(CLEAN_NP, tokens)
    ce = {}
    for v, masks in variants.items():
        out = np_forward(masks)[0]
        ce[v] = np_ce(out, tokens)
        assert rel(got[f"kl_{v}"], np_kl(CLEAN_NP, out)) < RTOL
    for v in M.CE_KL_VARIANTS[:-1]:
        assert rel(got[f"ce_difference_{v}"], ce[v] - ce_t) < 1e-4
        assert rel(got[f"ce_unrecovered_{v}"], (ce[v] - ce_t) / (ce["zero_masked"] - ce_t)) < 1e-4
    assert len(got) == 6 + 2 * 5


def test_pgd_recon_probe():
    key = key_of(12)
    got = jax.jit(lambda k: M.pgd_recon_probe(k, _jax_forward, CLEAN_J, CI_J, steps=4, step_size=0.1))(key)
    src = {k: np.asarray(v, np.float64) for k, v in init_sources(L.entry_keys(key, 0)[0], SHAPES, "c").items()}
    assert all(s.shape == np_scope_shape(k, "c") for k, s in src.items())
    assert rel(got, np_pgd(src, tuple(range(N_SITES)), None, 4, 0.1, "kl")) < RTOL


def test_ci_l0_counts_co_active_components_per_probe_row():
    """eval's `probe_l0` is `ci_l0` on the one-hot probe `[L, F, C]`."""
    ci = np.array([[1.0, 0.0, 0.0, 0.2],    # two above 0.1
                   [0.0, 0.95, 0.1, 0.0],   # one (0.1 is not above 0.1)
                   [0.5, 0.5, 0.5, 0.05]])  # three
    assert float(M.ci_l0({"k": ci[None]}, 0.1)["k"][0]) == pytest.approx(2.0)
    assert float(M.ci_l0({"k": np.eye(5)[None]}, 0.1)["k"][0]) == 1.0


def test_identity_ci_error():
    assert np.array_equal(np.asarray(M.identity_probe(3)), np.eye(3, dtype=np.float32) * np.float32(0.75))
    eye = np.eye(5, 8)
    assert M.identity_ci_error(eye, "identity") == 0
    perm = eye[:, np.random.default_rng(0).permutation(8)]
    assert M.identity_ci_error(perm * 0.95, "identity") == 0
    bad = perm.copy()
    bad[0, np.argmax(perm[1])] = 0.5  # one off-diagonal entry above tol
    bad[2] *= 0.8  # one diagonal entry below 1 − tol
    assert M.identity_ci_error(bad, "identity", tol=0.1) == 2
    assert M.identity_ci_error(bad, "identity", tol=0.25) == 1
    extra = eye.copy()
    extra[3, 7] = 0.4  # outside the square block: still counted
    assert M.identity_ci_error(extra, "identity") == 1


def test_dense_ci_error():
    dense = np.zeros((5, 6))
    dense[:, [1, 4]] = 1.0
    assert M.identity_ci_error(dense, Dense(fn="dense", k=2)) == 0
    assert M.identity_ci_error(dense, Dense(fn="dense", k=3)) == 1  # a third column has no strong entry
    noisy = dense.copy()
    noisy[2, 0] = 0.3
    assert M.identity_ci_error(noisy, Dense(fn="dense", k=2)) == 1
    weak = dense.copy()
    weak[:, 4] = 0.5
    assert M.identity_ci_error(weak, Dense(fn="dense", k=2)) == 1  # no entry ≥ 1 − tol in a top-2 column


def test_mmcs_ml2r():
    rng = np.random.default_rng(8)
    n, h = 5, 2
    W = rng.normal(size=(n, h)).astype(np.float32)  # TMS linear1 [features, hidden]
    exact = Factors(jnp.eye(n, dtype=jnp.float32), jnp.asarray(W))
    assert float(M.mmcs(jnp.asarray(W), exact)) == pytest.approx(1.0, rel=RTOL)
    assert float(M.ml2r(jnp.asarray(W), exact)) == pytest.approx(1.0, rel=RTOL)
    padded = Factors(jnp.concatenate([2 * jnp.eye(n), jnp.zeros((n, 3))], 1), jnp.concatenate(
        [jnp.asarray(W) / 2, jnp.asarray(rng.normal(size=(3, h)), jnp.float32)], 0))
    assert float(M.mmcs(jnp.asarray(W), padded)) == pytest.approx(1.0, rel=RTOL)
    assert float(M.ml2r(jnp.asarray(W), padded)) == pytest.approx(1.0, rel=RTOL)
    V, U = rng.normal(size=(n, 7)).astype(np.float32), rng.normal(size=(7, h)).astype(np.float32)
    Wd, Vd, Ud = (a.astype(np.float64) for a in (W, V, U))
    sub = Vd.T[:, :, None] * Ud[:, None, :]  # [C, n, h]: V[j, c]·U[c, :]
    cos = np.einsum("cjh,jh->cj", sub, Wd) / (np.linalg.norm(sub, axis=-1) * np.linalg.norm(Wd, axis=-1))
    best = cos.argmax(0)
    ratio = np.linalg.norm(sub[best, np.arange(n)], axis=-1) / np.linalg.norm(Wd, axis=-1)
    factors = Factors(jnp.asarray(V), jnp.asarray(U))
    assert rel(M.mmcs(jnp.asarray(W), factors), cos.max(0).mean()) < RTOL
    assert rel(M.ml2r(jnp.asarray(W), factors), ratio.mean()) < RTOL


def test_mmcs_ml2r_rule_out_dead_components():
    """A dead component (tiny norm) pointing exactly along a feature must not win the argmax:
    with `alive`, feature 0 is matched by the live component that carries its norm."""
    W = jnp.asarray([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], jnp.float32)
    live = Factors(jnp.eye(3, dtype=jnp.float32), 0.9 * W)  # three live components at 0.9 norm, cos 1
    tilted = live.U.at[0].set(jnp.asarray([0.9, 0.1]))       # feature 0's live component is tilted
    V = jnp.concatenate([live.V, jnp.asarray([[1e-4], [0.0], [0.0]])], 1)
    U = jnp.concatenate([tilted, jnp.asarray([[1.0, 0.0]])], 0)  # component 3: dead, exactly along feature 0
    factors, alive = Factors(V, U), jnp.asarray([True, True, True, False])
    assert float(M.mmcs(W, factors)) == pytest.approx(1.0, rel=RTOL)  # the dead one wins without `alive`
    assert float(M.ml2r(W, factors)) == pytest.approx((1e-4 + 0.9 + 0.9) / 3, rel=RTOL)
    cos0 = 0.9 / np.hypot(0.9, 0.1)
    assert float(M.mmcs(W, factors, alive)) == pytest.approx((cos0 + 2) / 3, rel=RTOL)
    assert float(M.ml2r(W, factors, alive)) == pytest.approx((np.hypot(0.9, 0.1) + 1.8) / 3, rel=RTOL)


def test_mmcs_ml2r_read_features_on_columns_of_a_site_that_writes_them():
    """TMS `linear2` is `[hidden, features]`: oriented by `feature_major(..., columns=True)`,
    the exact factorisation V = W, U = I (component j writes output feature j) scores 1."""
    rng = np.random.default_rng(3)
    W2 = jnp.asarray(rng.normal(size=(2, 5)), jnp.float32)
    exact = Factors(W2, jnp.eye(5, dtype=jnp.float32))
    W, factors = M.feature_major(W2, exact, columns=True)
    assert float(M.mmcs(W, factors)) == pytest.approx(1.0, rel=RTOL)
    assert float(M.ml2r(W, factors)) == pytest.approx(1.0, rel=RTOL)
    assert float(M.mmcs(W2, exact)) < 0.99  # rows of W2 mix every feature
