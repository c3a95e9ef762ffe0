"""The toy targets' input distribution (SPD_ALGORITHM.md §12.3): sparse features drawn on
device from a key, so a toy batch is a pure function of (seed, step) inside the jitted step."""

from __future__ import annotations

from typing import Any, Callable, Literal

import jax
import jax.numpy as jnp

Array = jax.Array


def sparse_features(key: Array, batch: int, features: int, probability: float, values: tuple[float, float],
                    distribution: Literal["at_least_zero_active", "exactly_one_active"]) -> Array:
    """TMS / ResidMLP inputs: each feature active with `probability`, value U[low, high)."""
    active_key, value_key = jax.random.split(key)
    low, high = values
    value = jax.random.uniform(value_key, (batch, features), jnp.float32, low, high)
    if distribution == "exactly_one_active":
        chosen = jax.random.randint(active_key, (batch,), 0, features)
        return jnp.where(jax.nn.one_hot(chosen, features, dtype=bool), value, 0.0)
    return jnp.where(jax.random.bernoulli(active_key, probability, (batch, features)), value, 0.0)


def pretrain_batches(pretrain: Any, data: Any, features: int) -> Callable[[Array], Array]:
    """key → one pretraining batch of a toy target: the `pretrain` block's batch size and
    sparsity (default: the `data` block's), the `data` block's values and distribution."""
    probability = pretrain.feature_probability if pretrain.feature_probability is not None else data.probability
    values, distribution = tuple(data.values), data.distribution
    return lambda key: sparse_features(key, int(pretrain.batch), features, float(probability), values, distribution)
