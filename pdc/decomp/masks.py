"""Sources, masks and routing (SPD_ALGORITHM.md §4). All draws are deterministic
functions of a key derived from (seed, step, term, draw, site), so a run is the same
on 1 or N devices (JAX's counter-based RNG does not depend on the layout).

Per site, stacked per kind: CI `[L, *lead, C]`, component sources `[L, *lead, C]`,
delta sources `[L, *lead]`, routes `[L, *lead]` (L = decomposed layers of the kind).
"""

from __future__ import annotations

from typing import Literal, Mapping

import jax
import jax.numpy as jnp

from pdc.decomp.components import SiteMask
from pdc.registry.types import Routing, StaticProbability

Array = jax.Array
Sampling = Literal["continuous", "binomial"]


def component_mask(ci_lower: Array, source: Array) -> Array:
    """m = ci + (1 − ci) · source: ci = 1 pins the mask to 1; ci = 0 leaves it free."""
    return ci_lower + (1.0 - ci_lower) * source.astype(ci_lower.dtype)


def draw_sources(key: Array, shape: tuple[int, ...], sampling: Sampling, dtype: jnp.dtype = jnp.float32) -> Array:
    """Component sources: U[0, 1) (continuous) or Bernoulli(0.5) in {0, 1} (binomial)."""
    if sampling == "binomial":
        return jax.random.bernoulli(key, 0.5, shape).astype(dtype)
    return jax.random.uniform(key, shape, dtype)


def stochastic_masks(key: Array, ci_lower: Mapping[str, Array], sampling: Sampling = "continuous",
                     with_delta: bool = True) -> dict[str, SiteMask]:
    """One stochastic draw for every kind: mask = ci + (1 − ci)·u, delta ~ U[0, 1) per position.
    Kinds are keyed in sorted order so the draw does not depend on dict insertion order."""
    out = {}
    for index, kind in enumerate(sorted(ci_lower)):
        ci = ci_lower[kind]
        mask_key, delta_key = jax.random.split(jax.random.fold_in(key, index))
        source = draw_sources(mask_key, ci.shape, sampling, ci.dtype)
        delta = jax.random.uniform(delta_key, ci.shape[:-1], ci.dtype) if with_delta else None
        out[kind] = SiteMask(component_mask(ci, source), delta)
    return out


def constant_masks(ci_lower: Mapping[str, Array], value: float) -> dict[str, SiteMask]:
    """Constant sources, no delta path: value 0 → mask = ci (CI-masked), 1 → mask = 1 (unmasked)."""
    return {kind: SiteMask(component_mask(ci, jnp.full_like(ci, value))) for kind, ci in ci_lower.items()}


def adversarial_masks(ci_lower: Mapping[str, Array], sources: Mapping[str, Array]) -> dict[str, SiteMask]:
    """mask = ci + (1 − ci)·src[..., :C], delta = src[..., C]; `src` broadcasts over the
    leading axes its scope leaves at size 1. The fp32 source is cast to the CI dtype."""
    out = {}
    for kind, ci in ci_lower.items():
        src = jnp.broadcast_to(sources[kind].astype(ci.dtype), ci.shape[:-1] + (ci.shape[-1] + 1,))
        out[kind] = SiteMask(component_mask(ci, src[..., :-1]), src[..., -1])
    return out


# ---- routing ---------------------------------------------------------------------------


def uniform_k_subset(key: Array, lead: tuple[int, ...], n_sites: int) -> Array:
    """Per position: k ~ Uniform{1..n}, then a uniformly random k-subset of the n sites.
    Returns bool [n_sites, *lead] (site axis first, in canonical site order)."""
    k_key, perm_key = jax.random.split(key)
    k = jax.random.randint(k_key, lead, 1, n_sites + 1)
    ranks = jnp.argsort(jax.random.uniform(perm_key, lead + (n_sites,)), axis=-1)
    routed = ranks < k[..., None]
    return jnp.moveaxis(routed, -1, 0)


def static_probability(key: Array, lead: tuple[int, ...], n_sites: int, p: float) -> Array:
    """Each site routed independently with probability p per position: bool [n_sites, *lead]."""
    return jax.random.bernoulli(key, p, (n_sites,) + lead)


def split_routes(routes: Array, layout: Mapping[str, tuple[int, ...]]) -> dict[str, Array]:
    """Site-axis routes [n_sites, *lead] → per kind [L, *lead], given each kind's site
    indices in canonical order (`layout[kind] = (i0, i1, ...)`)."""
    return {kind: routes[jnp.asarray(indices)] for kind, indices in layout.items()}


