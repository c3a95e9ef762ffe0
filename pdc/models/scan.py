"""The layer loop every stacked-layer LM target runs (Llama, GPT-2): layers under `lax.scan`
in maximal contiguous segments with the same set of decomposed kinds, so each clean segment
emits the inputs of exactly the sites it holds (no [n_layers, B, T, intermediate] stack) and
each masked segment slices only its layers' components and masks. Segments without a live
kind scan the plain frozen block. A family supplies its block as scan bodies; what the
bodies' `site` does (plain matmul, recording its input, or the decomposed form) is here.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from pdc.decomp.components import Factors, SiteMask, site_out
from pdc.models.base import Residual
from pdc.models.sites import MaskFields, live_kinds, mask_fields, site_mask_of, slice_fields

Array = jax.Array
SiteFn = Callable[[str, Array, Array], Array]  # (kind, x, W) → x @ W (or its decomposed form)
Segment = tuple[int, int, tuple[str, ...]]  # [start, stop) layers and their live kinds
# (layer index, per-kind factors and mask fields of that layer) → one masked layer
MaskedXs = tuple[Array, dict[str, Factors], dict[str, MaskFields]]


def segments(n_layers: int, layers_of: Mapping[str, tuple[int, ...]]) -> list[Segment]:
    """Maximal runs of consecutive layers with the same set of kinds from `layers_of`."""
    per_layer = [tuple(k for k, ls in layers_of.items() if i in ls) for i in range(n_layers)]
    out: list[Segment] = []
    for i, kinds in enumerate(per_layer):
        if out and out[-1][2] == kinds:
            out[-1] = (out[-1][0], i + 1, kinds)
        else:
            out.append((i, i + 1, kinds))
    return out


def first_decomposed(decomposed: Mapping[str, tuple[int, ...]]) -> int:
    """The first layer holding a decomposed site: masked forwards start there."""
    return min(min(layers) for layers in decomposed.values())


def recording_site(record: tuple[str, ...], taps: dict[str, Array]) -> SiteFn:
    """The clean forward's site: `x @ W`, the input of each kind in `record` kept in `taps`."""
    def site(kind: str, h: Array, W: Array) -> Array:
        if kind in record:
            taps[kind] = h
        return h @ W
    return site


def masked_site(factors: Mapping[str, Factors], fields: Mapping[str, MaskFields], dtype: Any) -> SiteFn:
    """The masked forward's site: the decomposed form for a kind with factors, else `x @ W`."""
    def site(kind: str, h: Array, W: Array) -> Array:
        if kind not in factors:
            return h @ W
        with jax.named_scope(f"decompose.{kind}"):  # buffers and collectives map back to the site
            return site_out(h, W, factors[kind], site_mask_of(fields[kind]), dtype)
    return site


def remat_body(body: Callable, remat: str) -> Callable:
    """The masked scan body under the spec's remat. `per_layer` saves only each layer's
    input; `matmuls` saves matmul outputs and cuDNN's attention (recomputing norms, RoPE,
    activations, and XLA attention's batched score matmuls). With per-layer residuals saved
    (`off`, `matmuls`) the scan is unrolled (`scan_masked`): a scan stacks its residuals in
    zero-initialised buffers that XLA:GPU's scheduler allocates at the start of the step,
    so every forward's stacks would sit empty through the adversary warmup
    (llama8b_l18_reference, 8×H100: 53.6 → 49.6 GiB)."""
    if remat == "per_layer":
        return jax.checkpoint(body, prevent_cse=False)
    if remat == "matmuls":
        return jax.checkpoint(body, prevent_cse=False, policy=jax.checkpoint_policies.dots_with_no_batch_dims_saveable)
    return body


FirstLayer = Callable[[Array, tuple[str, ...]], tuple[Array, dict[str, Array], Residual]]


