"""Evaluation metrics (SPD_ALGORITHM.md §7, §10).

Like the losses, every metric is target-independent: it takes the masked `forward`
closure, the clean output and per-kind CI `[L, *lead, C]`. Per-site values come back
per kind, stacked over layers (`[L]` or `[L, C]`); `by_site` names them. The two host
functions (`identity_ci_error`, which needs a Hungarian assignment, and `l0_groups`)
run on small NumPy arrays after the jitted eval step.
"""

from __future__ import annotations

import fnmatch
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from pdc.decomp.components import Factors, SiteMask
from pdc.decomp.losses import Divergence, Forward, kl_divergence, pgd_recon
from pdc.decomp.masks import stochastic_masks
from pdc.registry.types import CiPattern

Array = jax.Array
CE_KL_VARIANTS = ("ci_masked", "unmasked", "stoch_masked", "random_masked", "rounded_masked", "zero_masked")


# ---- CI statistics ------------------------------------------------------------------------


def _lead_axes(ci: Array) -> tuple[int, ...]:
    return tuple(range(1, ci.ndim - 1))


def ci_l0(ci_lower: Mapping[str, Array], threshold: float = 0.0) -> dict[str, Array]:
    """§7.2 per site `[L]`: the mean over positions of #{c : ci_lower > threshold}. The
    comparison is strict, so at threshold 0 every positive CI counts."""
    return {kind: jnp.mean(jnp.sum(ci > threshold, axis=-1, dtype=jnp.float32), axis=_lead_axes(ci))
            for kind, ci in ci_lower.items()}


def activation_density(ci_lower: Mapping[str, Array], threshold: float = 0.0) -> dict[str, Array]:
    """§7.4 per site and component `[L, C]`: the fraction of positions with ci_lower >
    threshold. Eval batches have equal sizes, so the mean over batches is the pooled rate."""
    return {kind: jnp.mean((ci > threshold).astype(jnp.float32), axis=_lead_axes(ci))
            for kind, ci in ci_lower.items()}


def batches_since_fired(since: Mapping[str, Array], ci_lower: Mapping[str, Array],
                        threshold: float = 0.0) -> dict[str, Array]:
    """The reference's alive tracker (torch `AliveComponentsTracker.update`), per site and
    component `[L, C]`: 0 where the component fired (ci_lower > threshold at any position of
    this batch), else the previous count + 1. Counted in batches, so it cannot overflow
    where an example count would; `n_alive` turns it back into the reference's window."""
    return {kind: jnp.where(jnp.any(ci > threshold, axis=_lead_axes(ci)), 0, since[kind] + 1)
            for kind, ci in ci_lower.items()}


def n_alive(since: Mapping[str, Array], batches_until_dead: int) -> dict[str, Array]:
    """Per site `[L]`: components that fired within the last `batches_until_dead` batches
    (torch `AliveComponentsTracker.compute`: alive iff batches since fired < the window)."""
    return {kind: jnp.sum(s < batches_until_dead, axis=-1) for kind, s in since.items()}


def by_site(per_kind: Mapping[str, Array], paths: Mapping[str, Sequence[str]]) -> dict[str, Array]:
    """Per-kind stacked values → per site path (`paths[kind]` in stacking order). Host side."""
    return {path: per_kind[kind][i] for kind, kind_paths in paths.items() for i, path in enumerate(kind_paths)}


