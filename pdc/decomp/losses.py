"""The loss terms of SPD/VPD (SPD_ALGORITHM.md §5–6) as pure JAX functions.

Every term is independent of the target: it receives `forward`, the target's masked
forward with its components (and frozen weights) already bound, mapping per-kind
`SiteMask`s to the final output (a kind left out runs frozen); the stop-gradient clean
output; and per-kind CI `[L, *lead, C]` (`lower` for masks, `upper` for importance
minimality). `divergence(clean, masked)` is `kl_divergence` for LMs and `mse` for toys.
Terms that enumerate sites take the target's `layout` (kind → canonical site index of
each stacked layer), which fixes chunk membership and the per-site key order.

RNG (the §5.12 structure, adapted). A step key is `fold_in(run_key, step)`. A term's key
is `term_key(step_key, name) = fold_in(step_key, 1 + TERM_NAMES.index(name))`, i.e. it is
keyed by the term's *name* in the registry (`pdc.registry.loss.TERMS`), not its position
in a spec, so reordering terms in a spec (which `pdc fmt` may do) changes nothing; a spec
holds each term at most once. Inside a term, entry `j` (chunk `j`, or canonical site `j`
for layerwise terms; 0 otherwise) gives `(entry_key, routing_key) = split(fold_in(term_key,
j))`; draw `k` uses `fold_in(entry_key, k)` for its masks and `fold_in(routing_key, k)` for
its routes (`draw_keys`). Fresh PGD initialises its sources from `entry_key` and draws its
routing once from `routing_key`. Within a mask draw, kind `i` of the sorted kinds uses
`fold_in(mask_key, i)` (`pdc.decomp.masks`). Persistent sources are initialised from
`fold_in(src_key, TERM_NAMES.index("persistent_pgd"))`. Every draw is a counter-based
function of these keys, so the run is the same on 1 or N devices.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Literal, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from pdc.decomp.components import Factors, SiteMask, weight_delta
from pdc.decomp.head import Head, logits as head_logits
from pdc.decomp.pins import pin_vocab
from pdc.decomp.masks import (Layout, adversarial_masks, draw_routing, init_sources, live_routes, site_chunks,
                              stochastic_masks)
from pdc.registry.loss import SCOPE_ALIASES, TERMS
from pdc.registry.types import Routing, Schedule

Array = jax.Array
Forward = Callable[[Mapping[str, SiteMask]], Array]
Divergence = Callable[[Array, Array], Array]
Masks = Mapping[str, SiteMask]
Sources = Mapping[str, Array]
Init = Literal["random", "ones", "zeroes"]
TERM_NAMES: tuple[str, ...] = tuple(term.name for term in TERMS)


# ---- keys -------------------------------------------------------------------------------


def term_key(step_key: Array, name: str) -> Array:
    """The key of term `name` at one step; by name, so spec order does not matter."""
    return jax.random.fold_in(step_key, 1 + TERM_NAMES.index(name))


def entry_keys(key: Array, entry: int) -> tuple[Array, Array]:
    """(entry key, routing key) of entry `entry` (a chunk or a layerwise site) of a term."""
    entry_key, routing_key = jax.random.split(jax.random.fold_in(key, entry))
    return entry_key, routing_key


def draw_keys(key: Array, entry: int, draw: int) -> tuple[Array, Array]:
    """(mask key, routing key) of draw `draw` of entry `entry` of a term."""
    entry_key, routing_key = entry_keys(key, entry)
    return jax.random.fold_in(entry_key, draw), jax.random.fold_in(routing_key, draw)


def canonical_scope(scope: str) -> str:
    """Legacy scope names (`shared_across_batch`, ...) → `c`/`bc`/`sc`/`bsc`."""
    return SCOPE_ALIASES.get(scope, scope)


# ---- divergences and faithfulness -------------------------------------------------------


def kl_divergence(clean_logits: Array, masked_logits: Array) -> Array:
    """KL(softmax(clean) ‖ softmax(masked)) per position, mean over positions, in fp32.
    The direction matters: the clean model is the target distribution (S25)."""
    log_p = jax.nn.log_softmax(clean_logits.astype(jnp.float32), axis=-1)
    log_q = jax.nn.log_softmax(masked_logits.astype(jnp.float32), axis=-1)
    return jnp.mean(jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1))


def chunked_kl_divergence(clean_hidden: Array, masked_hidden: Array, head: Array | Head, chunk: int) -> Array:
    """`kl_divergence` of the logits `hidden @ head`, computed `chunk` sequence positions at a
    time (all sequences of the batch together, so a data-parallel batch stays sharded): only
    one chunk's fp32 [B, chunk, vocab] logits are ever alive, and the backward pass recomputes
    them. `clean_hidden`/`masked_hidden` [B, T, d] are the final normed residuals; `head`
    [d, vocab] or a `Head` (a tied embedding read as stored). Equal to the unchunked form up to the order of the mean's sum."""
    def per_position(p: Array, q: Array) -> Array:
        log_p = jax.nn.log_softmax(_logits(p, head), axis=-1)
        log_q = jax.nn.log_softmax(_logits(q, head), axis=-1)
        return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)

    B, T, _ = masked_hidden.shape
    return chunked_mean(per_position, (clean_hidden, masked_hidden), jnp.ones((B, T), bool), chunk)


