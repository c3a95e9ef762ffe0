"""Activation pinning: explicit shardings at the site, block and CI boundaries.

Left alone, GSPMD may shard an activation's feature dim and replicate its batch, or
reshard the CI output once per consumer (DESIGN.md §1: ~17 GiB of temp). The lowering
installs a `Pins` for the duration of tracing the step; the model and step code call
`batch(x)` / `components(h)` at their boundaries, which are no-ops without a mesh
(single device, tests), so the numerics never depend on them.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Array = jax.Array


@dataclass(frozen=True)
class Pins:
    mesh: Mesh
    batch_axes: tuple[str, ...]  # mesh axes of the batch dimension
    component_axes: tuple[str, ...]  # mesh axes of the C dimension of x @ V
    vocab_axes: tuple[str, ...] = ()  # mesh axes of the vocabulary of a chunk's logits (those not the batch's)

    def _spec(self, x: Array, lead: int, last: tuple[str, ...] | None) -> NamedSharding:
        dims: list[object] = [None] * x.ndim
        dims[lead] = _axis(self.batch_axes)
        if last is not None and x.ndim - 1 > lead:
            dims[-1] = _axis(last)
        return NamedSharding(self.mesh, PartitionSpec(*dims))

    def batch(self, x: Array, lead: int = 0) -> Array:
        return jax.lax.with_sharding_constraint(x, self._spec(x, lead, None))

    def components(self, h: Array, lead: int = 0) -> Array:
        return jax.lax.with_sharding_constraint(h, self._spec(h, lead, self.component_axes))

    def vocab(self, logits: Array) -> Array:
        shards = 1
        for axis in self.vocab_axes:
            shards *= self.mesh.shape[axis]
        axes = self.vocab_axes if logits.shape[-1] % shards == 0 else ()  # an uneven vocabulary stays whole
        return jax.lax.with_sharding_constraint(logits, self._spec(logits, 0, axes))


def _axis(axes: tuple[str, ...]) -> object:
    return None if not axes else axes[0] if len(axes) == 1 else axes


_ACTIVE: ContextVar[Pins | None] = ContextVar("pdc_pins", default=None)


@contextlib.contextmanager
def pinned(pins: Pins | None) -> Iterator[None]:
    token = _ACTIVE.set(pins)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def pin_batch(x: Array, lead: int = 0) -> Array:
    """Shard dim `lead` of `x` like the batch (the other dims replicated)."""
    pins = _ACTIVE.get()
    return x if pins is None else pins.batch(x, lead)


def pin_components(h: Array, lead: int = 0) -> Array:
    """Shard `x @ V` batch-wise and its C dim like V's: V/U are gathered for compute."""
    pins = _ACTIVE.get()
    return h if pins is None else pins.components(h, lead)


def pin_vocab(logits: Array) -> Array:
    """Shard a chunk's logits `[B, chunk, vocab]` batch-wise and their vocabulary over the
    other mesh axes (tp): with tensor parallelism each device holds 1/tp of the chunk's
    logits and the softmax reduces across the shards."""
    pins = _ACTIVE.get()
    return logits if pins is None else pins.vocab(logits)
