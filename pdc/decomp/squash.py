"""The two CI squashings and the CI bundle (SPD_ALGORITHM.md §3.1).

The CI network emits pre-activations `z`; two squashings of the same `z` serve two
different consumers, which is why both are kept:

- `lower` feeds every mask. Its forward is `clamp(z, 0, 1)`, but its backward is NOT the
  autodiff of the clamp: below 0 a gradient may only pull CI *up* (leak `alpha·g` where
  `g < 0`), never push it further down; above 1 nothing passes. The tie `z = 0` belongs
  to the below-0 branch (the `≤` placement is load-bearing for torch/JAX parity).
- `upper` feeds importance minimality only: the clamp, except a small slope `alpha`
  above 1 so the sparsity penalty is never flat there. Ordinary autodiff.
"""

from __future__ import annotations

from functools import partial
from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def lower_leaky_hard_sigmoid(z: Array, alpha: float) -> Array:
    """`clamp(z, 0, 1)` with the sign-gated leaky backward (see the module docstring)."""
    return jnp.clip(z, 0.0, 1.0)


def _lower_fwd(z: Array, alpha: float) -> tuple[Array, Array]:
    return jnp.clip(z, 0.0, 1.0), z


def _lower_bwd(alpha: float, z: Array, g: Array) -> tuple[Array]:
    """Pass `g` on (0, 1]; `alpha·g` on z ≤ 0 only where g < 0; nothing above 1."""
    inside = (z > 0) & (z <= 1)
    leak = (z <= 0) & (g < 0)
    zero = jnp.zeros_like(g)
    return (jnp.where(inside, g, jnp.where(leak, alpha * g, zero)),)


lower_leaky_hard_sigmoid.defvjp(_lower_fwd, _lower_bwd)


def upper_leaky_hard_sigmoid(z: Array, alpha: float) -> Array:
    """`1 + alpha·(z − 1)` above 1, else `clamp(z, 0, 1)`; differentiated normally."""
    return jnp.where(z > 1, 1 + alpha * (z - 1), jnp.clip(z, 0.0, 1.0))


class CiBundle(NamedTuple):
    """The CI of one step, each field a dict keyed by site kind of `[L_k, *lead, C]`.

    A NamedTuple of dicts (not a dict of NamedTuples) so a consumer takes the whole
    field it needs (`bundle.lower` for masks, `bundle.upper` for importance
    minimality) and passes it on as a per-kind dict, the layout the masked forward
    and the losses already use. `preacts` are kept for histograms."""

    preacts: dict[str, Array]
    lower: dict[str, Array]
    upper: dict[str, Array]


def ci_bundle(preacts: Mapping[str, Array], alpha: float) -> CiBundle:
    """Squash every kind's pre-activations both ways (fp32, whatever the compute dtype)."""
    z = {kind: p.astype(jnp.float32) for kind, p in preacts.items()}
    return CiBundle(
        preacts=z,
        lower={kind: lower_leaky_hard_sigmoid(p, alpha) for kind, p in z.items()},
        upper={kind: upper_leaky_hard_sigmoid(p, alpha) for kind, p in z.items()},
    )