class CleanSide(NamedTuple):
    """What every masked forward's KL needs of the clean distribution p = softmax(clean
    logits), per position: KL(p ‖ q) = Σ p·log p − h·(head · p) + logsumexp(h · head) for a
    masked final residual h (Σ p = 1), and its gradient in h is softmax(h · head)·headᵀ − head · p.
    Computed once per step (`clean_side`) and shared by every masked forward's KL, so the LM
    head runs once for the clean side instead of twice (forward, recomputed backward) per KL."""

    neg_entropy: Array  # [B, T] fp32: Σ_v p·log p
    expected: Array  # [B, T, d] fp32: head · p, the head's rows averaged under p


def clean_side(clean_hidden: Array, head: Array | Head, chunk: int) -> CleanSide:
    """The clean side of the step's KLs from the clean final normed residual [B, T, d],
    `chunk` positions at a time (only one chunk's [B, chunk, vocab] logits alive). Constant
    in every gradient (stop-gradient'd)."""
    clean_hidden = jax.lax.stop_gradient(clean_hidden)
    head = jax.lax.stop_gradient(head)
    B, T, d = clean_hidden.shape
    chunk, n = _chunking(T, chunk)

    def body(_: None, h: Array) -> tuple[None, tuple[Array, Array]]:
        log_p = jax.nn.log_softmax(_logits(h, head), axis=-1)
        p = jnp.exp(log_p)
        return None, (jnp.sum(p * log_p, axis=-1), _expected_rows(p, head))

    _, (neg_entropy, expected) = jax.lax.scan(body, None, _chunks(clean_hidden, chunk, n))
    return CleanSide(_unchunk(neg_entropy, T), _unchunk(expected, T))


def _expected_rows(probs: Array, head: Array | Head) -> Array:
    """probs [..., vocab] → Σ_v probs_v · head[:, v] [..., d] in full fp32: the KL's value and
    gradient subtract it from terms of the same size, so it is not rounded to TF32/bf16."""
    matrix, axis = (head.matrix, 0 if head.vocab_major else 1) if isinstance(head, Head) else (head, 1)
    return jax.lax.dot_general(probs, matrix, (((probs.ndim - 1,), (axis,)), ((), ())),
                               precision=jax.lax.Precision.HIGHEST, preferred_element_type=jnp.float32)


def shared_clean_kl(clean: CleanSide, masked_hidden: Array, head: Array | Head, chunk: int) -> Array:
    """`chunked_kl_divergence` against a precomputed `CleanSide`: per chunk of positions the
    masked logits are computed once, and when differentiated their input gradient
    (softmax(z)·headᵀ − head · p) in the same pass, so the backward runs no LM head at all.
    Equal to `chunked_kl_divergence` up to float rounding (the same sums, regrouped); the
    clean side and the head get no gradient (both are constants of the step)."""
    clean = jax.lax.stop_gradient(clean)
    return _shared_kl(clean.neg_entropy, clean.expected, masked_hidden, jax.lax.stop_gradient(head), chunk)


def _shared_kl_chunk(neg_entropy: Array, expected: Array, h: Array, head: Array | Head,
                     with_grad: bool) -> tuple[Array, Array | None]:
    """Per position of one chunk: KL(p ‖ softmax(h · head)), and its gradient in h."""
    z = _logits(h, head)
    lse = jax.nn.logsumexp(z, axis=-1)
    value = neg_entropy - jnp.sum(h.astype(jnp.float32) * expected, axis=-1) + lse
    if not with_grad:
        return value, None
    return value, _expected_rows(jnp.exp(z - lse[..., None]), head) - expected


def _shared_kl_scan(neg_entropy: Array, expected: Array, hidden: Array, head: Array | Head, chunk: int,
                    with_grad: bool) -> tuple[Array, Array | None]:
    """(mean KL over the positions, its gradient in `hidden` [B, T, d] fp32 or None)."""
    B, T, _ = hidden.shape
    chunk, n = _chunking(T, chunk)
    valid = _chunks(jnp.ones((B, T), bool), chunk, n)

    def body(total: Array, xs: tuple[Array, ...]) -> tuple[Array, Array | None]:
        e, x, h, keep = xs
        value, grad = _shared_kl_chunk(e, x, h, head, with_grad)
        total = total + jnp.sum(jnp.where(keep, value, 0.0))
        return total, None if grad is None else jnp.where(keep[..., None], grad, 0.0)

    xs = (_chunks(neg_entropy, chunk, n), _chunks(expected, chunk, n), _chunks(hidden, chunk, n), valid)
    total, grads = jax.lax.scan(body, jnp.zeros((), jnp.float32), xs)
    count = float(B * T)
    return total / count, None if grads is None else _unchunk(grads, T) / count


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _shared_kl(neg_entropy: Array, expected: Array, hidden: Array, head: Array | Head, chunk: int) -> Array:
    return _shared_kl_scan(neg_entropy, expected, hidden, head, chunk, with_grad=False)[0]