def with_routes(masks: Mapping[str, SiteMask], routes: Mapping[str, Array]) -> dict[str, SiteMask]:
    return {kind: SiteMask(m.mask, m.delta, routes[kind]) for kind, m in masks.items()}


# ---- sites, live sets and routing specs (added for pdc.decomp.losses) -------------------

Layout = Mapping[str, tuple[int, ...]]  # kind → canonical site index of each stacked layer


def site_order(layout: Layout) -> list[tuple[str, int]]:
    """Every site as (kind, index in the kind's stack), in canonical site order: what the
    canonical index `j` of a layerwise entry or a routes row refers to."""
    flat = [(site, kind, i) for kind, indices in layout.items() for i, site in enumerate(indices)]
    return [(kind, i) for _, kind, i in sorted(flat)]


def site_chunks(n_sites: int, per_chunk: int) -> list[tuple[int, ...]]:
    """Sequential groups of `per_chunk` canonical site indices (the last may be smaller):
    the live sets of a chunk-subset term (§5.5)."""
    return [tuple(range(start, min(start + per_chunk, n_sites))) for start in range(0, n_sites, per_chunk)]


def draw_routing(key: Array, routing: Routing, lead: tuple[int, ...], n_sites: int) -> Array | None:
    """A routing spec (`"all"`, `"uniform_k_subset"` or `static_probability(p)`) drawn for
    `n_sites` sites: bool `[n_sites, *lead]`, or None for `all` (every site decomposed
    everywhere, no `where` in the forward)."""
    if routing == "all":
        return None
    if routing == "uniform_k_subset":
        return uniform_k_subset(key, lead, n_sites)
    if isinstance(routing, StaticProbability):
        return static_probability(key, lead, n_sites, float(routing.p))
    raise ValueError(f"unknown routing {routing!r}")


def live_routes(layout: Layout, lead: tuple[int, ...], live: tuple[int, ...],
                routes: Array | None = None) -> dict[str, Array]:
    """Per-kind routes `[L, *lead]` that make only the `live` sites decomposed: live site
    `live[i]` follows `routes[i]` (or is routed everywhere when `routes` is None), every
    other site of a touched kind runs frozen. Kinds with no live site are left out, so
    the target runs them frozen with no V/U in the graph (Appendix A.2)."""
    position = {site: i for i, site in enumerate(live)}
    out = {}
    for kind, indices in layout.items():
        if not any(site in position for site in indices):
            continue
        per_layer = [routes[position[site]] if site in position and routes is not None
                     else jnp.full(lead, site in position, dtype=bool) for site in indices]
        out[kind] = jnp.stack(per_layer)
    return out


# ---- adversarial sources ------------------------------------------------------------------


def scope_dims(scope: str, lead: tuple[int, ...]) -> tuple[int, ...]:
    """The leading dims of an adversarial source for a canonical scope (§4.4); they
    broadcast against `lead`. Positionless (toy) leads allow only `c` and `bc`."""
    if len(lead) == 1:
        dims = {"c": (1,), "bc": lead}
    else:
        ones = (1,) * (len(lead) - 1)
        dims = {"c": (1,) + ones, "bc": lead[:1] + ones, "sc": (1,) + lead[1:], "bsc": lead}
    if scope not in dims:
        raise ValueError(f"scope {scope!r} is not valid for leading dims {lead}")
    return dims[scope]


def init_sources(key: Array, ci_shapes: Mapping[str, tuple[int, ...]], scope: str,
                 init: Literal["random", "ones", "zeroes"] = "random",
                 dtype: jnp.dtype = jnp.float32) -> dict[str, Array]:
    """Adversarial sources `[L, *scope_dims, C + 1]` per kind (the last channel drives the
    delta path), from the kinds' CI shapes `[L, *lead, C]`. Random sources are U[0, 1),
    keyed per kind by its sorted index like the stochastic draws."""
    out = {}
    for index, kind in enumerate(sorted(ci_shapes)):
        shape = ci_shapes[kind]
        full = shape[:1] + scope_dims(scope, tuple(shape[1:-1])) + (shape[-1] + 1,)
        if init == "random":
            out[kind] = jax.random.uniform(jax.random.fold_in(key, index), full, dtype)
        else:
            out[kind] = jnp.full(full, 1.0 if init == "ones" else 0.0, dtype)
    return out
