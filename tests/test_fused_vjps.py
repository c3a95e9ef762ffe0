"""The Llama block's SwiGLU and RMSNorm carry their own backward passes (saving the gate and
up projections, and the norm's input and 1/rms, as fused kernels do — not every elementwise
temporary autodiff would keep): values equal the plain expressions exactly, and gradients
equal autodiff's — in f32 to rounding, in bf16 within bf16's precision (the custom backward
computes in f32, autodiff in bf16)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdc.targets.llama.model import rms_norm, swiglu


def plain_swiglu(gate, up):
    return jax.nn.silu(gate) * up


def plain_rms_norm(x, weight, eps):
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return normed.astype(x.dtype) * weight.astype(x.dtype)


def inputs(dtype, *shapes):
    rng = np.random.default_rng(0)
    return [jnp.asarray(rng.normal(size=s) * 2, dtype) for s in shapes]


@pytest.mark.parametrize("dtype,rtol", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_swiglu_values_and_gradients(dtype, rtol) -> None:
    gate, up, probe = inputs(dtype, (3, 5, 16), (3, 5, 16), (3, 5, 16))
    assert np.array_equal(np.asarray(swiglu(gate, up), np.float32), np.asarray(plain_swiglu(gate, up), np.float32))
    loss = lambda f: lambda g, u: jnp.sum((f(g, u) * probe).astype(jnp.float32))  # noqa: E731
    ours = jax.grad(loss(swiglu), argnums=(0, 1))(gate, up)
    theirs = jax.grad(loss(plain_swiglu), argnums=(0, 1))(gate, up)
    for a, b in zip(ours, theirs):
        assert a.dtype == dtype
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype,rtol", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_rms_norm_values_and_gradients(dtype, rtol) -> None:
    x, weight, probe = inputs(dtype, (3, 5, 16), (16,), (3, 5, 16))
    assert np.array_equal(np.asarray(rms_norm(x, weight, 1e-5), np.float32),
                          np.asarray(plain_rms_norm(x, weight, 1e-5), np.float32))
    loss = lambda f: lambda x, w: jnp.sum((f(x, w, 1e-5) * probe).astype(jnp.float32))  # noqa: E731
    ours = jax.grad(loss(rms_norm), argnums=(0, 1))(x, weight)
    theirs = jax.grad(loss(plain_rms_norm), argnums=(0, 1))(x, weight)
    for a, b in zip(ours, theirs):
        assert a.dtype == dtype
        scale = float(np.max(np.abs(np.asarray(b, np.float32))))
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=rtol, atol=rtol * scale)


def test_the_backward_keeps_only_the_inputs() -> None:
    """What a vjp closes over: SwiGLU its two inputs, RMSNorm its input, weight and 1/rms —
    no sigmoid, product or fp32 copy of the activations."""
    gate, up = inputs(jnp.bfloat16, (4, 32), (4, 32))
    _, vjp = jax.vjp(swiglu, gate, up)
    shapes = sorted((leaf.shape, str(leaf.dtype)) for leaf in jax.tree.leaves(vjp))
    assert shapes == [((4, 32), "bfloat16")] * 2
    x, w = inputs(jnp.bfloat16, (4, 32), (32,))
    _, vjp = jax.vjp(lambda x, w: rms_norm(x, w, 1e-5), x, w)
    shapes = sorted((leaf.shape, str(leaf.dtype)) for leaf in jax.tree.leaves(vjp))
    assert shapes == [((4, 1), "float32"), ((4, 32), "bfloat16"), ((32,), "bfloat16")]