def _shared_kl_fwd(neg_entropy: Array, expected: Array, hidden: Array, head: Array | Head,
                   chunk: int) -> tuple[Array, tuple[Any, ...]]:
    value, grad = _shared_kl_scan(neg_entropy, expected, hidden, head, chunk, with_grad=True)
    return value, (grad, neg_entropy, expected, hidden, head)


def _shared_kl_bwd(chunk: int, res: tuple[Any, ...], ct: Array) -> tuple[Any, ...]:
    """The hidden's cotangent from the gradient the forward computed; the clean side and
    the head are stop-gradient'd by `shared_clean_kl`, so theirs are zeros."""
    grad, neg_entropy, expected, hidden, head = res
    del chunk
    zeros = jax.tree.map(jnp.zeros_like, (neg_entropy, expected, head))
    return zeros[0], zeros[1], (ct * grad).astype(hidden.dtype), zeros[2]


_shared_kl.defvjp(_shared_kl_fwd, _shared_kl_bwd)


def _chunking(T: int, chunk: int) -> tuple[int, int]:
    chunk = max(1, min(chunk, T)) if chunk > 0 else T
    return chunk, -(-T // chunk)


def _chunks(x: Array, chunk: int, n: int) -> Array:
    """[B, T, ...] → [n, B, chunk, ...], zero-padded to n · chunk positions."""
    B, T = x.shape[:2]
    x = jnp.pad(x, ((0, 0), (0, n * chunk - T), *((0, 0),) * (x.ndim - 2)))
    return jnp.moveaxis(x.reshape(B, n, chunk, *x.shape[2:]), 1, 0)


def _unchunk(x: Array, T: int) -> Array:
    """[n, B, chunk, ...] → [B, T, ...] (the padding dropped)."""
    n, B, chunk = x.shape[:3]
    return jnp.moveaxis(x, 0, 1).reshape(B, n * chunk, *x.shape[3:])[:, :T]


def chunked_next_token_ce(hidden: Array, head: Array | Head, tokens: Array, chunk: int) -> Array:
    """Next-token cross-entropy of the logits `hidden @ head` (positions 0..T−2 predict tokens
    1..T−1, as `metrics.next_token_ce`), `chunk` positions at a time: no [B, T, vocab]."""
    B, T, _ = hidden.shape
    targets = jnp.concatenate([tokens[:, 1:], jnp.zeros((B, 1), tokens.dtype)], axis=1).astype(jnp.int32)

    def per_position(h: Array, target: Array) -> Array:
        logits = _logits(h, head)
        picked = jnp.take_along_axis(logits, target[..., None], axis=-1)[..., 0]
        return jax.nn.logsumexp(logits, axis=-1) - picked

    return chunked_mean(per_position, (hidden, targets), jnp.broadcast_to(jnp.arange(T) < T - 1, (B, T)), chunk)


def _logits(hidden: Array, head: Array | Head) -> Array:
    """One chunk's fp32 logits, their vocabulary sharded over tp when the mesh has it."""
    return pin_vocab(head_logits(hidden, head))


def chunked_mean(per_position: Callable[..., Array], xs: tuple[Array, ...], valid: Array, chunk: int) -> Array:
    """The mean over the `valid [B, T]` positions of `per_position(*chunks of xs)` (each x
    [B, T, ...]), evaluated `chunk` positions at a time under a scan whose body is
    rematerialised: one chunk's intermediates alive, forward and backward."""
    B, T = valid.shape
    chunk = max(1, min(chunk, T))
    n = -(-T // chunk)

    def chunks(x: Array) -> Array:  # [B, T, ...] → [n, B, chunk, ...]
        x = jnp.pad(x, ((0, 0), (0, n * chunk - T), *((0, 0),) * (x.ndim - 2)))
        return jnp.moveaxis(x.reshape(B, n, chunk, *x.shape[2:]), 1, 0)

    step = jax.checkpoint(per_position)

    def body(total: Array, chunk_xs: tuple[Array, ...]) -> tuple[Array, None]:
        *parts, keep = chunk_xs
        return total + jnp.sum(jnp.where(keep, step(*parts), 0.0)), None

    total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), (*map(chunks, xs), chunks(valid)))
    return total / jnp.sum(valid)


