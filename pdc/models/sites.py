"""Site bookkeeping shared by the target models.

The shape modules (`pdc.targets`) name every decomposable matrix; the models need, per
kind, which layers are decomposed and in which stacking order, plus per-layer views of
the stacked components and masks. `SiteMask` is a plain dataclass (not a pytree), so it
travels through `lax.scan` / `jax.checkpoint` as a `(mask, delta, route)` tuple whose
`None` fields are empty subtrees.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from pdc.decomp.components import Factors, SiteMask, site_out
from pdc.models.base import Site
from pdc.targets.base import TargetShape

Array = jax.Array
MaskFields = tuple[Array | None, Array | None, Array | None]  # (mask, delta, route)
ToySiteFn = Callable[[str, int, Array, Array], Array]  # (kind, layer, x, W) → y


def sites_of(shape: TargetShape) -> tuple[Site, ...]:
    """Every decomposable matrix as a `Site`, in canonical order (toys' single
    matrices get layer 0, as `decomposed` stacks them under `(0,)`)."""
    return tuple(Site(m.path, m.kind, 0 if m.layer is None else m.layer, m.d_in, m.d_out) for m in shape.matrices)


def decomposed_of(shape: TargetShape, paths: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """kind → decomposed layers, kinds and layers in canonical order (the stacking order
    of V/U and masks). Unknown paths are an error: a silent drop would train nothing."""
    sites = sites_of(shape)
    known = {s.path for s in sites}
    unknown = [p for p in paths if p not in known]
    if unknown:
        raise ValueError(f"`{unknown[0]}` is not a decomposable matrix of this {shape.family} target")
    wanted = set(paths)
    out: dict[str, tuple[int, ...]] = {}
    for site in sites:
        if site.path in wanted:
            out[site.kind] = out.get(site.kind, ()) + (site.layer,)
    return out


def mask_fields(site_mask: SiteMask) -> MaskFields:
    return (site_mask.mask, site_mask.delta, site_mask.route)


def site_mask_of(fields: MaskFields) -> SiteMask:
    return SiteMask(*fields)


def index_fields(fields: MaskFields, j: int) -> MaskFields:
    """The masks of the j-th stacked layer of a kind."""
    return tuple(None if f is None else f[j] for f in fields)  # type: ignore[return-value]


def slice_fields(fields: MaskFields, start: int, stop: int) -> MaskFields:
    return tuple(None if f is None else f[start:stop] for f in fields)  # type: ignore[return-value]


def live_kinds(decomposed: Mapping[str, tuple[int, ...]], components: Mapping[str, Factors],
               masks: Mapping[str, SiteMask]) -> tuple[str, ...]:
    """The kinds that run their decomposed path, checked against the stacking layout at
    trace time (a wrong leading axis would otherwise surface as an opaque scan error)."""
    for kind in masks:
        if kind not in decomposed:
            raise KeyError(f"masks name kind `{kind}`, which is not decomposed (decomposed: {sorted(decomposed)})")
        if kind not in components:
            raise KeyError(f"kind `{kind}` has masks but no components")
        n = len(decomposed[kind])
        V, U = components[kind]
        if V.shape[0] != n or U.shape[0] != n:
            raise ValueError(f"components of `{kind}` stack {V.shape[0]} layers, expected {n} "
                             f"(decomposed layers {decomposed[kind]})")
        for name, field in zip(("mask", "delta", "route"), mask_fields(masks[kind])):
            if field is not None and field.shape[0] != n:
                raise ValueError(f"{name} of `{kind}` stacks {field.shape[0]} layers, expected {n}")
    return tuple(k for k in decomposed if k in masks)


def toy_masked_site(decomposed: Mapping[str, tuple[int, ...]], components: Mapping[str, Factors],
                    masks: Mapping[str, SiteMask], compute_dtype: jnp.dtype) -> ToySiteFn:
    """Site op of a toy's masked forward: live (kind, layer) pairs run `site_out` on their
    stacked slice, everything else the frozen `x @ W` (V/U never enter that graph)."""
    live = set(live_kinds(decomposed, components, masks))

    def site(kind: str, layer: int, x: Array, W: Array) -> Array:
        W = W.astype(compute_dtype)
        if kind not in live or layer not in decomposed[kind]:
            return x @ W
        j = decomposed[kind].index(layer)
        V, U = components[kind]
        with jax.named_scope(f"decompose.{kind}"):  # buffers and collectives map back to the site
            return site_out(x, W, Factors(V[j], U[j]), site_mask_of(index_fields(mask_fields(masks[kind]), j)),
                            compute_dtype)

    return site


def toy_recording_site(decomposed: Mapping[str, tuple[int, ...]], taps: dict[tuple[str, int], Array],
                       compute_dtype: jnp.dtype) -> ToySiteFn:
    """Site op of a toy's clean forward: frozen, recording the input of each decomposed site."""

    def site(kind: str, layer: int, x: Array, W: Array) -> Array:
        if layer in decomposed.get(kind, ()):
            taps[(kind, layer)] = x
        return x @ W.astype(compute_dtype)

    return site


def stack_taps(decomposed: Mapping[str, tuple[int, ...]], taps: Mapping[tuple[str, int], Array]) -> dict[str, Array]:
    """Recorded site inputs stacked per kind in `decomposed` order: [L_k, *lead, d_in]."""
    return {kind: jnp.stack([taps[(kind, layer)] for layer in layers]) for kind, layers in decomposed.items()}