def scan_clean(x: Array, n_layers: int, decomposed: Mapping[str, tuple[int, ...]],
               body_of: Callable[[tuple[str, ...]], Callable], first_layer: FirstLayer | None = None
               ) -> tuple[Array, Array, dict[str, Array], Residual | None]:
    """The all-frozen layers, segment by segment; `body_of(kinds)` is the scan body
    `(x, layer) → (x, (x, taps))` recording `kinds`' inputs. Returns the last residual, every
    layer's input residual stacked, each decomposed kind's inputs (its layers stacked) and the
    residual at the first decomposed layer when layers precede it (else None).

    `first_layer(x, kinds)`, where the family can start masked forwards inside the first
    decomposed layer, runs that layer outside the scan and returns its output, its taps and
    the mid-layer `Residual` masked forwards start from."""
    blocks, taps = [], {kind: [] for kind in decomposed}
    prefix, first = None, first_decomposed(decomposed)
    for start, stop, kinds in segments(n_layers, decomposed):
        if start == first > 0:
            prefix = Residual(x)
        if start == first and first_layer is not None:
            blocks.append(x[None])
            x, layer_taps, prefix = first_layer(x, kinds)
            for kind in kinds:
                taps[kind].append(layer_taps[kind][None])
            start += 1
            if start == stop:
                continue
        x, (seg_blocks, seg_taps) = jax.lax.scan(body_of(kinds), x, jnp.arange(start, stop))
        blocks.append(seg_blocks)
        for kind in kinds:
            taps[kind].append(seg_taps[kind])
    site_inputs = {kind: jnp.concatenate(parts) for kind, parts in taps.items()}
    return x, jnp.concatenate(blocks), site_inputs, prefix


def scan_masked(x: Array, begin: int, n_layers: int, decomposed: Mapping[str, tuple[int, ...]],
                factors: Mapping[str, Factors], fields: Mapping[str, MaskFields],
                body: Callable[[Array, MaskedXs], tuple[Array, None]], remat: str) -> Array:
    """The masked layers from `begin` on, segment by segment: each scans `body` (under
    `remat`) over its layers with the live kinds' factors and mask fields sliced to them."""
    for start, stop, segment_kinds in segments(n_layers, decomposed):
        if stop <= begin:
            continue
        start = max(start, begin)  # a forward resumed inside the first decomposed layer begins after it
        kinds = tuple(k for k in segment_kinds if k in factors)
        x, _ = scan_layers(body, x, layer_xs(start, stop, kinds, decomposed, factors, fields), remat)
    return x


def layer_xs(start: int, stop: int, kinds: tuple[str, ...], decomposed: Mapping[str, tuple[int, ...]],
             factors: Mapping[str, Factors], fields: Mapping[str, MaskFields]) -> MaskedXs:
    """A masked scan's `xs` over layers [start, stop): their indices and `kinds`' factors and
    mask fields sliced to them (every kind decomposed in each of those layers)."""
    first = {kind: decomposed[kind].index(start) for kind in kinds}
    return (jnp.arange(start, stop),
            {k: Factors(*(a[first[k]:first[k] + stop - start] for a in factors[k])) for k in kinds},
            {k: slice_fields(fields[k], first[k], first[k] + stop - start) for k in kinds})


def scan_layers(body: Callable, carry: Any, xs: MaskedXs, remat: str) -> tuple[Any, Any]:
    """`lax.scan` of a masked layer body under the spec's remat (unrolled where per-layer
    residuals are saved: `remat_body` says why)."""
    return jax.lax.scan(remat_body(body, remat), carry, xs, unroll=remat in ("off", "matmuls"))


def masked_forward(masked: Callable[..., Array], remat: str, decomposed: Mapping[str, tuple[int, ...]],
                   params: Any, batch: Any, components: Mapping[str, Factors], masks: Mapping[str, SiteMask],
                   hidden: bool) -> Array:
    """A target's masked forward: `masked(params, batch, factors, fields, hidden=...)` over
    the live kinds (decomposed kinds with components and a mask in this forward), checkpointed
    whole under remat `whole`."""
    live = live_kinds(decomposed, components, masks)
    factors = {kind: Factors(*components[kind]) for kind in live}
    fields = {kind: mask_fields(masks[kind]) for kind in live}
    run = functools.partial(masked, hidden=hidden)
    if remat == "whole":
        run = jax.checkpoint(run)
    return run(params, batch, factors, fields)