def mse(clean: Array, masked: Array) -> Array:
    """Mean over batch × features of (masked − clean)², fp32 (the toys' divergence)."""
    return jnp.mean(jnp.square(masked.astype(jnp.float32) - clean.astype(jnp.float32)))


DIVERGENCES: dict[str, Divergence] = {"kl": kl_divergence, "mse": mse}


# ---- live sets ------------------------------------------------------------------------


def _lead(ci: Mapping[str, Array]) -> tuple[int, ...]:
    return tuple(next(iter(ci.values())).shape[1:-1])


def _n_sites(layout: Layout) -> int:
    return sum(len(indices) for indices in layout.values())


def _place(masks: Masks, layout: Layout, lead: tuple[int, ...], live: tuple[int, ...],
           routes: Array | None) -> dict[str, SiteMask]:
    """Restrict masks to the `live` sites with their routes; all sites live with routing
    `all` keeps the masks route-free (no `where` in the forward)."""
    if routes is None and len(live) == _n_sites(layout):
        return dict(masks)
    per_kind = live_routes(layout, lead, live, routes)
    return {kind: SiteMask(masks[kind].mask, masks[kind].delta, route) for kind, route in per_kind.items()}


def _recon(forward: Forward, clean: Array, masks: Masks, divergence: Divergence) -> Array:
    return divergence(jax.lax.stop_gradient(clean), forward(masks))


# ---- stochastic, CI-masked and unmasked reconstruction ------------------------------------


def stochastic_recon(key: Array, forward: Forward, clean: Array, ci_lower: Mapping[str, Array],
                     divergence: Divergence, layout: Layout, *, routing: Routing = "all",
                     sampling: Literal["continuous", "binomial"] = "continuous", samples: int = 1,
                     sites_per_chunk: int | None = None) -> Array:
    """§5.3/5.5: mean over `samples` stochastic draws (mask ci + (1 − ci)·u, delta u) of
    D(clean, masked). With `sites_per_chunk`, one entry per sequential chunk of sites
    (that chunk live, the rest frozen) and the routing drawn over the chunk's own sites;
    the loss is the mean over every forward of every chunk."""
    n = _n_sites(layout)
    groups = site_chunks(n, sites_per_chunk) if sites_per_chunk else [tuple(range(n))]
    lead, losses = _lead(ci_lower), []
    for entry, live in enumerate(groups):
        for draw in range(samples):
            mask_key, routing_key = draw_keys(key, entry, draw)
            masks = stochastic_masks(mask_key, ci_lower, sampling)
            routes = draw_routing(routing_key, routing, lead, len(live))
            losses.append(_recon(forward, clean, _place(masks, layout, lead, live, routes), divergence))
    return jnp.mean(jnp.stack(losses))


def _one_site(masks: Masks, layout: Layout, lead: tuple[int, ...], site: Array | int) -> dict[str, SiteMask]:
    """Only canonical site `site` decomposed. A traced index keeps every kind in the
    forward with a route that is True at that one site, so a single traced forward
    serves every site; routed-off sites give exactly `x @ W` and no V/U gradient. A
    Python int (`_mean_over_sites` unrolled) keeps only the site's own kind, routed to
    that layer (no route at all when it is the kind's only layer): the other kinds run
    their frozen `x @ W`, the same values, without computing a decomposed path to
    discard."""
    if isinstance(site, int):
        out = {}
        for kind, indices in layout.items():
            if site in indices:
                on = None if len(indices) == 1 else jnp.broadcast_to(
                    jnp.asarray([i == site for i in indices]).reshape((len(indices),) + (1,) * len(lead)),
                    (len(indices),) + lead)
                out[kind] = SiteMask(masks[kind].mask, masks[kind].delta, on)
        return out
    out = {}
    for kind, indices in layout.items():
        on = (jnp.asarray(indices) == site).reshape((len(indices),) + (1,) * len(lead))
        out[kind] = SiteMask(masks[kind].mask, masks[kind].delta, jnp.broadcast_to(on, (len(indices),) + lead))
    return out


UNROLL_SITES = 8  # layerwise terms over at most this many sites trace one forward per site


def _mean_over_sites(fn: Callable[[Array | int], Array], layout: Layout) -> Array:
    """mean over canonical sites of fn(site). Over more than `UNROLL_SITES` sites it is
    traced once (`lax.map` over a traced index): compile time stays flat in the number
    of sites instead of growing with every unrolled forward. Over a few sites (the toys,
    small LMs) it is unrolled with static indices: each forward then computes only its
    own site's decomposed path (`_one_site`) instead of every site's behind a `where`,
    and the forwards share their frozen prefix (a toy's embedding) with the clean pass
    instead of recomputing it inside a loop. Same keys (`fold_in` of the same index),
    the same values to float rounding; measured in docs/performance.md."""
    n = _n_sites(layout)
    if n <= UNROLL_SITES:
        return jnp.mean(jnp.stack([fn(site) for site in range(n)]))
    return jnp.mean(jax.lax.map(fn, jnp.arange(n)))


