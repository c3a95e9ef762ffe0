"""The interface every JAX target implements (SPD_ALGORITHM.md §2).

Components and masks are keyed by site *kind* and stacked over the decomposed layers
of that kind (`Factors.V [L_k, d_in, C]`, `SiteMask.mask [L_k, *lead, C]`), the layout
a `lax.scan` over layers consumes and the IR's tensors describe. `decomposed[kind]`
lists, in order, the layer index of each stacked entry (toys: `(0,)` for a single
matrix such as `linear1`).

A kind absent from `masks` runs its frozen path everywhere (non-live). Within a live
kind, `SiteMask.route` (per layer and position) selects between the decomposed and the
frozen path, which is how layerwise terms make a single site live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Protocol

import jax

from pdc.decomp.components import Factors, SiteMask

Array = jax.Array
Params = Any  # a pytree of frozen target weights


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class CleanPass:
    """What one all-frozen forward yields: the recon target and the CI network's inputs.
    A pytree, so a jitted `clean` can return it."""

    output: Array  # logits [B, T, vocab] (LMs) or features [B, F] (toys)
    site_inputs: dict[str, Array]  # kind → [L_k, *lead, d_in], the activation entering each site
    block_inputs: Array | None = None  # LMs: the residual entering every block [n_layers, B, T, hidden]
    start: Any = None  # what masked forwards start from, when not the batch (LMs: `Residual` at the first site)


class Residual(NamedTuple):
    """The residual stream entering the first decomposed layer, from the clean pass. A
    masked forward given it starts there: the layers before hold no decomposed site and
    compute the same residual in every forward, so they run once per step (the clean
    pass) instead of once per forward.

    With `mlp_input` the start is later still, at that layer's MLP: where the layer
    decomposes only MLP matrices, its attention half is frozen too and the same in every
    forward (llama8b_l18_reference: one attention block less per masked forward, about
    1.9 TFLOP per H100 at 8 sequences)."""

    x: Array  # [B, T, hidden], compute dtype: the residual entering the layer, or leaving its attention
    mlp_input: Array | None = None  # [B, T, hidden]: the normed residual the layer's MLP reads


@dataclass(frozen=True)
class Site:
    path: str  # "layers.18.mlp.gate_proj"
    kind: str  # "gate_proj"
    layer: int  # block index (0 for single-layer toys)
    d_in: int
    d_out: int


class Target(Protocol):
    family: str
    sites: tuple[Site, ...]  # canonical order
    decomposed: Mapping[str, tuple[int, ...]]  # kind → layers, the stacking order

    def init_params(self, key: Array) -> Params:
        """Random frozen weights of the right shapes (tests, pretraining)."""

    def weights(self, params: Params) -> dict[str, Array]:
        """The frozen W of every decomposed kind, stacked: kind → [L_k, d_in, d_out]."""

    def clean(self, params: Params, batch: Array) -> CleanPass:
        """The all-frozen forward with the site inputs (and, for LMs, block inputs)."""

    def forward(self, params: Params, batch: Array, components: Mapping[str, Factors],
                masks: Mapping[str, SiteMask]) -> Array:
        """The masked forward: live kinds run `site_out`, the rest their frozen path.
        `batch` may be the clean pass's `start` instead (LMs: a `Residual`)."""
