"""The analytical matmul FLOP count on a traced step (`pdc.inspect.flops`) against counts
written out by hand: a dot, a batched dot, a scan's body times its length, a cond's costliest
branch, and a backward pass (two matmuls per forward matmul)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pdc.inspect.flops import jaxpr_flops


def flops(f, *args) -> float:
    return jaxpr_flops(jax.make_jaxpr(f)(*args))


def test_dot_and_batched_dot() -> None:
    a, b = jnp.ones((4, 5)), jnp.ones((5, 6))
    assert flops(jnp.dot, a, b) == 2 * 4 * 5 * 6
    x, y = jnp.ones((3, 4, 5)), jnp.ones((3, 5, 6))
    assert flops(lambda x, y: jnp.einsum("bij,bjk->bik", x, y), x, y) == 2 * 3 * 4 * 5 * 6


def test_scan_cond_jit_and_backward() -> None:
    a, b = jnp.ones((3, 4, 5)), jnp.ones((5, 6))
    one = 2 * 4 * 5 * 6

    def f(a, b):
        return jnp.sum(jnp.tanh(jax.lax.scan(lambda c, x: (c, jax.jit(jnp.dot)(x, b)), 0.0, a)[1]))

    assert flops(f, a, b) == 3 * one
    assert flops(jax.grad(f, argnums=(0, 1)), a, b) == 3 * 3 * one  # forward, ∂a, ∂b
    assert flops(jax.grad(jax.checkpoint(f), argnums=(0, 1)), a, b) == 4 * 3 * one  # + the forward recomputed for tanh'
    cond = lambda p, x: jax.lax.cond(p, lambda x: x @ b @ b.T, lambda x: x, x)  # noqa: E731
    assert flops(cond, True, a[0]) == one + 2 * 4 * 6 * 5