def layerwise_recon(key: Array, forward: Forward, clean: Array, ci_lower: Mapping[str, Array],
                    divergence: Divergence, layout: Layout, *,
                    sampling: Literal["continuous", "binomial"] = "continuous", samples: int = 1) -> Array:
    """§5.4: one forward per site (per kind and layer) and draw, only that site live
    (its kind routed to that layer, every other site frozen); mean over all forwards."""
    lead = _lead(ci_lower)

    def per_site(site: Array) -> Array:
        losses = []
        for draw in range(samples):
            masks = stochastic_masks(draw_keys(key, site, draw)[0], ci_lower, sampling)
            losses.append(_recon(forward, clean, _one_site(masks, layout, lead, site), divergence))
        return jnp.mean(jnp.stack(losses))

    return _mean_over_sites(per_site, layout)


def ci_masked_recon(key: Array | None, forward: Forward, clean: Array, ci_lower: Mapping[str, Array],
                    divergence: Divergence, layout: Layout, *, routing: Routing = "all") -> Array:
    """§5.5: mask = ci_lower, no delta path; with a subset routing (drawn from the term's
    entry-0 draw-0 routing key) only the routed sites use it."""
    masks = {kind: SiteMask(ci) for kind, ci in ci_lower.items()}
    lead, n = _lead(ci_lower), _n_sites(layout)
    routes = None if routing == "all" else draw_routing(draw_keys(key, 0, 0)[1], routing, lead, n)
    return _recon(forward, clean, _place(masks, layout, lead, tuple(range(n)), routes), divergence)


def ci_masked_recon_layerwise(forward: Forward, clean: Array, ci_lower: Mapping[str, Array],
                              divergence: Divergence, layout: Layout) -> Array:
    """Mask = ci_lower, no delta, one forward per site with only that site live; mean."""
    masks = {kind: SiteMask(ci) for kind, ci in ci_lower.items()}
    lead = _lead(ci_lower)
    return _mean_over_sites(lambda site: _recon(forward, clean, _one_site(masks, layout, lead, site), divergence),
                            layout)


def unmasked_recon(forward: Forward, clean: Array, ci_lower: Mapping[str, Array], divergence: Divergence) -> Array:
    """All masks exactly 1 (not ci + (1 − ci), which rounds), no delta path: the sanity
    term that the components alone reproduce the target."""
    return _recon(forward, clean, {kind: SiteMask() for kind in ci_lower}, divergence)


# ---- fresh PGD ---------------------------------------------------------------------------


def _sign_ascent(forward: Forward, clean: Array, ci_lower: Mapping[str, Array], sources: Sources,
                 divergence: Divergence, place: Callable[[Masks], Masks], steps: int, step_size: float) -> Sources:
    """`steps` × src ← clamp(src + step_size · sign(∂D/∂src), 0, 1) with CI detached; the
    result is stop-gradient'd (no gradient to the sources from the final loss)."""
    ci = jax.lax.stop_gradient(ci_lower)

    def loss(src: Sources) -> Array:
        return _recon(forward, clean, place(adversarial_masks(ci, src)), divergence)

    def body(src: Sources, _: None) -> tuple[Sources, None]:
        grads = jax.grad(loss)(src)
        return {k: jnp.clip(s + step_size * jnp.sign(grads[k]), 0.0, 1.0).astype(s.dtype)
                for k, s in src.items()}, None

    final, _ = jax.lax.scan(body, dict(sources), None, length=steps)
    return jax.lax.stop_gradient(final)


def _pgd_entry(key: Array, entry: Array | int, forward: Forward, ascent_forward: Forward, clean: Array,
               ci_lower: Mapping[str, Array], divergence: Divergence, place: Callable[[Masks, Array | None], Masks],
               routing: Routing, n_routed: int, init: Init, step_size: float, steps: int, scope: str) -> Array:
    """One PGD entry: routing drawn once, sources initialised, ascended, then the loss
    with live parameters and live CI at the adversarial sources."""
    entry_key, routing_key = entry_keys(key, entry)
    routes = draw_routing(routing_key, routing, _lead(ci_lower), n_routed)
    src = init_sources(entry_key, {k: ci.shape for k, ci in ci_lower.items()}, canonical_scope(scope), init)
    src = _sign_ascent(ascent_forward, clean, ci_lower, src, divergence, lambda m: place(m, routes), steps,
                       step_size)
    return _recon(forward, clean, place(adversarial_masks(ci_lower, src), routes), divergence)