def l0_groups(per_site: Mapping[str, float], groups: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """§7.2 groups: each group's value is the sum of the L0s of the sites matching any of
    its fnmatch patterns (e.g. `total: ["*"]`). Host side."""
    return {name: float(sum(v for site, v in per_site.items() if any(fnmatch.fnmatch(site, p) for p in patterns)))
            for name, patterns in groups.items()}


# ---- CE / KL masking variants ---------------------------------------------------------------


def next_token_ce(logits: Array, tokens: Array) -> Array:
    """Next-token cross-entropy in fp32: positions 0..T−2 predict tokens 1..T−1."""
    log_q = jax.nn.log_softmax(logits[..., :-1, :].astype(jnp.float32), axis=-1)
    picked = jnp.take_along_axis(log_q, tokens[..., 1:, None].astype(jnp.int32), axis=-1)
    return -jnp.mean(picked)


def ce_kl_masks(key: Array, ci_lower: Mapping[str, Array], rounding_threshold: float = 0.0
                ) -> dict[str, dict[str, SiteMask]]:
    """§7.1: the six variants' masks, all sites live and routed everywhere; only
    `stoch_masked` has a delta path. Keys: `fold_in(key, 0)` for the stochastic draw,
    `fold_in(key, 1)` (then the sorted kind index) for the random masks."""
    random_key = jax.random.fold_in(key, 1)
    random = {kind: jax.random.uniform(jax.random.fold_in(random_key, i), ci_lower[kind].shape, ci_lower[kind].dtype)
              for i, kind in enumerate(sorted(ci_lower))}
    return {
        "ci_masked": {k: SiteMask(ci) for k, ci in ci_lower.items()},
        "unmasked": {k: SiteMask() for k in ci_lower},
        "stoch_masked": stochastic_masks(jax.random.fold_in(key, 0), ci_lower),
        "random_masked": {k: SiteMask(random[k]) for k in ci_lower},
        "rounded_masked": {k: SiteMask((ci > rounding_threshold).astype(ci.dtype)) for k, ci in ci_lower.items()},
        "zero_masked": {k: SiteMask(jnp.zeros_like(ci)) for k, ci in ci_lower.items()},
    }


def ce_kl_losses(key: Array, forward: Forward, clean_logits: Array, tokens: Array, ci_lower: Mapping[str, Array],
                 rounding_threshold: float = 0.0, kl: Callable[[Array, Array], Array] = kl_divergence,
                 ce: Callable[[Array, Array], Array] = next_token_ce) -> dict[str, Array]:
    """`kl_<v>` for the six variants; `ce_difference_<v>` = CE_v − CE_target and
    `ce_unrecovered_<v>` = (CE_v − CE_target) / (CE_zero − CE_target) for the five
    non-zero ones (the caller prefixes `eval/ce_kl/`). `kl(clean, masked)` and `ce(output,
    tokens)` read the forwards' outputs: logits by default, or final hidden states with the
    chunked forms (`losses.chunked_kl_divergence`, `losses.chunked_next_token_ce`)."""
    ce_target = ce(clean_logits, tokens)
    out, ce_of = {}, {}
    for variant, masks in ce_kl_masks(key, ci_lower, rounding_threshold).items():
        logits = forward(masks)
        out[f"kl_{variant}"] = kl(clean_logits, logits)
        ce_of[variant] = ce(logits, tokens)
    for variant in CE_KL_VARIANTS[:-1]:
        out[f"ce_difference_{variant}"] = ce_of[variant] - ce_target
        out[f"ce_unrecovered_{variant}"] = (ce_of[variant] - ce_target) / (ce_of["zero_masked"] - ce_target)
    return out


# ---- PGD probe ---------------------------------------------------------------------------


def pgd_recon_probe(key: Array, forward: Forward, clean: Array, ci_lower: Mapping[str, Array],
                    divergence: Divergence = kl_divergence, steps: int = 20, step_size: float = 0.1) -> Array:
    """§7.5: fresh sign-PGD with random init and scope `c` (one source per site shared over
    batch and positions), `steps` ascents, then the divergence at the final sources. All
    sites are live and routed everywhere, so the site order plays no part."""
    layout, offset = {}, 0
    for kind in sorted(ci_lower):
        layers = ci_lower[kind].shape[0]
        layout[kind], offset = tuple(range(offset, offset + layers)), offset + layers
    return pgd_recon(key, forward, clean, ci_lower, divergence, layout, init="random", step_size=step_size,
                     steps=steps, scope="c")


# ---- toy ground truth ------------------------------------------------------------------------


PROBE_VALUE = 0.75  # §7.6: the one-hot probe's active value (TMS and ResidMLP alike)


def identity_probe(n_features: int, dtype: jnp.dtype = jnp.float32) -> Array:
    """The §7.6 probe: one active feature per row at `PROBE_VALUE`. The caller feeds it
    through the target (ResidMLP through W_E) to read ci_lower `[n_features, C]` per site."""
    return jnp.eye(n_features, dtype=dtype) * PROBE_VALUE


def permute_to_identity(ci: np.ndarray) -> np.ndarray:
    """Columns reordered to best match the identity: a Hungarian assignment on −ci over the
    first min(n, C) rows, the unassigned columns appended in index order."""
    rows = min(ci.shape)
    _, cols = linear_sum_assignment(-ci[:rows])
    rest = sorted(set(range(ci.shape[1])) - set(cols.tolist()))
    return ci[:, list(cols) + rest]


def identity_ci_error(ci: np.ndarray, pattern: CiPattern, tol: float = 0.1, min_entries: int = 1) -> int:
    """§7.6 on a probe's CI `[n_features, C]`. `identity`: after `permute_to_identity`, the
    diagonal entries of the leading square block below 1 − tol plus every other entry
    above tol (including columns beyond the block, as torch counts them). `dense(k)`:
    columns sorted by CI mass; each of the first k short of `min_entries` entries ≥ 1 − tol
    adds its shortfall, and every entry above tol in the other columns adds 1. 0 = perfect."""
    ci = np.asarray(ci, dtype=np.float64)
    if pattern == "identity":
        permuted = permute_to_identity(ci)
        size = min(permuted.shape)
        diagonal = np.zeros(permuted.shape, dtype=bool)
        diagonal[np.arange(size), np.arange(size)] = True
        return int(np.sum(permuted[~diagonal] > tol) + np.sum(permuted[diagonal] < 1.0 - tol))
    k = int(getattr(pattern, "k"))
    ordered = ci[:, np.argsort(-ci.sum(axis=0), kind="stable")]
    strong = np.sum(ordered >= 1.0 - tol, axis=0)
    return int(np.sum(np.maximum(min_entries - strong[:k], 0)) + np.sum(ordered[:, k:] > tol))


def feature_major(W: Array, factors: Factors, columns: bool) -> tuple[Array, Factors]:
    """W and its factors oriented so rows are features. A site that reads the features
    (TMS `linear1` `[features, hidden]`: row j is feature j's embedding, the paper's column
    W_{:,j}) stays as it is; one that writes them (`columns`, TMS `linear2` `[hidden,
    features]`, `Matrix.writes_features`) is transposed, so its feature j is what output
    feature j reads (V[:, c]·U[c, j]), not a hidden unit's mix of all features that no
    rank-one subcomponent can match."""
    if columns:
        return jnp.swapaxes(W, -1, -2), Factors(jnp.swapaxes(factors.U, -1, -2), jnp.swapaxes(factors.V, -1, -2))
    return W, factors


def _subcomponent_cosines(W: Array, factors: Factors) -> tuple[Array, Array, Array]:
    """cos(V[j, c]·U[c, :], W[j, :]) as `[C, n]`, with the subcomponent norms `[C, n]` and
    the target row norms `[n]`. Right-multiplication convention: W is `[d_in, d_out]`, so
    row j of W is what input unit j writes (for TMS `linear1`, feature j's embedding: the
    paper's column W_{:,j}), and subcomponent c's part of it is V[j, c]·U[c, :]."""
    W, V, U = (a.astype(jnp.float32) for a in (W, factors.V, factors.U))
    dots = V.T * (U @ W.T)
    sub_norms = jnp.abs(V.T) * jnp.linalg.norm(U, axis=-1)[:, None]
    w_norms = jnp.linalg.norm(W, axis=-1)
    return dots / jnp.maximum(sub_norms * w_norms, 1e-30), sub_norms, w_norms


def _candidate_cosines(W: Array, factors: Factors, alive: Array | None) -> tuple[Array, Array, Array]:
    """`_subcomponent_cosines` (rows of W are the features), with components that are
    not alive ruled out (cosine −2). Why: a dead component keeps a direction but almost
    no norm, and its cosine with a feature can be the largest by accident (a 1e-4-norm
    component at cos 0.9999 beside the real one at 0.9998): the argmax then makes MMCS
    look perfect and ML2R collapse, or hides a feature that two live components share."""
    cos, sub_norms, w_norms = _subcomponent_cosines(W, factors)
    if alive is not None:
        cos = jnp.where(alive[:, None], cos, -2.0)
    return cos, sub_norms, w_norms


def mmcs(W: Array, factors: Factors, alive: Array | None = None) -> Array:
    """§10 mean max cosine similarity: (1/n) Σ_j max_c cos(V[j, c]·U[c, :], W[j, :]) over
    the rows j of W (see `feature_major`) and the alive components c (all when None)."""
    cos, _, _ = _candidate_cosines(W, factors, alive)
    return jnp.mean(jnp.max(cos, axis=0))


def ml2r(W: Array, factors: Factors, alive: Array | None = None) -> Array:
    """§10 mean L2 ratio: (1/n) Σ_j ‖V[j, c*]·U[c*, :]‖ / ‖W[j, :]‖ with c* = argmax_c of the
    cosine among alive components (1 is no shrinkage; APD sat near 0.9)."""
    cos, sub_norms, w_norms = _candidate_cosines(W, factors, alive)
    best = jnp.argmax(cos, axis=0)
    return jnp.mean(jnp.take_along_axis(sub_norms, best[None], axis=0)[0] / w_norms)