def pgd_recon(key: Array, forward: Forward, clean: Array, ci_lower: Mapping[str, Array], divergence: Divergence,
              layout: Layout, *, init: Init = "random", step_size: float = 0.1, steps: int = 1,
              scope: str = "c", routing: Routing = "all", ascent_forward: Forward | None = None) -> Array:
    """§5.6 fresh PGD over all sites. `ascent_forward` is the forward the ascents run on
    (the step binds stop-gradient'd components to it, §5.12 step 4); it defaults to
    `forward`, which gives the same value and gradient (the sources are stop-gradient'd
    after the ascents) but lets the outer backward trace through the ascents."""
    n, lead = _n_sites(layout), _lead(ci_lower)
    live = tuple(range(n))

    def place(masks: Masks, routes: Array | None) -> Masks:
        return _place(masks, layout, lead, live, routes)

    return _pgd_entry(key, 0, forward, ascent_forward or forward, clean, ci_lower, divergence, place, routing, n,
                      init, step_size, steps, scope)


def pgd_recon_layerwise(key: Array, forward: Forward, clean: Array, ci_lower: Mapping[str, Array],
                        divergence: Divergence, layout: Layout, *, init: Init = "random", step_size: float = 0.1,
                        steps: int = 1, scope: str = "c", ascent_forward: Forward | None = None) -> Array:
    """An independent fresh PGD per site (entry = canonical site index), only that site
    live; mean over sites."""
    lead = _lead(ci_lower)

    def per_site(site: Array) -> Array:
        return _pgd_entry(key, site, forward, ascent_forward or forward, clean, ci_lower, divergence,
                          lambda masks, _: _one_site(masks, layout, lead, site), "all", 1, init, step_size, steps,
                          scope)

    return _mean_over_sites(per_site, layout)


# ---- persistent PGD ----------------------------------------------------------------------


class SourceOptimizer(NamedTuple):
    """The source update rule of a persistent term (static): bias-corrected Adam with ε
    after the square root (N1), or a plain sign step."""

    rule: Literal["adam", "sign"] = "adam"
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


class PpgdState(NamedTuple):
    """One persistent term's adversary: sources `[L, *scope_dims, C + 1]` per kind in [0, 1],
    their Adam moments (same shapes and storage dtype) and the term's ascent count."""

    sources: dict[str, Array]
    m: dict[str, Array]
    v: dict[str, Array]
    count: Array  # int32 scalar


def ppgd_init(key: Array, ci_shapes: Mapping[str, tuple[int, ...]], scope: str,
              dtype: jnp.dtype = jnp.float32) -> PpgdState:
    """U[0, 1) sources (clamp parameterisation), zero moments, count 0. The run passes
    `fold_in(src_key, TERM_NAMES.index("persistent_pgd"))` as `key`."""
    sources = init_sources(key, ci_shapes, canonical_scope(scope), "random", dtype)
    zeros = {k: jnp.zeros_like(s) for k, s in sources.items()}
    return PpgdState(sources, zeros, dict(zeros), jnp.zeros((), jnp.int32))


def ppgd_active(step: Array | int, total_steps: int, start_frac: float) -> Array:
    """Whether `step / total_steps ≥ start_frac`, as a traced bool (S32). The first active
    step is found on the host with Python's float division, so the traced comparison is
    an exact integer one."""
    first = math.ceil(start_frac * total_steps)
    while first > 0 and (first - 1) / total_steps >= start_frac:
        first -= 1
    while first / total_steps < start_frac:
        first += 1
    return jnp.asarray(step) >= first


def _gate(active: Array | bool, new: PpgdState, old: PpgdState) -> PpgdState:
    """`where`-gating keeps the jit graph static: inactive terms leave the state as is."""
    return jax.tree.map(lambda n, o: jnp.where(active, n, o), new, old)


def _adam_direction(g: Array, m: Array, v: Array, t: Array, opt: SourceOptimizer) -> tuple[Array, Array, Array]:
    """Bias-corrected Adam direction m̂ / (sqrt(v̂) + ε) and the new fp32 moments."""
    m = opt.beta1 * m.astype(jnp.float32) + (1.0 - opt.beta1) * g
    v = opt.beta2 * v.astype(jnp.float32) + (1.0 - opt.beta2) * jnp.square(g)
    m_hat = m / (1.0 - jnp.power(opt.beta1, t.astype(jnp.float32)))
    v_hat = v / (1.0 - jnp.power(opt.beta2, t.astype(jnp.float32)))
    return m_hat / (jnp.sqrt(v_hat) + opt.eps), m, v


def source_ascent(state: PpgdState, grads: Sources, lr: Array | float, opt: SourceOptimizer) -> PpgdState:
    """One ascent step on every source, computed in fp32, then clamped to [0, 1] (an
    unprojected source past 1 would get zero gradient through the mask and die). The
    `sign` rule leaves the moments untouched."""
    t = state.count + 1
    sources, m, v = {}, dict(state.m), dict(state.v)
    for kind, src in state.sources.items():
        g = grads[kind].astype(jnp.float32)
        if opt.rule == "adam":
            direction, m32, v32 = _adam_direction(g, state.m[kind], state.v[kind], t, opt)
            m[kind], v[kind] = m32.astype(src.dtype), v32.astype(src.dtype)
        else:
            direction = jnp.sign(g)
        sources[kind] = jnp.clip(src.astype(jnp.float32) + lr * direction, 0.0, 1.0).astype(src.dtype)
    return PpgdState(sources, m, v, t)


def ppgd_warmup(state: PpgdState, forward: Forward, clean: Array, ci_lower: Mapping[str, Array],
                divergence: Divergence, lr: Array | float, n_warmup: int, opt: SourceOptimizer,
                active: Array | bool = True) -> PpgdState:
    """§5.7 step 2: `n_warmup` ascents on an all-sites, route-everywhere forward (whatever
    the term's own routing) with CI detached; `forward` should have its components
    detached too. The result is stop-gradient'd: the warmed sources enter the main loss
    as leaves."""
    if n_warmup == 0:
        return state
    ci = jax.lax.stop_gradient(ci_lower)

    def loss(src: Sources) -> Array:
        return _recon(forward, clean, adversarial_masks(ci, src), divergence)

    def body(s: PpgdState, _: None) -> tuple[PpgdState, None]:
        return source_ascent(s, jax.grad(loss)(s.sources), lr, opt), None

    warmed, _ = jax.lax.scan(body, state, None, length=n_warmup)
    return jax.lax.stop_gradient(_gate(active, warmed, state))


def ppgd_recon(key: Array | None, forward: Forward, clean: Array, ci_lower: Mapping[str, Array], sources: Sources,
               divergence: Divergence, layout: Layout, *, routing: Routing = "all",
               active: Array | bool = True) -> Array:
    """§5.7 step 3: the term's loss at the warmed sources, which the caller passes as
    differentiated leaves (the source gradient feeds `ppgd_final_ascent`), with live
    components and live ci_lower. Zero before `start_frac` (so is its source gradient)."""
    lead, n = _lead(ci_lower), _n_sites(layout)
    routes = None if routing == "all" else draw_routing(draw_keys(key, 0, 0)[1], routing, lead, n)
    masks = _place(adversarial_masks(ci_lower, sources), layout, lead, tuple(range(n)), routes)
    return jnp.where(active, _recon(forward, clean, masks, divergence), 0.0)


def ppgd_final_ascent(state: PpgdState, grads: Sources, coeff: Array | float, lr: Array | float,
                      opt: SourceOptimizer, active: Array | bool = True) -> PpgdState:
    """§5.7 step 4: one ascent from the main backward's source gradient, divided by the
    term's coefficient (that backward saw coeff · L_term); a zero coefficient gives a
    zero gradient. Gated by `active`: sources, moments and count stay put while off."""
    safe = jnp.where(coeff == 0, 1.0, coeff)
    scaled = {k: g.astype(jnp.float32) / safe for k, g in grads.items()}
    return _gate(active, source_ascent(state, scaled, lr, opt), state)


# ---- importance minimality ---------------------------------------------------------------


class Penalty(NamedTuple):
    """An importance-minimality term's two parts, weighted separately by the caller:
    `value` (c_imp) and the frequency term Σ f·log2(1 + a′·f) (c_freq; 0 without one)."""

    value: Array
    frequency: Array


def _penalty(per_value: Mapping[str, Array], frequency: int | Literal["auto"] | None) -> Penalty:
    """Per site and component, f = (global sum over every leading position) / N_pos,
    reduced before any non-linearity so data-parallel sums are exact (S7, S8)."""
    rates = [jnp.sum(v, axis=tuple(range(1, v.ndim - 1))) for v in per_value.values()]
    n_pos = math.prod(next(iter(per_value.values())).shape[1:-1])
    rates = [r / n_pos for r in rates]
    value = sum(jnp.sum(r) for r in rates)
    if frequency is None:
        return Penalty(value, jnp.zeros((), jnp.float32))
    a = float(n_pos if frequency == "auto" else frequency)
    return Penalty(value, sum(jnp.sum(r * jnp.log2(1.0 + a * r)) for r in rates))


def importance_minimality(ci_upper: Mapping[str, Array], p: Array | float, eps: float = 1e-12,
                          frequency: int | Literal["auto"] | None = None) -> Penalty:
    """§5.8: Σ_sites Σ_c mean_pos (ci_upper + eps)^p, CI cast to fp32 before the power, eps
    inside it; no normalisation by the number of sites. `frequency` is the reference
    count a′ of the frequency term (`"auto"` = this batch's positions), None for none."""
    powered = {k: jnp.power(ci.astype(jnp.float32) + eps, p) for k, ci in ci_upper.items()}
    return _penalty(powered, frequency)


def smooth_l0(ci_upper: Mapping[str, Array], gamma: Array | float, normalize_at_one: bool = False,
              frequency: int | Literal["auto"] | None = None) -> Penalty:
    """§5.10: the Geman–McClure penalty c² / (c² + γ²) on ci_upper, same per-site structure
    as `importance_minimality`; `normalize_at_one` scales by (1 + γ²) so a fully active
    component costs exactly 1 at every γ."""
    def phi(ci: Array) -> Array:
        c2 = jnp.square(ci.astype(jnp.float32))
        value = c2 / (c2 + jnp.square(gamma))
        return value * (1.0 + jnp.square(gamma)) if normalize_at_one else value

    return _penalty({k: phi(ci) for k, ci in ci_upper.items()}, frequency)


# ---- schedules and clipping ----------------------------------------------------------------


def warmup_steps(schedule: Schedule, total_steps: int) -> int:
    """`warmup` as steps: an int is a step count, a float a fraction of the run."""
    warmup = schedule.warmup
    return warmup if isinstance(warmup, int) else int(total_steps * warmup)


ScheduleKind = Literal["lr", "anneal", "source_lr"]


def schedule_value(schedule: Schedule, step: Array | int, total_steps: int, kind: ScheduleKind = "lr") -> Array:
    """§6.3 (torch `get_scheduled_value`), jit-safe in `step`. Linear warmup from 0 over
    the warmup steps; before the ramp the value is `start`, after it the end value (`end`,
    or `final`·start, or 0 when neither). How the ramp runs depends on what is scheduled,
    as the reference trainers write each (`kind`):
    - `lr` (optimizer learning rates): from max(warmup, start_frac·total) to end_frac·total
      with progress (step − a) / (b − a − 1), so with end_frac = 1 it reaches its end value
      exactly at step total − 1 (the `decay_steps − 1` denominator);
    - `anneal` (p, γ; §5.8): progress clip((step/total − s) / (end_frac − s), 0, 1) with
      s = max(start_frac, warmup/total): over `step / total`, so the last step's p is not
      quite the end value (2.0 → 0.4 over 100k steps ends at 0.400016);
    - `source_lr` (an adversary's source ascent step, §6.3): as `lr` but warming up over at
      least one step, `max(warmup, 1)`: 0 at step 0 even with zero warm-up, as the
      hand-written JAX trainer."""
    warmup = warmup_steps(schedule, total_steps)
    if kind == "source_lr":
        warmup = max(warmup, 1)
    step_f = jnp.asarray(step, jnp.float32)
    start, end = schedule.start, schedule.end_value()
    if schedule.fn == "constant":
        value = jnp.full((), start, jnp.float32)
    else:
        if kind == "anneal":
            s = max(schedule.start_frac, warmup / total_steps)
            progress = jnp.clip((step_f / total_steps - s) / (schedule.end_frac - s), 0.0, 1.0)
        else:
            a = max(warmup, int(schedule.start_frac * total_steps))
            b = int(schedule.end_frac * total_steps)
            progress = jnp.clip((step_f - a) / max(b - a - 1, 1), 0.0, 1.0)
        shape = 1.0 - progress if schedule.fn == "linear" else 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        value = end + (start - end) * shape
    if warmup > 0:
        value = jnp.where(step_f < warmup, start * step_f / warmup, value)
    return value.astype(jnp.float32)


def clip_by_global_norm_eps(max_norm: float, eps: float = 1e-6) -> optax.GradientTransformation:
    """Scale every gradient by min(1, max_norm / (‖g‖_global + eps)), as torch's
    `clip_grad_norm_`; optax's `clip_by_global_norm` has no eps, which at max_norm 0.01
    (clipping nearly every step) moves the gradient by ~1e-4 relative per step (S19)."""
    def init(params: object) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update(updates: object, state: optax.EmptyState, params: object = None) -> tuple[object, optax.EmptyState]:
        del params
        scale = jnp.minimum(1.0, max_norm / (optax.tree.norm(updates) + eps))
        return jax.tree.map(lambda g: (g * scale).astype(g.dtype), updates), state

    return optax.GradientTransformation(init, update)


__all__ = [
    "DIVERGENCES", "CleanSide", "Divergence", "Forward", "Penalty", "PpgdState", "SourceOptimizer", "TERM_NAMES",
    "canonical_scope", "ci_masked_recon", "clean_side", "ci_masked_recon_layerwise", "clip_by_global_norm_eps", "draw_keys",
    "entry_keys", "importance_minimality", "kl_divergence", "layerwise_recon", "mse", "pgd_recon",
    "pgd_recon_layerwise", "ppgd_active", "ppgd_final_ascent", "ppgd_init", "ppgd_recon", "ppgd_warmup",
    "ScheduleKind", "schedule_value", "shared_clean_kl", "smooth_l0", "source_ascent", "stochastic_recon", "term_key",
    "unmasked_recon",
    "warmup_steps",
]
